"""Run configuration: dataclasses with commented defaults, and the command line built from them.

The resolved config is saved as JSON in the run directory and inside every checkpoint,
so evaluation and inference rebuild the model with no flags.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import typing
from dataclasses import dataclass, field

from gan_colorizer.config_checks import validate  # noqa: F401  (config.validate: its callers' name for it)
from gan_colorizer.options import add_options, amp_opt, device_opt, opt, workers_opt

log = logging.getLogger("gan_colorizer")
GAN_MODES = ("vanilla", "lsgan", "hinge", "wgangp")  # the adversarial losses of losses.py
D_NORMS = ("batch", "instance", "spectral", "none")  # models/patchgan.py
BODIES = ("resnet18", "resnet34", "resnet50", "resnet101", "convnext_tiny", "convnext_small", "convnext_base",
          "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3")  # models/bodies.py (a test
# keeps the two equal: the config is the core's, and the core imports no sub-package)
LR_POLICIES = ("constant", "linear", "cosine", "step")  # train/schedules.py
VAL_METRICS = ("val/l1", "val/psnr", "val/delta_e2000", "val/colorfulness_gap")
DECODES = ("annealed", "mode", "mean")  # how a classification head's distribution becomes ab (ab_bins.decode)
WEIGHTS = ("auto", "ema", "raw")  # which generator weights a checkpoint serves: the EMA copy when present, or insist


@dataclass
class DataConfig:
    data: typing.Optional[str] = opt(None, "image folder, searched recursively, or WebDataset shards "
                                           "('shards/train-{000000..000127}.tar', or their folder); default: the "
                                           "embedded sample photos")
    val_data: typing.Optional[str] = opt(None, "held-out image folder (shards when --data names shards); default: "
                                               "--val-fraction of --data (with shards: the val-*.tar beside them)")
    val_fraction: float = opt(0.1, "share of --data held out for validation when --val-data is not given")
    image_size: int = opt(256, "training crop and validation size in pixels (multiple of 32; of 256 for --generator unet)")
    crop_scale: float = opt(0.25, "smallest random crop, as a share of the photo's area")
    include_gray: bool = opt(False, "keep photos that are already gray (no chroma) for training")
    hint_points: float = opt(7.0, "--hints: mean number of hint points simulated per training photo (geometric from "
                                  "0: 1 photo in N + 1 gets none); 7 is Zhang et al.'s p = 1/8, more give a short "
                                  "run more hinted pixels to learn from")
    hue_jitter: float = opt(0.0, "turn each training photo's ab by a random angle, uniform within +- this many "
                                 "degrees (0: off): on few photos a hint model (--hints) then cannot learn their "
                                 "colours from L and learns to take them from the hints (docs/hints.md)")
    epoch_size: int = opt(0, "training samples per epoch; 0 = one pass over the training files (useful for tiny folders)")
    num_workers: int = workers_opt("DataLoader worker processes that decode and crop images", "1 on CPU (more "
                                   "workers steal cores from the compute threads); with CUDA, min(8, the CPUs this "
                                   "process may use / processes on the node)")
    prior_images: int = opt(1000, "--head classification: training images (a seeded sample) whose pixels give the "
                                  "color prior of the class rebalancing")
    loader_timeout: float = opt(300.0, "seconds to wait for a batch from the workers before stopping with last.pt "
                                       "written (slow or hung disk); 0 = forever; needs --num-workers > 0")


@dataclass
class ModelConfig:
    generator: str = opt("resunet", "resunet: a U-Net on a ResNet (fastai's DynamicUnet); unet: the pix2pix U-Net "
                                    "baseline; resnet9: pix2pix / CycleGAN's ResNet generator with 9 residual blocks",
                         choices=("resunet", "unet", "resnet9"))
    backbone: str = opt("resnet18", "body of the resunet generator: torchvision's ResNets, ConvNeXts and "
                                    "EfficientNets (models/bodies.py)", choices=tuple(BODIES))
    backbone_weights: typing.Optional[str] = opt(None, "local torchvision state dict of that body's model (its RGB "
                                                       "first conv summed to 1 channel), instead of --pretrained's")
    pretrained: bool = opt(True, "torchvision's ImageNet weights for the resunet body (its weights API: the torch.hub "
                                 "cache under $TORCH_HOME, downloaded on first use); --no-pretrained: random init")
    unet_filters: int = opt(64, "filters of the first layer of the pix2pix U-Net and of the resnet9 generator")
    unet_dropout: float = opt(0.5, "dropout in the three innermost decoder blocks of the pix2pix U-Net")
    head: str = opt("regression", "regression: ab per pixel (--recon-loss); classification: Q = 313 logits per pixel "
                                  "over the in-gamut ab bins, rebalanced cross-entropy (Zhang et al. 2016)",
                    choices=("regression", "classification"))
    hints: bool = opt(False, "train a hint model (Zhang et al. 2017): the generator also reads colour hints (hinted ab "
                             "and a mask) simulated from each training photo, none in 1 sample of 8, so it colorizes "
                             "with hints and without (docs/hints.md)")
    annealed_t: float = opt(0.38, "--head classification: temperature of the annealed mean that decodes the predicted "
                                  "distribution to ab (1 = the mean, toward 0 the mode; the paper's 0.38)")
    d_filters: int = opt(64, "filters of the first PatchGAN layer", stages=("gan",), aliases=("--disc-filters",))
    d_layers: int = opt(3, "downsampling blocks of the PatchGAN (3 gives the 70x70 receptive field)", stages=("gan",),
                        aliases=("--disc-layers",))
    d_scales: int = opt(1, "PatchGANs at 1, 1/2, 1/4... of the input size (pix2pixHD's multi-scale discriminator: "
                           "2 or 3); 1 = pix2pix's single PatchGAN", stages=("gan",))
    d_norm: str = opt("batch", "the PatchGAN's normalisation: batch (pix2pix), instance, spectral (every "
                                  "convolution spectrally normalised) or none", choices=D_NORMS, stages=("gan",),
                    aliases=("--disc-norm",))


@dataclass
class OptimConfig:
    batch_size: int = opt(16, "images per optimizer step (per micro-batch when --grad-accum > 1)")
    epochs: int = opt(20, "training epochs")
    max_steps: int = opt(0, "stop after this many optimizer steps in all (0 = no limit); for smoke runs")
    lr: float = opt(1e-4, "Adam learning rate (stage 1: 1e-4, stage 2: 2e-4 for both nets)")
    beta1: float = opt(0.9, "Adam beta1 (stage 2: 0.5, as in pix2pix)")
    beta2: float = opt(0.999, "Adam beta2")
    d_lr: typing.Optional[float] = opt(None, "the discriminator's learning rate when it differs from G's (two time "
                                             "scales, TTUR: Heusel et al. 2017); default: --lr", stages=("gan",))
    d_beta1: typing.Optional[float] = opt(None, "the discriminator's Adam beta1; default: --beta1", stages=("gan",))
    d_beta2: typing.Optional[float] = opt(None, "the discriminator's Adam beta2; default: --beta2", stages=("gan",))
    d_steps: int = opt(1, "discriminator updates per generator update, each on its own batch (WGAN's n_critic); "
                          "an optimizer step then reads --d-steps x --grad-accum batches", stages=("gan",))
    pool_size: int = opt(0, "earlier fakes D also sees (pix2pix / CycleGAN's image pool: 0 in their pix2pix and "
                            "colorization models, 50 in CycleGAN), each held in memory and last.pt (50 at 256 px: "
                            "39 MB); 0 = this step's fakes only", stages=("gan",))
    lr_policy: str = opt("constant", "learning-rate schedule, per step, for both nets: constant; linear = pix2pix's "
                                     "decay to 0 over the last --lr-decay-epochs epochs; cosine over the run; step = "
                                     "times --lr-gamma at each of --lr-milestones (docs/training.md)",
                         choices=LR_POLICIES)
    lr_decay_epochs: int = opt(0, "--lr-policy linear: the last epochs over which the rate falls to 0 (pix2pix's "
                                  "n_epochs_decay; 0 = the whole run)")
    lr_milestones: str = opt("", "--lr-policy step: epochs after which the rate is multiplied by --lr-gamma, e.g. "
                                 "30,60")
    lr_gamma: float = opt(0.1, "--lr-policy step: the factor at each milestone")
    warmup_steps: int = opt(0, "linear warm-up from 0 over this many optimizer steps, in front of any policy (0 = none)")
    grad_accum: int = opt(1, "micro-batches accumulated per optimizer step")
    lambda_l1: float = opt(100.0, "weight of the reconstruction loss in the generator loss GAN + lambda * recon "
                                  "(pix2pix paper: 100 with L1)", stages=("gan",))
    lambda_ce: float = opt(2.0, "--head classification: weight of the rebalanced cross-entropy in the generator loss "
                                "GAN + lambda * CE (see docs/classification.md: --lambda-l1 100 is tuned for L1)", stages=("gan",))
    rebalance_lambda: float = opt(0.5, "--head classification: class weights 1 / ((1 - lambda) prior + lambda / Q), "
                                       "mean 1 under the prior (the paper's 0.5); 1 = no rebalancing")
    recon_loss: str = opt("l1", "reconstruction loss on ab: l1 (sharper colors), l2 (grayish, desaturated: the regression "
                                "average), or l1+l2", choices=("l1", "l2", "l1+l2"))
    l2_weight: float = opt(1.0, "weight of L2 in --recon-loss l1+l2")
    perceptual_weight: float = opt(0.0, "weight of a VGG16 feature loss on the RGB rebuilt from L and predicted ab, "
                                        "added to the generator loss in both stages, not multiplied by --lambda-l1 "
                                        "(0 = off)")
    colorfulness_weight: float = opt(0.0, "weight of DDColor's colourfulness loss, mean over the batch of 1 - the "
                                          "colourfulness of the RGB rebuilt from L and the predicted ab, in both "
                                          "stages (DDColor: 0.5, summed over its batch); 0 = off")
    perceptual_layers: str = opt("relu1_2,relu2_2,relu3_3,relu4_3", "VGG16 layers of the perceptual loss")
    vgg_weights: typing.Optional[str] = opt(None, "torchvision VGG16 state dict for --perceptual-weight (default: "
                                                  "$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth; never downloaded)")
    weight_decay: float = opt(0.0, "decoupled weight decay for both nets (AdamW when > 0)")
    ema_decay: float = opt(0.0, "keep an exponential moving average of the generator with this decay, e.g. 0.999 "
                                "(0 = off); evaluation and inference use it when present")
    gan_mode: str = opt("vanilla", "adversarial loss: vanilla (pix2pix), lsgan, hinge, or wgangp (Wasserstein with "
                                   "--gp-weight's gradient penalty)", choices=GAN_MODES, stages=("gan",))
    gp_weight: float = opt(10.0, "--gan-mode wgangp: weight of the gradient penalty (Gulrajani et al. 2017: 10)",
                           stages=("gan",))
    feature_matching_weight: float = opt(0.0, "weight of pix2pixHD's feature-matching loss: L1 between D's features "
                                              "of the photo and of the colorization, every layer and scale (their "
                                              "10; 0 = off)", stages=("gan",))
    r1_weight: float = opt(0.0, "weight gamma of the R1 penalty, gamma / 2 x the squared gradient of D on real "
                                "photos (Mescheder et al. 2018), in any --gan-mode (0 = off)", stages=("gan",))
    amp: str = amp_opt()
    channels_last: bool = opt(True, "channels_last memory format for the nets (faster convolutions)")
    max_bad_steps: int = opt(20, "steps with a NaN / Inf loss or gradient are skipped; this many in a row stop the run")
    compile: bool = opt(False, "torch.compile both nets (the first steps are slow while it compiles)")
    sync_bn: bool = opt(False, "BatchNorm statistics over all processes under torchrun (SyncBatchNorm)")


@dataclass
class RunConfig:
    name: typing.Optional[str] = opt(None, "run name: runs/NAME and checkpoints/NAME (default: STAGE-DATE-TIME)")
    runs_dir: str = opt("runs", "where TensorBoard events and run files go")
    checkpoints_dir: str = opt("checkpoints", "where last.pt and best.pt go")
    seed: int = opt(0, "seed for weights, validation split, crops and flips")
    device: str = device_opt()
    resume: typing.Optional[str] = opt(None, "continue a run from its last.pt (same step, epoch and config; flags given override)")
    init_generator: typing.Optional[str] = opt(None, "checkpoint whose generator this run starts from, architecture "
                                                     "too (flags given override), with a fresh optimizer: stage 2 "
                                                     "starts from a stage-1 run; stage 1 fine-tunes one (new photos, "
                                                     "more epochs)")
    init_weights: str = opt("auto", "which weights of --init-generator: auto = its EMA copy when it holds one (what "
                                    "its run validated and picked best.pt with), else its trained ones; ema = insist; "
                                    "raw = the trained ones", choices=WEIGHTS)
    checkpoint_minutes: float = opt(15.0, "also write last.pt mid-epoch when this many minutes passed since the last "
                                          "write (bounds the work a crash loses; 0 = off)")
    checkpoint_every: int = opt(0, "also write last.pt every N optimizer steps (0 = off)")
    log_every: int = opt(20, "optimizer steps between loss / throughput logs")
    image_every: int = opt(200, "optimizer steps between image grids of the fixed validation samples")
    viz_every: int = opt(1000, "optimizer steps between TensorBoard feature maps, ab histograms and difference maps "
                               "of the fixed validation samples (0 = off)")
    best_metric: str = opt("val/l1", "validation figure that picks best.pt; val/colorfulness_gap keeps the checkpoint "
                                     "whose colors are most as vivid as the truth's", choices=VAL_METRICS)
    best_mode: str = opt("auto", "auto: max for val/psnr, min for the others", choices=("auto", "min", "max"))


GROUPS = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "run": RunConfig}
# What the saved numbers mean. 2: stage 2 weighs the perceptual loss by --perceptual-weight alone (version 1, the
# configs without "version", multiplied it by --lambda-l1 / --lambda-ce too).
VERSION = 2
STAGE_DEFAULTS = {"pretrain": {}, "gan": {"lr": 2e-4, "beta1": 0.5}}


@dataclass
class Config:
    stage: str = "pretrain"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict:
        return {"version": VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        """Rebuild from JSON (a checkpoint's, a run's config.json); keys unknown to this version are ignored, missing
        ones take defaults, and a version-1 stage-2 perceptual weight becomes today's for the same loss."""
        cfg = cls(stage=d.get("stage", "pretrain"))
        for group in GROUPS:
            update(cfg, {k: v for k, v in renamed(d.get(group, {})).items() if _find(k)})
        if not is_current(d):
            cfg.optim.perceptual_weight = perceptual_weight_of_version_1(cfg)
        return cfg


