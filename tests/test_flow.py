"""gan_colorizer.flow on synthetic clips with known motion: DIS recovers a pan, warping reproduces a shifted frame,
the reliability mask marks what entered the frame and what changed lightness, cuts are told from pans, zooms and
noise, and the warp error is zero for a perfectly warped pair and grows with flicker."""
import numpy as np
import pytest
import skimage.color
from clips import PHOTOS, cut, noisy, pan, zoom

from gan_colorizer import flow as F


def gray_l(rgb: np.ndarray) -> np.ndarray:
    """L (0-100, float32) of a uint8 RGB frame."""
    return skimage.color.rgb2lab(rgb)[..., 0].astype(np.float32)


def true_ab(rgb: np.ndarray) -> np.ndarray:
    return skimage.color.rgb2lab(rgb)[..., 1:].astype(np.float32)


INNER = np.s_[16:-16, 16:-16]  # away from the borders, where the new band enters


@pytest.mark.parametrize("preset", sorted(F.PRESETS))
@pytest.mark.parametrize("step", [(1.0, 2.0), (-2.0, 0.5)])
def test_dis_flow_recovers_a_known_pan_within_a_quarter_pixel(step, preset):
    frames = pan("astronaut", 3, (96, 128), step)
    field = F.flow(gray_l(frames[1]), gray_l(frames[2]), preset)
    dy, dx = step
    error = np.hypot(field[..., 0] - dx, field[..., 1] - dy)[INNER]
    assert field.shape == (96, 128, 2) and field.dtype == np.float32
    assert np.median(error) < 0.25, np.median(error)  # stated accuracy: the median end-point error
    assert np.mean(error) < 0.5


@pytest.mark.parametrize("size", [(12, 64), (20, 320), (40, 40), (32, 48)])
def test_thin_and_small_frames_get_a_flow(size):
    """OpenCV's own pyramid choice segfaults the process on thin frames (12x64, 20x320 in OpenCV 5.0): flow() picks
    the levels from the short side there. A pan still comes out roughly right."""
    frames = pan("astronaut", 3, size, (0.0, 1.0))
    field = F.flow(gray_l(frames[1]), gray_l(frames[2]))
    assert field.shape == (*size, 2) and np.isfinite(field).all()
    assert abs(np.median(field[..., 0]) - 1.0) < 0.5


def test_frames_under_twelve_pixels_a_side_are_refused_in_one_line():
    with pytest.raises(ValueError, match="too small for optical flow"):
        F.flow(np.zeros((8, 64), np.uint8), np.zeros((8, 64), np.uint8))


def test_flow_takes_uint8_or_float_l_alike():
    frames = pan("coffee", 2, (96, 128), (1.0, 1.0))
    as_float = F.flow(gray_l(frames[0]), gray_l(frames[1]))
    as_uint8 = F.flow(F.as_uint8_l(gray_l(frames[0])), F.as_uint8_l(gray_l(frames[1])))
    np.testing.assert_array_equal(as_float, as_uint8)


def test_warp_of_a_shifted_image_reproduces_it_away_from_borders():
    rng = np.random.default_rng(0)
    prev = rng.uniform(0, 100, (48, 64, 2)).astype(np.float32)
    cur = np.roll(prev, shift=(2, -3), axis=(0, 1))  # content moved down 2 and left 3: cur(y, x) = prev(y-2, x+3)
    field = np.zeros((48, 64, 2), np.float32)
    field[..., 0], field[..., 1] = 3.0, -2.0
    warped = F.warp(prev, field)
    np.testing.assert_allclose(warped[4:-4, 4:-4], cur[4:-4, 4:-4], atol=1e-4)
    assert F.warp(prev[..., 0], field).shape == (48, 64)  # one channel: HxW in, HxW out


def test_the_pixel_grid_is_made_once_per_size_read_only_and_equal_to_a_fresh_meshgrid():
    xs, ys = F.pixel_grid(5, 7)
    fresh = np.meshgrid(np.arange(7, dtype=np.float32), np.arange(5, dtype=np.float32))
    for cached, expected in zip((xs, ys), fresh):
        assert cached.dtype == np.float32 and np.array_equal(cached, expected)
        with pytest.raises(ValueError):  # shared by every warp of this size: no caller may change it
            cached[0, 0] = 1.0
    assert F.pixel_grid(5, 7)[0] is xs and F.pixel_grid(7, 5)[0].shape == (7, 5)
    field = np.zeros((5, 7, 2), np.float32)
    field[..., 0] = 1.0
    F.warp(np.zeros((5, 7), np.float32), field)
    np.testing.assert_array_equal(F.pixel_grid(5, 7)[0], fresh[0])  # a warp leaves it as it was


def test_warp_with_the_estimated_flow_reproduces_a_pan():
    frames = pan("chelsea", 2, (96, 128), (1.5, -2.0))
    prev_l, cur_l = gray_l(frames[0]), gray_l(frames[1])
    warped = F.warp(true_ab(frames[0]), F.flow(prev_l, cur_l))
    error = np.median(np.abs(warped - true_ab(frames[1]))[INNER])  # ab units; both frames are bilinear resamplings
    assert error < 1.0 and error < np.median(np.abs(true_ab(frames[0]) - true_ab(frames[1]))[INNER]) / 3


