"""One optimizer step of each stage, and validation: what differs between the stages lives here.

Under DistributedDataParallel the nets arrive wrapped; gradients are all-reduced only on the last micro-batch
of an accumulated step (no_sync), and a frozen discriminator is run without gradient sync.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from gan_colorizer.color import model_to_rgb, to_uint8
from gan_colorizer.config import Config
from gan_colorizer.hints import sample as sample_hints
from gan_colorizer.losses import (
    classification,
    colorfulness_term,
    discriminator_loss,
    feature_matching,
    generator_loss,
    gradient_penalty,
    perceptual_term,
    pretrain_loss,
    r1_penalty,
    reconstruction,
)
from gan_colorizer.metrics import colorfulness, delta_e2000, image_lab, psnr
from gan_colorizer.runtime import Runtime, unwrap
from gan_colorizer.train import distributed
from gan_colorizer.train.distributed import SINGLE, Dist, sync_gradients

PSNR_CAP = 100.0  # dB; an exact prediction has infinite PSNR, which would make the mean useless for best.pt


@dataclass
class Nets:
    generator: torch.nn.Module
    discriminator: torch.nn.Module | None = None
    perceptual: torch.nn.Module | None = None  # frozen VGG16 for --perceptual-weight; not trained, not saved
    ema: object | None = None  # ema.EMA of the generator for --ema-decay
    pool: object | None = None  # pool.ImagePool of earlier fakes for D, --pool-size
    classes: object | None = None  # color_classes.ClassTargets for --head classification
    hints: bool = False  # --hints: the generator reads hints simulated from each photo (hints.sample)
    hint_points: float = 7.0  # --hint-points: their mean number per photo


def as_floats(parts: dict) -> dict:
    """The loss parts of a step, kept on the device while it ran, read by the host at once: one sync per step rather
    than one per part and micro-batch."""
    return dict(zip(parts, torch.stack(list(parts.values())).tolist())) if parts else {}


def base_lr(cfg: Config) -> dict:
    """Each net's rate before any schedule: --lr for G, --d-lr (default --lr) for D."""
    o = cfg.optim
    return {"g": o.lr, "d": o.lr if o.d_lr is None else o.d_lr}


def make_optimizer(net: torch.nn.Module, cfg: Config, which: str = "g") -> torch.optim.Optimizer:
    """Adam, or AdamW (decoupled weight decay) when --weight-decay > 0; the discriminator's ("d") with its own rate
    and betas where --d-lr / --d-beta1 / --d-beta2 are given."""
    o = cfg.optim
    lr = base_lr(cfg)[which]
    betas = (o.beta1, o.beta2) if which == "g" else (o.beta1 if o.d_beta1 is None else o.d_beta1,
                                                       o.beta2 if o.d_beta2 is None else o.d_beta2)
    if o.weight_decay > 0:
        return torch.optim.AdamW(net.parameters(), lr=lr, betas=betas, weight_decay=o.weight_decay)
    return torch.optim.Adam(net.parameters(), lr=lr, betas=betas)


UPDATED, SCALER_SKIP, BAD = "updated", "scaler skip", "bad"  # what became of a step (update, the step functions)


def update(rt: Runtime, opts: dict, net: str, parts: dict, dist: Dist) -> str:
    """One update of optimizer opts[net], or why none, the same on every process (a collective under torchrun, so
    that the weights stay the same everywhere): BAD when a loss or gradient is NaN / Inf on any process (a sign of
    divergence); SCALER_SKIP when the losses are finite and only fp16's scaled gradients overflowed (the scaler
    lowers its scale: normal while it settles, and every few thousand steps after)."""
    gradients, losses = rt.finite(opts[net], net, tuple(parts.values()))
    overflow = not gradients and rt.scaler.enabled
    bad = not losses or not (gradients or overflow)
    bad, overflow = distributed.all_reduce_sum(dist, [float(bad), float(overflow)], rt.device)
    outcome = BAD if bad else SCALER_SKIP if overflow else UPDATED
    rt.step(opts[net], outcome == UPDATED, net)
    return outcome


