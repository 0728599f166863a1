"""Every network the harness runs: the published colorizers (Zhang et al., DDColor, DeOldify) as our own modules that
load their authors' weight files unchanged, each with what colorizing and evaluation need to run it."""
