"""Stage 2: train the generator against a PatchGAN with GAN + lambda * L1. `python train_gan.py --help`."""
import sys

from gan_colorizer.train.cli import gan_main

if __name__ == "__main__":
    sys.exit(gan_main())
