"""Every network by what names it: our generators by their config (build_generator) or a checkpoint of ours
(load_generator), the published colorizers by name: `--checkpoint ddcolor-tiny` finds the model, fetches its authors'
file as their libraries do (torch.hub's cache for a URL, huggingface_hub's for a Hugging Face repository) and loads it
weights-only.

A path that exists always wins over a name; a name is only looked up when no such file is there.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from gan_colorizer.ab_bins import bin_tensor
from gan_colorizer.checkpoint import generator_key, load_weights
from gan_colorizer.checkpoint import load as load_checkpoint
from gan_colorizer.config import Config
from gan_colorizer.errors import UserError, reason
from gan_colorizer.hints import FEATURES as HINT_FEATURES
from gan_colorizer.models import ddcolor, deoldify, zhang
from gan_colorizer.models.classifier import ColorClassifier
from gan_colorizer.models.pix2pix import ResnetGenerator, UNetGenerator, init_normal
from gan_colorizer.models.published import PublishedModel
from gan_colorizer.models.bodies import body_weights
from gan_colorizer.models.resunet import resunet
from gan_colorizer.weights import fetch_state, hub_file, load_state_dict_file

log = logging.getLogger("gan_colorizer")


def build_generator(model_cfg, load_pretrained: bool = True, device=None) -> nn.Module:
    """The generator the config names; load_pretrained=False when a checkpoint will supply every weight (then no
    ImageNet file is read or downloaded). device="meta" builds the layout alone, without storage or initialisation:
    to_empty() then load_state_dict() fill it from a checkpoint (load_generator)."""
    classes = model_cfg.head == "classification"
    bins = bin_tensor() if classes else None  # computed where tensors have data (the ColorClassifier keeps a copy)
    n_out = len(bins) if classes else 2
    with torch.device(device) if device is not None else contextlib.nullcontext():
        net = _generator_net(model_cfg, n_out, classes, load_pretrained)
    return ColorClassifier(net, bins, model_cfg.annealed_t) if classes else net


def _generator_net(model_cfg, n_out: int, logits: bool, load_pretrained: bool) -> nn.Module:
    n_in = 1 + (HINT_FEATURES if model_cfg.hints else 0)  # L, and with --hints the hints and their spread
    if model_cfg.generator in ("unet", "resnet9"):
        if model_cfg.generator == "unet":
            net = UNetGenerator(n_in, n_out, model_cfg.unet_filters, model_cfg.unet_dropout, logits=logits)
        else:
            net = ResnetGenerator(n_in, n_out, model_cfg.unet_filters, logits=logits)
        if load_pretrained:
            log.info("generator: pix2pix %s, random init N(0, 0.02) (it has no pretrained body)", model_cfg.generator)
        return init_normal(net)
    weights, source = body_weights(model_cfg) if load_pretrained else (None, "")
    if load_pretrained:
        log.info("generator: resunet on %s, %s", model_cfg.backbone, f"body weights from {source}"
                 if weights is not None else "random init (--no-pretrained)")
    return resunet(model_cfg.backbone, weights, source, n_out, n_in)


def load_generator(path, device="cpu", weights: str = "auto"):
    """(generator in eval mode, config, checkpoint dict) from any stage-1 or stage-2 checkpoint.

    A run trained with --ema-decay holds an averaged copy too: `auto` and `ema` take it, `raw` the trained weights;
    ckpt["weights_used"] says which.
    """
    ckpt = load_checkpoint(path)
    cfg = Config.from_dict(ckpt["config"])
    key = generator_key(ckpt, path, weights)
    # the layout alone, then memory for the weights the file holds: no random init, no dummy forward pass
    try:
        generator = build_generator(cfg.model, load_pretrained=False, device="meta").to_empty(device="cpu")
    except UserError as e:  # a config this version cannot build (a body from a newer version): the file is the cause
        raise UserError(f"{path}: its generator cannot be built here ({e})") from None
    load_weights(generator, ckpt[key], path, key)
    ckpt["weights_used"] = "ema" if key == "generator_ema" else "raw"
    return generator.to(device).eval(), cfg, ckpt


def load_network(checkpoint, device="cpu", weights: str = "auto", download: bool = True, ours=None):
    """What --checkpoint names: a published model (its name, or its authors' file given as a path) as Loaded; else
    our checkpoint's (generator, config, contents) through `ours` (default load_generator)."""
    if is_published(checkpoint):
        return load(str(checkpoint), download)
    try:
        return (ours or load_generator)(checkpoint, device, weights)
    except UserError:
        if not Path(checkpoint).exists():
            find(str(checkpoint))  # not a name either: one line listing the names
        published = load_file(checkpoint)  # its parameters say which published model it is
        if published is None:
            raise
        return published


OFFLINE_FIX = "then run again"


def _bare(contents: dict) -> dict:
    return contents


def _deoldify_state(contents: dict) -> dict:
    """Their learner's {'model': state dict, 'opt': optimizer state}, or the state dict itself (a local file comes
    unwrapped from weights.load_state_dict_file)."""
    return contents["model"] if isinstance(contents.get("model"), dict) else contents


# each family with the way its files hold the state dict
FAMILIES = ((zhang.MODELS, _bare), (ddcolor.MODELS, ddcolor.published_state_dict),
            (deoldify.MODELS, _deoldify_state))
PUBLISHED = {model.name: model for models, _ in FAMILIES for model in models}
STATE_FROM = {model.name: unwrap for models, unwrap in FAMILIES for model in models}


def refuse(checkpoint, tool: str) -> None:
    """One line for a tool that takes our checkpoints only (the ONNX export), when --checkpoint names a published
    model: why, and what runs it."""
    if is_published(checkpoint):
        raise UserError(f"--checkpoint {checkpoint}: {tool} takes our checkpoints only: a published model's input "
                        f"preparation (its authors' resize and normalisation) runs outside its network, where the "
                        f"ONNX engines carry none; colorize.py, evaluate.py and visualize.py run it with torch")


@dataclass
class Loaded:
    """A published model with its authors' weights in our network, and where they came from."""
    model: PublishedModel
    network: torch.nn.Module
    file: Path  # the cached weight file
    source: str  # the file, and whether it was cached or downloaded (and from where)

    def sha256(self) -> str:
        digest = hashlib.sha256()
        with self.file.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()


def names() -> str:
    return ", ".join(PUBLISHED)


def find(name: str) -> PublishedModel:
    """The published model called `name`, or one line listing the names."""
    if name not in PUBLISHED:
        raise UserError(f"{name}: checkpoint not found, and not a published model name ({names()})")
    return PUBLISHED[name]


def cached(name: str) -> bool:
    """Whether the named model's weight file is in its library's cache already, so that it loads offline."""
    weights = find(name).weights
    if weights.hf_repo:
        from huggingface_hub import try_to_load_from_cache
        return isinstance(try_to_load_from_cache(weights.hf_repo, weights.hf_file), str)
    return hub_file(weights.url).is_file()


def is_published(checkpoint) -> bool:
    """True when --checkpoint names a published model rather than a file (a file of that name wins)."""
    return str(checkpoint) in PUBLISHED and not Path(checkpoint).exists()


def _hub_contents(model: PublishedModel, download: bool) -> tuple[dict, Path, str]:
    """A URL-hosted file through torch.hub's cache ($TORCH_HOME/hub/checkpoints), the hash in its name checked on
    download, as weights.fetch_state fetches the ImageNet ResNets."""
    url = model.weights.url

    def load(**kwargs):
        # DeOldify's learner files hold slices beside the tensors; torch.hub's weights-only load allows them here
        with deoldify.learner_globals() if model.weights.container == "model" else contextlib.nullcontext():
            return torch.hub.load_state_dict_from_url(url, **kwargs)
    contents, source = fetch_state(url, model.name, OFFLINE_FIX, load=load, download=download)
    return contents, hub_file(url), source


def _hf_failure(model: PublishedModel, e: Exception) -> UserError:
    from huggingface_hub import constants, hf_hub_url
    repo, file = model.weights.hf_repo, model.weights.hf_file
    folder = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
    why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else f"{type(e).__name__}: {reason(e)}"
    return UserError(f"{model.name}: {file} of {repo} is not in the Hugging Face cache ({folder}) and downloading "
                     f"{hf_hub_url(repo, file)} failed ({why}): go online, {OFFLINE_FIX}")


def _hf_contents(model: PublishedModel, download: bool) -> tuple[dict, Path, str]:
    """A Hugging Face file through huggingface_hub's cache (HF_HOME / HF_HUB_CACHE, HF_HUB_OFFLINE honoured)."""
    from huggingface_hub import constants, hf_hub_download, hf_hub_url, try_to_load_from_cache

    repo, file = model.weights.hf_repo, model.weights.hf_file
    cached = try_to_load_from_cache(repo, file)
    if not isinstance(cached, str) and not download:
        folder = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
        raise UserError(f"{model.name}: {file} of {repo} is not in the Hugging Face cache ({folder}) (--no-download): "
                        f"fetch {hf_hub_url(repo, file)} into it on a machine that is online, {OFFLINE_FIX}")
    try:
        path = Path(hf_hub_download(repo, file))
    except Exception as e:  # offline, no such file, HTTP errors: all mean the same to the user
        raise _hf_failure(model, e) from None
    contents = load_state_dict_file(path, f"{model.name} weights")
    return contents, path, f"{path} ({'cached' if isinstance(cached, str) else 'downloaded from ' + repo})"


def _shapes(model: PublishedModel) -> dict:
    """The parameter names and shapes of the model's state dict, from a build on the meta device (no memory)."""
    bin_tensor()  # ECCV16's decoding layer reads the bins; made on the CPU, once, before the meta build
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in model.build().state_dict().items()}


