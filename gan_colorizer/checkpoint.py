"""Checkpoints: one dict per file, written atomically, read weights-only; the config inside rebuilds the model."""
from __future__ import annotations

import logging
import os
import random
import signal
import tempfile
from pathlib import Path

import numpy as np
import torch

from gan_colorizer.config import Config
from gan_colorizer.errors import UserError, weights_only_refusal

log = logging.getLogger("gan_colorizer")

FORMAT_VERSION = 1
ARCH_FIELDS = {"generator": ("generator", "backbone", "unet_filters", "head", "hints"),
               "discriminator": ("d_filters", "d_layers", "d_norm", "d_scales")}
PARTIAL_SUFFIX = ".tmp"
_UMASK = os.umask(0o022)  # read once, at import (setting it is process-wide), and put back at once
os.umask(_UMASK)


KILL_AT_ENV = "GAN_COLORIZER_TEST_KILL_AT"
KILL_SIGNAL_ENV = "GAN_COLORIZER_TEST_SIGNAL"


def kill_here_in_tests(point: str, partial_file=None) -> None:
    """Test-only hook: when $GAN_COLORIZER_TEST_KILL_AT equals `point` ('step:5', 'save:4'), signal this process.

    The signal is SIGKILL unless $GAN_COLORIZER_TEST_SIGNAL names another (SIGINT, SIGTERM). At a save point the
    temporary file is first cut to half its length, so the kill lands on a partly written checkpoint.
    """
    if os.environ.get(KILL_AT_ENV) != point:
        return
    if partial_file is not None:
        partial_file.flush()
        partial_file.truncate(max(1, partial_file.tell() // 2))
    os.kill(os.getpid(), getattr(signal, os.environ.get(KILL_SIGNAL_ENV, "SIGKILL")))


def save_atomic(obj: dict, path) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename: a kill never leaves a broken file.

    Any OSError (disk full, folder not writable) is a one-line UserError; the previous file is left as it was.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX, dir=path.parent)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a checkpoint is shared like any file
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            kill_here_in_tests(f"save:{obj.get('step')}", f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        os_error = _os_error(e)
        if os_error is not None:
            kept = "the previous file is intact" if path.is_file() else "no earlier file exists"
            raise UserError(f"cannot write checkpoint {path}: {os_error.strerror or os_error}; {kept}") from None
        raise
    _fsync_folder(path.parent)


def _os_error(e: BaseException) -> OSError | None:
    """The OSError behind a failed write: torch.save reports a full disk as a RuntimeError from its zip writer
    ("unexpected pos ..."), with the file's OSError (ENOSPC) as its context."""
    while e is not None:
        if isinstance(e, OSError):
            return e
        e = e.__cause__ or e.__context__
    return None


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable; file systems that cannot fsync a folder are left to their own devices."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def remove_partial_writes(folder) -> int:
    """Delete temporary files left by a write that was killed (they are never read); returns how many."""
    partial = list(Path(folder).glob(f".*.pt.*{PARTIAL_SUFFIX}"))
    for path in partial:
        path.unlink(missing_ok=True)
    return len(partial)


def _not_a_torch_file(path: Path) -> str | None:
    """Why a file torch.load refused cannot be something torch.save wrote, from its first bytes (a zip, or a legacy
    pickle); None when it looks like one (then torch's own reason is the better one)."""
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as e:
        return e.strerror or str(e)
    if not head:
        return "empty file"
    if head.startswith(b"PK") or head[:1] == b"\x80":
        return None
    if path.suffix.lower() == ".onnx":
        return "an ONNX export: this tool reads PyTorch checkpoints (best.pt, last.pt); colorize.py and the app run it"
    return f"not a file torch.save wrote: it starts with {head!r}"


def load(path) -> dict:
    """Read a checkpoint weights-only (a pickle cannot run code); any failure is a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, random bytes, forbidden globals: all mean "not a checkpoint we can read"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0][:200]
        kind = "truncated or damaged" if "zip archive" in first else type(e).__name__
        reason = _not_a_torch_file(path) or weights_only_refusal(e) or f"{kind}: {first}"
        raise UserError(f"{path}: not a readable checkpoint ({reason})") from None
    if not (isinstance(ckpt, dict) and isinstance(ckpt.get("config"), dict) and isinstance(ckpt.get("generator"), dict)):
        raise UserError(f"{path}: not a gan_colorizer checkpoint (no config / generator entry)")
    version = ckpt.get("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise UserError(f"{path}: checkpoint format {version!r} is newer than this gan_colorizer reads "
                        f"({FORMAT_VERSION}); update gan_colorizer")
    return ckpt


def strip_wrappers(state: dict, path="", expected=None) -> dict:
    """Parameter names as a plain module has them, with a logged note when they were changed.

    Removes torch.compile's `_orig_mod.` segments and DistributedDataParallel's leading `module.`; given the
    `expected` names, also any one leading segment shared by every name (an older wrapper) when that makes them fit.
    """
    expected = set(expected) if expected is not None else None
    out = {".".join(p for p in key.split(".") if p != "_orig_mod"): v for key, v in state.items()}
    if expected is not None and set(state) == expected:
        out = state
    while _wrapped(out, expected):
        out = {k.split(".", 1)[1]: v for k, v in out.items()}
    if list(out) != list(state):
        log.info("note: %s: parameter names remapped from a wrapped or older layout (e.g. %r -> %r)",
                 path, next(iter(state)), next(iter(out)))
    return out


def _wrapped(state: dict, expected: set | None) -> bool:
    """True when every name shares a first segment that is a wrapper's (DDP's `module`, or one that hides a fit)."""
    if not state or any("." not in k for k in state) or (expected is not None and set(state) == expected):
        return False
    if len({k.split(".", 1)[0] for k in state}) != 1:
        return False
    if all(k.startswith("module.") for k in state):
        return True
    stripped = {k.split(".", 1)[1] for k in state}
    return expected is not None and len(stripped & expected) > len(set(state) & expected)


def check_architecture(saved: Config, wanted: Config, path, nets=("generator",)) -> None:
    """Fail with the differing fields when a checkpoint was made for another architecture."""
    diffs = [f"{f}: checkpoint {getattr(saved.model, f)!r}, this run {getattr(wanted.model, f)!r}"
             for net in nets for f in ARCH_FIELDS[net] if getattr(saved.model, f) != getattr(wanted.model, f)]
    if diffs:
        raise UserError(f"{path}: architecture mismatch ({'; '.join(diffs)})")


def load_weights(net: torch.nn.Module, state: dict, path, what: str) -> None:
    try:
        net.load_state_dict(strip_wrappers(state, path, net.state_dict().keys()))
    except RuntimeError as e:
        detail = " ".join(str(e).split())[:300]
        raise UserError(f"{path}: {what} weights do not fit this architecture ({detail})") from None


def make_checkpoint(cfg: Config, nets: dict, counters: dict, metrics: dict, resume_state=None) -> dict:
    """One file's dict: weights, config, counters and metrics; with resume_state = (optimizers, scaler), also
    everything a resume needs (last.pt). best.pt has no resume state."""
    ckpt = {"format_version": FORMAT_VERSION, "stage": cfg.stage, "config": cfg.to_dict(), "metrics": metrics,
            **counters, **{name: net.state_dict() for name, net in nets.items()}}
    if resume_state is not None:
        optimizers, scaler = resume_state
        ckpt["optimizers"] = {k: o.state_dict() for k, o in optimizers.items()}
        ckpt["scaler"] = scaler.state_dict()
        ckpt["rng"] = rng_state()
    return ckpt


def restore(ckpt: dict, path, nets: dict, optimizers: dict, scaler) -> dict:
    """Load a last.pt into the nets, optimizers, gradient scaler and RNGs; returns its counters (epoch, step...)."""
    if "optimizers" not in ckpt:
        raise UserError(f"{path}: holds weights only (best.pt); resume from last.pt")
    try:
        for name, net in nets.items():
            load_weights(net, ckpt[name], path, name)
        for key, optimizer in optimizers.items():
            optimizer.load_state_dict(ckpt["optimizers"][key])
        if ckpt["scaler"]:  # empty when saved without fp16: a run moved to fp16 starts with a fresh scale
            scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        counters = {k: int(ckpt[k]) for k in ("epoch", "batch_in_epoch", "step")}
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise UserError(f"{path}: damaged resume state ({type(e).__name__}: {str(e)[:200]})") from None
    return {**counters, "best_metric": ckpt.get("best_metric"), "skipped_steps": int(ckpt.get("skipped_steps", 0))}


def rng_state() -> dict:
    """Every RNG the run uses, as weights-only-loadable types."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": _to_lists(random.getstate()),
             "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                       "has_gauss": int(np_state[3]), "gauss": float(np_state[4])}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_to_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(x):
    return [_to_lists(v) for v in x] if isinstance(x, tuple) else x


def _to_tuples(x):
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x


def generator_key(ckpt: dict, path, weights: str = "auto", flag: str = "--weights") -> str:
    """Which generator of a checkpoint `weights` (config.WEIGHTS) takes: auto = the EMA copy when the run kept one
    (--ema-decay; what its validation saw and picked best.pt with), ema = insist on it, raw = the trained weights."""
    key = "generator_ema" if weights != "raw" and "generator_ema" in ckpt else "generator"
    if weights == "ema" and key != "generator_ema":
        raise UserError(f"{path}: no EMA weights in this checkpoint (trained without --ema-decay); use {flag} raw")
    return key
