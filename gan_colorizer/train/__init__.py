"""Training: the two stages' command line, the loop (loop.py, one screen), one step of each stage (steps.py), what a
run starts from (setup.py), and what keeps it alive around the loop: guard.py, distributed.py, monitor.py, ema.py."""
