"""Checkpoints: one dict per file, written atomically, read weights-only; the config inside rebuilds the model."""
from __future__ import annotations

import logging
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from .config import Config
from .errors import UserError

log = logging.getLogger("gan_colorizer")

FORMAT_VERSION = 1
ARCH_FIELDS = {"generator": ("generator", "backbone", "unet_filters"), "discriminator": ("disc_filters", "disc_layers")}
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile


def save_atomic(obj: dict, path) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename: a kill never leaves a broken file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise UserError(f"cannot write checkpoint {path}: {e.strerror or e}; the previous file is intact") from None
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load(path) -> dict:
    """Read a checkpoint weights-only (a pickle cannot run code); any failure is a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, random bytes, forbidden globals: all mean "not a checkpoint we can read"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UserError(f"{path}: not a readable checkpoint ({type(e).__name__}: {first})") from None
    if not isinstance(ckpt, dict) or "config" not in ckpt or "generator" not in ckpt:
        raise UserError(f"{path}: not a gan_colorizer checkpoint (no config / generator entry)")
    return ckpt


def strip_wrappers(state: dict, path="") -> dict:
    """Remove DDP / torch.compile name segments, with a logged note when any were found."""
    out, changed = {}, False
    for key, value in state.items():
        new = key
        for prefix in WRAPPER_PREFIXES:
            new = new.replace(prefix, "")
        changed |= new != key
        out[new] = value
    if changed:
        log.info("note: %s: removed wrapper prefixes %s from parameter names", path, WRAPPER_PREFIXES)
    return out


def check_architecture(saved: Config, wanted: Config, path, nets=("generator",)) -> None:
    """Fail with the differing fields when a checkpoint was made for another architecture."""
    diffs = [f"{f}: checkpoint {getattr(saved.model, f)!r}, this run {getattr(wanted.model, f)!r}"
             for net in nets for f in ARCH_FIELDS[net] if getattr(saved.model, f) != getattr(wanted.model, f)]
    if diffs:
        raise UserError(f"{path}: architecture mismatch ({'; '.join(diffs)})")


def load_weights(net: torch.nn.Module, state: dict, path, what: str) -> None:
    try:
        net.load_state_dict(strip_wrappers(state, path))
    except RuntimeError as e:
        detail = " ".join(str(e).split())[:300]
        raise UserError(f"{path}: {what} weights do not fit this architecture ({detail})") from None


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


def load_generator(path, device="cpu"):
    """(generator in eval mode, config, checkpoint dict) from any stage-1 or stage-2 checkpoint."""
    from .networks import build_generator
    ckpt = load(path)
    cfg = Config.from_dict(ckpt["config"])
    generator = build_generator(cfg.model, load_pretrained=False)
    load_weights(generator, ckpt["generator"], path, "generator")
    return generator.to(device).eval(), cfg, ckpt
