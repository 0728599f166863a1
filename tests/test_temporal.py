"""The temporal filter on synthetic clips: per-frame predictions that flicker around a colored truth moving with the
camera. Strength 0 is per-frame; otherwise flicker drops while the colors stay near the truth, nothing crosses a
scene cut, what the flow cannot trust takes the current prediction, and the state is one frame whatever the length."""
import inspect

import numpy as np
import pytest
import skimage.color
from clips import cut, noisy, pan, zoom

from gan_colorizer import flow as F
from gan_colorizer.colorize.temporal import TemporalFilter
from gan_colorizer.colorize.video import DEFAULT_STRENGTH

SIZE = (96, 128)


def lab_frames(frames) -> list[np.ndarray]:
    """Lab float32 3xHxW of uint8 RGB frames."""
    return [np.moveaxis(skimage.color.rgb2lab(f).astype(np.float32), -1, 0) for f in frames]


def flickering(labs, seed=0, hue_deg=15.0, shift=4.0, noise=2.0) -> list[np.ndarray]:
    """Per-frame predictions: the true ab rotated by a random hue and shifted by a random cast, new on every frame,
    plus pixel noise; ab 2xHxW."""
    rng = np.random.default_rng(seed)
    out = []
    for lab in labs:
        angle = np.deg2rad(rng.normal(0, hue_deg))
        a, b = lab[1], lab[2]
        rotated = np.stack([np.cos(angle) * a - np.sin(angle) * b, np.sin(angle) * a + np.cos(angle) * b])
        cast = rng.normal(0, shift, (2, 1, 1))
        out.append((rotated + cast + rng.normal(0, noise, rotated.shape)).astype(np.float32))
    return out


def run(smoother, labs, preds) -> list[np.ndarray]:
    return [smoother(lab[0], ab) for lab, ab in zip(labs, preds)]


def mean_warp_error(labs, abs_) -> float:
    """Lai et al.'s warp error over a clip, flow and mask from the true L (as evaluate.py scores it)."""
    errors = []
    for prev, cur, prev_ab, cur_ab in zip(labs, labs[1:], abs_, abs_[1:]):
        fwd = F.flow(prev[0], cur[0])
        mask = F.reliable(prev[0], cur[0], fwd, F.flow(cur[0], prev[0]))
        errors.append(F.warp_error(prev_ab, cur_ab, fwd, mask))
    return float(np.mean(errors))


def truth_error(labs, abs_) -> float:
    return float(np.mean([np.abs(ab - lab[1:]).mean() for lab, ab in zip(labs, abs_)]))


def test_strength_zero_returns_every_prediction_unchanged():
    labs = lab_frames(pan("astronaut", 4, SIZE, (1.0, 2.0)))
    preds = flickering(labs)
    smoother = TemporalFilter(0.0)
    for lab, ab in zip(labs, preds):
        out = smoother(lab[0], ab)
        assert out is ab or np.array_equal(out, ab)


@pytest.mark.parametrize("frames", [pan("astronaut", 16, SIZE, (1.0, 2.0)), zoom("coffee", 16, SIZE, 1.02),
                                    noisy(pan("chelsea", 16, SIZE, (-0.5, 1.5)), sigma=8)],
                         ids=["pan", "zoom", "noisy-pan"])
def test_flicker_drops_a_lot_and_the_colors_stay_near_the_truth(frames):
    labs = lab_frames(frames)
    preds = flickering(labs)
    out = run(TemporalFilter(DEFAULT_STRENGTH), labs, preds)
    assert out[0].shape == (2, *SIZE) and out[0].dtype == np.float32
    assert mean_warp_error(labs, out) < 0.25 * mean_warp_error(labs, preds)  # measured about 0.03-0.1x
    assert truth_error(labs, out) <= truth_error(labs, preds)  # averaging zero-mean flicker lands nearer the truth


def test_a_stronger_filter_flickers_less():
    labs = lab_frames(pan("rocket", 10, SIZE, (0.0, 2.0)))
    preds = flickering(labs, seed=3)
    errors = [mean_warp_error(labs, run(TemporalFilter(s), labs, preds)) for s in (0.0, 0.4, 0.8)]
    assert errors[0] > errors[1] > errors[2]


