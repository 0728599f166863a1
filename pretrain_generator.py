"""Stage 1: pretrain the colorization generator with L1 on ab. `python pretrain_generator.py --help`."""
import sys

from gan_colorizer.train.cli import pretrain_main

if __name__ == "__main__":
    sys.exit(pretrain_main())
