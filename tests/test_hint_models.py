"""Hint models (--hints): every generator reads L plus the hint channels, keeps the ImageNet body's weights for L,
records it in its checkpoint, and learns to follow a hint; a model without hints is what it was."""
import pytest
import torch
import torchvision
from conftest import TINY, make_photo_folder, run_dirs_args, run_script

from gan_colorizer import checkpoint as ckpt_io
from gan_colorizer import hints
from gan_colorizer.config import Config, defaults, update
from gan_colorizer.errors import UserError
from gan_colorizer.models.registry import build_generator, load_generator
from gan_colorizer.models.resunet import resunet
from gan_colorizer.runtime import Runtime
from gan_colorizer.train import steps

GENERATORS = {"resunet": 64, "unet": 256, "resnet9": 32}  # the side each one takes cheaply


def hint_config(generator: str, **changes) -> Config:
    return update(defaults("pretrain"), {"hints": True, "generator": generator, "pretrained": False,
                                         "unet_filters": 8, **changes})


def a_hint(size: int, at: int = 4) -> torch.Tensor:
    ab, mask = hints.maps([hints.Hint(float(at), float(at), (55.0, -44.0), 1)], (size, size))
    return hints.model_input(ab, mask)


@pytest.mark.parametrize("generator, head", [
    ("resunet", "regression"), ("unet", "regression"), ("resnet9", "regression"), ("resnet9", "classification"),
    pytest.param("resunet", "classification", marks=pytest.mark.slow),
    pytest.param("unet", "classification", marks=pytest.mark.slow)])
def test_every_generator_takes_the_hint_channels_and_runs_without_them(generator, head):
    torch.manual_seed(0)
    net = build_generator(hint_config(generator, head=head).model, load_pretrained=False).eval()
    size = GENERATORS[generator]
    gray_l = torch.rand(1, 1, size, size) * 2 - 1
    assert net.takes_hints
    with torch.no_grad():
        automatic, zeros = net(gray_l), net(gray_l, torch.zeros(1, 3, size, size))
        hinted = net(gray_l, a_hint(size))
    assert automatic.shape == hinted.shape == (1, 2, size, size)
    assert torch.equal(automatic, zeros)  # no hints = the zero maps: the automatic mode
    first = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 1 + hints.FEATURES  # L, the hint channels and their spread


