"""python -m gan_colorizer.app: the same as gan-colorizer-app."""
import sys

from gan_colorizer.app.main import main

sys.exit(main())
