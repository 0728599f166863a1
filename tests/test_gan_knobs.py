"""Stage 2's two time scales: the discriminator's own rate and betas (--d-lr, --d-beta1, --d-beta2) and --d-steps
discriminator updates per generator update, each on its own batch. The default step is checked against a
pix2pix step written out by hand here."""
import copy
import dataclasses
import time

import pytest
import torch
from conftest import run_dirs_args
from test_faults import FAST, GAN, assert_same_weights
from test_training import scalar_values

from gan_colorizer import checkpoint as ckpt_io
from gan_colorizer.checkpoint import KILL_AT_ENV, KILL_SIGNAL_ENV
from gan_colorizer.config import defaults
from gan_colorizer.losses import discriminator_loss, generator_loss, reconstruction
from gan_colorizer.models.patchgan import PatchDiscriminator
from gan_colorizer.models.pix2pix import UNetGenerator
from gan_colorizer.runtime import Runtime
from gan_colorizer.train.cli import main
from gan_colorizer.train.steps import UPDATED, Nets, gan_step, make_optimizer


def gan_cfg(**optim):
    cfg = defaults("gan")
    return dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, amp="off", **optim))


def tiny_nets(seed: int = 0) -> Nets:
    torch.manual_seed(seed)
    return Nets(UNetGenerator(1, 2, 4), PatchDiscriminator(3, 4, 2))


def batch(seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 1, 256, 256, generator=g) * 2 - 1, torch.rand(2, 2, 256, 256, generator=g) - 0.5