def test_the_imagenet_body_keeps_its_l_weights_and_hint_weights_start_at_zero():
    state = torchvision.models.resnet18(weights=None).state_dict()  # stands in for the ImageNet file
    net = resunet("resnet18", state, "test", in_channels=1 + hints.FEATURES)
    conv1 = net.body[0].weight
    assert torch.equal(conv1[:, :1], state["conv1.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(conv1[:, 1:], torch.zeros_like(conv1[:, 1:]))
    gray_l = torch.rand(1, 1, 64, 64)
    with torch.no_grad():  # so the untrained hint net is the automatic net: a hint changes nothing yet
        assert torch.equal(net.eval()(gray_l), net(gray_l, a_hint(64)))


def test_a_model_without_hints_is_unchanged(resunet):
    assert not getattr(resunet, "takes_hints", False) and resunet.body[0].in_channels == 1
    assert not Config.from_dict({"stage": "pretrain", "model": {"generator": "resunet"}}).model.hints
    assert sum(p.numel() for p in resunet.parameters()) == 31_099_672  # the reference tutorial's count


def test_the_checkpoint_records_hints_and_a_resume_or_init_cannot_switch_them(tmp_path):
    cfg = hint_config("resnet9")
    net = build_generator(cfg.model, load_pretrained=False)
    path = tmp_path / "hint.pt"
    ckpt_io.save_atomic({"format_version": 1, "stage": "pretrain", "config": cfg.to_dict(),
                         "generator": net.state_dict(), "step": 1, "epoch": 0, "metrics": {}}, path)
    loaded, saved_cfg, _ = load_generator(path)
    assert saved_cfg.model.hints and loaded.takes_hints
    with pytest.raises(UserError, match="architecture mismatch.*hints"):
        ckpt_io.check_architecture(saved_cfg, update(defaults("gan"), {"generator": "resnet9", "unet_filters": 8}),
                                   path)


def test_an_automatic_net_starts_a_hint_net_that_is_at_first_the_same_net():
    torch.manual_seed(0)
    automatic = build_generator(update(defaults("pretrain"), {"pretrained": False}).model, False).eval()
    torch.manual_seed(1)  # other random weights: every one must come from the automatic net or be zero
    hinted = build_generator(hint_config("resunet").model, False).eval()
    state = hints.from_automatic(automatic.state_dict(), hinted.state_dict())
    hinted.load_state_dict(state)
    assert set(state) - set(automatic.state_dict()) == {"hint_head.weight"}
    assert torch.equal(hinted.body[0].weight[:, :1], automatic.body[0].weight)
    gray_l = torch.rand(1, 1, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(hinted(gray_l, a_hint(64)), automatic(gray_l))
    with torch.no_grad():  # once the head reads the hint points (not their spread), a hint moves the output near it
        torch.nn.init.normal_(hinted.hint_head.weight[:, :hints.CHANNELS])
    with torch.no_grad():
        moved = (hinted(gray_l, a_hint(64, at=10)) - automatic(gray_l)).abs().sum(dim=1)[0]
    assert moved[8:13, 8:13].mean() > 0 and moved[40:, 40:].abs().max() == 0


def test_stage_1_with_hints_starts_from_an_automatic_checkpoint_from_the_command_line(tmp_path):
    make_photo_folder(tmp_path / "photos", 4)
    common = ["--data", tmp_path / "photos", "--val-fraction", "0.5", "--max-steps", "2", "--generator", "resnet9",
              "--unet-filters", "8", *TINY]
    result = run_script("pretrain_generator.py", *common, *run_dirs_args(tmp_path, "auto"))
    assert result.returncode == 0, result.stderr
    auto = tmp_path / "checkpoints" / "auto" / "best.pt"
    result = run_script("pretrain_generator.py", "--hints", "--hue-jitter", "180", "--init-generator", auto, *common,
                        *run_dirs_args(tmp_path, "hinted"))
    assert result.returncode == 0, result.stderr
    assert "hint inputs start at zero" in result.stderr + result.stdout
    generator, cfg, _ = load_generator(tmp_path / "checkpoints" / "hinted" / "last.pt")
    assert cfg.model.hints and generator.takes_hints


def tiles(n: int, channels: int, low: float, high: float, size: int) -> torch.Tensor:
    """Photos of 8 x 8 px tiles, each its own value: a hint tells the colour of its tile, nothing of the others."""
    t = torch.rand(n, channels, size // 8, size // 8) * (high - low) + low
    return t.repeat_interleave(8, 2).repeat_interleave(8, 3).contiguous()


def gains_toward_the_hints(net, gray_l, hint_ab, mask) -> tuple[float, float]:
    """How much closer to the hint colour the output gets with the hints than without (model units), on the hinted
    pixels and on the pixels 12 px or more from any hint."""
    with torch.no_grad():
        net.eval()
        automatic, hinted = net(gray_l), net(gray_l, torch.cat([hint_ab, mask], dim=1))
        net.train()
    gain = (automatic - hint_ab).norm(dim=1) - (hinted - hint_ab).norm(dim=1)
    far = torch.nn.functional.max_pool2d(mask, 25, 1, 12)[:, 0] == 0
    return gain[mask[:, 0] > 0].mean().item(), gain[far].mean().item()


@pytest.mark.parametrize("generator, size, n_steps, lr, least", [
    ("resnet9", 32, 200, 2e-4, 0.1),  # at 2e-3 it spread the hint everywhere first (hints.Spread), then swung
    pytest.param("unet", 256, 40, 2e-3, 0.01, marks=pytest.mark.slow),
    pytest.param("resunet", 32, 40, 2e-3, 0.01, marks=pytest.mark.slow)])
def test_a_tiny_hint_model_trained_a_few_steps_follows_a_hint_at_the_hint_more_than_far_away(
        generator, size, n_steps, lr, least):
    torch.manual_seed(0)
    cfg = hint_config(generator, lr=lr)
    net = build_generator(cfg.model, load_pretrained=False)
    nets = steps.Nets(net, hints=True)  # the training step simulates the hints from each photo
    opts, rt = {"g": steps.make_optimizer(net, cfg)}, Runtime("cpu", "off", channels_last=False)
    gray_l, real_ab = tiles(16, 1, -0.5, 0.5, size), tiles(16, 2, -0.6, 0.6, size)  # held-out photos
    probe = (gray_l, *hints.sample(real_ab, counts=[1] * 16, generator=torch.Generator().manual_seed(0)))
    near_before, _ = gains_toward_the_hints(net, *probe)
    for _ in range(n_steps):
        steps.pretrain_step(rt, nets, opts, [(tiles(8, 1, -0.5, 0.5, size), tiles(8, 2, -0.6, 0.6, size))], cfg)
    near, far = gains_toward_the_hints(net, *probe)
    assert abs(near_before) < 0.02  # untrained: the hints hardly move it (zero or N(0, 0.02) hint weights)
    assert near > least  # model units: 0.01 x 110 = 1.1 ab
    assert near > 1.5 * abs(far)  # far: 12 px or more from the hint, where the tiles are independent of it


@pytest.mark.slow
def test_both_stages_train_a_hint_model_from_the_command_line_stage_2_inheriting_it(tmp_path):
    make_photo_folder(tmp_path / "photos", 4)
    common = ["--data", tmp_path / "photos", "--val-fraction", "0.5", "--max-steps", "2", "--generator", "resnet9",
              "--unet-filters", "8", *TINY]
    result = run_script("pretrain_generator.py", "--hints", *common, *run_dirs_args(tmp_path, "s1"))
    assert result.returncode == 0, result.stderr
    stage1 = tmp_path / "checkpoints" / "s1" / "best.pt"
    refused = run_script("train_gan.py", "--no-hints", "--init-generator", stage1, *common,
                         *run_dirs_args(tmp_path, "s2x"))
    assert refused.returncode == 2 and "architecture mismatch (hints" in refused.stderr
    assert "Traceback" not in refused.stderr
    result = run_script("train_gan.py", "--init-generator", stage1, *common, *run_dirs_args(tmp_path, "s2"))
    assert result.returncode == 0, result.stderr
    generator, cfg, _ = load_generator(tmp_path / "checkpoints" / "s2" / "last.pt")
    assert cfg.model.hints and generator.takes_hints  # --init-generator brings the architecture, --hints with it


def test_without_hints_the_step_passes_none(monkeypatch):
    """A model trained without --hints never sees hint channels (its forward has no such argument)."""
    seen = []
    net = build_generator(update(defaults("pretrain"), {"generator": "resnet9", "unet_filters": 8}).model, False)
    monkeypatch.setattr(net, "forward", lambda gray_l, **kw: seen.append(kw) or torch.zeros(1, 2, 8, 8))
    steps.generate(steps.Nets(net), torch.zeros(1, 1, 8, 8), torch.zeros(1, 2, 8, 8))
    steps.generate(steps.Nets(net, hints=True), torch.zeros(1, 1, 8, 8), torch.zeros(1, 2, 8, 8))
    assert seen[0] == {} and seen[1]["hints"].shape == (1, 3, 8, 8)


def test_rotate_ab_turns_each_photo_by_its_angle_keeping_chroma():
    from gan_colorizer.color import rotate_ab
    ab = torch.tensor([[1.0, 0.0], [0.3, -0.4]]).view(2, 2, 1, 1).expand(2, 2, 3, 3)
    turned = rotate_ab(ab, torch.tensor([90.0, 180.0]))
    assert torch.allclose(turned[0, :, 0, 0], torch.tensor([0.0, 1.0]), atol=1e-6)  # +a turns to +b
    assert torch.allclose(turned[1, :, 0, 0], torch.tensor([-0.3, 0.4]), atol=1e-6)
    assert torch.allclose(rotate_ab(ab, 360.0), ab, atol=1e-6)
    assert torch.allclose(turned.norm(dim=1), ab.norm(dim=1))


def test_hue_jitter_draws_an_angle_per_photo_within_the_bound_and_leaves_l():
    from gan_colorizer.train.loop import hue_jitter
    gray_l, ab = torch.rand(64, 1, 4, 4), torch.tensor([0.5, 0.0]).view(1, 2, 1, 1).repeat(64, 1, 4, 4)
    assert hue_jitter(gray_l, ab, 0.0)[1] is ab
    torch.manual_seed(0)
    out_l, out_ab = hue_jitter(gray_l, ab, 30.0)
    angles = torch.rad2deg(torch.atan2(out_ab[:, 1, 0, 0], out_ab[:, 0, 0, 0]))
    assert out_l is gray_l and torch.allclose(out_ab.norm(dim=1), ab.norm(dim=1))
    assert angles.abs().max() <= 30.0 + 1e-4 and angles.std() > 10  # uniform in +-30: sd 17
    assert torch.equal(out_ab[:, :, 0, 0].unsqueeze(-1).unsqueeze(-1).expand_as(out_ab), out_ab)  # one per photo
    from gan_colorizer.config_checks import validate
    with pytest.raises(UserError, match="hue.jitter"):
        validate(update(defaults("pretrain"), {"hue_jitter": 200.0}))


def test_hint_points_sets_the_mean_number_of_simulated_hints(monkeypatch):
    seen = []
    monkeypatch.setattr(steps, "sample_hints", lambda ab, p: seen.append(p) or hints.sample(ab, p=p))
    net = build_generator(hint_config("resnet9").model, False)
    for points in (7.0, 31.0):
        steps.generate(steps.Nets(net, hints=True, hint_points=points), torch.zeros(2, 1, 32, 32),
                       torch.zeros(2, 2, 32, 32))
    assert seen == [1 / 8, 1 / 32]  # geometric from 0 with mean N: p = 1 / (N + 1); 7 is Zhang et al.'s 1/8
    torch.manual_seed(0)
    _, mask = hints.sample(torch.zeros(400, 2, 64, 64), p=1 / 32)
    assert 0.5 < float((mask.sum(dim=(1, 2, 3)) == 0).float().mean()) * 32 < 2  # 1 photo in 32 gets none
    from gan_colorizer.config_checks import validate
    with pytest.raises(UserError, match="hint.points"):
        validate(update(defaults("pretrain"), {"hint_points": 0.0}))
