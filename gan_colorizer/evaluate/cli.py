"""evaluate.py's command line: flags from EvalOptions' fields, then evaluate.run.evaluate (imported when it runs:
`--help` needs neither torch nor the metrics)."""
from __future__ import annotations

import argparse

from gan_colorizer.console import run_command, setup_logging
from gan_colorizer.evaluate.options import EvalOptions
from gan_colorizer.options import parse_options, tool_parser

DESCRIPTION = """Evaluate stage-1 / stage-2 checkpoints and the gray baseline on held-out photos under a fixed protocol.

Video files in DIR are clips, colorized as colorize.py does (--temporal) and scored per frame and for flicker (warp
error), in their own rows and table.

Writes OUT/metrics.csv (one row per label and image or clip), OUT/summary.json (mean; std and median beside),
OUT/grids/*.png (gray input | models | truth | CIEDE2000, |delta a|, |delta b| maps), with --save-images
OUT/images/LABEL/, and with --report OUT/report/index.html (open it in a browser; no server needed).

examples:
  python evaluate.py --checkpoint checkpoints/coco-l1/best.pt --checkpoint checkpoints/coco-gan/best.pt \\
      --data ~/imagenet/val5k --out runs/eval-val5k --report
  python evaluate.py --checkpoint a.pt --label ours --data embedded:val --out /tmp/eval --protocol full-res"""


def build_parser() -> argparse.ArgumentParser:
    return tool_parser(EvalOptions, DESCRIPTION)


def main(argv=None) -> int:
    opts = parse_options(build_parser(), EvalOptions, argv)
    setup_logging()

    def action():
        from gan_colorizer.evaluate.run import evaluate
        return evaluate(opts)
    return run_command(action)
