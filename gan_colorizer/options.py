"""Command lines generated from options dataclasses: one flag per field, its default stated once, in the field.

A field is `name: type = opt(default, "help", ...)`; `add_options(parser, Cls)` turns every field into a flag
(`--name-with-dashes`, type from the annotation, bool -> --x / --no-x) whose help ends in "(default: X)".
An idea shared by several tools has one name and one meaning everywhere (tests/test_cli_options.py walks every
parser): its field comes from the factories below (device_opt, amp_opt, workers_opt); a flag's old spellings are
`aliases`, accepted and named once on stderr with the flag that replaces them.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import field

from gan_colorizer.console import say_renamed

REQUIRED = dataclasses.MISSING  # opt(REQUIRED, ...): a field with no default, a flag the user must give


AMP_MODES = ("auto", "off", "bf16", "fp16")


def opt(default, help: str, *, choices=None, stages=None, flag=None, action=None, positional=False, metavar=None,
        nargs=None, group=None, aliases=()):
    """An option field: its default, its --help text, and what its flag needs beyond the field's name and type.

    stages: the training stages that have the flag (None: all); flag: a flag name other than --field-name;
    action: "append" or "store_true" (bool fields are --x / --no-x otherwise); group: a --help section title;
    aliases: old spellings of the flag that still work (not shown in --help; using one prints a note once).
    """
    meta = {"help": help, "choices": choices, "stages": stages, "flag": flag, "action": action,
            "positional": positional, "metavar": metavar, "nargs": nargs, "group": group, "aliases": tuple(aliases)}
    return field(default=default, metadata=meta)


def device_opt(**kwargs):
    """--device of every tool that runs a network."""
    return opt("auto", "auto = cuda when present, else cpu", choices=("auto", "cpu", "cuda"), **kwargs)


def amp_opt(default: str = "auto", why: str = "", **kwargs):
    """--amp of every tool that runs a network: the same choices, and the same meaning as training's."""
    return opt(default, "mixed precision of the network: auto = bf16 where the hardware runs it (GPUs of compute "
                        "capability 8.0 and up, CPUs with AVX-512 BF16 or AMX), fp16 on older GPUs, else off (fp32); "
                        f"fp16: CUDA only{why}", choices=AMP_MODES, **kwargs)


def workers_opt(what: str, auto: str, **kwargs):
    """--num-workers of every tool that decodes files in parallel: N of them, or -1 = auto (the default), which
    each tool resolves as it says. what: processes or threads, doing what; auto: what -1 becomes."""
    return opt(-1, f"{what}; -1 = auto: {auto}", metavar="N", **kwargs)


def value_type(annotation):
    """The type one command-line value converts to: Optional[X] and X | None -> X, list[X] -> X."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) is list:
        annotation = typing.get_args(annotation)[0]
    return annotation


def flag_name(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def help_text(f: dataclasses.Field, default) -> str:
    """The field's help, with "(default: X)" appended unless there is none to state or the help states it."""
    text = f.metadata["help"]
    unstated = default is REQUIRED or default is None or f.metadata.get("action") in ("store_true", "append")
    if unstated or "(default:" in text:
        return text
    return f"{text} (default: {str(default).replace('%', '%%')})"


def add_option(container, f: dataclasses.Field, annotation, default, *, set_default: bool = True) -> argparse.Action:
    """One flag (or positional argument) for the field f into a parser or argument group."""
    m = f.metadata
    t = value_type(annotation)
    kwargs = {"help": help_text(f, default)}
    if set_default and default is not REQUIRED:
        kwargs["default"] = default
    if m.get("positional"):
        return container.add_argument(f.name, type=t, nargs=m.get("nargs"), metavar=m.get("metavar"), **kwargs)
    action = m.get("action") or (argparse.BooleanOptionalAction if t is bool else "store")
    if default is REQUIRED:
        kwargs["required"] = True
    if action not in ("store_true", argparse.BooleanOptionalAction):
        kwargs.update(type=t, choices=m.get("choices"), nargs=m.get("nargs"),
                      metavar=m.get("metavar") or (None if m.get("choices") else f.name.upper()))
    negatable = action is argparse.BooleanOptionalAction
    renamed = _renamed_flags(m.get("aliases") or (), flag_name(f), negatable)
    if renamed:
        action = _noting(container._registry_get("action", action, action), renamed)
    # a --x / --no-x flag's default goes to the parser: given to the action, older Pythons state it in the help twice
    parser_default = {f.name: kwargs.pop("default")} if negatable and "default" in kwargs else {}
    added = container.add_argument(flag_name(f), action=action, dest=f.name, **kwargs)
    container.set_defaults(**parser_default)
    for old in renamed:  # parsed by the flag's own action, not listed in --help
        if old in container._option_string_actions:
            raise ValueError(f"{old}: an old spelling of {flag_name(f)} that another flag has")
        container._option_string_actions[old] = added
    return added


def _renamed_flags(aliases, new: str, negatable: bool) -> dict[str, str]:
    """{old spelling: the flag that replaces it}, with the --no- forms of a --x / --no-x flag."""
    renamed = {old: new for old in aliases}
    if negatable:
        renamed.update({"--no-" + old[2:]: "--no-" + new[2:] for old in aliases})
    return renamed


def _noting(action_class, renamed: dict[str, str]):
    """action_class, also answering to the old spellings in renamed, each named once with its replacement."""
    class Renamed(action_class):
        def __call__(self, parser, namespace, values, option_string=None):
            if option_string in renamed:
                say_renamed(option_string, renamed[option_string])
            super().__call__(parser, namespace, values, renamed.get(option_string, option_string))
    return Renamed


def option_fields(cls, stage: str | None = None) -> list[dataclasses.Field]:
    """The fields of an options dataclass that have a flag (for the given training stage, when fields name stages)."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata
            and (stage is None or f.metadata.get("stages") is None or stage in f.metadata["stages"])]


def add_options(parser: argparse.ArgumentParser, cls, *, values=None, stage: str | None = None, title=None,
                set_defaults: bool = True) -> None:
    """A flag for every field of the dataclass cls. values: an instance whose values are the stated defaults
    (default: cls's own); title: the --help section of fields that name none; set_defaults=False leaves the
    parser's own argument_default (argparse.SUPPRESS tells given flags from defaults)."""
    hints = typing.get_type_hints(cls)
    sections = {g.title: g for g in parser._action_groups}
    for f in option_fields(cls, stage):
        default = getattr(values, f.name) if values is not None else _default(f)
        section = f.metadata.get("group") or title
        if section and section not in sections:
            sections[section] = parser.add_argument_group(section)
        add_option(sections[section] if section else parser, f, hints[f.name], default, set_default=set_defaults)


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def tool_parser(cls, description: str, prog: str | None = None) -> argparse.ArgumentParser:
    """The parser of a tool whose options are the dataclass cls: description kept as written, a flag per field."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(parser, cls)
    return parser


def parse_options(parser: argparse.ArgumentParser, cls, argv=None):
    """The command line as an instance of the options dataclass cls."""
    return cls(**vars(parser.parse_args(argv)))