def pretrain_step(rt: Runtime, nets: Nets, opts: dict, micro: list, cfg: Config,
                  dist: Dist = SINGLE) -> tuple[dict, bool]:
    """Stage 1: the reconstruction loss (L1 on ab by default), gradients accumulated over the micro-batches.
    Returns (losses, UPDATED / SCALER_SKIP / BAD)."""
    opts["g"].zero_grad(set_to_none=True)
    parts = {}
    for i, (gray_l, real_ab) in enumerate(micro):
        with sync_gradients(nets.generator, i == len(micro) - 1):
            with rt.autocast():
                fake = generate(nets, gray_l, real_ab)
            loss, parts_i = pretrain_loss(*objective(gray_l, fake, real_ab, nets, cfg))
            rt.backward(loss / len(micro))
        _accumulate(parts, parts_i, len(micro))
    outcome = update(rt, opts, "g", parts, dist)
    return as_floats(parts), outcome


def generate(nets: Nets, gray_l: torch.Tensor, real_ab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(fake_ab, logits): the logits of a classification head come out of the same forward; None for regression.
    A hint model reads hints simulated from the photo's own ab, drawn afresh each forward (Zhang et al. 2017)."""
    given = {"hints": torch.cat(sample_hints(real_ab.detach(), p=1 / (nets.hint_points + 1)), dim=1)} \
        if nets.hints else {}
    if nets.classes is None:
        return nets.generator(gray_l, **given), None
    logits, fake_ab = nets.generator(gray_l, return_logits=True, **given)
    return fake_ab, logits


def objective(gray_l: torch.Tensor, fake: tuple, real_ab: torch.Tensor, nets: Nets, cfg: Config) -> tuple:
    """(the generator's own term: --recon-loss on ab (regression) or the rebalanced cross-entropy (classification),
    which stage 2 weighs by lambda; the terms with their own weights, in both stages: --perceptual-weight x the VGG
    loss, --colorfulness-weight x DDColor's colourfulness loss), each as (loss, parts)."""
    fake_ab, logits = fake
    if logits is None:
        own = reconstruction(fake_ab, real_ab, cfg.optim)
    else:
        own = classification(logits, fake_ab, real_ab, nets.classes)
    extra = perceptual_term(nets.perceptual, gray_l, fake_ab, real_ab, cfg.optim.perceptual_weight)
    return own, _plus(extra, colorfulness_term(gray_l, fake_ab, cfg.optim.colorfulness_weight))


def gan_step(rt: Runtime, nets: Nets, opts: dict, micro: list, cfg: Config, dist: Dist = SINGLE) -> tuple[dict, bool]:
    """Stage 2, in pix2pix order: update D on real vs fake, then G on GAN + lambda * L1 (+ the perceptual term)
    against the updated D. With --d-steps K, micro holds K groups of --grad-accum batches: D is updated on each in
    turn, G on the last group's fakes.

    Returns (losses, UPDATED / SCALER_SKIP / BAD: what became of G's update). A NaN / Inf or an fp16 overflow in the
    D phase skips the whole step (neither net moves); one in the G phase skips G's update, while D's, made from finite
    values against the fakes before it, stands: undoing it would need a copy of D and its optimizer, and pix2pix's
    order (D, then G against the updated D) leaves no way to learn of G's overflow first. Each net has its own fp16
    scale (runtime.Scalers), so G's overflows, rare once its scale has settled, lower G's scale alone.
    """
    k = cfg.optim.grad_accum
    groups = [micro[i:i + k] for i in range(0, len(micro), k)]  # --d-steps groups: one D update each, G on the last
    parts = {}
    for group in groups:
        parts_d = {}
        fakes = _discriminator_phase(rt, nets, opts, group, cfg, parts_d)
        outcome = update(rt, opts, "d", parts_d, dist)
        _accumulate(parts, parts_d, len(groups))
        if outcome != UPDATED:
            return as_floats(parts), outcome
    _generator_phase(rt, nets, opts, groups[-1], fakes, cfg, parts)
    outcome = update(rt, opts, "g", parts, dist)
    return as_floats(parts), outcome


def _discriminator_phase(rt: Runtime, nets: Nets, opts: dict, micro: list, cfg: Config, parts: dict) -> list:
    """D's gradients on real vs fake; returns the fakes (with their graph when one micro-batch lets G reuse them)."""
    D = nets.discriminator
    reuse = len(micro) == 1
    fakes = []
    D.requires_grad_(True)
    opts["d"].zero_grad(set_to_none=True)
    for i, (gray_l, real_ab) in enumerate(micro):
        with rt.autocast(), torch.set_grad_enabled(reuse):
            fake = generate(nets, gray_l, real_ab)
        fakes.append(fake)
        with sync_gradients(D, i == len(micro) - 1):
            with rt.autocast():
                judged = judged_fakes(nets, gray_l, fake[0])
                loss_d, parts_d = discriminator_loss(D(gray_l, real_ab), D(*judged), cfg.optim.gan_mode)
                loss_d = loss_d + penalties(D, (gray_l, real_ab), judged, cfg.optim, parts_d)
            rt.backward(loss_d / len(micro), "d")
        _accumulate(parts, parts_d, len(micro))
    return fakes


def penalties(D, real: tuple, fake: tuple, o, parts: dict):
    """D's gradient penalties on the (L, ab) pairs it judged, added to its loss: WGAN-GP's under --gan-mode wgangp,
    R1's when --r1-weight > 0 (their unweighted values reported as d_gp, d_r1). Halved as the adversarial term is
    (losses.discriminator_loss, pix2pix's (real + fake) / 2), so that --gp-weight and --r1-weight weigh against it as
    Gulrajani's lambda and Mescheder's gamma do in their papers."""
    total = 0.0
    if o.gan_mode == "wgangp":
        loss, part = gradient_penalty(D, real, fake, o.gp_weight)
        total, parts["d_gp"] = total + loss, part["d_gp"]
    if o.r1_weight > 0:
        loss, part = r1_penalty(D, *real, o.r1_weight)
        total, parts["d_r1"] = total + loss, part["d_r1"]
    return total * 0.5


def judged_fakes(nets: Nets, gray_l: torch.Tensor, fake_ab: torch.Tensor) -> tuple:
    """(gray_l, ab) of the fakes D is trained on: this step's, or with --pool-size a mix with earlier ones (pooled as
    L and ab together, since D judges the pair)."""
    fake_ab = fake_ab.detach()
    if nets.pool is None:
        return gray_l, fake_ab
    pairs = nets.pool.query(torch.cat([gray_l.to(fake_ab.dtype), fake_ab], dim=1))
    return pairs[:, :1].to(gray_l.dtype), pairs[:, 1:]


def _generator_phase(rt: Runtime, nets: Nets, opts: dict, micro: list, fakes: list, cfg: Config, parts: dict) -> None:
    """G's gradients on GAN + lambda * L1 (or lambda_ce * CE) against the updated D, which judges the decoded ab of a
    classification head; with several micro-batches each fake is recomputed so that only one generator graph is
    alive at a time."""
    G, D, o = nets.generator, nets.discriminator, cfg.optim
    lam = o.lambda_l1 if nets.classes is None else o.lambda_ce
    D.requires_grad_(False)
    opts["g"].zero_grad(set_to_none=True)
    for i, ((gray_l, real_ab), fake) in enumerate(zip(micro, fakes)):
        with sync_gradients(G, i == len(micro) - 1), sync_gradients(D, False):  # frozen D: nothing to all-reduce
            if len(micro) > 1:
                with rt.autocast():
                    fake = generate(nets, gray_l, real_ab)
            with rt.autocast():
                own, extra = objective(gray_l, fake, real_ab, nets, cfg)
                if o.feature_matching_weight > 0:  # D's logits of the fakes come with their features
                    fm, judged = matched_features(D, gray_l, real_ab, fake[0], cfg)
                    extra = _plus(extra, fm)
                else:
                    judged = D(gray_l, fake[0])
                loss_g, parts_g = generator_loss(judged, own, lam, o.gan_mode, extra)
            rt.backward(loss_g / len(micro))
        _accumulate(parts, parts_g, len(micro))


def matched_features(D, gray_l, real_ab, fake_ab, cfg: Config) -> tuple:
    """(--feature-matching-weight's term for G, D's logits of the fakes): D's features of the photo (no gradient)
    against the colorization's, every block of every scale; the logits are those features' last entries, so the
    fakes go through D once."""
    net = unwrap(D)  # features() is not a forward of the DDP wrapper; D is frozen here, nothing to sync
    with torch.no_grad():
        real = _per_scale(net.features(gray_l, real_ab))
    features = net.features(gray_l, fake_ab)
    fake = _per_scale(features)
    logits = [one[-1] for one in fake] if isinstance(features[0], list) else features[-1]
    return feature_matching(real, fake, cfg.model.d_layers, cfg.optim.feature_matching_weight), logits


def _per_scale(features: list) -> list:
    return features if isinstance(features[0], list) else [features]


def _plus(a: tuple, b: tuple) -> tuple:
    """Two (loss, parts) terms added."""
    return a[0] + b[0], {**a[1], **b[1]}


def _accumulate(total: dict, parts: dict, n: int) -> None:
    """Each part's mean over n micro-batches, on the device in float64: the same sums as Python floats would make,
    without reading each part back (as_floats reads them all once)."""
    for k, v in parts.items():
        total[k] = total.get(k, 0.0) + torch.as_tensor(v).double() / n


@torch.no_grad()
def validation_sums(rt: Runtime, generator: torch.nn.Module, batches) -> dict:
    """Per-image sums over this process's share of the validation set; `finish_validation` turns them into means.

    The generator runs in fp32 and the Lab metrics see the clipped 8-bit prediction, as in evaluate.py, so the two
    agree on the same photos. Sums rather than means, so that processes under torchrun can add theirs before dividing.
    """
    was_training = generator.training
    generator.eval()
    sums = dict.fromkeys(("l1", "psnr", "delta_e2000", "cf_pred", "cf_true", "n"), 0.0)
    for pixels, _ in batches:
        gray_l, real_ab = rt.batch(pixels)
        fake_ab = generator(rt.layout(gray_l)).float()  # fp32, no autocast: evaluate.py's figures
        sums["l1"] += (fake_ab - real_ab).abs().mean(dim=(1, 2, 3)).sum().item()
        fake, true = to_uint8(model_to_rgb(gray_l, fake_ab)), pixels.to(fake_ab.device)
        sums["psnr"] += psnr(fake, true).clamp_max(PSNR_CAP).sum().item()
        sums["delta_e2000"] += delta_e2000(image_lab(fake), image_lab(true)).sum().item()  # as evaluate.py: 8-bit, fp32
        sums["cf_pred"] += colorfulness(fake).sum().item()
        sums["cf_true"] += colorfulness(true).sum().item()
        sums["n"] += pixels.shape[0]
    generator.train(was_training)
    return sums


def finish_validation(sums: dict) -> dict:
    """Means over the validation set: L1 on ab (model units), PSNR on 8-bit RGB, CIEDE2000, and the colorfulness
    gap |mean CF(predictions) - mean CF(truth)| (Hasler & Suesstrunk; the gray/brown bias of L1 shows up here)."""
    n = sums.get("n", 0)
    if not n:
        return {}
    return {"val/l1": sums["l1"] / n, "val/psnr": sums["psnr"] / n, "val/delta_e2000": sums["delta_e2000"] / n,
            "val/colorfulness_gap": abs(sums["cf_pred"] - sums["cf_true"]) / n}
