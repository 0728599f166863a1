"""Colorizing photos with a trained checkpoint: the Colorizer API (api.py), full-resolution inference with mood
controls (inference.py), the colorize.py command line and its file handling, and the ONNX export (onnx.py)."""
