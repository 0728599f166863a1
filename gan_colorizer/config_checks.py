"""What a training run accepts: the declared range of every numeric config field, the rule for run names, and the
checks of a whole config. One place for --config files and flags alike: a value past its range is one line naming
the file and field (or the flag) and the range, never a traceback from Adam or a run writing NaN weights."""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

from gan_colorizer.errors import UserError
from gan_colorizer.options import flag_name


@dataclass(frozen=True)
class Range:
    """A closed or open interval of finite numbers."""
    low: float
    high: float
    low_open: bool = False
    high_open: bool = False
    note: str = ""  # what a value means, where one is special ("-1 for auto")

    def __contains__(self, value) -> bool:
        if not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        return above and (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        interval = f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        return f"{interval}, {self.note}" if self.note else interval


COUNT = Range(0, 1e12)  # steps or images: 0 = off / no limit where the help says so
EVERY = Range(1, 1e12)
SHARE = Range(0, 1, high_open=True)  # probabilities, Adam's betas, EMA decay (0 = off), the held-out share
WEIGHT = Range(0, 1e6)  # loss weights
WIDTH = Range(1, 1024)  # filters of a layer
RANGES = {
    # data
    "val_fraction": SHARE, "image_size": Range(32, 4096), "crop_scale": Range(0, 1, low_open=True),
    "hue_jitter": Range(0, 180), "hint_points": Range(0, 1000, low_open=True),
    "epoch_size": COUNT, "num_workers": Range(-1, 1024, note="-1 for auto"), "prior_images": Range(1, 1e9),
    "loader_timeout": Range(0, 7 * 86400),  # seconds: a week at most (0 = forever)
    # model
    "unet_filters": WIDTH, "unet_dropout": SHARE, "annealed_t": Range(0, 10, low_open=True), "d_filters": WIDTH,
    "d_layers": Range(1, 8),
    # optim
    "batch_size": Range(1, 65536), "epochs": Range(1, 1e6), "max_steps": COUNT, "lr": Range(0, 1, low_open=True),
    "beta1": SHARE, "beta2": SHARE, "grad_accum": Range(1, 65536), "lambda_l1": WEIGHT, "lambda_ce": WEIGHT,
    "rebalance_lambda": Range(0, 1, low_open=True), "l2_weight": WEIGHT, "perceptual_weight": WEIGHT,
    "weight_decay": Range(0, 10), "ema_decay": SHARE, "max_bad_steps": Range(1, 1e9), "lr_decay_epochs": COUNT,
    "lr_gamma": Range(0, 1, low_open=True), "warmup_steps": COUNT, "d_lr": Range(0, 1, low_open=True),
    "d_beta1": SHARE, "d_beta2": SHARE, "d_steps": Range(1, 100), "pool_size": Range(0, 1000),
    "gp_weight": WEIGHT, "r1_weight": WEIGHT, "feature_matching_weight": WEIGHT, "colorfulness_weight": WEIGHT, "d_scales": Range(1, 5),
    # run
    "seed": Range(0, 2**32 - 1), "checkpoint_minutes": Range(0, 1e6), "checkpoint_every": COUNT,
    "log_every": EVERY, "image_every": EVERY, "viz_every": COUNT,
}
# a folder name under --runs-dir and --checkpoints-dir: no separator, nothing that climbs ('..') or hides ('.x')
RUN_NAME = re.compile(r"\w[\w .+=,@-]{0,99}")
RUN_NAME_RULE = ("1-100 letters, digits, spaces and . _ - + = , @, starting with a letter or digit and not ending "
                 "in a space or a dot")


def check_value(name: str, value, label: str) -> None:
    """A numeric field's value within its declared range, or a UserError: '{label} {value}: must be in [a, b]'."""
    if name in RANGES and not isinstance(value, bool) and isinstance(value, (int, float)) and value not in RANGES[name]:
        raise UserError(f"{label} {value}: must be in {RANGES[name]}")


def parse_milestones(text: str) -> list[int]:
    """--lr-milestones '30,60' -> [30, 60]: increasing epoch numbers >= 1, or a UserError saying so."""
    try:
        epochs = [int(part) for part in str(text).replace(" ", "").split(",") if part]
    except ValueError:
        epochs = None
    if epochs is None or any(e < 1 for e in epochs) or epochs != sorted(set(epochs)):
        raise UserError(f"--lr-milestones {text!r}: give increasing epoch numbers >= 1, e.g. 30,60")
    return epochs


def check_run_name(name, label: str = "--name") -> str:
    """A run name that makes one folder inside the runs and checkpoints folders, never a path elsewhere."""
    if not (isinstance(name, str) and RUN_NAME.fullmatch(name) and not name.endswith((" ", "."))):
        shown = repr(name)[:120]
        raise UserError(f"{label} {shown}: a run name is a folder name: {RUN_NAME_RULE}")
    return name


def _default(group, name: str):
    return next(f.default for f in dataclasses.fields(group) if f.name == name)


def validate(cfg) -> object:
    """Reject values the run cannot use, with a message that names the flag: every numeric field within its range,
    the run name, then what depends on more than one field."""
    for group in (cfg.data, cfg.model, cfg.optim, cfg.run):
        for f in dataclasses.fields(group):
            check_value(f.name, getattr(group, f.name), flag_name(f))
    if cfg.run.name is not None:
        check_run_name(cfg.run.name)
    d, m, o = cfg.data, cfg.model, cfg.optim
    milestones = parse_milestones(o.lr_milestones)
    checks = [
        (d.image_size % 32 == 0, f"--image-size {d.image_size}: must be a positive multiple of 32"),
        (o.lr_decay_epochs <= o.epochs, f"--lr-decay-epochs {o.lr_decay_epochs}: more than the run's --epochs "
                                        f"{o.epochs}"),
        (o.lr_policy == "step" or not o.lr_milestones, f"--lr-milestones {o.lr_milestones}: only --lr-policy step "
                                                       f"reads them (the policy is {o.lr_policy})"),
        (max(milestones, default=0) < o.epochs, f"--lr-milestones {o.lr_milestones}: epoch "
                                                f"{max(milestones, default=0)} is not before the end of the run's "
                                                f"--epochs {o.epochs} (a drop there would never take effect)"),
        (o.lr_policy != "step" or milestones, "--lr-policy step needs --lr-milestones (the epochs after which the "
                                              "rate is multiplied by --lr-gamma)"),
        (o.lr_policy == "linear" or not o.lr_decay_epochs, f"--lr-decay-epochs {o.lr_decay_epochs}: only --lr-policy "
                                                           f"linear reads it (the policy is {o.lr_policy})"),
        # a value set for a policy or mode the run does not use would be silently ignored
        (o.lr_policy == "step" or o.lr_gamma == _default(o, "lr_gamma"),
         f"--lr-gamma {o.lr_gamma:g}: only --lr-policy step reads it (the policy is {o.lr_policy})"),
        (m.hints or d.hint_points == _default(d, "hint_points"),
         f"--hint-points {d.hint_points:g}: only a --hints model reads it (it sets how many hints training "
         f"simulates)"),
        (o.gan_mode == "wgangp" or o.gp_weight == _default(o, "gp_weight"),
         f"--gp-weight {o.gp_weight:g}: only --gan-mode wgangp reads it (the mode is {o.gan_mode})"),
        (m.generator == "resunet" or (m.backbone == _default(m, "backbone") and not m.backbone_weights),
         f"--backbone{'-weights' if m.backbone_weights else ''} {m.backbone_weights or m.backbone}: only --generator "
         f"resunet stands on a body (the generator is {m.generator})"),
        (m.pretrained or not m.backbone_weights, f"--backbone-weights {m.backbone_weights} with --no-pretrained: "
                                                 f"the body would load the file; leave out one of the two"),
        (m.generator != "unet" or d.image_size % 256 == 0,
         f"--image-size {d.image_size}: the pix2pix U-Net downsamples 8 times and needs a multiple of 256"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    return cfg
