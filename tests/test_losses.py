import pytest
import torch

from gan_colorizer.losses import discriminator_loss, generator_loss, l1_loss


def test_l1_is_mean_absolute_error():
    fake, real = torch.zeros(1, 2, 2, 2), torch.full((1, 2, 2, 2), 0.5)
    total, parts = l1_loss(fake, real)
    assert total.item() == pytest.approx(0.5) and parts["g_l1"].item() == pytest.approx(0.5)


def test_vanilla_gan_losses_against_hand_values():
    logits = torch.zeros(1, 1, 30, 30)  # sigmoid 0.5 everywhere: BCE = log 2
    total, parts = discriminator_loss(logits, logits, "vanilla")
    assert parts["d_real"].item() == pytest.approx(0.6931, abs=1e-4)
    assert total.item() == pytest.approx(0.6931, abs=1e-4)  # (real + fake) / 2
    fake_ab, real_ab = torch.zeros(1, 2, 4, 4), torch.full((1, 2, 4, 4), 0.1)
    total, parts = generator_loss(logits, l1_loss(fake_ab, real_ab), lambda_recon=100.0, mode="vanilla")
    assert total.item() == pytest.approx(0.6931 + 10.0, abs=1e-3)
    assert set(parts) == {"g_gan", "g_l1"}


@pytest.mark.parametrize("mode", ["lsgan", "hinge"])
def test_other_gan_modes_reward_the_right_side(mode):
    confident_real, confident_fake = torch.full((1, 1, 4, 4), 2.0), torch.full((1, 1, 4, 4), -2.0)
    good, _ = discriminator_loss(confident_real, confident_fake, mode)
    bad, _ = discriminator_loss(confident_fake, confident_real, mode)
    assert good < bad
    ab = torch.zeros(1, 2, 4, 4)
    fooled, _ = generator_loss(confident_real, l1_loss(ab, ab), mode=mode)
    caught, _ = generator_loss(confident_fake, l1_loss(ab, ab), mode=mode)
    assert fooled < caught


def test_losses_are_float32_under_bf16_inputs():
    logits = torch.zeros(1, 1, 4, 4, dtype=torch.bfloat16)
    total, _ = discriminator_loss(logits, logits)
    assert total.dtype == torch.float32


class Features(torch.nn.Module):
    """A stand-in for the frozen VGG16 of the perceptual loss: L1 between fixed random convolution features."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1).requires_grad_(False)

    def forward(self, fake_rgb, real_rgb):
        return (self.conv(fake_rgb) - self.conv(real_rgb)).abs().mean()


def generator_gradients(stage: str, perceptual_weight: float, nets, batch) -> tuple[list, dict]:
    """The generator's gradients after one step of the stage's generator loss (no update: lr 0), and its parts."""
    from gan_colorizer.config import defaults, update
    from gan_colorizer.runtime import Runtime
    from gan_colorizer.train import steps
    cfg = update(defaults(stage), {"perceptual_weight": perceptual_weight})
    rt = Runtime("cpu", "off", channels_last=False)
    opts = {"g": torch.optim.SGD(nets.generator.parameters(), lr=0.0)}
    parts = {}
    if stage == "pretrain":
        parts, _ = steps.pretrain_step(rt, nets, opts, [batch], cfg)
    else:
        steps._generator_phase(rt, nets, opts, [batch], [steps.generate(nets, *batch)], cfg, parts)
    return [p.grad.clone() for p in nets.generator.parameters()], parts


@pytest.mark.parametrize("stage", ["pretrain", "gan"])
def test_the_perceptual_term_is_its_weight_times_the_perceptual_loss_in_both_stages(stage):
    """--perceptual-weight multiplies the perceptual loss and nothing else: not --lambda-l1 in stage 2 (it did, 100x)."""
    from gan_colorizer.config import ModelConfig
    from gan_colorizer.losses import perceptual_loss
    from gan_colorizer.models.patchgan import build_discriminator
    from gan_colorizer.train.steps import Nets
    torch.manual_seed(0)
    generator = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.Tanh())
    discriminator = build_discriminator(ModelConfig(d_filters=2, d_layers=1)) if stage == "gan" else None
    nets = Nets(generator, discriminator, perceptual=Features())
    gray_l, real_ab = torch.rand(2, 1, 16, 16) * 2 - 1, torch.rand(2, 2, 16, 16) * 0.6 - 0.3
    weight = 0.25
    with_term, parts = generator_gradients(stage, weight, nets, (gray_l, real_ab))
    without, _ = generator_gradients(stage, 0.0, nets, (gray_l, real_ab))
    perceptual = perceptual_loss(nets.perceptual, gray_l, generator(gray_l), real_ab)
    alone = torch.autograd.grad(perceptual, list(generator.parameters()))
    assert float(parts["g_perceptual"]) == pytest.approx(perceptual.item(), rel=1e-6)
    for total, rest, own in zip(with_term, without, alone):
        torch.testing.assert_close(total - rest, weight * own, rtol=1e-3, atol=1e-5)
