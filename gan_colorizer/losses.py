"""Losses as small pure functions: each returns (total, parts) with parts as floats-to-be (detached tensors).
The VGG16 perceptual loss (--perceptual-weight) is here too: its frozen network loads from a local file only."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from gan_colorizer.ab_bins import classification_loss, soft_encode
from gan_colorizer.color import model_to_rgb
from gan_colorizer.config import GAN_MODES
from gan_colorizer.errors import UserError, reason
from gan_colorizer.weights import hub_checkpoint, load_state_dict_file

RECON_LOSSES = ("l1", "l2", "l1+l2")


def l1_loss(fake_ab: torch.Tensor, real_ab: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Stage 1: mean absolute ab error in the model's units."""
    loss = F.l1_loss(fake_ab.float(), real_ab.float())
    return loss, {"g_l1": loss.detach()}


def reconstruction_loss(fake_ab: torch.Tensor, real_ab: torch.Tensor, kind: str = "l1",
                        l2_weight: float = 1.0) -> tuple[torch.Tensor, dict]:
    """L1, L2 (mean squared error) or L1 + l2_weight * L2 on ab; L1 is always reported, for comparability."""
    l1, parts = l1_loss(fake_ab, real_ab)
    if kind == "l1":
        return l1, parts
    l2 = F.mse_loss(fake_ab.float(), real_ab.float())
    parts["g_l2"] = l2.detach()
    if kind == "l2":
        return l2, parts
    if kind == "l1+l2":
        return l1 + l2_weight * l2, parts
    raise ValueError(f"unknown reconstruction loss {kind!r}; choose from {RECON_LOSSES}")


def _adversarial(logits, real: bool, mode: str, for_generator: bool) -> torch.Tensor:
    if isinstance(logits, list):  # a multi-scale D's maps: summed over scales, as pix2pixHD
        return sum(_adversarial(one, real, mode, for_generator) for one in logits)
    logits = logits.float()
    if mode == "vanilla":
        target = torch.ones_like(logits) if real else torch.zeros_like(logits)
        return F.binary_cross_entropy_with_logits(logits, target)
    if mode == "lsgan":
        return F.mse_loss(logits, torch.full_like(logits, 1.0 if real else 0.0))
    if mode == "hinge":
        if for_generator:
            return -logits.mean()
        return F.relu(1.0 - logits).mean() if real else F.relu(1.0 + logits).mean()
    if mode == "wgangp":  # the critic's score: real up, fake down; its penalty is gradient_penalty's
        return -logits.mean() if real else logits.mean()
    raise ValueError(f"unknown gan mode {mode!r}; choose from {GAN_MODES}")


def reconstruction(fake_ab: torch.Tensor, real_ab: torch.Tensor, optim_cfg) -> tuple[torch.Tensor, dict]:
    """The configured reconstruction loss (--recon-loss, with --l2-weight inside l1+l2)."""
    return reconstruction_loss(fake_ab, real_ab, optim_cfg.recon_loss, optim_cfg.l2_weight)


def perceptual_term(perceptual, gray_l, fake_ab, real_ab, weight: float) -> tuple[torch.Tensor | float, dict]:
    """weight * the VGG feature loss (--perceptual-weight), reported unweighted as g_perceptual; 0 when off."""
    if perceptual is None or weight <= 0:
        return 0.0, {}
    feature = perceptual_loss(perceptual, gray_l, fake_ab, real_ab)
    return weight * feature, {"g_perceptual": feature.detach()}


def colorfulness_term(gray_l: torch.Tensor, fake_ab: torch.Tensor, weight: float) -> tuple[torch.Tensor | float, dict]:
    """DDColor's colourfulness loss (Kang et al. 2023; their ColorfulnessLoss), weight x the mean over the batch of
    1 - CF, CF the Hasler-Suesstrunk colourfulness of the RGB in [0, 1] rebuilt from L and the predicted ab, with
    DDColor's |R - G|, |(R + G) / 2 - B| and unbiased standard deviations (not the val/colorfulness metric's
    8-bit, signed variant). DDColor sums over its batch; here it is a mean, so their 0.5 at batch B is our 0.5 B."""
    if weight <= 0:
        return 0.0, {}
    r, g, b = model_to_rgb(gray_l, fake_ab.float()).flatten(2).unbind(1)
    rg, yb = (r - g).abs(), (0.5 * (r + g) - b).abs()
    spread = (rg.std(dim=1) ** 2 + yb.std(dim=1) ** 2).sqrt()
    centre = (rg.mean(dim=1) ** 2 + yb.mean(dim=1) ** 2).sqrt()
    loss = (1 - (spread + 0.3 * centre)).mean()
    return weight * loss, {"g_colorfulness": loss.detach()}


