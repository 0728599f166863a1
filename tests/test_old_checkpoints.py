"""Checkpoints written before the package moved into sub-packages (issue 12) still load, predict the same ab and
resume. tests/data/gan-unet2-before-issue12.pt: a stage-2 checkpoint (pix2pix U-Net with 2 filters, PatchGAN
with 2) written at commit eddcd19 by checkpoint.make_checkpoint / save_atomic, with the generator's output on a
fixed ramp (every 32nd pixel) stored beside as test_expected_ab."""
from pathlib import Path

import torch
import torch.nn.functional as F


from gan_colorizer.models.registry import load_generator
from gan_colorizer.train import setup as train_setup
from gan_colorizer.train.cli import resolve_config

OLD = Path(__file__).parent / "data" / "gan-unet2-before-issue12.pt"


def test_a_checkpoint_from_before_the_move_predicts_the_same_ab():
    generator, _, ckpt = load_generator(OLD)
    ramp = F.interpolate(torch.linspace(-1, 1, 64 * 64).view(1, 1, 64, 64), size=(256, 256))
    with torch.no_grad():
        ab = generator.eval()(ramp)
    assert (ckpt["stage"], ckpt["step"]) == ("gan", 7)
    torch.testing.assert_close(ab[0, :, ::32, ::32], ckpt["test_expected_ab"], rtol=0, atol=1e-6)


def test_a_checkpoint_from_before_the_move_resumes_its_run(photo_folder, tmp_path):
    flags = {"resume": str(OLD), "data": str(photo_folder), "num_workers": 0, "batch_size": 2, "name": "old",
             "runs_dir": str(tmp_path / "runs"), "checkpoints_dir": str(tmp_path / "checkpoints")}
    run = train_setup.start(resolve_config("gan", flags))
    try:
        assert (run.state.epoch, run.state.step, run.state.best) == (1, 7, 0.5)
        assert run.cfg.model.unet_filters == 2 and run.nets.discriminator is not None
    finally:
        run.monitor.close()
        run.lock.release()