def test_colors_are_not_carried_over_a_scene_cut():
    labs = lab_frames(cut(pan("astronaut", 4, SIZE, (1.0, 2.0)), pan("coffee", 3, SIZE, (1.0, 2.0))))
    before, after = np.float32([[[30.0]], [[-20.0]]]), np.float32([[[-25.0]], [[40.0]]])
    preds = [np.broadcast_to(before if i < 4 else after, (2, *SIZE)).copy() for i in range(len(labs))]
    out = run(TemporalFilter(0.9), labs, preds)
    for i in range(4, len(labs)):
        np.testing.assert_array_equal(out[i], preds[i])  # the new shot: its own prediction, nothing blended in


def test_what_entered_the_frame_or_was_occluded_takes_the_current_prediction():
    frames = pan("chelsea", 2, SIZE, (0.0, 4.0))  # a 4 px band enters on the right
    occluded = frames[1].copy()
    occluded[30:60, 40:70] = (250, 250, 250)  # and something bright covers a square
    labs = lab_frames([frames[0], occluded])
    preds = [np.full((2, *SIZE), 40.0, np.float32), np.full((2, *SIZE), -40.0, np.float32)]
    out = run(TemporalFilter(1.0), labs, preds)  # strength 1: reliable pixels keep the previous colors entirely
    np.testing.assert_array_equal(out[1][:, :, -3:], preds[1][:, :, -3:])
    np.testing.assert_array_equal(out[1][:, 33:57, 43:67], preds[1][:, 33:57, 43:67])
    assert np.mean(np.abs(out[1][:, 70:, 10:-10] - 40.0) < 1.0) > 0.9  # elsewhere the warped previous output holds


def test_mood_controls_are_not_part_of_the_filter():
    """The filter sees the raw prediction; colorize/video.py applies --temperature, --saturation and --hue after it,
    the same on every frame. The filter is a per-pixel weighted mean, so an affine mood control commutes with it."""
    assert list(inspect.signature(TemporalFilter.__call__).parameters) == ["self", "small_l", "small_ab"]
    labs = lab_frames(pan("astronaut", 6, SIZE, (1.0, 2.0)))
    preds = flickering(labs)
    saturate = lambda ab: 1.3 * ab + np.float32([[[0.0]], [[8.0]]])  # noqa: E731 (saturation 1.3, temperature 8)
    after = [saturate(ab) for ab in run(TemporalFilter(0.8), labs, preds)]
    before = run(TemporalFilter(0.8), labs, [saturate(ab) for ab in preds])
    np.testing.assert_allclose(np.stack(after), np.stack(before), atol=1e-3)


def state_bytes(smoother) -> int:
    return sum(v.nbytes for v in vars(smoother).values() if isinstance(v, np.ndarray))


def test_the_state_is_one_frame_whatever_the_length():
    labs = lab_frames(pan("coffee", 3, SIZE, (1.0, 1.0)))
    preds = flickering(labs)
    smoother = TemporalFilter(0.8)
    smoother(labs[0][0], preds[0])
    one = state_bytes(smoother)
    for i in range(60):
        smoother(labs[i % 3][0], preds[i % 3])
    assert state_bytes(smoother) == one <= 3 * SIZE[0] * SIZE[1] * 4  # L (uint8) + ab (2 x float32) of one frame


def test_reset_and_a_new_frame_size_start_afresh():
    labs = lab_frames(pan("astronaut", 2, SIZE, (0.0, 1.0)))
    preds = [np.full((2, *SIZE), 20.0, np.float32), np.full((2, *SIZE), -20.0, np.float32)]
    smoother = TemporalFilter(0.9)
    smoother(labs[0][0], preds[0])
    smoother.reset()
    np.testing.assert_array_equal(smoother(labs[1][0], preds[1]), preds[1])
    small = lab_frames(pan("astronaut", 1, (64, 96)))[0]
    other = np.full((2, 64, 96), 5.0, np.float32)
    np.testing.assert_array_equal(smoother(small[0], other), other)


@pytest.mark.parametrize("strength", [-0.1, 1.5])
def test_a_strength_outside_zero_to_one_is_refused(strength):
    with pytest.raises(ValueError, match="outside"):
        TemporalFilter(strength)

