"""visualize.py's command line: flags from VisualizeOptions' fields, then inspect.visualize.visualize.

Nothing heavy is imported here, so `--help` answers at once; the work (torch, the checkpoint) loads when it runs.
"""
from __future__ import annotations

import argparse

from gan_colorizer.console import run_command, setup_logging
from gan_colorizer.inspect.options import VisualizeOptions
from gan_colorizer.options import parse_options, tool_parser

DESCRIPTION = """Look inside a trained generator on one photo: feature maps of every encoder stage, the bottleneck and
every decoder stage; the predicted a and b maps; and, for a color photo, the difference maps and ab distributions
against the photo itself (its L is the input).

Writes into OUT: input.png, prediction.png, truth.png, ab_prediction.png, ab_truth.png, difference.png
(CIEDE2000, |delta a|, |delta b|), ab_distribution.png, and per layer layers/NN_NAME_channels.png (the most
active channels) and layers/NN_NAME_activations.png (every filter's mean activation); layers.json lists them.
A classification checkpoint (--head classification) also gets prior.png (its training set's color prior) and,
per --pixel X,Y, pixel_X_Y.png: that pixel's predicted distribution over the ab bins, as predicted (T = 1) and
annealed, with the truth, the decoded ab, the mode and the mean marked.

examples:
  python visualize.py --checkpoint checkpoints/coco-gan/best.pt --image photo.jpg --out runs/viz-photo
  python visualize.py --checkpoint best.pt --image photo.jpg --out /tmp/viz --layers bottleneck,decoder --top 9
  python visualize.py --checkpoint classes/best.pt --image photo.jpg --out /tmp/viz --pixel 120,80 --pixel 30,200"""


def build_parser() -> argparse.ArgumentParser:
    return tool_parser(VisualizeOptions, DESCRIPTION)


def main(argv=None) -> int:
    args = parse_options(build_parser(), VisualizeOptions, argv)
    setup_logging()

    def action():
        from gan_colorizer.inspect.visualize import visualize
        return visualize(args)
    return run_command(action)
