"""Seeing inside: drawing helpers, feature maps of every stage, ab histograms, the classification head's views,
the generator's anatomy, visualize.py's command line, training curves, runs compared and the weight report."""