# fields renamed since runs were saved: the discriminator's flags took the --d-* prefix of --d-lr, --d-steps, --d-scales
RENAMED = {"disc_filters": "d_filters", "disc_layers": "d_layers", "disc_norm": "d_norm"}


def renamed(fields: dict) -> dict:
    """A saved group's {field: value} under today's field names."""
    return {RENAMED.get(k, k): v for k, v in fields.items()}


def is_current(d: dict) -> bool:
    """Whether a saved config's numbers mean what they mean today (no "version": 1)."""
    version = d.get("version", 1)
    return type(version) is int and version >= VERSION


def perceptual_weight_of_version_1(cfg: Config) -> float:
    """Today's --perceptual-weight for the loss that a version-1 config's weight gave: stage 2 multiplied the
    perceptual term by the reconstruction's lambda too."""
    o = cfg.optim
    if cfg.stage != "gan":
        return o.perceptual_weight
    return o.perceptual_weight * (o.lambda_ce if cfg.model.head == "classification" else o.lambda_l1)


def defaults(stage: str) -> Config:
    cfg = Config(stage=stage)
    update(cfg, STAGE_DEFAULTS[stage])
    return cfg


def _find(name: str):
    for group, cls in GROUPS.items():
        for f in dataclasses.fields(cls):
            if f.name == name:
                return group, f
    return None


