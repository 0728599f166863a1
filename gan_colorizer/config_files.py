"""--config files: a JSON file's values read as flags would give them, each problem one line naming the file (its
size, its nesting, unknown keys, wrong types, out-of-range values, a config version this code does not read)."""
from __future__ import annotations

import dataclasses
import json
import logging
import typing

from gan_colorizer.config import (GROUPS, STAGE_DEFAULTS, VERSION, defaults, perceptual_weight_of_version_1, renamed,
                                  update)
from gan_colorizer.config_checks import check_run_name, check_value, validate
from gan_colorizer.errors import UserError
from gan_colorizer.options import value_type

log = logging.getLogger("gan_colorizer")
MAX_CONFIG_BYTES = 1 << 20  # a --config file is read only up to this size


def read_file(path, stage: str) -> dict:
    """The values a JSON config file sets, as {field name: value}: {"stage": ..., "data": {...}, "model": {...}, ...}
    as runs/NAME/config.json holds them (with "version"); keys starting with "_" are comments. Any problem is one line
    naming the file."""
    d = read_json(path)
    if not isinstance(d, dict):
        raise UserError(f"{path}: not a JSON config (an object of groups: stage, {', '.join(GROUPS)})")
    if d.get("stage", stage) not in STAGE_DEFAULTS:
        raise UserError(f"{path}: unknown stage {d['stage']!r} (pretrain or gan)")
    if d.get("stage", stage) != stage:
        raise UserError(f"{path}: a {d['stage']} config cannot configure a {stage} run")
    values = {}
    for group, fields in d.items():
        if group in ("stage", "version") or group.startswith("_"):
            continue
        if group not in GROUPS or not isinstance(fields, dict):
            raise UserError(f"{path}: unknown key {group!r} (expected stage, version, {', '.join(GROUPS)}, or "
                            f"_comment)")
        known = {f.name: f for f in dataclasses.fields(GROUPS[group])}
        hints = typing.get_type_hints(GROUPS[group])
        for name, value in renamed(fields).items():
            if name.startswith("_"):
                continue
            if name not in known:
                raise UserError(f"{path}: unknown field {group}.{name}")
            values[name] = _checked_value(path, f"{group}.{name}", known[name], hints[name], value)
            check_value(name, values[name], f"{path}: {group}.{name} =")
            if name == "name" and value is not None:
                check_run_name(value, f"{path}: run.name =")
    values = _versioned(path, d, stage, values)
    try:
        validate(update(defaults(stage), values))
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    return values


def _versioned(path, d: dict, stage: str, values: dict) -> dict:
    """values in today's meaning. A file without "version" is read as today's (recipes are written by hand), with a
    note where an older run's config.json would mean otherwise; "version": 1 asks for the old meaning."""
    version = d.get("version")
    if version is not None and (type(version) is not int or not 1 <= version <= VERSION):
        raise UserError(f"{path}: version {version!r}: this gan_colorizer reads config versions 1 to {VERSION}")
    weight = values.get("perceptual_weight", 0)
    if stage != "gan" or not weight or version == VERSION:
        return values
    old = perceptual_weight_of_version_1(update(defaults(stage), values))
    if version == 1:
        return {**values, "perceptual_weight": old}
    log.info("note: %s: perceptual_weight %g weighs the perceptual loss alone in stage 2 (a run's config.json from "
             "before config version 2 meant %g in today's weights: add \"version\": 1 to the file to read it so)",
             path, weight, old)
    return values


def read_json(path, noun: str = "config", limit: int = MAX_CONFIG_BYTES):
    """A small JSON file's contents (a run's config.json is a few KB, a hints file less), read only up to `limit`
    bytes and parsed only when not nested past Python's recursion limit: a 300 MB file or a deep nest is one line
    naming the file, not a traceback or a long read."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise UserError(f"{path}: cannot read the {noun} file ({e.strerror or e})") from None
    if len(data) > limit:
        raise UserError(f"{path}: not a {noun} file (larger than {limit // 1024} KB)")
    try:
        return json.loads(data.decode("utf-8"))
    except RecursionError:
        raise UserError(f"{path}: not a JSON {noun} file (nested too deeply)") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise UserError(f"{path}: not a JSON {noun} file ({e})") from None


def _checked_value(path, key: str, f: dataclasses.Field, annotation, value):
    """value as the field's type (an int is a fine float), or a UserError naming the file and field."""
    t = value_type(annotation)
    if value is None and t is not annotation:  # Optional[X]
        return None
    ok = isinstance(value, t) and not (t is int and isinstance(value, bool))
    if t is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if f.name == "lr_milestones" and isinstance(value, list) and all(type(v) is int for v in value):
        value, ok = ",".join(map(str, value)), True  # [100, 150] as a JSON file would write it, "100,150" as a flag
    if not ok:
        raise UserError(f"{path}: {key} = {value!r}: expected {t.__name__}")
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise UserError(f"{path}: {key} = {value!r}: expected one of {', '.join(map(str, choices))}")
    return value
