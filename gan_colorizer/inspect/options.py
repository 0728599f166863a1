"""What visualize.py takes: its options (the flags are these fields), with nothing heavy imported, so `--help`
answers at once; inspect/visualize.py does the work."""
from __future__ import annotations

from dataclasses import dataclass

from gan_colorizer.config import DECODES
from gan_colorizer.options import REQUIRED, amp_opt, device_opt, opt

TOP_CHANNELS = 16  # channels shown per layer: --top's default, and the feature views' (features.py)
CLASSES = "classification checkpoints (--head classification)"  # a --help section


@dataclass
class VisualizeOptions:
    """Which checkpoint, photo and layers; the flags of visualize.py are these fields."""
    checkpoint: str = opt(REQUIRED, "a stage-1 or stage-2 checkpoint, or a published model's name (ddcolor-tiny, "
                                     "zhang-eccv16...: docs/published-models.md)", metavar="PATH")
    image: str = opt(REQUIRED, "the photo (color or gray)", metavar="PATH")
    out: str = opt(REQUIRED, "output folder", metavar="DIR")
    image_size: int | None = opt(None, "short side the network sees, snapped to the sizes it accepts (default: its "
                                       "training size)", metavar="N", aliases=("--size",))
    layers: str | None = opt(None, "comma-separated stage names or groups (encoder, bottleneck, decoder, head); "
                                   "default: all", metavar="NAMES")
    top: int = opt(TOP_CHANNELS, "channels shown per layer", metavar="K")
    device: str = device_opt()
    amp: str = amp_opt("off", "; off here by default: the maps and figures of the fp32 network")
    pixel: list[str] | None = opt(None, "draw the predicted distribution over the ab bins of the photo's pixel X,Y "
                                        "(0-based, from the top left) into pixel_X_Y.png; repeat for several pixels",
                                  action="append", metavar="X,Y", group=CLASSES)
    decode: str | None = opt(None, "how the distribution becomes ab: annealed mean (the checkpoint's default), mode, "
                                   "or mean", choices=DECODES, group=CLASSES)
    annealed_t: float | None = opt(None, "temperature of the annealed mean (default: the checkpoint's --annealed-t)",
                                   metavar="T", group=CLASSES)
