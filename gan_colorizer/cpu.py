"""What this CPU can do, from /proc/cpuinfo (Linux; elsewhere nothing is known, and the careful choice is made):
the instruction sets bf16 autocast and int8 speed and precision rest on. No torch."""
from __future__ import annotations

import functools
from pathlib import Path

ISA = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "avx_vnni")
VNNI = ("avx512_vnni", "avx_vnni")  # a uint8 x int8 dot product summed in int32 (without it: in int16, which saturates)


def proc_field(key: str, path: str = "/proc/cpuinfo") -> str | None:
    """The first `key: value` line's value in a /proc file, or None."""
    try:
        for line in _read(path).splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except (OSError, ValueError):  # missing, unreadable, not text
        pass
    return None


@functools.lru_cache(maxsize=None)
def _read(path: str) -> str:
    return Path(path).read_text()


def isa(flags: str | None = None) -> list[str]:
    """The instruction sets of ISA this CPU has (flags: a cpuinfo flags line, this CPU's by default)."""
    have = set((proc_field("flags") if flags is None else flags or "").split())
    return [f for f in ISA if f in have]


def has_vnni(flags: str | None = None) -> bool | None:
    """Whether the CPU has VNNI; None where its flags cannot be read (not Linux)."""
    flags = proc_field("flags") if flags is None else flags
    return None if flags is None else any(f in VNNI for f in flags.split())
