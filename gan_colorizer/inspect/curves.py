"""Loss and validation curves of training runs, read from their TensorBoard event files, as PNG and SVG.

`python -m gan_colorizer.inspect.curves --run runs/NAME [--run runs/OTHER] --out DIR`
"""
from __future__ import annotations

import argparse
import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gan_colorizer.errors import UserError
from gan_colorizer.options import REQUIRED, opt, parse_options, tool_parser

GROUP_TITLES = {"loss": "training losses (running means over --log-every steps)",
                "val": "validation", "perf": "throughput", "train": "training health", "lr": "learning rate"}


def load_events(run_dir):
    """tensorboard's own event reader over every event file of a run folder, loaded (scalars kept whole)."""
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator
    run = Path(run_dir)
    if not run.is_dir():
        raise UserError(f"--run {run}: {'a file, not a folder' if run.exists() else 'no such folder'}")
    if not list(run.glob("events.out.tfevents.*")):
        raise UserError(f"--run {run}: no TensorBoard event file (events.out.tfevents.*) in it")
    acc = EventAccumulator(str(run), size_guidance={SCALARS: 0})
    logging.getLogger("tensorboard").setLevel(logging.ERROR)  # a resumed run's purge is expected, not a warning
    acc.Reload()
    return acc


def scalars_of(acc) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{tag: (steps, values)} of a loaded reader; where a step was logged twice (a run killed after logging past
    its checkpoint, then resumed), the later value wins."""
    curves = {}
    for tag in acc.Tags()["scalars"]:
        by_step = {e.step: e.value for e in acc.Scalars(tag)}
        steps = np.array(sorted(by_step), dtype=np.int64)
        curves[tag] = (steps, np.array([by_step[s] for s in steps], dtype=np.float64))
    return curves


def read_scalars(run_dir) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{tag: (steps, values)} of every scalar in a run folder, through tensorboard's own event reader; all event
    files of the folder are read (a resumed run has several)."""
    return scalars_of(load_events(run_dir))


def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: an exponential moving average with its start-up bias removed."""
    if weight <= 0 or len(values) == 0:
        return values
    out, last, norm = np.empty_like(values), 0.0, 0.0
    for i, v in enumerate(values):
        last, norm = last * weight + (1 - weight) * v, norm * weight + (1 - weight)
        out[i] = last / norm
    return out


def group_of(tag: str) -> str:
    return tag.split("/", 1)[0] if "/" in tag else tag


def plot_group(runs: dict[str, dict], group: str, weight: float):
    """One figure for a tag group (loss, val, ...): a panel per tag, a line per run (raw faint, smoothed bold)."""
    from matplotlib.ticker import MaxNLocator

    from gan_colorizer.inspect.drawing import figure  # imports torch: here, so --help answers without it
    tags = sorted({t for curves in runs.values() for t in curves if group_of(t) == group})
    cols = min(3, len(tags))
    rows = -(-len(tags) // cols)
    fig = figure(4.2 * cols, 3.0 * rows + 0.4)
    fig.suptitle(GROUP_TITLES.get(group, group), fontsize=11)
    colors = [f"C{i}" for i in range(10)]
    for i, tag in enumerate(tags):
        ax = fig.add_subplot(rows, cols, i + 1)
        for color, (name, curves) in zip(colors * 10, runs.items()):
            if tag not in curves:
                continue
            steps, values = curves[tag]
            if weight > 0 and len(values) > 2:
                ax.plot(steps, values, color=color, alpha=0.25, lw=0.8)
            ax.plot(steps, smooth(values, weight) if len(values) > 2 else values, color=color, lw=1.6, label=name,
                    marker="o" if len(values) <= 20 else None, ms=3)
        ax.set_title(tag, fontsize=10)
        ax.set_xlabel("optimizer step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if len(runs) > 1:
            ax.legend(fontsize=8)
    return fig


def export(run_dirs: list[str], out, weight: float = 0.6, formats=("png", "svg")) -> list[Path]:
    """Write GROUP.png / GROUP.svg for every tag group found and scalars.csv (run, tag, step, value)."""
    runs = {_run_label(d, run_dirs): read_scalars(d) for d in run_dirs}
    groups = sorted({group_of(t) for curves in runs.values() for t in curves}, key=_group_order)
    if not groups:
        raise UserError(f"--run {', '.join(run_dirs)}: no scalars logged yet")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    written = []
    for group in groups:
        fig = plot_group(runs, group, weight)
        for fmt in formats:
            fig.savefig(out / f"{group}.{fmt}", dpi=110)
            written.append(out / f"{group}.{fmt}")
    with open(out / "scalars.csv", "w", newline="") as f:
        rows = csv.writer(f)
        rows.writerow(["run", "tag", "step", "value"])
        for name, curves in runs.items():
            for tag, (steps, values) in sorted(curves.items()):
                rows.writerows([name, tag, int(s), repr(float(v))] for s, v in zip(steps, values))
    return written + [out / "scalars.csv"]


def _run_label(run_dir: str, all_dirs: list[str]) -> str:
    """The run folder's name; with the parent folder too when two runs share a name."""
    names = [Path(d).resolve().name for d in all_dirs]
    p = Path(run_dir).resolve()
    return p.name if names.count(p.name) == 1 else f"{p.parent.name}/{p.name}"


def _group_order(group: str) -> tuple[int, str]:
    order = list(GROUP_TITLES)
    return (order.index(group) if group in order else len(order), group)


DESCRIPTION = """Export the loss and validation curves of one or more training runs (their TensorBoard event files) as
PNG and SVG: one figure per tag group (loss, val, perf, train, lr), a panel per tag, a line per run; and
scalars.csv with every logged value.

examples:
  python -m gan_colorizer.inspect.curves --run runs/coco-l1 --out runs/coco-l1/curves
  python -m gan_colorizer.inspect.curves --run runs/demo-pretrain --run runs/demo-gan --out /tmp/curves --smooth 0"""


@dataclass
class PlotOptions:
    """The flags of the curves export."""
    runs: list[str] = opt(REQUIRED, "a run folder (runs/NAME) holding TensorBoard event files; repeat to overlay runs",
                          flag="--run", action="append", metavar="DIR")
    out: str = opt(REQUIRED, "where GROUP.png, GROUP.svg and scalars.csv go", metavar="DIR")
    smooth: float = opt(0.6, "TensorBoard-style smoothing weight in [0, 1); 0 = raw only", metavar="W")


def build_parser() -> argparse.ArgumentParser:
    return tool_parser(PlotOptions, DESCRIPTION)


def main(argv=None) -> int:
    from gan_colorizer.console import run_command, setup_logging
    args = parse_options(build_parser(), PlotOptions, argv)
    setup_logging()

    def action():
        if not 0 <= args.smooth < 1:
            raise UserError(f"--smooth {args.smooth}: must be in [0, 1)")
        written = export(args.runs, args.out, args.smooth)
        print(f"wrote {len(written)} files to {args.out}: {', '.join(p.name for p in written)}")
    return run_command(action)


if __name__ == "__main__":
    raise SystemExit(main())