def update(cfg: Config, values: dict) -> Config:
    """Set flat field names (as the CLI spells them) on the nested config."""
    for name, value in values.items():
        group, _ = _find(name)
        setattr(getattr(cfg, group), name, value)
    return cfg


def build_parser(stage: str, description: str) -> argparse.ArgumentParser:
    """Flags for every config field of the stage; defaults are suppressed so explicit flags can be told apart."""
    parser = argparse.ArgumentParser(description=description, argument_default=argparse.SUPPRESS,
                                     usage="%(prog)s [options]", formatter_class=argparse.RawDescriptionHelpFormatter)
    base = defaults(stage)
    for group, cls in GROUPS.items():
        add_options(parser, cls, values=getattr(base, group), stage=stage, title=group, set_defaults=False)
    run_flags = next(g for g in parser._action_groups if g.title == "run")
    run_flags.add_argument("--config", metavar="FILE", help="JSON config: a recipe in configs/ or a run's "
                           "runs/NAME/config.json; flags given override it (docs/training.md#config-files)")
    return parser


def explicit_flags(parser: argparse.ArgumentParser, argv) -> dict:
    """The flags given on the command line, as {field name: value}."""
    return vars(parser.parse_args(argv))


def batches_per_step(cfg) -> int:
    """Batches one optimizer step reads: --grad-accum of them, times --d-steps in stage 2 (one group per D update)."""
    return cfg.optim.grad_accum * (cfg.optim.d_steps if cfg.stage == "gan" else 1)


def best_mode(cfg: Config) -> str:
    if cfg.run.best_mode != "auto":
        return cfg.run.best_mode
    return "max" if cfg.run.best_metric == "val/psnr" else "min"
