import numpy as np
import torch

from gan_colorizer.viz import DELTA_E_MAX, SheetRow, colormap_lut, comparison_sheet, difference_map, heat_colors


def test_difference_map_uses_a_fixed_clipped_scale_and_adds_a_color_bar():
    delta_e = torch.zeros(40, 60)
    delta_e[:, 20:40] = DELTA_E_MAX / 2
    delta_e[:, 40:] = 3 * DELTA_E_MAX  # beyond the scale: clipped to its top
    lut = colormap_lut()
    colors = heat_colors(delta_e)
    assert colors.shape == (40, 60, 3) and colors.dtype == np.uint8
    assert (colors[:, 0] == lut[0]).all() and (colors[:, 59] == lut[255]).all() and (colors[:, 30] == lut[128]).all()
    with_bar = difference_map(delta_e)
    assert with_bar.shape[0] == 40 and with_bar.shape[1] > 60 and with_bar.dtype == np.uint8
    assert (with_bar[:, :60] == colors).all()
    assert len(np.unique(with_bar[:, 60:].reshape(-1, 3), axis=0)) > 20  # the ramp and its labels are drawn


def test_comparison_sheet_lays_out_every_tile_under_its_column():
    red = np.zeros((30, 20, 3), np.uint8)
    red[..., 0] = 255
    blue = np.zeros((30, 25, 3), np.uint8)
    blue[..., 2] = 255
    rows = [SheetRow("a.jpg", {"model": red, "truth": blue}, {"model": "PSNR 20"}), SheetRow("b.jpg", {"truth": blue})]
    sheet = comparison_sheet(rows, ["model", "truth"])
    assert sheet.dtype == np.uint8 and sheet.shape[1] >= 20 + 25
    assert (sheet.reshape(-1, 3) == [255, 0, 0]).all(axis=1).sum() == 30 * 20
    assert (sheet.reshape(-1, 3) == [0, 0, 255]).all(axis=1).sum() == 2 * 30 * 25
