"""Rewrite the generated regions of docs/*.md: each tool's flag table from its argparse parser, and the benchmark
tables that bench/tables.py renders (when it exists). Run `.venv/bin/python docs/generate.py` (or `make docs`);
`--check` rewrites nothing and exits 1 naming the stale pages. It documents the tree it stands in: this tree's
gan_colorizer goes first on sys.path, ahead of any copy installed elsewhere (another checkout, a worktree).

A region is the text between `<!-- NAME -->` and `<!-- /NAME -->`; `flags:TOOL` regions get TOOL's flags,
`bench:NAME` regions get bench/tables.py's render_all()[`bench:NAME`]. Everything outside the markers is left alone.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import re
import sys
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BENCH_TABLES = ROOT / "bench" / "tables.py"


class Tool(NamedTuple):
    parser: str  # "module:function" that returns the tool's ArgumentParser
    args: tuple  # what that function is called with
    main: str  # "module:function(argv)": the console entry point, whose --help the tests read


# One line per tool: when a module moves, fix its line here.
TOOLS = {
    "pretrain": Tool("gan_colorizer.train.cli:build_parser", ("pretrain",), "gan_colorizer.train.cli:pretrain_main"),
    "gan": Tool("gan_colorizer.train.cli:build_parser", ("gan",), "gan_colorizer.train.cli:gan_main"),
    "evaluate": Tool("gan_colorizer.evaluate.cli:build_parser", (), "gan_colorizer.evaluate.cli:main"),
    "colorize": Tool("gan_colorizer.colorize.cli:build_parser", (), "gan_colorizer.colorize.cli:main"),
    "export": Tool("gan_colorizer.colorize.onnx:build_parser", (), "gan_colorizer.colorize.onnx:main"),
    "visualize": Tool("gan_colorizer.inspect.cli:build_parser", (), "gan_colorizer.inspect.cli:main"),
    "plots": Tool("gan_colorizer.inspect.curves:build_parser", (), "gan_colorizer.inspect.curves:main"),
    "weights": Tool("gan_colorizer.inspect.weights:build_parser", (), "gan_colorizer.inspect.weights:main"),
    "shards": Tool("gan_colorizer.data.shards:build_parser", (), "gan_colorizer.data.shards:main"),
    "runs": Tool("gan_colorizer.inspect.runs:build_parser", (), "gan_colorizer.inspect.runs:main"),
    "data": Tool("gan_colorizer.data.cli:build_parser", (), "gan_colorizer.data:main"),
    "app": Tool("gan_colorizer.app.main:build_parser", (), "gan_colorizer.app:main"),
}
REGION = re.compile(r"(<!-- (?P<name>[\w:.-]+) -->\n)(?P<body>.*?)(<!-- /(?P=name) -->)", re.S)
DEFAULT_IN_HELP = re.compile(r"\s*\(default: ((?:(?!\(default: ).)*)\)\s*$")  # the last "(default: X)" of a help


def load(ref: str):
    """The object a "module:name" reference names, or None when the module has no such name (yet)."""
    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name, None)


def build_parser(tool: str) -> argparse.ArgumentParser | None:
    """TOOL's parser, or None while its module has no parser function."""
    spec = TOOLS[tool]
    make = load(spec.parser)
    return make(*spec.args) if make else None


def _cell(text) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _flag(action: argparse.Action, formatter: argparse.HelpFormatter) -> str:
    if not action.option_strings:  # a positional: its metavar, e.g. `INPUT ...`
        return f"`{formatter._format_args(action, action.metavar or action.dest)}`"
    return ", ".join(f"`{s}`" for s in action.option_strings)


