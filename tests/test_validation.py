"""Training's validation figures are evaluate.py's: the same images give the same CIEDE2000."""
import numpy as np
import pytest
import torch
from conftest import color_image
from PIL import Image

from gan_colorizer.models.registry import load_generator
from gan_colorizer.evaluate.run import EvalOptions, evaluate
from gan_colorizer.runtime import Runtime
from gan_colorizer.train.steps import finish_validation, validation_sums


@pytest.mark.slow
def test_validation_ciede2000_agrees_with_evaluate_on_the_same_images(tmp_path, tiny_checkpoint):
    # 64 px square photos: the center-crop protocol at 64 px leaves them as they are, as the validation loader does;
    # the seeded random generator predicts ab far out of gamut, where clipping to 8-bit sRGB changes the colors
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        color_image(i, (64, 64)).save(folder / f"photo_{i}.png")
    pixels = torch.stack([torch.from_numpy(np.asarray(Image.open(p))).permute(2, 0, 1)
                          for p in sorted(folder.glob("*.png"))])
    rt = Runtime("cpu")
    generator, _, _ = load_generator(tiny_checkpoint)
    val = finish_validation(validation_sums(rt, rt.place(generator), [(pixels[:3], None), (pixels[3:], None)]))
    summary = evaluate(EvalOptions(checkpoints=[str(tiny_checkpoint)], data=str(folder), out=str(tmp_path / "eval"),
                                   image_size=64, num_workers=0, grid_images=0, device="cpu"))
    evaluated = summary["models"]["tiny"]["delta_e2000"]
    assert val["val/delta_e2000"] == pytest.approx(evaluated, abs=0.05)
