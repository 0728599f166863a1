"""Learning-rate schedules (train/schedules.py): every policy's rate at every step against torch's own schedulers
(other code, same definitions), the config checks, and a stage-2 run whose lr/g and lr/d follow the formula across a
stop and --resume."""
import dataclasses
import time

import pytest
import torch
from conftest import run_dirs_args
from test_training import scalar_values

from gan_colorizer.config import defaults
from gan_colorizer.errors import UserError
from gan_colorizer.train.schedules import lr_factor

SPE = 5  # steps per epoch


def optim(**changes):
    return dataclasses.replace(defaults("gan").optim, **changes)


def torch_factors(make, steps: int) -> list[float]:
    """The rate factor of each step under a torch.optim.lr_scheduler, stepped once per optimizer step."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = make(opt)
    factors = []
    for _ in range(steps):
        factors.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return factors


def ours(o, steps: int, total: int | None = None) -> list[float]:
    return [lr_factor(step, o, SPE, total or steps) for step in range(steps)]


def test_constant_is_one_at_every_step():
    assert ours(optim(), 40) == [1.0] * 40


def test_cosine_is_torchs_cosine_annealing_over_the_run():
    steps = 8 * SPE
    expected = torch_factors(lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps), steps)
    assert ours(optim(lr_policy="cosine", epochs=8), steps) == pytest.approx(expected, abs=1e-12)


def test_step_drops_by_gamma_after_each_milestone_epoch_as_multisteplr():
    steps = 10 * SPE
    expected = torch_factors(lambda opt: torch.optim.lr_scheduler.MultiStepLR(
        opt, milestones=[3 * SPE, 7 * SPE], gamma=0.5), steps)
    got = ours(optim(lr_policy="step", epochs=10, lr_milestones="3,7", lr_gamma=0.5), steps)
    assert got == pytest.approx(expected, abs=1e-12)
    assert got[3 * SPE - 1] == 1.0 and got[3 * SPE] == 0.5 and got[-1] == 0.25


def test_linear_holds_then_falls_to_zero_over_the_last_epochs_as_pix2pix():
    epochs, decay = 6, 4
    steps = epochs * SPE
    expected = torch_factors(lambda opt: torch.optim.lr_scheduler.SequentialLR(opt, [
        torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0),
        torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0, end_factor=0.0, total_iters=decay * SPE)],
        milestones=[(epochs - decay) * SPE]), steps)
    got = ours(optim(lr_policy="linear", epochs=epochs, lr_decay_epochs=decay), steps)
    assert got == pytest.approx(expected, abs=1e-12)
    # pix2pix's per-epoch rule 1 - k / (N + 1) and ours agree where an epoch of decay starts, up to its +1
    assert all(got[(epochs - decay + k) * SPE] == pytest.approx(1 - k / decay) for k in range(decay))
    assert lr_factor(steps, optim(lr_policy="linear", epochs=epochs, lr_decay_epochs=decay), SPE, steps) == 0.0


def test_linear_with_no_decay_epochs_given_decays_over_the_whole_run():
    """--lr-decay-epochs 0 (its default) means the whole run (an outside check found it never decayed)."""
    steps = 4 * SPE
    expected = torch_factors(lambda opt: torch.optim.lr_scheduler.LinearLR(
        opt, start_factor=1.0, end_factor=0.0, total_iters=steps), steps)
    assert ours(optim(lr_policy="linear", epochs=4), steps) == pytest.approx(expected, abs=1e-12)
    assert ours(optim(lr_policy="linear", epochs=4), steps)[-1] == pytest.approx(1 / steps)


def test_warmup_rises_linearly_in_front_of_any_policy():
    w, steps = 7, 6 * SPE
    warm = torch_factors(lambda opt: torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / w, total_iters=w - 1),
                         steps)
    assert ours(optim(warmup_steps=w), steps) == pytest.approx(warm, abs=1e-12)
    cosine = torch_factors(lambda opt: torch.optim.lr_scheduler.SequentialLR(opt, [
        torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / w, total_iters=w - 1),
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps - w)], milestones=[w]), steps)
    assert ours(optim(lr_policy="cosine", warmup_steps=w), steps) == pytest.approx(cosine, abs=1e-12)


@pytest.mark.parametrize("changes, message", [
    ({"lr_policy": "step", "lr_milestones": "60,30"}, "--lr-milestones '60,30': give increasing epoch numbers"),
    ({"lr_policy": "step", "lr_milestones": "x"}, "--lr-milestones 'x'"),
    ({"lr_milestones": "3"}, "only --lr-policy step reads them"),
    ({"lr_policy": "linear", "lr_decay_epochs": 30}, "--lr-decay-epochs 30: more than the run's --epochs 20"),
    ({"lr_decay_epochs": 3}, "--lr-decay-epochs 3: only --lr-policy linear reads it"),
    ({"lr_policy": "step", "lr_milestones": "5,20"}, "--lr-milestones 5,20: epoch 20 is not before the end of the "
                                                      "run's --epochs 20"),
    ({"lr_policy": "step"}, "--lr-policy step needs --lr-milestones"),
    ({"lr_gamma": 0.0}, "--lr-gamma 0.0: must be in (0, 1]"),
])
def test_a_schedule_the_run_cannot_use_is_one_line(changes, message):
    from gan_colorizer.config_checks import validate
    cfg = defaults("gan")
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, **changes))
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        validate(cfg)


@pytest.mark.system  # a stop by SIGINT at a step, then --resume
def test_lr_of_both_nets_follows_the_schedule_at_every_step_across_a_stop_and_resume(photo_folder, tmp_path,
                                                                                      monkeypatch, capsys):
    from test_faults import FAST, GAN

    from gan_colorizer.checkpoint import KILL_AT_ENV, KILL_SIGNAL_ENV
    from gan_colorizer.train.cli import main
    args = ["--data", str(photo_folder), *FAST, *GAN, "--epochs", "3", "--lr-policy", "cosine", "--warmup-steps", "2",
            *run_dirs_args(tmp_path, "s")]
    monkeypatch.setenv(KILL_AT_ENV, "step:4")
    monkeypatch.setenv(KILL_SIGNAL_ENV, "SIGINT")
    assert main("gan", args) == 130
    monkeypatch.delenv(KILL_AT_ENV)
    time.sleep(1.1)  # event files are named by the second they start in
    assert main("gan", ["--resume", str(tmp_path / "checkpoints" / "s" / "last.pt")]) == 0
    capsys.readouterr()
    o = optim(lr_policy="cosine", warmup_steps=2, epochs=3)
    total = 3 * 3  # FAST: 6 photos a epoch in batches of 2
    expected = [(step + 1, 2e-4 * lr_factor(step, o, 3, total)) for step in range(total)]
    for net in ("g", "d"):
        logged = scalar_values(tmp_path / "runs" / "s", f"lr/{net}")
        assert [s for s, _ in logged] == [s for s, _ in expected]
        assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-6)  # float32 in the events
    assert logged[0][1] == pytest.approx(1e-4) and logged[-1][1] < 2e-4 * 0.05
