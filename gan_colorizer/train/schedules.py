"""Learning-rate schedules: the factor on --lr for the optimizer step about to run, a pure function of that step.

Nothing is stored: a resumed run computes the same factor for the same step, so --resume continues the schedule
exactly. Every policy is per step (an epoch is steps_per_epoch steps), and the warm-up multiplies any of them.

- constant: 1.
- linear (pix2pix's lr_policy 'linear'): 1 until the last --lr-decay-epochs epochs, then down to 0 in a straight line,
  reaching 0 after the run's last step. pix2pix changes its rate once per epoch, 1 - k / (N + 1) in the k-th of the
  N decay epochs (so it never reaches 0); per step, the line is the same and smooth.
- cosine: (1 + cos(pi t)) / 2 over the run, t = the fraction of the run's steps done (after any warm-up).
- step: multiplied by --lr-gamma at each epoch of --lr-milestones (Zhang et al. drop 10x by hand; MultiStepLR).
- warm-up: times (step + 1) / --warmup-steps over the first --warmup-steps steps.
"""
from __future__ import annotations

import math

from gan_colorizer.config_checks import parse_milestones


def lr_factor(step: int, optim, steps_per_epoch: int, total_steps: int) -> float:
    """The factor on the base rate for optimizer step `step` (0-based: the step about to run). optim: the config's
    optim group (lr_policy, lr_decay_epochs, lr_milestones, lr_gamma, warmup_steps); total_steps: the run's
    planned steps (--epochs, or --max-steps if sooner)."""
    warm = optim.warmup_steps
    factor = min(1.0, (step + 1) / warm) if warm else 1.0
    if optim.lr_policy == "linear":
        decay = optim.lr_decay_epochs or optim.epochs  # 0: the whole run
        start = (optim.epochs - decay) * steps_per_epoch
        length = max(1, decay * steps_per_epoch)
        factor *= 1.0 - min(1.0, max(0, step - start) / length)
    elif optim.lr_policy == "cosine":
        t = max(0, step - warm) / max(1, total_steps - warm)
        factor *= 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
    elif optim.lr_policy == "step":
        epoch = step // max(1, steps_per_epoch)  # 0-based: milestone m drops the rate from the m-th epoch's end on
        factor *= optim.lr_gamma ** sum(epoch >= m for m in parse_milestones(optim.lr_milestones))
    return factor


def set_lr(optimizers: dict, base: dict, factor: float) -> None:
    """Every param group of each optimizer at its net's base rate times factor (base: steps.base_lr, {net: rate})."""
    for name, optimizer in optimizers.items():
        for group in optimizer.param_groups:
            group["lr"] = base[name] * factor


def rates(optimizers: dict) -> dict:
    """{net: its current rate}, what TensorBoard shows as lr/g and lr/d."""
    return {name: optimizer.param_groups[0]["lr"] for name, optimizer in optimizers.items()}