def classification(logits: torch.Tensor, fake_ab: torch.Tensor, real_ab: torch.Tensor,
                   targets) -> tuple[torch.Tensor, dict]:
    """--head classification: Zhang et al.'s rebalanced cross-entropy against the soft-encoded true ab (g_ce), with
    the L1 of the decoded ab reported beside it (not trained on). targets: ab_bins.ClassTargets (bins and class
    weights on the device)."""
    index, weight = soft_encode(real_ab, targets.bins)
    ce = classification_loss(logits, index, weight, targets.weights)
    return ce, {"g_ce": ce.detach(), "g_l1": F.l1_loss(fake_ab.float(), real_ab.float()).detach()}


def pretrain_loss(recon: tuple[torch.Tensor, dict], extra: tuple = (0.0, {})) -> tuple[torch.Tensor, dict]:
    """Stage 1 generator: reconstruction (or cross-entropy) + extra, the terms that carry their own weight (the
    perceptual term)."""
    return recon[0] + extra[0], {**recon[1], **extra[1]}


def generator_loss(fake_logits: torch.Tensor, recon: tuple[torch.Tensor, dict], lambda_recon: float = 100.0,
                   mode: str = "vanilla", extra: tuple = (0.0, {})) -> tuple[torch.Tensor, dict]:
    """Stage 2 generator: GAN (fakes judged real) + lambda * reconstruction, as pix2pix's GAN + 100 * L1, + extra:
    the terms that carry their own weight (the perceptual term), as in stage 1 and not multiplied by lambda."""
    gan = _adversarial(fake_logits, True, mode, for_generator=True)
    total, parts = pretrain_loss((lambda_recon * recon[0], recon[1]), extra)
    return gan + total, {"g_gan": gan.detach(), **parts}


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor,
                       mode: str = "vanilla") -> tuple[torch.Tensor, dict]:
    """Stage 2 discriminator: (real + fake) / 2, halved as in pix2pix to slow D relative to G."""
    real = _adversarial(real_logits, True, mode, for_generator=False)
    fake = _adversarial(fake_logits, False, mode, for_generator=False)
    return (real + fake) * 0.5, {"d_real": real.detach(), "d_fake": fake.detach()}