def test_reliable_marks_the_band_that_entered_the_frame():
    frames = pan("astronaut", 2, (96, 128), (0.0, 4.0))  # the camera moves right: a 4 px band enters on the right
    prev_l, cur_l = gray_l(frames[0]), gray_l(frames[1])
    mask = F.reliable(prev_l, cur_l, F.flow(prev_l, cur_l), F.flow(cur_l, prev_l))
    assert mask.shape == (96, 128) and mask.dtype == bool
    assert not mask[:, -3:].any()  # came from outside prev
    assert mask[INNER].mean() > 0.9


def test_reliable_marks_an_occluder_and_a_lightness_change():
    frames = pan("rocket", 2, (96, 128), (0.0, 2.0))
    prev, cur = frames[0].copy(), frames[1].copy()
    cur[20:50, 30:60] = 255  # something appears (a flash, an occluder) in cur only
    prev_l, cur_l = gray_l(prev), gray_l(cur)
    mask = F.reliable(prev_l, cur_l, F.flow(prev_l, cur_l), F.flow(cur_l, prev_l))
    assert not mask[24:46, 34:56].any()
    assert mask[64:, :-4].mean() > 0.9  # rows away from it stay trusted (DIS smears a little around its edges)


def test_forward_backward_check_catches_an_inconsistent_flow():
    frames = pan("coffee", 2, (96, 128), (0.0, 2.0))
    prev_l, cur_l = gray_l(frames[0]), gray_l(frames[1])
    fwd, bwd = F.flow(prev_l, cur_l), F.flow(cur_l, prev_l)
    assert F.reliable(prev_l, cur_l, fwd, bwd)[INNER].mean() > 0.9
    assert F.reliable(prev_l, cur_l, fwd, fwd, max_l_change=1e9)[INNER].mean() < 0.1  # bwd must undo fwd


@pytest.mark.parametrize("first,second", [(a, b) for a in PHOTOS for b in PHOTOS if a != b])
def test_is_cut_true_on_a_cut_between_any_two_photos(first, second):
    frames = cut(pan(first, 2, (96, 128)), pan(second, 2, (96, 128)))
    assert F.is_cut(gray_l(frames[1]), gray_l(frames[2]))


@pytest.mark.parametrize("name", PHOTOS)
def test_is_cut_false_on_pans_zooms_and_sensor_noise(name):
    shots = [pan(name, 3, (96, 128), (1.0, 3.0)), pan(name, 3, (96, 128), (-2.0, 0.0)),
             zoom(name, 3, (96, 128), 1.03), zoom(name, 3, (96, 128), 0.97),
             noisy(pan(name, 3, (96, 128), (1.0, 1.0)), sigma=15, seed=1)]
    for frames in shots:
        for prev, cur in zip(frames, frames[1:]):
            assert not F.is_cut(gray_l(prev), gray_l(cur))


def test_warp_error_is_zero_for_a_perfect_warp_and_grows_with_flicker():
    frames = pan("astronaut", 2, (96, 128), (1.0, 2.0))
    prev_l, cur_l = gray_l(frames[0]), gray_l(frames[1])
    fwd = F.flow(prev_l, cur_l)
    mask = F.reliable(prev_l, cur_l, fwd, F.flow(cur_l, prev_l))
    prev_ab = true_ab(frames[0])
    assert F.warp_error(prev_ab, F.warp(prev_ab, fwd), fwd, mask) == pytest.approx(0.0, abs=1e-6)
    steady = F.warp_error(prev_ab, true_ab(frames[1]), fwd, mask)
    shifted = true_ab(frames[1]) + np.array([6.0, -6.0], np.float32)  # a hue jump between frames: 72 ab^2
    flicker = F.warp_error(prev_ab, shifted, fwd, mask)
    assert flicker > steady + 60
    channels_first = F.warp_error(np.moveaxis(prev_ab, -1, 0), np.moveaxis(shifted, -1, 0), fwd, mask)
    assert channels_first == pytest.approx(flicker, rel=1e-6)


def test_warp_error_averages_only_over_the_mask():
    prev_ab = np.zeros((8, 8, 2), np.float32)
    cur_ab = np.zeros((8, 8, 2), np.float32)
    cur_ab[:4] = [3.0, 4.0]  # 25 ab^2 on the top half
    still = np.zeros((8, 8, 2), np.float32)
    mask = np.zeros((8, 8), bool)
    mask[:4] = True
    assert F.warp_error(prev_ab, cur_ab, still, mask) == pytest.approx(25.0)
    assert F.warp_error(prev_ab, cur_ab, still, ~mask) == pytest.approx(0.0)
    assert F.warp_error(prev_ab, cur_ab, still, np.ones((8, 8), bool)) == pytest.approx(12.5)
    assert F.warp_error(prev_ab, cur_ab, still, np.zeros((8, 8), bool)) == 0.0
