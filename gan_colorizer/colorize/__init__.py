"""Colorizing photos with a trained checkpoint: the Colorizer API (api.py), full-resolution inference with mood
controls (inference.py), the engines (engines.py), colorize.py's command line and files, the ONNX / int8 export."""
