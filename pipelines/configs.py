"""Dagster Config classes derived from the trainer's configuration classes, not mirrored.

Why: a knob is declared once, in the trainer (`trainer.knobs.knob`: type, default, bounds,
help). Each Dagster config here gets one optional field per knob, with the knob's bounds (so
Dagster refuses a bad value before any compute) and help text; an unset (null) field takes the
profile's value. Only what is Dagster's own (profile, run ids, directories) is written here.

The trainer's config modules import no JAX, so deriving keeps the Dagster process JAX-free.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal

import dagster as dg
import pydantic
from pydantic import Field

from trainer.knobs import field_types, knob_fields


def _dagster_type(allowed: tuple[type, ...], choices: tuple[str, ...] | None) -> Any:
    """The Dagster-friendly type of a knob: `str | int` knobs are text (an int as digits),
    pairs are lists, string choices are Literals."""
    kinds = tuple(t for t in allowed if t is not type(None))
    if kinds == (str,) and choices:
        return Literal[choices]
    if str in kinds:
        return str
    if kinds == (tuple,):
        return list[float]
    return kinds[0]


def knob_fields_of(cls: type, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """pydantic field definitions, one optional field per knob of `cls` (default null; a
    choice is a Literal with the knob's default)."""
    out = {}
    types = field_types(cls)
    for f in knob_fields(cls):
        if f.name in exclude:
            continue
        meta = f.metadata
        kind = _dagster_type(types[f.name], meta["choices"])
        if typing.get_origin(kind) is Literal:  # Dagster has no optional Literal: the default
            out[f.name] = (kind, Field(default=f.default, description=meta["doc"]))
            continue
        bounds = {}
        if kind in (int, float):
            bounds = {k: meta[k] for k in ("ge", "gt", "le") if meta[k] is not None}
        out[f.name] = (kind | None, Field(default=None, description=meta["doc"], **bounds))
    return out


def derive(name: str, base: type[dg.Config], *classes: type, exclude: tuple[str, ...] = (),
           extra: dict[str, Any] | None = None) -> type[dg.Config]:
    """`base` (Dagster's own fields and methods) plus one optional field per knob of each of
    `classes` (the first class that declares a name wins) and the `extra` fields."""
    fields: dict[str, Any] = dict(extra or {})
    for cls in classes:
        for key, value in knob_fields_of(cls, exclude).items():
            fields.setdefault(key, value)
    for key in base.model_fields:
        fields.pop(key, None)  # the base's own declaration wins
    model = pydantic.create_model(name, __base__=base, __module__=base.__module__, **fields)
    model.__doc__ = base.__doc__
    return model


def knob_values(config: dg.Config, cls: type) -> dict[str, Any]:
    """The set (non-null) knobs of `cls` in `config`, converted back to the knob's types."""
    types = field_types(cls)
    out = {}
    for f in knob_fields(cls):
        value = getattr(config, f.name, None)
        if value is None:
            continue
        allowed = types[f.name]
        if isinstance(value, str) and int in allowed and value.isdigit():
            value = int(value)
        elif isinstance(value, list) and tuple in allowed:
            value = tuple(value)
        out[f.name] = value
    return out


def plain_fields(cls: type, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """pydantic field definitions of a plain dataclass's fields (type and default, tuples as
    lists): for classes whose validation is their own (the dataset selection)."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if f.name in exclude or f.name.startswith("_") or not f.init:
            continue
        kind = hints[f.name]
        args = typing.get_args(kind)
        if typing.get_origin(kind) is tuple or any(typing.get_origin(a) is tuple for a in args):
            kind = list[str] | None
        out[f.name] = (kind, Field(default=f.default))
    return out