def identify(path: Path, contents: dict) -> PublishedModel | None:
    """Which published model a weight file holds, from its parameter names and shapes; where several share an
    architecture (DDColor large / paper / artistic, DeOldify stable / video), the one whose published file has this
    file's name, else the first listed."""
    matches = []
    for name, model in PUBLISHED.items():
        try:
            state = STATE_FROM[name](contents)
        except (KeyError, TypeError, AttributeError):
            continue
        if isinstance(state, dict) and {k: tuple(getattr(v, "shape", ())) for k, v in state.items()} == _shapes(model):
            matches.append(model)
    named = [m for m in matches if Path(m.weights.url or m.weights.hf_file or "").name == path.name.split("?")[0]]
    return (named or matches or [None])[0]


def load_file(path) -> Loaded | None:
    """A published model's own weight file given as a path (--checkpoint ~/Downloads/ColorizeArtistic_gen.pth):
    the model its parameters say, with those weights; None when the file is not one of them (or unreadable)."""
    path = Path(path)
    try:
        contents = deoldify.read_published(path, "weights")  # weights-only; a learner file's slices allowed
    except UserError:
        return None
    model = identify(path, contents) if isinstance(contents, dict) else None
    if model is None:
        return None
    network = model.build()
    network.load_state_dict(STATE_FROM[model.name](contents), strict=True)
    return Loaded(model, _finite(network, path, model.name).eval(), path, f"{path} (its parameters are {model.name}'s)")


def _finite(network: torch.nn.Module, path, name: str) -> torch.nn.Module:
    """The network, unless a weight is NaN or Inf: a damaged file would paint every photo black (exit 0)."""
    bad = [k for k, v in network.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise UserError(f"{path}: {name}'s weights hold NaN or Inf ({bad[0]}"
                        f"{f' and {len(bad) - 1} more tensors' if len(bad) > 1 else ''}): the file is damaged")
    return network


def load(name: str, download: bool = True) -> Loaded:
    """The named model built, with its published weights loaded strictly; fetched on first use unless download is
    False (then a file not yet cached is a one-line error naming it, where it goes and its URL)."""
    model = find(name)
    fetch = _hf_contents if model.weights.hf_repo else _hub_contents
    contents, path, source = fetch(model, download)
    network = model.build()
    try:
        network.load_state_dict(STATE_FROM[name](contents), strict=True)
    except (KeyError, RuntimeError, AttributeError, TypeError) as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]  # torch's first line names no tensor
        first = (lines[1] if len(lines) > 1 else lines[0])[:200] if lines else type(e).__name__
        raise UserError(f"{path}: not {name}'s published weights ({first}); delete it to fetch it again") from None
    return Loaded(model, _finite(network, path, name).eval(), path, source)
