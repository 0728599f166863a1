"""The offline HTML report of an evaluation (`evaluate.py --report`): collect.py gathers images, distributions and
the layer view as the evaluation streams; page.py renders the page; assets/ holds its stylesheet and script."""
