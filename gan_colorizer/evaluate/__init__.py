"""Evaluation of checkpoints on held-out folders: the protocols (crops, resize, full resolution), the run over them,
the LPIPS / FID networks loaded from local files, and what it writes (metrics.csv, summary.json, grids)."""