def test_the_default_step_is_pix2pixs_d_then_g_step_to_the_bit():
    cfg = gan_cfg()
    ours, theirs = tiny_nets(), tiny_nets()
    opts = {"g": make_optimizer(ours.generator, cfg), "d": make_optimizer(ours.discriminator, cfg, "d")}
    opt_g = torch.optim.Adam(theirs.generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(theirs.discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    rt = Runtime("cpu", "off", channels_last=False)
    for seed in range(2):
        gray_l, real_ab = batch(seed)
        torch.manual_seed(100 + seed)  # the U-Net's dropout draws the same masks in both
        gan_step(rt, ours, opts, [(gray_l, real_ab)], cfg)
        G, D = theirs.generator, theirs.discriminator  # pix2pix's optimize_parameters, written out
        torch.manual_seed(100 + seed)
        fake = G(gray_l)
        D.requires_grad_(True)
        opt_d.zero_grad()
        discriminator_loss(D(gray_l, real_ab), D(gray_l, fake.detach()))[0].backward()
        opt_d.step()
        D.requires_grad_(False)
        opt_g.zero_grad()
        generator_loss(D(gray_l, fake), reconstruction(fake, real_ab, cfg.optim), 100.0)[0].backward()
        opt_g.step()
    for a, b in ((ours.generator, theirs.generator), (ours.discriminator, theirs.discriminator)):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_d_lr_and_betas_reach_the_discriminators_optimizer_only():
    cfg = gan_cfg(d_lr=1e-3, d_beta1=0.0, d_beta2=0.9)
    nets = tiny_nets()
    g, d = make_optimizer(nets.generator, cfg), make_optimizer(nets.discriminator, cfg, "d")
    assert (g.param_groups[0]["lr"], g.param_groups[0]["betas"]) == (2e-4, (0.5, 0.999))
    assert (d.param_groups[0]["lr"], d.param_groups[0]["betas"]) == (1e-3, (0.0, 0.9))


def test_d_steps_updates_d_on_each_batch_then_g_on_the_last():
    cfg = gan_cfg(d_steps=3)
    nets = tiny_nets()
    opts = {"g": make_optimizer(nets.generator, cfg), "d": make_optimizer(nets.discriminator, cfg, "d")}
    rt = Runtime("cpu", "off", channels_last=False)
    d_before = copy.deepcopy(nets.discriminator)
    seen = []
    nets.discriminator.register_forward_hook(lambda m, inputs, out: seen.append(float(inputs[0].sum())))
    parts, outcome = gan_step(rt, nets, opts, [batch(s) for s in range(3)], cfg)
    assert outcome == UPDATED
    steps = [opts[n].state[next(iter(opts[n].state))]["step"].item() for n in ("d", "g")]
    assert steps == [3, 1]  # Adam's own count of updates
    grays = [float(batch(s)[0].sum()) for s in range(3)]
    assert seen == [grays[0]] * 2 + [grays[1]] * 2 + [grays[2]] * 3  # D: real and fake per update; G: the last
    assert not torch.equal(next(d_before.parameters()), next(nets.discriminator.parameters()))
    assert {"d_real", "d_fake", "g_gan", "g_l1"} <= set(parts)


@pytest.mark.system  # two runs from the command line, one stopped by SIGINT and resumed
def test_d_steps_and_pool_runs_resume_to_the_same_weights_and_log_each_nets_rate(photo_folder, tmp_path, monkeypatch, capsys):
    args = ["--data", str(photo_folder), *FAST, *GAN, "--epoch-size", "8", "--epochs", "2", "--d-steps", "2",
            "--d-lr", "1e-3", "--pool-size", "3"]  # the pool fills by step 2, swaps after: saved and restored
    assert main("gan", [*args, *run_dirs_args(tmp_path, "ref")]) == 0
    ref = tmp_path / "checkpoints" / "ref" / "last.pt"
    ckpt = ckpt_io.load(ref)
    assert (ckpt["step"], ckpt["epoch"]) == (4, 2)  # 8 photos, batches of 2: 4 batches = 2 steps an epoch
    monkeypatch.setenv(KILL_AT_ENV, "step:3")
    monkeypatch.setenv(KILL_SIGNAL_ENV, "SIGINT")
    assert main("gan", [*args, *run_dirs_args(tmp_path, "stopped")]) == 130
    monkeypatch.delenv(KILL_AT_ENV)
    time.sleep(1.1)  # event files are named by the second they start in
    assert main("gan", ["--resume", str(tmp_path / "checkpoints" / "stopped" / "last.pt")]) == 0
    capsys.readouterr()
    assert_same_weights(tmp_path / "checkpoints" / "stopped" / "last.pt", ref)
    assert [v for _, v in scalar_values(tmp_path / "runs" / "ref", "lr/d")] == pytest.approx([1e-3] * 4)
    assert [v for _, v in scalar_values(tmp_path / "runs" / "ref", "lr/g")] == pytest.approx([2e-4] * 4)


def marked(values) -> torch.Tensor:
    """Fakes whose every pixel holds its identity: (len(values), 3, 2, 2)."""
    return torch.tensor(values, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 3, 2, 2).contiguous()


def test_the_pool_passes_fakes_until_full_then_swaps_half_of_them_for_stored_ones():
    from gan_colorizer.train.pool import ImagePool
    pool, stored, swaps, n = ImagePool(4, seed=3), set(), 0, 0
    for step in range(600):
        new = [float(2 * step), float(2 * step + 1)]
        out = [float(x) for x in pool.query(marked(new))[:, 0, 0, 0]]
        for given, seen in zip(new, out):  # our own account of what the pool holds
            if len(stored) < 4 and seen == given:
                stored.add(given)
                continue
            n += 1
            if seen != given:
                assert seen in stored  # D sees an earlier fake that the pool held...
                stored.remove(seen)
                stored.add(given)  # ...and the new one takes its place
                swaps += 1
        assert len(stored) == 4 or step < 2
    assert abs(swaps / n - 0.5) < 0.05  # 1/2, as pix2pix's pool


def test_a_smaller_pool_on_resume_keeps_the_first_stored_fakes():
    from gan_colorizer.train.pool import ImagePool
    big = ImagePool(3, seed=1)
    big.query(marked([1.0, 2.0, 3.0]))
    small = ImagePool(1, seed=1)
    small.load_state_dict(big.state_dict(), "cpu")
    assert small.count == 1 and small.images[0, 0, 0, 0] == 1.0


def test_a_run_resumed_at_another_image_size_starts_its_pool_again():
    from gan_colorizer.train.pool import ImagePool
    old = ImagePool(2, seed=1)
    old.query(marked([1.0, 2.0]))
    pool = ImagePool(2, seed=1)
    pool.load_state_dict(old.state_dict(), "cpu")
    bigger = torch.full((2, 3, 4, 4), 7.0)
    assert torch.equal(pool.query(bigger), bigger) and pool.count == 2  # passed on and stored: a fresh pool
    assert pool.images.shape == (2, 3, 4, 4)


def test_the_pool_resumes_from_its_state_and_size_0_is_off():
    from gan_colorizer.train.pool import ImagePool
    a = ImagePool(3, seed=1)
    for step in range(5):
        a.query(marked([step, step + 0.5]))
    b = ImagePool(3, seed=99)
    b.load_state_dict(a.state_dict(), "cpu")
    for step in range(5, 15):
        assert torch.equal(a.query(marked([step, step + 0.5])), b.query(marked([step, step + 0.5])))
    fakes = marked([1.0])
    assert ImagePool(0, seed=0).query(fakes) is fakes


def test_d_judges_pooled_pairs_of_l_and_ab():
    from gan_colorizer.train.pool import ImagePool
    from gan_colorizer.train.steps import judged_fakes
    nets = Nets(None, None, pool=ImagePool(2, seed=0))
    first = judged_fakes(nets, torch.zeros(1, 1, 2, 2), torch.ones(1, 2, 2, 2))
    assert first[0].shape == (1, 1, 2, 2) and first[1].shape == (1, 2, 2, 2)
    stored = nets.pool.images[0]
    assert torch.equal(stored[:1], torch.zeros(1, 2, 2)) and torch.equal(stored[1:], torch.ones(2, 2, 2))


class LinearCritic(torch.nn.Module):
    """D(L, ab) = the map sum_c w_c ab_c + L: its gradient in ab is w at every pixel, known without autograd."""

    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(w).view(1, -1, 1, 1))

    def forward(self, gray_l, ab):
        return (self.w * ab).sum(dim=1, keepdim=True) + gray_l


def test_wgan_gp_and_r1_penalties_are_their_formulas_on_a_critic_with_a_known_gradient():
    from gan_colorizer.losses import gradient_penalty, r1_penalty
    D, h, w = LinearCritic([0.3, -0.4]), 4, 5
    gray_l, real_ab, fake_ab = torch.zeros(3, 1, h, w), torch.rand(3, 2, h, w), torch.rand(3, 2, h, w)
    w2 = 0.3 ** 2 + 0.4 ** 2
    norm = (h * w * (w2 + 1)) ** 0.5  # per image: (w_a, w_b) on ab and 1 on L, at each of h x w pixels
    gp, parts = gradient_penalty(D, (gray_l, real_ab), (torch.rand(3, 1, h, w), fake_ab), 10.0)
    assert gp.item() == pytest.approx(10.0 * (norm - 1) ** 2, rel=1e-5) and "d_gp" in parts
    r1, _ = r1_penalty(D, gray_l, real_ab, 4.0)
    assert r1.item() == pytest.approx(4.0 / 2 * norm ** 2, rel=1e-5)
    gp.backward()  # the penalty trains D: d/dw of 10 (sqrt(hw (|w|^2 + 1)) - 1)^2
    expected = 10 * 2 * (norm - 1) * (h * w) / norm * torch.tensor([0.3, -0.4])
    assert D.w.grad.flatten() == pytest.approx(expected.tolist(), rel=1e-4)


@pytest.mark.parametrize("mode, r1", [("wgangp", 0.0), ("vanilla", 3.0)])
def test_ds_loss_weighs_its_penalties_against_the_critic_term_as_the_papers_do(mode, r1):
    """Gulrajani's loss D(fake) - D(real) + lambda GP and Mescheder's adversarial + gamma / 2 R1: ours is that loss
    halved as a whole (pix2pix halves D's real + fake), so the ratio of penalty to critic term is the paper's."""
    from gan_colorizer.losses import _adversarial, discriminator_loss, gradient_penalty, r1_penalty
    from gan_colorizer.train.steps import penalties
    D, h, w = LinearCritic([0.3, -0.4]), 4, 5
    real, fake = (torch.zeros(2, 1, h, w), torch.rand(2, 2, h, w)), (torch.zeros(2, 1, h, w), torch.rand(2, 2, h, w))
    o = dataclasses.replace(defaults("gan").optim, gan_mode=mode, gp_weight=10.0, r1_weight=r1)
    torch.manual_seed(3)
    ours = discriminator_loss(D(*real), D(*fake), mode)[0] + penalties(D, real, fake, o, {})
    torch.manual_seed(3)  # the same random points between real and fake
    adversarial = _adversarial(D(*real), True, mode, False) + _adversarial(D(*fake), False, mode, False)
    paper = adversarial + (gradient_penalty(D, real, fake, 10.0)[0] if mode == "wgangp" else
                           r1_penalty(D, *real, r1)[0])
    assert ours.item() == pytest.approx(0.5 * paper.item(), rel=1e-6)


def test_the_gradient_penalty_of_a_patchgan_matches_finite_differences():
    """On a real (tiny) PatchGAN in float64: the gradient norm inside the penalty against central differences."""
    from gan_colorizer.losses import gradient_penalty
    torch.manual_seed(0)
    D = PatchDiscriminator(3, 4, 1, norm="none").double()
    real_l, real_ab, fake_l, fake_ab = (torch.rand(1, c, 8, 8, dtype=torch.float64) for c in (1, 2, 1, 2))
    alpha = torch.full((1, 1, 1, 1), 0.3, dtype=torch.float64)
    gp, _ = gradient_penalty(D, (real_l, real_ab), (fake_l, fake_ab), 1.0, alpha=alpha)
    x = torch.cat([alpha * real_l + (1 - alpha) * fake_l, alpha * real_ab + (1 - alpha) * fake_ab], dim=1)
    grad, eps = torch.zeros_like(x), 1e-6
    for i in range(x.numel()):
        step = torch.zeros_like(x).flatten()
        step[i] = eps
        up, down = x + step.view_as(x), x - step.view_as(x)
        grad.view(-1)[i] = (D(up[:, :1], up[:, 1:]).sum() - D(down[:, :1], down[:, 1:]).sum()) / (2 * eps)
    assert gp.item() == pytest.approx((grad.norm().item() - 1) ** 2, rel=1e-6)


@pytest.mark.parametrize("norm", ["batch", "instance", "spectral", "none"])
def test_every_discriminator_norm_builds_judges_and_reloads_its_weights(norm):
    from gan_colorizer.models.patchgan import build_discriminator
    cfg = dataclasses.replace(defaults("gan").model, d_filters=8, d_norm=norm)
    torch.manual_seed(0)
    D = build_discriminator(cfg)
    gray_l, ab = torch.rand(2, 1, 64, 64), torch.rand(2, 2, 64, 64)
    D(gray_l, ab)  # a training-mode forward: batch norm's statistics, spectral norm's power iteration move
    again = build_discriminator(cfg)
    again.load_state_dict(D.state_dict(), strict=True)
    D.eval(), again.eval()
    assert torch.equal(D(gray_l, ab), again(gray_l, ab)) and D(gray_l, ab).shape == (2, 1, 6, 6)
    names = [type(m).__name__ for m in D.model]
    assert names[3] == {"batch": "BatchNorm2d", "instance": "InstanceNorm2d"}.get(norm, "Identity")
    assert any("parametrizations" in k for k in D.state_dict()) == (norm == "spectral")


@pytest.mark.slow  # three short stage-2 runs from the command line, in-process
@pytest.mark.parametrize("flags", [["--gan-mode", "wgangp"], ["--r1-weight", "1", "--d-norm", "spectral"],
                                   ["--d-norm", "instance", "--gan-mode", "hinge"],
                                   ["--feature-matching-weight", "10", "--d-scales", "2"],
                                   ["--colorfulness-weight", "0.5", "--d-norm", "none"]])
def test_a_stage2_run_trains_with_each_discriminator_option_and_logs_its_penalty(photo_folder, tmp_path, flags,
                                                                                 capsys):
    args = ["--data", str(photo_folder), *FAST, *GAN, "--max-steps", "2", *flags, *run_dirs_args(tmp_path, "o")]
    assert main("gan", args) == 0
    said = capsys.readouterr().out
    assert ("advise a critic without batch norm" in said) == (flags == ["--gan-mode", "wgangp"])
    penalty = {"--gan-mode wgangp": "loss/d_gp", "--r1-weight 1": "loss/d_r1",
               "--feature-matching-weight 10": "loss/g_fm",
               "--colorfulness-weight 0.5": "loss/g_colorfulness"}.get(" ".join(flags[:2]))
    if penalty:
        assert [s for s, _ in scalar_values(tmp_path / "runs" / "o", penalty)] == [1, 2]
    assert main("gan", ["--resume", str(tmp_path / "checkpoints" / "o" / "last.pt"), "--max-steps", "3"]) == 0
    assert ckpt_io.load(tmp_path / "checkpoints" / "o" / "last.pt")["step"] == 3


def test_the_multi_scale_discriminator_judges_each_scale_of_the_average_pooled_input():
    import torch.nn.functional as F

    from gan_colorizer.models.patchgan import MultiScaleDiscriminator
    torch.manual_seed(0)
    D = MultiScaleDiscriminator(3, in_channels=3, filters=4, n_layers=2).eval()
    gray_l, ab = torch.rand(2, 1, 64, 64), torch.rand(2, 2, 64, 64)
    maps = D(gray_l, ab)
    assert [tuple(m.shape[-2:]) for m in maps] == [(14, 14), (6, 6), (2, 2)]
    g, a = gray_l, ab
    for k, (one, out) in enumerate(zip(D.scales, maps)):  # our own pooling: 3x3, stride 2, edges not counted
        assert torch.allclose(out, one(g, a), atol=1e-6), k
        g, a = (F.avg_pool2d(x, 3, 2, 1, count_include_pad=False) for x in (g, a))
    features = D.features(gray_l, ab)
    assert [len(f) for f in features] == [4, 4, 4]  # 3 blocks and the logits, per scale
    assert all(torch.equal(f[-1], m) for f, m in zip(features, maps))


def test_feature_matching_is_pix2pixhds_weighted_l1_over_blocks_and_scales():
    from gan_colorizer.losses import feature_matching
    torch.manual_seed(0)
    real = [[torch.rand(2, 3, 4, 4) for _ in range(3)] for _ in range(2)]  # 2 scales, 2 blocks + logits each
    fake = [[torch.rand(2, 3, 4, 4, requires_grad=True) for _ in range(3)] for _ in range(2)]
    loss, parts = feature_matching(real, fake, n_layers=1, weight=10.0)
    expected = 10.0 * sum(4 / 2 / 2 * (f - r).abs().mean() for rs, fs in zip(real, fake) for r, f in zip(rs[:2], fs[:2]))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6) and "g_fm" in parts
    loss.backward()
    assert fake[0][2].grad is None and fake[0][0].grad is not None  # the logits are not matched


