"""Training runs side by side: the config fields that differ between them, their validation figures (last and
best), steps, images/s and wall time, as one Markdown or CSV table.

    gan-colorizer-runs runs/                   # every run folder below runs/
    gan-colorizer-runs runs/a runs/b --csv
"""
from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gan_colorizer.console import duration, run_command, setup_logging
from gan_colorizer.errors import UserError, reason
from gan_colorizer.inspect.curves import load_events, scalars_of
from gan_colorizer.options import REQUIRED, opt, parse_options, tool_parser

HIGHER_IS_BETTER = {"val/psnr"}  # the other validation figures are errors or gaps: lower is better
NOT_COMPARED = {"run.name"}  # the row's label already


@dataclass
class RunsOptions:
    runs: list[str] = opt(REQUIRED, "run folders (runs/NAME), or folders holding them (runs/)", positional=True,
                          nargs="+", metavar="DIR")
    csv: bool = opt(False, "print CSV (for a spreadsheet) instead of the Markdown table")


def flatten(config: dict, prefix: str = "") -> dict:
    """{'optim.lr': 2e-4, ...}: a run's config.json as dotted fields; lists as text, so they compare as values."""
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else value
    return flat


def run_folders(paths: list[str]) -> list[Path]:
    """Each given folder that is a run (it holds config.json), else the runs inside it, sorted by name."""
    found = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise UserError(f"{path}: {'a file, not a folder' if path.exists() else 'no such folder'}")
        inside = [path] if (path / "config.json").is_file() else sorted(p.parent for p in path.glob("*/config.json"))
        if not inside:
            raise UserError(f"{path}: no training run in it (a run folder holds config.json and event files)")
        found += inside
    return found


def read_run(folder: Path) -> dict:
    """One run: its flattened config and its summary figures from the event files."""
    try:
        config = flatten(json.loads((folder / "config.json").read_text()))
    except (OSError, ValueError) as e:
        raise UserError(f"{folder / 'config.json'}: cannot be read ({reason(e)})") from None
    figures = {"steps": None, "img/s": None, "wall time": None}
    events = load_events(folder) if list(folder.glob("events.out.tfevents.*")) else None
    if events is not None:
        curves = scalars_of(events)
        walls = [e.wall_time for tag in events.Tags()["scalars"] for e in events.Scalars(tag)]
        figures = {"steps": max((int(s[-1]) for s, _ in curves.values() if len(s)), default=None),
                   "img/s": _mean(curves.get("perf/img_per_sec")),
                   "wall time": duration(max(walls) - min(walls)) if walls else None}
        for tag, (_, values) in sorted(curves.items()):
            if tag.startswith("val/") and len(values):
                best = values.max() if tag in HIGHER_IS_BETTER else values.min()
                figures[f"{tag} last"], figures[f"{tag} best"] = float(values[-1]), float(best)
    return {"run": config.get("run.name") or folder.name, "config": config, "figures": figures}


def _mean(curve) -> float | None:
    return float(np.mean(curve[1])) if curve is not None and len(curve[1]) else None


def differing(runs: list[dict]) -> list[str]:
    """The config fields whose values are not the same in every run (a field one run lacks counts as differing)."""
    fields = sorted({k for r in runs for k in r["config"]} - NOT_COMPARED)
    missing = object()
    return [f for f in fields if len({repr(r["config"].get(f, missing)) for r in runs}) > 1]


def table(runs: list[dict]) -> tuple[list[str], list[list]]:
    """(header, rows): run, the differing fields, then the figures any run has, in a fixed order."""
    fields = differing(runs)
    figures = list(dict.fromkeys(k for r in runs for k in r["figures"]))
    header = ["run", *fields, *figures]
    rows = [[r["run"], *(r["config"].get(f) for f in fields), *(r["figures"].get(k) for k in figures)] for r in runs]
    return header, rows


def _cell(value) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def render(header: list[str], rows: list[list], as_csv: bool = False) -> str:
    if as_csv:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows([header, *[[_cell(v) for v in row] for row in rows]])
        return out.getvalue()
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v).replace("|", "\\|") for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def build_parser():
    return tool_parser(RunsOptions, __doc__, prog="gan-colorizer-runs")


def main(argv=None) -> int:
    setup_logging()

    def action():
        opts = parse_options(build_parser(), RunsOptions, argv)
        runs = [read_run(folder) for folder in run_folders(opts.runs)]
        sys.stdout.write(render(*table(runs), opts.csv))
    return run_command(action)


if __name__ == "__main__":
    sys.exit(main())
