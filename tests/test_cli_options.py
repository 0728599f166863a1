"""One CLI mechanism: every tool's flags come from its options dataclass (gan_colorizer.options), one flag per field
with the field's default; one name per idea across the tools, old spellings kept as aliases that say once what
replaces them; and every console entry point in setup.cfg, named after its script or module, answers --help."""
import argparse
import configparser
import dataclasses
import importlib
import subprocess
import sys
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from gan_colorizer import config, console
from gan_colorizer.options import REQUIRED, add_options, opt, parse_options, tool_parser

ROOT = Path(__file__).resolve().parents[1]
TOOLS = {  # CLI module: its options dataclass (module, name)
    "gan_colorizer.evaluate.cli": ("gan_colorizer.evaluate.options", "EvalOptions"),
    "gan_colorizer.colorize.cli": ("gan_colorizer.colorize.cli", "ColorizeOptions"),
    "gan_colorizer.inspect.cli": ("gan_colorizer.inspect.options", "VisualizeOptions"),
    "gan_colorizer.colorize.onnx": ("gan_colorizer.colorize.onnx", "ExportOptions"),
    "gan_colorizer.inspect.curves": ("gan_colorizer.inspect.curves", "PlotOptions"),
    "gan_colorizer.inspect.weights": ("gan_colorizer.inspect.weights", "WeightsOptions"),
    "gan_colorizer.data.shards": ("gan_colorizer.data.shards", "ShardOptions"),
    "gan_colorizer.data.cli": ("gan_colorizer.data.cli", "DataOptions"),
    "gan_colorizer.inspect.runs": ("gan_colorizer.inspect.runs", "RunsOptions"),
    "gan_colorizer.app.main": ("gan_colorizer.app.main", "AppOptions"),
}
ENTRY_POINTS = {"gan-colorizer-pretrain", "gan-colorizer-train-gan", "gan-colorizer-evaluate", "gan-colorizer-colorize",
                "gan-colorizer-visualize", "gan-colorizer-onnx", "gan-colorizer-curves", "gan-colorizer-weights",
                "gan-colorizer-shards", "gan-colorizer-data", "gan-colorizer-runs", "gan-colorizer-app"}
RENAMED_COMMANDS = {"gan-colorizer-export": "gan-colorizer-onnx", "gan-colorizer-plots": "gan-colorizer-curves"}
# colour hints, one idea whose value is what each tool needs of it (issue 25 names all three): training --hints turns
# the hint inputs on, colorize.py --hints FILE gives the hints, evaluate.py --hints COUNTS how many oracle hints
ONE_IDEA_SEVERAL_VALUES = {"--hints"}
# Ideas that several tools share: their one flag, and other names a tool could give (or gave) the same idea
IDEAS = {
    "--image-size": {"--render-size", "--size", "--input-size", "--crop-size", "--resolution"},  # the network's input
    "--num-workers": {"--workers", "--threads", "--jobs", "-j"},
    "--out": {"--onnx", "--output", "--out-dir", "--output-dir", "-o"},
    "--amp": {"--precision", "--bf16", "--fp16", "--half"},
    "--device": {"--cuda", "--gpu", "--cpu"},
    "--data": {"--images", "--photos", "--folder", "--input"},  # a folder of photos to read
    "--limit": {"--n-images", "--max-images", "--count"},  # read only the first N of them
}


def actions_by_dest(parser: argparse.ArgumentParser) -> dict[str, list[argparse.Action]]:
    found = {}
    for action in parser._actions:
        if not isinstance(action, argparse._HelpAction):
            found.setdefault(action.dest, []).append(action)
    return found


def required_argv(parser: argparse.ArgumentParser) -> list[str]:
    """A value for every positional argument and required flag: the shortest command line the parser takes."""
    argv = []
    for action in parser._actions:
        if not action.option_strings:
            argv.append("x")
        elif action.required:
            argv += [action.option_strings[0], "x"]
    return argv


