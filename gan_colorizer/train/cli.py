"""Command lines of the two training stages: flags -> config (merged with a checkpoint's) -> training.

Errors the user can fix print one line and exit 2; a diverged run exits 3; SIGINT / SIGTERM stop cleanly with
last.pt written and exit 130 / 143.
"""
from __future__ import annotations

import logging

from gan_colorizer import config, config_files
from gan_colorizer.config import Config, defaults, explicit_flags, update
from gan_colorizer.console import run_command, setup_logging
from gan_colorizer.errors import UserError

DESCRIPTIONS = {
    "pretrain": """Stage 1: pretrain the generator with L1 on the Lab ab channels.

examples:
  python pretrain_generator.py                                   # embedded sample photos
  python pretrain_generator.py --data ~/coco/train2017 --val-data ~/coco/val2017 --name coco-l1
  python pretrain_generator.py --resume checkpoints/coco-l1/last.pt --epochs 40
  python pretrain_generator.py --init-generator checkpoints/coco-l1/best.pt --data ~/scans --name scans-l1""",
    "gan": """Stage 2: adversarial training (PatchGAN, GAN + lambda * L1), starting from a stage-1 generator.

examples:
  python train_gan.py --init-generator checkpoints/coco-l1/best.pt --data ~/coco/train2017 --name coco-gan
  python train_gan.py --resume checkpoints/coco-gan/last.pt""",
}
RELIABILITY = """
Ctrl-C or SIGTERM stops after the current step with last.pt written (a second one stops at once); last.pt is also
written every --checkpoint-minutes, so a crash loses at most that much. Continue with --resume checkpoints/NAME/last.pt.
Exit codes: 0 done, 2 bad input or unwritable checkpoint, 3 diverged (NaN / Inf), 130 / 143 stopped by SIGINT / SIGTERM."""
# what --init-generator copies from the checkpoint's config: every generator field but where its body's weights
# came from
ARCH_FLAGS = ("generator", "backbone", "unet_filters", "unet_dropout", "head", "annealed_t", "hints")
log = logging.getLogger("gan_colorizer")


def resolve_config(stage: str, explicit: dict) -> Config:
    """Defaults <- (a resumed run's config, or a stage-1 generator's architecture) <- --config FILE <- flags given.

    The file's values count as given, below the command line's: they override what --resume and --init-generator
    bring, and a file may name them itself (a run's config.json does).
    """
    from gan_colorizer.checkpoint import load
    path = explicit.pop("config", None)
    if path:
        explicit = {**config_files.read_file(path, stage), **explicit}
    resume = explicit.pop("resume", None)
    if resume:
        cfg = resumed_config(resume, stage, explicit)
    else:
        cfg = defaults(stage)
        init = explicit.get("init_generator")
        if init:
            saved = Config.from_dict(load(init)["config"])
            update(cfg, {f: getattr(saved.model, f) for f in ARCH_FLAGS})
    return update(cfg, explicit)


def resumed_config(resume: str, stage: str, explicit: dict) -> Config:
    """The config a run's checkpoint holds, in today's meaning (config.Config.from_dict), with a note when it differs."""
    from gan_colorizer.checkpoint import load
    saved = load(resume)["config"]
    cfg = Config.from_dict(saved)
    if cfg.stage != stage:
        raise UserError(f"{resume}: a {cfg.stage} checkpoint cannot resume a {stage} run")
    cfg.run.resume = resume
    weight = saved.get("optim", {}).get("perceptual_weight")
    if weight and weight != cfg.optim.perceptual_weight and "perceptual_weight" not in explicit:
        log.info("note: %s is from before config version 2, when stage 2 multiplied --perceptual-weight by the lambda: "
                 "its %g is --perceptual-weight %g now, the same loss", resume, weight, cfg.optim.perceptual_weight)
    return cfg


def build_parser(stage: str):
    """The stage's flags, one per config field (config.build_parser), under its description."""
    return config.build_parser(stage, DESCRIPTIONS[stage] + "\n" + RELIABILITY)


def main(stage: str, argv=None) -> int:
    explicit = explicit_flags(build_parser(stage), argv)
    setup_logging()

    def action():
        from gan_colorizer.train.loop import train
        train(resolve_config(stage, explicit))
    return run_command(action)


def pretrain_main(argv=None) -> int:
    return main("pretrain", argv)


def gan_main(argv=None) -> int:
    return main("gan", argv)
