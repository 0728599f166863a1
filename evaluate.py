"""Evaluate checkpoints on held-out photos: metrics.csv, summary.json, comparison grids. `python evaluate.py --help`."""
import sys

from gan_colorizer.evaluate.cli import main

if __name__ == "__main__":
    sys.exit(main())
