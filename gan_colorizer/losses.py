"""Losses as small pure functions: each returns (total, parts) with parts as floats-to-be (detached tensors)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

GAN_MODES = ("vanilla", "lsgan", "hinge")
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


def _adversarial(logits: torch.Tensor, real: bool, mode: str, for_generator: bool) -> torch.Tensor:
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
    raise ValueError(f"unknown gan mode {mode!r}; choose from {GAN_MODES}")


def reconstruction(gray_l: torch.Tensor, fake_ab: torch.Tensor, real_ab: torch.Tensor, optim_cfg,
                   perceptual=None) -> tuple[torch.Tensor, dict]:
    """The configured reconstruction loss (--recon-loss), plus --perceptual-weight times the VGG feature loss."""
    loss, parts = reconstruction_loss(fake_ab, real_ab, optim_cfg.recon_loss, optim_cfg.l2_weight)
    return _with_perceptual(loss, parts, gray_l, fake_ab, real_ab, optim_cfg, perceptual)


def _with_perceptual(loss, parts: dict, gray_l, fake_ab, real_ab, optim_cfg, perceptual) -> tuple[torch.Tensor, dict]:
    if perceptual is not None and optim_cfg.perceptual_weight > 0:
        from .vgg_loss import perceptual_loss
        feature = perceptual_loss(perceptual, gray_l, fake_ab, real_ab)
        parts["g_perceptual"] = feature.detach()
        loss = loss + optim_cfg.perceptual_weight * feature
    return loss, parts


def classification(gray_l: torch.Tensor, logits: torch.Tensor, fake_ab: torch.Tensor, real_ab: torch.Tensor,
                   targets, optim_cfg, perceptual=None) -> tuple[torch.Tensor, dict]:
    """--head classification: Zhang et al.'s rebalanced cross-entropy against the soft-encoded true ab (g_ce), with
    the L1 of the decoded ab reported beside it (not trained on), plus --perceptual-weight times the VGG loss of
    the decoded ab. targets: color_classes.ClassTargets (bins and class weights on the device)."""
    from .color_classes import classification_loss, soft_encode
    index, weight = soft_encode(real_ab, targets.bins)
    ce = classification_loss(logits, index, weight, targets.weights)
    parts = {"g_ce": ce.detach(), "g_l1": F.l1_loss(fake_ab.float(), real_ab.float()).detach()}
    return _with_perceptual(ce, parts, gray_l, fake_ab, real_ab, optim_cfg, perceptual)


def generator_loss(fake_logits: torch.Tensor, recon: tuple[torch.Tensor, dict], lambda_recon: float = 100.0,
                   mode: str = "vanilla") -> tuple[torch.Tensor, dict]:
    """Stage 2 generator: GAN (fakes judged real) + lambda * reconstruction, as pix2pix's GAN + 100 * L1."""
    gan = _adversarial(fake_logits, True, mode, for_generator=True)
    recon_loss, parts = recon
    return gan + lambda_recon * recon_loss, {"g_gan": gan.detach(), **parts}


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor,
                       mode: str = "vanilla") -> tuple[torch.Tensor, dict]:
    """Stage 2 discriminator: (real + fake) / 2, halved as in pix2pix to slow D relative to G."""
    real = _adversarial(real_logits, True, mode, for_generator=False)
    fake = _adversarial(fake_logits, False, mode, for_generator=False)
    return (real + fake) * 0.5, {"d_real": real.detach(), "d_fake": fake.detach()}
