"""What the harness needs to know of a published colorizer: where its weights live, how they are stored, how its
authors prepare the input, and how its output becomes Lab ab at its render size.

Each family module (zhang.py, ddcolor.py, deoldify.py) declares its models as PublishedModel entries in a MODELS
tuple; the network itself is our own code with the published parameter names, so a published file loads unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Weights:
    """A published weight file: a URL (torch.hub's cache) or a Hugging Face repository file (huggingface_hub's)."""
    url: str | None = None  # fetched with torch.hub.load_state_dict_from_url into $TORCH_HOME/hub/checkpoints
    hf_repo: str | None = None  # fetched with huggingface_hub.hf_hub_download(hf_repo, hf_file)
    hf_file: str | None = None
    container: str | None = None  # the key the state dict sits under in the file ("params", "model"), None: bare


@dataclass(frozen=True)
class PublishedModel:
    name: str  # the short name --checkpoint and Colorizer.from_pretrained take, e.g. "ddcolor-tiny"
    build: Callable  # () -> nn.Module with random weights and the published parameter names
    prepare: Callable  # (rgb (N, 3, H, W) in [0, 1], any size) -> the network's input, as its authors make it
    to_ab: Callable  # (the network's output, rgb at full size) -> Lab ab (N, 2, h, w) in Lab units at render size
    render_size: int  # the side (px) its authors run it at
    weights: Weights
    paper: str  # how to cite: authors, title, venue, year
    source: str  # the authors' repository
    licence: str
