"""Published weight files, found as their own libraries find them: torch.hub's cache for a URL (torchvision's ResNets,
LPIPS, FID's Inception, Zhang's and DeOldify's colorizers), downloaded there on first use; and local state-dict files
(--backbone-weights, --lpips-weights, ...), all loaded weights-only.

In the core, not in models/: the losses (VGG, LPIPS) and the evaluation's metric networks read their files here too.
"""
from __future__ import annotations

import functools
from pathlib import Path
from urllib.parse import urlparse

import torch

from gan_colorizer.errors import UserError, weights_only_refusal


def hub_checkpoint(name: str) -> Path:
    """Where torch.hub (torchvision, pytorch-fid) caches a weight file: $TORCH_HOME/hub/checkpoints/NAME."""
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def hub_file(url: str) -> Path:
    """The cache file torch.hub's load_state_dict_from_url keeps a URL's download in."""
    return hub_checkpoint(Path(urlparse(url).path).name)


def _reason(e: BaseException) -> str:
    text = " ".join(str(e).split())[:200]
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def fetch_state(url: str, what: str, fix: str, load=None, download: bool = True) -> tuple[dict, str]:
    """A published state dict through torch.hub's cache, downloaded on first use as torchvision and pytorch-fid do:
    (state, where it came from). load: the package's own loader (default torch.hub.load_state_dict_from_url);
    a UserError naming the file, where it goes and `fix` when it is neither cached nor downloadable."""
    path = hub_file(url)
    cached = path.is_file()
    if not cached and not download:
        raise UserError(f"{what}: {path.name} is not in {path.parent} (--no-download): put it there, {fix}")
    load = load or functools.partial(torch.hub.load_state_dict_from_url, url)
    try:
        state = load(progress=True, check_hash=True, map_location="cpu", weights_only=True)
    except Exception as e:  # offline, HTTP errors, a bad hash, a truncated file: all mean the same to the user
        if cached:  # a refusal of the weights-only load says so in our words, not torch's advice to turn it off
            raise UserError(f"{path}: not a readable {what} ({weights_only_refusal(e) or _reason(e)}); delete it to "
                            f"download it again, {fix}") from None
        raise UserError(f"{what}: {path.name} is not in {path.parent} and downloading {url} failed ({_reason(e)}): "
                        f"put the file there, {fix}") from None
    return state, f"{path} ({'cached' if cached else 'downloaded from ' + url})"


def load_state_dict_file(path, what: str) -> dict:
    """A state dict from a local file, loaded weights-only; unwraps {'state_dict': ...} and DDP's 'module.'."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file; all mean the same to the user
        reason = weights_only_refusal(e) or f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
        raise UserError(f"{path}: not a readable {what} ({reason})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise UserError(f"{path}: not a {what} (expected a state dict)")
    return {k.removeprefix("module."): v for k, v in state.items()}
