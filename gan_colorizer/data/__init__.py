"""The data path, a folder of the core: image files decoded (images.py), folders scanned and cached (scan.py), the
training dataset, crops, sampler (dataset.py), WebDataset shards written (shards.py) and streamed (shard_stream.py)."""


def main(argv=None) -> int:
    """gan-colorizer-data, python -m gan_colorizer.data: data/cli.py, imported only when the command runs."""
    from gan_colorizer.data.cli import main as data_main
    return data_main(argv)
