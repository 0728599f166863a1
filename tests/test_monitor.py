"""What a run shows while it trains builds no autograd graph: sample grids and the --viz-every visuals."""
import numpy as np
import pytest
import torch
from conftest import color_image

from gan_colorizer.inspect.features import training_visuals
from gan_colorizer.runtime import Runtime
from gan_colorizer.train.monitor import sample_grid


@pytest.mark.slow
def test_sample_grids_and_visuals_run_under_no_grad(resunet):
    grad_modes = []
    resunet.register_forward_hook(lambda module, args, out: grad_modes.append((torch.is_grad_enabled(),
                                                                               out.requires_grad)))
    pixels = torch.stack([torch.from_numpy(np.array(color_image(i, (64, 64)))).permute(2, 0, 1) for i in range(2)])
    rt = Runtime("cpu", "off", channels_last=False)
    grid = sample_grid(rt, resunet.train(), pixels)
    visuals = training_visuals(rt, resunet, pixels)
    assert grid.shape[0] == 3 and not grid.requires_grad and visuals.images
    assert grad_modes == [(False, False), (False, False)]  # one forward each, no graph kept
    assert resunet.training  # the mode is restored