def test_colorfulness_loss_is_ddcolors_on_the_rebuilt_rgb_and_raises_colorfulness():
    """Against our own numpy of DDColor's ColorfulnessLoss on scikit-image's Lab -> sRGB, in gamut."""
    import numpy as np
    from skimage.color import lab2rgb

    from gan_colorizer.losses import colorfulness_term
    g = torch.Generator().manual_seed(3)
    gray_l = torch.rand(2, 1, 16, 16, generator=g) * 0.6 - 0.1  # L 45..75
    fake_ab = (torch.rand(2, 2, 16, 16, generator=g) - 0.5) * 0.3  # ab within +-16.5: inside sRGB there
    loss, parts = colorfulness_term(gray_l, fake_ab, 0.5)
    lab = np.concatenate([(gray_l.numpy() + 1) * 50, fake_ab.numpy() * 110], axis=1).transpose(0, 2, 3, 1)
    cf = []
    for rgb in lab2rgb(lab.astype(np.float64), channel_axis=-1):
        r, gr, b = rgb[..., 0].ravel(), rgb[..., 1].ravel(), rgb[..., 2].ravel()
        rg, yb = np.abs(r - gr), np.abs(0.5 * (r + gr) - b)
        cf.append(np.hypot(rg.std(ddof=1), yb.std(ddof=1)) + 0.3 * np.hypot(rg.mean(), yb.mean()))
    assert loss.item() == pytest.approx(0.5 * np.mean([1 - c for c in cf]), abs=1e-4)
    assert parts["g_colorfulness"].item() == pytest.approx(loss.item() / 0.5)
    ab = fake_ab.clone().requires_grad_(True)  # one step down the loss makes the colors more colorful
    colorfulness_term(gray_l, ab, 0.5)[0].backward()
    assert colorfulness_term(gray_l, ab.detach() - 0.05 * ab.grad, 0.5)[0].item() < loss.item()
    assert colorfulness_term(gray_l, fake_ab, 0.0) == (0.0, {})