def _row(action: argparse.Action, formatter: argparse.HelpFormatter) -> str:
    help_text = formatter._expand_help(action) if action.help else ""
    stated = DEFAULT_IN_HELP.search(help_text)
    if stated:
        help_text = help_text[:stated.start()]
    default = action.default
    if default in (None, argparse.SUPPRESS):
        default = stated.group(1) if stated and stated.group(1) != "None" else ""
    if action.required:
        default = "required"
    elif isinstance(default, bool) or default in ("True", "False"):
        default = "on" if default in (True, "True") else "off"
    choices = ", ".join(f"`{c}`" for c in action.choices) if action.choices else ""
    return f"| {_flag(action, formatter)} | {_cell(default)} | {choices} | {_cell(help_text)} |"


def flag_table(parser: argparse.ArgumentParser) -> str:
    """Markdown: one table per argument group (flag | default | choices | what it does), --help left out."""
    formatter = parser._get_formatter()
    groups = [(g.title, [a for a in g._group_actions if not isinstance(a, argparse._HelpAction)])
              for g in parser._action_groups]
    groups = [(title, actions) for title, actions in groups if actions]
    parts = []
    for title, actions in groups:
        if len(groups) > 1:
            parts.append(f"*{title}*\n")
        parts.append("| flag | default | choices | what it does |\n|---|---|---|---|")
        parts.extend(_row(a, formatter) for a in actions)
        parts.append("")
    return "\n".join(parts)


def bench_regions() -> dict[str, str]:
    """bench/tables.py's render_all(), loaded by file path; nothing when the file is not there."""
    if not BENCH_TABLES.exists():
        return {}
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # so that bench/tables.py can import its neighbours as bench.*
    spec = importlib.util.spec_from_file_location("bench_tables", BENCH_TABLES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.render_all())


def flag_regions() -> tuple[dict[str, str], list[str]]:
    """({"flags:TOOL": table}, the tools without a parser function yet)."""
    tables, missing = {}, []
    for tool in TOOLS:
        parser = build_parser(tool)
        if parser is None:
            missing.append(tool)
        else:
            tables[f"flags:{tool}"] = flag_table(parser)
    return tables, missing


def rewrite(text: str, regions: dict[str, str]) -> str:
    """TEXT with the body of every region named in REGIONS replaced by its markdown; other regions untouched."""
    def fill(m: re.Match) -> str:
        if m["name"] not in regions:
            return m[0]
        return f"{m[1]}{regions[m['name']].rstrip()}\n{m[4]}"
    return REGION.sub(fill, text)


def region_bodies(text: str) -> dict[str, str]:
    """{region name: its current body} of one markdown text."""
    return {m["name"]: m["body"] for m in REGION.finditer(text)}


def update_file(path: Path, regions: dict[str, str]) -> bool:
    """Rewrite PATH's regions in place; True when the file changed."""
    old = path.read_text()
    new = rewrite(old, regions)
    if new != old:
        path.write_text(new)
    return new != old


def all_regions() -> tuple[dict[str, str], list[str]]:
    regions, missing = flag_regions()
    return {**regions, **bench_regions()}, missing


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Rewrite the generated regions of docs/*.md.")
    parser.add_argument("--check", action="store_true", help="rewrite nothing; exit 1 naming the stale pages")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))  # this tree's package, not the installed one (python puts docs/ first, not ROOT)
    regions, missing = all_regions()
    if args.check:
        pages = sorted(DOCS.glob("*.md"))
        stale = [p.relative_to(ROOT) for p in pages if rewrite(p.read_text(), regions) != p.read_text()]
        for path in stale:
            print(f"{path} is stale: run `make docs`")
        return 1 if stale else 0
    for tool in missing:
        print(f"note: no {TOOLS[tool].parser} yet: the flags:{tool} region is left as it is")
    seen = set()
    for path in sorted(DOCS.glob("*.md")):
        seen.update(region_bodies(path.read_text()))
        if update_file(path, regions):
            print(f"rewrote {path.relative_to(ROOT)}")
    for name in sorted(seen - set(regions)):
        if not (name.startswith("flags:") and name[len("flags:"):] in missing):
            print(f"note: no generator for region {name}")
    for name in sorted(set(regions) - seen):
        print(f"note: {name} is generated but no docs page has its region")
    return 0


if __name__ == "__main__":
    sys.exit(main())
