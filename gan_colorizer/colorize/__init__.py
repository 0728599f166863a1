"""Colorizing photos and videos with a trained checkpoint: the Colorizer API (api.py), full-resolution inference with
mood controls (inference.py), the engines, video in and out (video*.py), colorize.py's files, the ONNX export."""
