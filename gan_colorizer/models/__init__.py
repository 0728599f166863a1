"""Every network: our generators, the classification head and the PatchGAN; the published colorizers (Zhang et al.,
DDColor, DeOldify) loading their authors' files unchanged; registry.py builds or loads any of them."""
