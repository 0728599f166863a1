import sys

from gan_colorizer.data import main

sys.exit(main())
