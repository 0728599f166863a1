"""fp16's gradient scalers (forced on CPU, where autocast runs fp16 too): an overflow with finite losses is a scaler
skip, counted apart from bad steps and never blocking a checkpoint; G and D keep their own scales."""
import pytest
import torch
from conftest import run_dirs_args
from test_faults import FAST, GAN, adam_steps
from test_gan_knobs import batch, gan_cfg, tiny_nets
from test_training import scalar_values

from gan_colorizer import checkpoint as ckpt_io
from gan_colorizer import runtime
from gan_colorizer.runtime import Runtime
from gan_colorizer.train.cli import main
from gan_colorizer.train.steps import SCALER_SKIP, UPDATED, gan_step, make_optimizer


def fp16_runtime(monkeypatch) -> Runtime:
    monkeypatch.setattr(runtime, "resolve_amp", lambda mode, device: torch.float16)  # refused on CPU otherwise
    return Runtime("cpu", "fp16", channels_last=False)


def test_an_overflow_in_gs_backward_skips_g_alone_and_lowers_gs_scale_alone(monkeypatch):
    rt = fp16_runtime(monkeypatch)
    nets, cfg = tiny_nets(), gan_cfg()
    opts = {"g": make_optimizer(nets.generator, cfg), "d": make_optimizer(nets.discriminator, cfg, "d")}
    rt.scaler.by_net["g"] = torch.amp.GradScaler("cpu", init_scale=2.0**100)  # G's scaled gradients overflow
    parts, outcome = gan_step(rt, nets, opts, [batch(0)], cfg)
    assert outcome == SCALER_SKIP and all(torch.isfinite(torch.tensor(v)) for v in parts.values())
    assert not opts["g"].state and len(opts["d"].state)  # D's update, made before G's phase, stands
    assert rt.scaler["g"].get_scale() == 2.0**99 and rt.scaler["d"].get_scale() == 2.0**16
    parts, outcome = gan_step(rt, nets, opts, [batch(1)], cfg)  # D's scale is its own: G's overflow left it
    assert rt.scaler["d"].get_scale() == 2.0**16 and outcome == SCALER_SKIP


def test_a_scaler_state_of_one_shared_scaler_resumes_into_both(monkeypatch):
    rt = fp16_runtime(monkeypatch)
    old = torch.amp.GradScaler("cpu", init_scale=1024.0).state_dict()  # a last.pt from before one scaler per net
    rt.scaler.load_state_dict(old)
    assert rt.scaler["g"].get_scale() == rt.scaler["d"].get_scale() == 1024.0
    assert set(rt.scaler.state_dict()) == {"g", "d"}
    assert Runtime("cpu", "off").scaler.state_dict() == {}  # no fp16: nothing to resume


@pytest.mark.slow
def test_fp16_overflows_are_scaler_skips_not_bad_steps_and_checkpoints_are_written(photo_folder, tmp_path,
                                                                                   monkeypatch, capsys):
    """Every step overflows (the first scale is 2^100): before, each was a 'non-finite' bad step, three in a row
    stopped the run as diverged and no checkpoint was written while they lasted."""
    fp16_runtime(monkeypatch)
    monkeypatch.setitem(runtime.FP16_INIT_SCALES, "g", 2.0**100)
    args = ["--data", str(photo_folder), *FAST, "--max-steps", "3", "--max-bad-steps", "3", "--checkpoint-every", "1"]
    assert main("pretrain", [*args, *run_dirs_args(tmp_path, "f")]) == 0
    out, err = capsys.readouterr()
    assert "non-finite" not in out + err and "not written" not in out + err
    assert "step 1: fp16 gradients overflowed, the scaler skipped the update" in out
    ckpt = ckpt_io.load(tmp_path / "checkpoints" / "f" / "last.pt")
    assert (ckpt["step"], ckpt["skipped_steps"], ckpt["scaler_skips"]) == (3, 0, 3)
    assert ckpt["scaler"]["g"]["scale"] == 2.0**97 and not ckpt["optimizers"]["g"]["state"]  # no update went through
    assert (tmp_path / "checkpoints" / "f" / "best.pt").is_file()
    assert [v for _, v in scalar_values(tmp_path / "runs" / "f", "train/scaler_skips")] == [1, 2, 3]
    assert [s for s, _ in scalar_values(tmp_path / "runs" / "f", "loss/g_l1")] == [1, 2, 3]  # finite losses logged


def test_the_first_scales_hold_a_fresh_generators_stage_2_gradients(monkeypatch):
    """With each net's first scale, a fresh stage-2 step updates both nets (the default 2^16 for G overflowed)."""
    rt = fp16_runtime(monkeypatch)
    nets, cfg = tiny_nets(), gan_cfg()
    opts = {"g": make_optimizer(nets.generator, cfg), "d": make_optimizer(nets.discriminator, cfg, "d")}
    assert gan_step(rt, nets, opts, [batch(0)], cfg)[1] == UPDATED
    assert len(opts["g"].state) and len(opts["d"].state)


def test_fp16_with_several_d_updates_a_step_updates_ds_scale_after_each(monkeypatch):
    """--d-steps 2 under fp16: with one scaler for the step, D's second unscale_ came after its step() and raised."""
    rt = fp16_runtime(monkeypatch)
    nets, cfg = tiny_nets(), gan_cfg(d_steps=2)
    opts = {"g": make_optimizer(nets.generator, cfg), "d": make_optimizer(nets.discriminator, cfg, "d")}
    assert gan_step(rt, nets, opts, [batch(0), batch(1)], cfg)[1] == UPDATED
    assert opts["d"].state[next(iter(opts["d"].state))]["step"].item() == 2
