"""evaluate.py --hints 0,1,2,5,...: oracle hints sampled from each photo's truth (seeded per photo, so every model
gets the same points), every hint model scored once per hint count, and each metric against the number of hints
(Zhang et al. 2017, figure 6) in summary.json, a plot (hints.png / hints.svg) and the console."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gan_colorizer.errors import UserError
from gan_colorizer.hints import sample
from gan_colorizer.metrics import METRICS, summarize

MAX_COUNT = 10_000
PLOTTED = (("psnr", "PSNR (dB)"), ("delta_e2000", "CIEDE2000"))
SAMPLER = ("Zhang et al. 2017's simulated hints (hints.sample) with a fixed number of points: squares of 1-9 px "
           "around the centre, each the truth's mean ab under it; drawn at the network's render size from the "
           "truth's ab there, by a generator seeded with seed * 1000003 + the photo's index, so a photo's first k "
           "points are the same for every model and every count")


def parse_counts(text: str | None) -> list[int] | None:
    """'0,1,2,5' -> [0, 1, 2, 5] (sorted, each once); None when --hints is not given; a UserError otherwise."""
    if text is None:
        return None
    try:
        counts = sorted({int(part) for part in text.split(",")})
    except ValueError:
        raise UserError(f"--hints {text}: expected whole numbers of hints separated by commas, e.g. 0,1,2,5,10") \
            from None
    if not counts or counts[0] < 0 or counts[-1] > MAX_COUNT:
        raise UserError(f"--hints {text}: counts must be from 0 to {MAX_COUNT}")
    return counts


def label(base: str, count: int) -> str:
    return f"{base} +{count} hint{'' if count == 1 else 's'}"


def expand(candidates: list, counts: list[int] | None) -> list:
    """Each candidate whose network takes hints, once per count (its label saying how many); the others as they
    are (the gray baseline and automatic models do not change with hints: one row each)."""
    if counts is None:
        return candidates
    out = []
    for cand in candidates:
        if getattr(cand.published or cand.generator, "takes_hints", False):  # ours, or SIGGRAPH17's release
            out += [dataclasses.replace(cand, label=label(cand.label, k), hints=k, base=cand.label) for k in counts]
        else:
            out.append(cand)
    if len(out) == len(candidates):
        raise UserError("--hints: none of the --checkpoint models takes hints (train one with --hints: docs/hints.md)")
    return out


def oracle(truth_ab: torch.Tensor, indices, count: int, seed: int, shape: tuple[int, int]) -> torch.Tensor:
    """The hint channels (N, 3, h, w), model units, of `count` oracle hints per photo at the render shape."""
    if tuple(truth_ab.shape[-2:]) != tuple(shape):
        truth_ab = F.interpolate(truth_ab, size=shape, mode="area")
    maps = []
    for i, index in enumerate(indices):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + int(index))
        maps.append(torch.cat(sample(truth_ab[i:i + 1].float().cpu(), [count], generator), dim=1))
    return torch.cat(maps).to(truth_ab.device)


def curve(candidates: list, values: dict, measured: dict, n: int, fids: dict) -> dict:
    """{model: {"hints": counts, metric: [mean per count]}} from the per-image values of every row."""
    out: dict[str, dict] = {}
    for cand in candidates:
        if cand.hints is None:
            continue
        entry = out.setdefault(cand.base, {"hints": []} | {m: [] for m in (*METRICS, "fid")})
        entry["hints"].append(cand.hints)
        for j, m in enumerate(METRICS):
            entry[m].append(summarize(values[cand.label][j, :n])["mean"] if m in measured[cand.label] else None)
        entry["fid"].append(fids.get(cand.label))
    return out


def summary(counts: list[int], seed: int, curves: dict) -> dict:
    return {"counts": counts, "seed": seed, "sampler": SAMPLER, "curves": curves}


def plot(curves: dict, out: Path) -> list[str]:
    """hints.png and hints.svg: PSNR and CIEDE2000 against the number of hints, a line per model."""
    from gan_colorizer.inspect.drawing import figure
    fig = figure(9.0, 3.6)
    for i, (metric, title) in enumerate(PLOTTED, 1):
        ax = fig.add_subplot(1, 2, i)
        for name, entry in curves.items():
            y = [np.nan if v is None else v for v in entry[metric]]
            ax.plot(entry["hints"], y, marker="o", ms=3, lw=1.6, label=name)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlabel("oracle hints per photo")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    paths = []
    for fmt in ("png", "svg"):
        fig.savefig(out / f"hints.{fmt}", dpi=110)
        paths.append(str(out / f"hints.{fmt}"))
    return paths


def print_curves(curves: dict) -> None:
    """A line per model and plotted metric: the number of hints, then the metric at each."""
    for name, entry in curves.items():
        print(f"{name}: hints        " + " ".join(f"{k:>7d}" for k in entry["hints"]), flush=True)
        for metric, _ in PLOTTED:
            cells = " ".join("      -" if v is None else f"{v:7.2f}" for v in entry[metric])
            print(f"{name}: {metric:<12} {cells}", flush=True)
