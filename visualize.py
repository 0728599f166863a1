"""Feature maps, difference maps and ab distributions of a checkpoint on one photo. `python visualize.py --help`."""
import sys

from gan_colorizer.inspect.cli import main

if __name__ == "__main__":
    sys.exit(main())
