"""Command lines of the two training stages: flags -> config (merged with a checkpoint's) -> training.

Errors the user can fix print one line and exit 2; a diverged run exits 3; SIGINT / SIGTERM stop cleanly with
last.pt written and exit 130 / 143.
"""
from __future__ import annotations

import logging
import sys
import warnings

from .config import Config, build_parser, defaults, explicit_flags, update
from .errors import Interrupted, UserError

DESCRIPTIONS = {
    "pretrain": """Stage 1: pretrain the generator with L1 on the Lab ab channels.

examples:
  python pretrain_generator.py                                   # embedded sample photos
  python pretrain_generator.py --data ~/coco/train2017 --val-data ~/coco/val2017 --name coco-l1
  python pretrain_generator.py --resume checkpoints/coco-l1/last.pt --epochs 40""",
    "gan": """Stage 2: adversarial training (PatchGAN, GAN + lambda * L1), starting from a stage-1 generator.

examples:
  python train_gan.py --init-generator checkpoints/coco-l1/best.pt --data ~/coco/train2017 --name coco-gan
  python train_gan.py --resume checkpoints/coco-gan/last.pt""",
}
RELIABILITY = """
Ctrl-C or SIGTERM stops after the current step with last.pt written (a second one stops at once); last.pt is also
written every --checkpoint-minutes, so a crash loses at most that much. Continue with --resume checkpoints/NAME/last.pt.
Exit codes: 0 done, 2 bad input or unwritable checkpoint, 3 diverged (NaN / Inf), 130 / 143 stopped by SIGINT / SIGTERM."""
ARCH_FLAGS = ("generator", "backbone", "unet_filters", "unet_dropout")


class _LevelFormatter(logging.Formatter):
    def format(self, record):
        message = super().format(record)
        if record.levelno >= logging.WARNING and not message.startswith(("warning:", "error:")):
            message = f"warning: {message}"
        return message


def setup_logging() -> None:
    """Info lines to stdout, warnings to stderr, one line each; the noise of third-party libraries off."""
    log = logging.getLogger("gan_colorizer")
    log.handlers.clear()
    out = logging.StreamHandler(sys.stdout)
    out.addFilter(lambda r: r.levelno < logging.WARNING)
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    for handler in (out, err):
        handler.setFormatter(_LevelFormatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)


def resolve_config(stage: str, explicit: dict) -> Config:
    """Defaults <- (a resumed run's config, or a stage-1 generator's architecture) <- flags given."""
    from .checkpoint import load
    resume = explicit.pop("resume", None)
    if resume:
        ckpt = load(resume)
        cfg = Config.from_dict(ckpt["config"])
        if cfg.stage != stage:
            raise UserError(f"{resume}: a {cfg.stage} checkpoint cannot resume a {stage} run")
        cfg.run.resume = resume
    else:
        cfg = defaults(stage)
        init = explicit.get("init_generator")
        if init:
            saved = Config.from_dict(load(init)["config"])
            update(cfg, {f: getattr(saved.model, f) for f in ARCH_FLAGS})
    return update(cfg, explicit)


def run_command(action) -> int:
    """Run action(): a UserError prints 'error: MESSAGE' and gives its exit code, Ctrl-C gives 130."""
    try:
        action()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except Interrupted as e:
        print(e, file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training started: the checkpoints are as last written
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def main(stage: str, argv=None) -> int:
    parser = build_parser(stage, DESCRIPTIONS[stage] + "\n" + RELIABILITY)
    explicit = explicit_flags(parser, argv)
    setup_logging()

    def action():
        from .training import train
        train(resolve_config(stage, explicit))
    return run_command(action)


def pretrain_main(argv=None) -> int:
    return main("pretrain", argv)


def gan_main(argv=None) -> int:
    return main("gan", argv)
