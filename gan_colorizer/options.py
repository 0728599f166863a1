"""Command lines generated from options dataclasses: one flag per field, its default stated once, in the field.

A field is `name: type = opt(default, "help", ...)`; `add_options(parser, Cls)` turns every field into a flag
(`--name-with-dashes`, type from the annotation, bool -> --x / --no-x) whose help ends in "(default: X)".
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import field

REQUIRED = dataclasses.MISSING  # opt(REQUIRED, ...): a field with no default, a flag the user must give


def opt(default, help: str, *, choices=None, stages=None, flag=None, action=None, positional=False, metavar=None,
        nargs=None, group=None):
    """An option field: its default, its --help text, and what its flag needs beyond the field's name and type.

    stages: the training stages that have the flag (None: all); flag: a flag name other than --field-name;
    action: "append" or "store_true" (bool fields are --x / --no-x otherwise); group: a --help section title.
    """
    meta = {"help": help, "choices": choices, "stages": stages, "flag": flag, "action": action,
            "positional": positional, "metavar": metavar, "nargs": nargs, "group": group}
    return field(default=default, metadata=meta)


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
    if action is not argparse.BooleanOptionalAction or "default" not in kwargs:
        return container.add_argument(flag_name(f), action=action, dest=f.name, **kwargs)
    default = kwargs.pop("default")  # given to the action, older Pythons append "(default: X)" to the help again
    added = container.add_argument(flag_name(f), action=action, dest=f.name, **kwargs)
    container.set_defaults(**{f.name: default})
    return added


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
