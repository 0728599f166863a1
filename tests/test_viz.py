import numpy as np
import torch

from gan_colorizer.inspect.drawing import (
    DELTA_E_MAX,
    SheetRow,
    colormap_lut,
    comparison_sheet,
    difference_map,
    heat_colors,
)


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


def test_difference_maps_show_ciede2000_and_the_absolute_a_and_b_errors_on_fixed_scales():
    from gan_colorizer.inspect.drawing import AB_ERROR_MAX, difference_maps, error_maps
    from gan_colorizer.metrics import delta_e2000_map
    true_lab = torch.zeros(1, 3, 20, 30)
    true_lab[:, 0] = 50.0
    pred_lab = true_lab.clone()
    pred_lab[:, 1, :, :10] += 25.0  # a off by half the scale on the left third
    pred_lab[:, 2, :, 20:] -= 80.0  # b off by more than the scale on the right third
    maps = error_maps(pred_lab, true_lab)
    assert set(maps) == {"dE00", "|da|", "|db|"}
    assert torch.equal(maps["|da|"][0, :, :10], torch.full((20, 10), 25.0)) and maps["|da|"][0, :, 10:].abs().max() == 0
    assert torch.equal(maps["|db|"][0, :, 20:], torch.full((20, 10), 80.0))
    assert torch.allclose(maps["dE00"], delta_e2000_map(pred_lab, true_lab))
    panel = difference_maps(pred_lab[0], true_lab[0], long_side=60)  # 3 maps of 40 x 60, each with its bar
    assert panel.shape[0] == 40 and panel.dtype == np.uint8
    lut = colormap_lut()
    first = difference_map(np.zeros((40, 60)), title="dE00").shape[1] + 6  # map and bar, then a gap
    second = first + difference_map(np.zeros((40, 60)), title="|da|").shape[1] + 6
    da, db = panel[:, first:first + 60], panel[:, second:second + 60]
    assert (da[:, :20] == lut[round(25 / AB_ERROR_MAX * 255)]).all() and (da[:, 20:] == lut[0]).all()
    assert (db[:, 40:] == lut[255]).all() and (db[:, :40] == lut[0]).all()