def gradient_penalty(D, real: tuple, fake: tuple, weight: float,
                     alpha: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """WGAN-GP (Gulrajani et al. 2017): weight x (||grad of D at x||_2 - 1)^2, x a random point between each real
    (L, ab) pair and a fake one (their L differ when the fake comes from --pool-size's pool), the gradient over D's
    whole input and the whole map of its scores (their sum), per image."""
    (real_l, real_ab), (fake_l, fake_ab) = real, fake
    alpha = torch.rand(len(real_ab), 1, 1, 1, device=real_ab.device) if alpha is None else alpha
    x_l = (alpha * real_l.detach() + (1 - alpha) * fake_l.detach()).requires_grad_(True)
    x_ab = (alpha * real_ab.detach() + (1 - alpha) * fake_ab.detach()).requires_grad_(True)
    grads = torch.autograd.grad(_score_sum(D(x_l, x_ab)), (x_l, x_ab), create_graph=True)
    norm = torch.cat([g.float().flatten(1) for g in grads], dim=1).norm(dim=1)
    penalty = ((norm - 1) ** 2).mean()
    return weight * penalty, {"d_gp": penalty.detach()}


def r1_penalty(D, gray_l: torch.Tensor, real_ab: torch.Tensor, weight: float) -> tuple[torch.Tensor, dict]:
    """R1 (Mescheder et al. 2018): weight / 2 x the squared norm of D's gradient at the real photos, over its whole
    input (L and ab)."""
    x_l, x_ab = gray_l.detach().requires_grad_(True), real_ab.detach().requires_grad_(True)
    grads = torch.autograd.grad(_score_sum(D(x_l, x_ab)), (x_l, x_ab), create_graph=True)
    penalty = sum(g.float().pow(2).flatten(1).sum(dim=1) for g in grads).mean()
    return weight / 2 * penalty, {"d_r1": penalty.detach()}


def _score_sum(scores) -> torch.Tensor:
    """All of D's scores summed (every scale's map of a multi-scale D): what the penalties differentiate."""
    return sum(one.float().sum() for one in (scores if isinstance(scores, list) else [scores]))


def feature_matching(real_features: list, fake_features: list, n_layers: int, weight: float) -> tuple:
    """pix2pixHD's feature-matching loss: weight x the L1 between D's features of the photo (fixed) and of the
    colorization, over every block but the logits, each weighted 4 / (n_layers + 1) and each scale 1 / scales."""
    loss = 0.0
    for real, fake in zip(real_features, fake_features):
        for r, f in zip(real[:-1], fake[:-1]):
            loss = loss + 4.0 / (n_layers + 1) / len(real_features) * F.l1_loss(f.float(), r.detach().float())
    return weight * loss, {"g_fm": loss.detach()}


# The VGG16 perceptual loss

VGG16_FILE = "vgg16-397923af.pth"  # torchvision's ImageNet VGG16, as named in $TORCH_HOME/hub/checkpoints
LAYERS = {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22, "relu5_3": 29}  # index in vgg16.features
_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def parse_layers(spec: str) -> list[str]:
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in LAYERS]
    if not names or unknown:
        raise UserError(f"--perceptual-layers {spec!r}: choose from {', '.join(LAYERS)}")
    return sorted(names, key=LAYERS.get)


class VGGPerceptual(nn.Module):
    """Mean L1 distance between VGG16 features of two sRGB batches, averaged over the chosen layers; frozen."""

    def __init__(self, state_dict: dict, layers: list[str]):
        super().__init__()
        vgg = torchvision.models.vgg16(weights=None)
        vgg.load_state_dict(state_dict)
        self.ends = [LAYERS[n] for n in layers]
        self.features = vgg.features[: max(self.ends) + 1].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1))

    def train(self, mode: bool = True):
        return super().train(False)  # always eval: the loss must not change with the generator's mode

    def _features(self, rgb: torch.Tensor) -> list[torch.Tensor]:
        x, out = (rgb - self.mean) / self.std, []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.ends:
                out.append(x)
        return out

    def forward(self, fake_rgb: torch.Tensor, real_rgb: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            real = self._features(real_rgb)
        fake = self._features(fake_rgb)
        return sum(F.l1_loss(f.float(), r.float()) for f, r in zip(fake, real)) / len(fake)


def vgg_weights_path(path: str | None) -> Path:
    return Path(path) if path else hub_checkpoint(VGG16_FILE)


def load_perceptual(path: str | None, layers: str) -> VGGPerceptual:
    """The perceptual loss with VGG16 weights from `path` or torchvision's cache; missing weights are an error."""
    names = parse_layers(layers)
    file = vgg_weights_path(path)
    if not file.is_file():
        raise UserError(f"--perceptual-weight needs VGG16 ImageNet weights: {file} not found; put {VGG16_FILE} "
                        f"(from download.pytorch.org/models/) there or pass --vgg-weights FILE")
    state = load_state_dict_file(file, "VGG16 weights")
    try:
        return VGGPerceptual(state, names)
    except RuntimeError as e:
        raise UserError(f"{file}: not a torchvision VGG16 state dict ({reason(e)})") from None


def perceptual_loss(net: VGGPerceptual, gray_l: torch.Tensor, fake_ab: torch.Tensor,
                    real_ab: torch.Tensor) -> torch.Tensor:
    """The loss on RGB rebuilt from the shared L with predicted vs true ab (gradients flow into fake_ab)."""
    gray_l = gray_l.float()
    return net(model_to_rgb(gray_l, fake_ab.float()), model_to_rgb(gray_l, real_ab.float()))