@pytest.mark.parametrize("flags, size", [(["--d-layers", "5"], 64), (["--d-scales", "3"], 64),
                                         (["--d-scales", "2", "--d-norm", "instance"], 32)])
def test_a_discriminator_too_deep_for_the_image_size_is_one_line_before_anything_is_written(flags, size, tmp_path,
                                                                                          capsys, photo_folder):
    from gan_colorizer.config import build_parser, explicit_flags, update
    from gan_colorizer.models.patchgan import build_discriminator
    args = ["--data", str(photo_folder), "--image-size", str(size), "--num-workers", "0", *GAN, *flags,
            *run_dirs_args(tmp_path, "deep")]
    assert main("gan", args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"run out of input at --image-size {size}; they need --image-size " in err[0]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "checkpoints").exists()
    need = int(err[0].split("they need --image-size ")[1].split()[0])
    D = build_discriminator(update(defaults("gan"), explicit_flags(build_parser("gan", ""), GAN + flags)).model)
    D(torch.zeros(2, 1, need, need), torch.zeros(2, 2, need, need))  # a real step's forward at the size named...
    with pytest.raises((RuntimeError, ValueError)):  # ...and 32 px less fails
        D(torch.zeros(2, 1, need - 32, need - 32), torch.zeros(2, 2, need - 32, need - 32))
