"""The temporal filter measured against per-frame colorization on clips with their truth (issue 17's targets): warp
error, CIEDE2000 and time per frame, the network run once per frame for every strength. bench/video.py calls
`measure`; evaluate.py scores whole videos its own way (evaluate/clips.py)."""
from __future__ import annotations

import time

import numpy as np

from gan_colorizer import flow as F
from gan_colorizer.colorize.temporal import DEFAULT_STRENGTH, TemporalFilter


def _clip_flows(truth_l: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """Per consecutive pair of true frames: (flow, reliable mask) as the warp error is scored, None across a cut."""
    pairs = []
    for prev_l, cur_l in zip(truth_l, truth_l[1:]):
        fwd = F.flow(prev_l, cur_l)
        cut = F.is_cut(prev_l, cur_l, fwd)
        pairs.append(None if cut else (fwd, F.reliable(prev_l, cur_l, fwd, F.flow(cur_l, prev_l))))
    return pairs


def _outputs(colorizer, smoother: TemporalFilter, batches: list, timing: dict) -> list[np.ndarray]:
    """The colorized frames (Lab 3xHxW of the 8-bit output, as scored) of predicted batches through one filter, as
    colorized_frames makes them."""
    import torch

    from gan_colorizer.colorize.video import _filtered, finish
    from gan_colorizer.metrics import image_lab
    out = []
    for gray_l, small_l, small_ab in batches:
        clock = time.perf_counter()
        small_ab = _filtered(smoother, small_l, small_ab)
        timing["filter_s"] += time.perf_counter() - clock
        rgb = np.stack(list(finish(colorizer, gray_l, small_ab, {})))
        out += list(image_lab(torch.from_numpy(rgb).permute(0, 3, 1, 2)).numpy())
    return out


def measure(colorizer, clips: dict, strengths=(0.0, DEFAULT_STRENGTH), batch_size: int = 4) -> dict:
    """The issue's temporal targets on clips {name: [uint8 RGB frames]} (bench/video.py's entry point): the network
    runs once per frame and each strength filters the same predictions. Per strength: the warp error of the output
    (flow and mask from the true L, pairs across a cut left out) and its CIEDE2000 against the truth, per clip and
    their mean over clips, and the filter's time per frame; and the network's time per frame (at render size)."""
    import torch

    from gan_colorizer.colorize.video import predict
    from gan_colorizer.metrics import delta_e2000, image_lab
    found = {s: {"warp_error": {}, "delta_e2000": {}, "filter_s": 0.0} for s in strengths}
    network_s, count = 0.0, 0
    for name, frames in clips.items():
        truth = image_lab(torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2))
        pairs = _clip_flows([t[0].numpy() for t in truth])
        batches = []
        for first in range(0, len(frames), batch_size):
            clock = time.perf_counter()
            batches.append(predict(colorizer, frames[first:first + batch_size]))
            network_s += time.perf_counter() - clock
        count += len(frames)
        for strength, into in found.items():
            lab = _outputs(colorizer, TemporalFilter(strength), batches, into)
            warps = [F.warp_error(a[1:], b[1:], *pair) for a, b, pair in zip(lab, lab[1:], pairs) if pair is not None]
            into["warp_error"][name] = float(np.mean(warps))
            into["delta_e2000"][name] = float(delta_e2000(torch.from_numpy(np.stack(lab)), truth).mean())
    return {"frames": count, "network_ms_per_frame": 1000 * network_s / count,
            "strengths": {s: {"warp_error": float(np.mean(list(r["warp_error"].values()))),
                              "delta_e2000": float(np.mean(list(r["delta_e2000"].values()))),
                              "filter_ms_per_frame": 1000 * r["filter_s"] / count,
                              "clips": {n: {"warp_error": r["warp_error"][n], "delta_e2000": r["delta_e2000"][n]}
                                        for n in r["warp_error"]}} for s, r in found.items()}}