def flag_problems(parser: argparse.ArgumentParser, cls) -> list[str]:
    """What breaks 'one flag per field, parsed default = the field's default, required where it has none'."""
    found = actions_by_dest(parser)
    problems = [f"{d}: a flag with no field" for d in found if d not in {f.name for f in dataclasses.fields(cls)}]
    parsed = vars(parser.parse_args(required_argv(parser)))
    for f in dataclasses.fields(cls):
        actions = found.get(f.name, [])
        if len(actions) != 1:
            problems.append(f"{f.name}: {len(actions)} flags")
        elif f.default is REQUIRED:
            if not (actions[0].required or not actions[0].option_strings):
                problems.append(f"{f.name}: no default, yet not required")
        elif parsed[f.name] != f.default:
            problems.append(f"{f.name}: parsed default {parsed[f.name]!r}, field default {f.default!r}")
    return problems


def tool(module: str):
    cli = importlib.import_module(module)
    options_module, name = TOOLS[module]
    return cli, getattr(importlib.import_module(options_module), name)


@pytest.mark.parametrize("module", TOOLS)
def test_every_option_field_has_one_flag_whose_default_is_the_fields(module):
    cli, cls = tool(module)
    parser = cli.build_parser()
    assert flag_problems(parser, cls) == []
    opts = parse_options(parser, cls, required_argv(parser))
    assert isinstance(opts, cls)


@pytest.mark.parametrize("stage", ["pretrain", "gan"])
def test_training_flags_are_the_stage_fields_and_their_help_states_the_stage_default(stage):
    from gan_colorizer.train.cli import build_parser
    parser, base = build_parser(stage), config.defaults(stage)
    found = actions_by_dest(parser)
    assert config.explicit_flags(parser, []) == {}  # defaults suppressed: only given flags are explicit
    for group, cls in config.GROUPS.items():
        for f in dataclasses.fields(cls):
            stages = f.metadata["stages"]
            has_flag = stages is None or stage in stages
            assert len(found.get(f.name, [])) == (1 if has_flag else 0), f.name
            value = getattr(getattr(base, group), f.name)
            if has_flag and value is not None:
                assert f"(default: {value})" in found[f.name][0].help, f.name
    assert f"(default: {({'pretrain': 0.0001, 'gan': 0.0002})[stage]})" in found["lr"][0].help  # the stage's own


def test_a_flag_missing_or_with_another_default_is_caught():
    """The check above can fail: a hand-written parser that lost one flag and restated another default wrongly."""
    _, cls = tool("gan_colorizer.inspect.curves")
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", action="append", dest="runs", required=True)
    parser.add_argument("--smooth", type=float, default=0.5)
    assert flag_problems(parser, cls) == ["out: 0 flags", "smooth: parsed default 0.5, field default 0.6"]


@dataclass
class Toy:
    inputs: list[str] = opt(REQUIRED, "files", positional=True, nargs="+", metavar="FILE")
    paths: list[str] = opt(REQUIRED, "one path", flag="--path", action="append", metavar="P")
    mode: str = opt("fast", "how", choices=("fast", "slow"), group="tuning")
    size: int | None = opt(None, "side in pixels (default: as trained)", aliases=("--side",))
    flip: bool = opt(True, "mirror first", aliases=("--mirror",))
    force: bool = opt(False, "overwrite", action="store_true")
    gan_only: int = opt(3, "only in stage gan", stages=("gan",))


def test_the_generic_builder_reads_types_flags_groups_and_stages_from_the_fields():
    parser = tool_parser(Toy, "toy")
    opts = parse_options(parser, Toy, ["a", "b", "--path", "p1", "--path", "p2", "--size", "64", "--no-flip"])
    assert opts == Toy(["a", "b"], ["p1", "p2"], "fast", 64, False, False, 3)
    with pytest.raises(SystemExit):
        parser.parse_args(["a", "--path", "p", "--mode", "medium"])
    text = parser.format_help()
    assert "tuning:" in text and text.count("(default: True)") == 1 and "(default: None)" not in text
    assert "(default: as trained)" in text and "(default: fast)" in text and "--force" in text
    pretrain = argparse.ArgumentParser(argument_default=argparse.SUPPRESS)
    add_options(pretrain, Toy, stage="pretrain", set_defaults=False)
    assert "gan_only" not in actions_by_dest(pretrain)
    assert vars(pretrain.parse_args(["a", "--path", "p"])) == {"inputs": ["a"], "paths": ["p"]}


