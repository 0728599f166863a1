"""gan_colorizer: two-stage (L1, then Pix2Pix GAN) colorization of grayscale photos with a ResNet U-Net."""

__version__ = "0.1.0"
__all__ = ["Colorizer"]


def __getattr__(name):
    # `from gan_colorizer import Colorizer` without importing torch for every `import gan_colorizer`
    if name == "Colorizer":
        from gan_colorizer.colorize.api import Colorizer
        return Colorizer
    raise AttributeError(f"module 'gan_colorizer' has no attribute {name!r}")
