"""gan_colorizer: two-stage (L1, then Pix2Pix GAN) colorization of grayscale photos with a ResNet U-Net."""

__version__ = "0.1.0"