def console_scripts() -> dict[str, str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict(tuple(part.strip() for part in line.split("=")) for line in lines)


def test_every_tool_has_one_console_entry_point():
    assert set(console_scripts()) == ENTRY_POINTS | set(RENAMED_COMMANDS)


def test_console_commands_are_named_after_their_script_or_module():
    """gan-colorizer-WORD runs WORD*.py, or python -m ...WORD (the old names aside: console's aliases)."""
    scripts = {path.stem: path.read_text() for path in ROOT.glob("*.py")}
    wrong = []
    for name, target in console_scripts().items():
        word, (module, function) = name.removeprefix("gan-colorizer-").replace("-", "_"), target.split(":")
        script = next((stem for stem, text in scripts.items() if f"from {module} import {function}" in text), None)
        alias = module == "gan_colorizer.console"
        if not alias and not (script.startswith(word) if script else module.endswith("." + word)):
            wrong.append(f"{name} runs {script + '.py' if script else 'python -m ' + module}")
    assert wrong == []


@pytest.mark.parametrize("old, new", RENAMED_COMMANDS.items())
def test_old_console_names_run_the_same_tool_and_say_once_what_replaces_them(old, new, capsys, monkeypatch):
    monkeypatch.setattr(console, "_SAID", set())
    monkeypatch.setenv("COLUMNS", "120")
    texts = []
    for name in (new, old, old):
        module, function = console_scripts()[name].split(":")
        with pytest.raises(SystemExit) as stop:
            getattr(importlib.import_module(module), function)(["--help"])
        assert stop.value.code == 0
        texts.append(capsys.readouterr())
    assert texts[0].out == texts[1].out == texts[2].out and texts[0].err == texts[2].err == ""
    assert texts[1].err == f"note: {old} is now called {new}; the old name still works for now\n"


# Packages that take from 0.1 s (tqdm, PIL) to seconds (torch 2 s, torchvision 1.6 s, fastai 3.7 s) to import
HEAVY = ("torch", "torchvision", "fastai", "webdataset", "tqdm", "matplotlib", "tensorboard", "cv2", "av", "onnx",
         "onnxruntime", "scipy", "skimage", "sklearn", "lpips", "pytorch_fid")


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_help_imports_nothing_heavy(name):
    """--help answers at once (evaluate.py --help took 5.3 s importing torch): checked on what it imports, in a
    fresh process, not on the clock; the tool's work imports what it needs when it runs."""
    module, function = console_scripts()[name].split(":")
    code = (f"import sys\nfrom {module} import {function}\ntry:\n    {function}(['--help'])\nexcept SystemExit:\n"
            f"    pass\nprint(sorted({{m.partition('.')[0] for m in sys.modules}} & set({HEAVY!r})))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1] == "[]"


def all_parsers() -> dict[str, argparse.ArgumentParser]:
    """Every tool's parser: the two training stages and the option-dataclass tools."""
    from gan_colorizer.train.cli import build_parser
    parsers = {stage: build_parser(stage) for stage in ("pretrain", "gan")}
    parsers.update({module: importlib.import_module(module).build_parser() for module in TOOLS})
    return parsers


def shown_flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """{flag: its action} as --help lists them (old spellings are parsed but not listed)."""
    return {s: a for a in parser._actions for s in a.option_strings if not isinstance(a, argparse._HelpAction)}


def test_one_name_per_idea_in_every_tool_and_amp_wherever_a_network_runs():
    problems = []
    for tool, parser in all_parsers().items():
        flags = shown_flags(parser)
        for flag, others in IDEAS.items():
            problems += [f"{tool}: {other} (the name of this idea is {flag})" for other in sorted(others & set(flags))]
        if "--device" in flags and "--amp" not in flags:
            problems.append(f"{tool}: runs a network (--device) without --amp")
    assert problems == []


def test_a_flag_that_several_tools_have_takes_the_same_values_in_each():
    """Same type and choices everywhere; --num-workers: -1 = auto, the default, in each."""
    uses: dict[str, list] = {}
    for tool, parser in all_parsers().items():
        for flag, action in shown_flags(parser).items():
            uses.setdefault(flag, []).append((tool, action))
    problems = []
    for flag, found in uses.items():
        kinds = {tool: (getattr(a.type, "__name__", a.type), tuple(a.choices or ())) for tool, a in found}
        if len(set(kinds.values())) > 1 and flag not in ONE_IDEA_SEVERAL_VALUES:
            problems.append(f"{flag}: {kinds}")
    for tool, action in uses["--num-workers"]:
        if "-1 = auto" not in action.help or "(default: -1)" not in action.help:
            problems.append(f"{tool}: --num-workers without -1 = auto as its default")
    assert len(uses["--image-size"]) >= 6 and len(uses["--amp"]) >= 5 and len(uses["--out"]) >= 6
    assert problems == []


def test_old_spellings_still_work_and_say_once_which_name_replaces_them(capsys, monkeypatch):
    monkeypatch.setattr(console, "_SAID", set())
    parsers = all_parsers()
    colorize = ["a.png", "--checkpoint", "c.pt", "--out", "o"]
    args = parsers["gan_colorizer.colorize.cli"].parse_args([*colorize, "--render-size", "64", "--workers", "3"])
    assert (args.image_size, args.num_workers) == (64, 3)
    assert parsers["gan_colorizer.colorize.cli"].parse_args([*colorize, "--render-size", "32"]).image_size == 32
    export = parsers["gan_colorizer.colorize.onnx"].parse_args(["--checkpoint", "c.pt", "--onnx", "g.onnx",
                                                                 "--render-size", "64"])
    assert (export.out, export.image_size) == ("g.onnx", 64)  # the old spelling of a required flag is enough
    visualize = ["--checkpoint", "c.pt", "--image", "p.png", "--out", "o", "--size", "96"]
    assert parsers["gan_colorizer.inspect.cli"].parse_args(visualize).image_size == 96
    weights = ["--checkpoint", "c.pt", "--out", "o", "--images", "photos", "--n-images", "3"]
    assert vars(parsers["gan_colorizer.inspect.weights"].parse_args(weights)).items() >= {"data": "photos",
                                                                                           "limit": 3}.items()
    renamed = [("--render-size", "--image-size"), ("--workers", "--num-workers"), ("--onnx", "--out"),
               ("--size", "--image-size"), ("--images", "--data"), ("--n-images", "--limit")]
    notes = capsys.readouterr().err.splitlines()
    assert notes == [f"note: {old} is now called {new}; the old name still works for now" for old, new in renamed]
    helps = "".join(p.format_help() for p in parsers.values())
    assert not {old for old, _ in renamed} & set(re.findall(r"--[a-z0-9-]+", helps))


def test_an_old_spelling_of_a_yes_no_flag_works_in_both_forms(capsys, monkeypatch):
    monkeypatch.setattr(console, "_SAID", set())
    parser = tool_parser(Toy, "toy")
    assert parse_options(parser, Toy, ["a", "--path", "p", "--no-mirror", "--side", "8"]).flip is False
    assert parse_options(parser, Toy, ["a", "--path", "p", "--mirror"]).flip is True
    assert capsys.readouterr().err.splitlines() == [
        "note: --no-mirror is now called --no-flip; the old name still works for now",
        "note: --side is now called --size; the old name still works for now",
        "note: --mirror is now called --flip; the old name still works for now"]


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_help_of_every_entry_point_exits_0(name, capsys):
    module, function = console_scripts()[name].split(":")
    with pytest.raises(SystemExit) as stop:
        getattr(importlib.import_module(module), function)(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and "(default: " in out


@pytest.mark.parametrize("main, argv", [
    ("gan_colorizer.train.cli:pretrain_main", []),
    ("gan_colorizer.evaluate.cli:main", ["--checkpoint", "c.pt", "--data", "{tmp}", "--out", "{tmp}/out"]),
    ("gan_colorizer.colorize.cli:main", ["{tmp}", "--checkpoint", "c.pt", "--out", "{tmp}/out"]),
    ("gan_colorizer.data.shards:main", ["--data", "{tmp}", "--out", "{tmp}/out"]),
])
def test_num_workers_below_auto_is_one_line_and_exit_2_in_every_tool(main, argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a training run would write runs/ and checkpoints/ here
    module, function = main.split(":")
    argv = [a.format(tmp=tmp_path) for a in argv] + ["--num-workers", "-2"]
    assert getattr(importlib.import_module(module), function)(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--num-workers" in err[0] and "-1 for auto" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == []
