"""The data path, a folder of the core: image files decoded (images.py), folders scanned and cached (scan.py), the
training dataset, crops, sampler (dataset.py), WebDataset shards written (shards.py) and streamed (shard_stream.py)."""
