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
