"""Colorize photos at full resolution with a trained checkpoint. `python colorize.py --help`."""
import sys

from gan_colorizer.colorize.cli import main

if __name__ == "__main__":
    sys.exit(main())
