"""Knobs: the one declaration of a configuration field (default, bounds, choices, help) and
the one validator every configuration class runs.

Why: a knob declared in several places (a trainer dataclass, a validator, a Dagster Config
class, lists of the knobs that do not change a model) drifts. So a field is declared once,
`name: int = knob(32, ge=1, doc="...")`; `check_knobs(self)` in `__post_init__` validates
it, `pipelines/configs.py` derives the Dagster fields (type, bounds, description) from the
same declaration, and what the knob changes (`model=`, `program=`) gives the model id, the
compiled programs' keys and the report's knobs. Adding a knob is one edit plus its test.
Checks between fields (divisibility, one knob needing another) stay in the class.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import types
import typing
from collections.abc import Sequence
from typing import Any


def knob(default: Any, *, doc: str, ge: float | None = None, gt: float | None = None,
         le: float | None = None, choices: Sequence[str] | None = None,
         model: bool = True, program: bool = True) -> Any:
    """A dataclass field with its bounds (ge/gt/le), choices (for strings) and help text;
    `default` may be `dataclasses.MISSING` (a required field). What the knob changes is said
    here too, once: `model=False` for a setting that leaves the trained model as it is
    (logging, checkpointing, workers: not in the model's id, not a knob of the report),
    `program=False` for one the compiled update does not depend on (those, and the budget,
    the seed and shapes, which jit handles), so runs differing only in it share programs."""
    meta = {"doc": doc, "ge": ge, "gt": gt, "le": le,
            "choices": tuple(choices) if choices is not None else None,
            "model": model, "program": program and model}
    return dataclasses.field(default=default, metadata=meta)


def with_default(cls: type, name: str, default: Any) -> Any:
    """Knob `name` of `cls` (its help, bounds, choices) with another default: how a subclass
    gives an inherited knob the default of its own profile without declaring it again."""
    field = next(f for f in knob_fields(cls) if f.name == name)
    return dataclasses.field(default=default, metadata=field.metadata)


def fields_without(cls: type, what: str) -> frozenset[str]:
    """The knobs of `cls` that do not change `what` ("model" or "program")."""
    return frozenset(f.name for f in knob_fields(cls) if not f.metadata[what])


def program_key(config: Any) -> Any:
    """`config` with every knob that does not change the compiled program set to its default:
    the key under which runs that differ only in such knobs share one compilation."""
    return dataclasses.replace(config, **{f.name: f.default for f in knob_fields(type(config))
                                          if not f.metadata["program"]})


def preset(cls: type, profiles: dict[str, dict[str, Any]], name: str,
           overrides: dict[str, Any]) -> Any:
    """`cls` at profile `name` with `overrides` on top: an unknown profile or field is a
    ValueError naming it (and the closest field), before anything is built."""
    if name not in profiles:
        raise ValueError(f"unknown profile {name!r}; choose from {', '.join(profiles)}")
    check_names(cls, overrides)
    return cls(**{**profiles[name], **overrides})


def check_names(cls: type, values: dict[str, Any]) -> None:
    """ValueError naming the first key of `values` that is not a field of `cls`
    (`unknown_field`)."""
    fields = {f.name for f in dataclasses.fields(cls)}
    for name in values:
        if name not in fields:
            raise ValueError(unknown_field(cls, name))


def unknown_field(cls: type, name: str) -> str:
    """Why `name` is no field of the dataclass `cls`: `unknown OnlineConfig field embed_dimm;
    did you mean embed_dim?`, with up to three close names, or every field when none is."""
    fields = [f.name for f in dataclasses.fields(cls)]
    close = difflib.get_close_matches(name, fields, n=3, cutoff=0.6)
    hint = (f"did you mean {' or '.join(close)}?" if close
            else f"fields: {', '.join(sorted(fields))}")
    return f"unknown {cls.__name__} field {name}; {hint}"


def to_json(config: Any) -> dict[str, Any]:
    """The config as a JSON-ready dict (pairs as lists); `from_json` reads it back."""
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(config).items()}


def from_json(cls: type, d: dict[str, Any]) -> Any:
    """`cls` from `to_json`'s dict: an unknown field is a ValueError naming it; lists become
    the pairs their fields hold."""
    check_names(cls, d)
    pairs = {name for name, allowed in field_types(cls).items() if tuple in allowed}
    return cls(**{k: tuple(v) if k in pairs and isinstance(v, list) else v
                  for k, v in d.items()})


@functools.cache
def field_types(cls: type) -> dict[str, tuple[type, ...]]:
    """Each field's allowed value types (NoneType among them when the field is optional)."""
    out = {}
    for name, hint in typing.get_type_hints(cls).items():
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            args = typing.get_args(hint)
        else:
            args = (hint,)
        out[name] = tuple(typing.get_origin(a) or a for a in args)
    return out


def _kind(allowed: tuple[type, ...]) -> str:
    names = {int: "an int", float: "a number", bool: "a bool", str: "a string",
             tuple: "a pair", type(None): "null"}
    return " or ".join(names.get(t, t.__name__) for t in allowed)


def _bounds(meta: dict) -> str:
    lo = (f"[{meta['ge']}" if meta["ge"] is not None
          else f"({meta['gt']}" if meta["gt"] is not None else "(-inf")
    hi = f"{meta['le']}]" if meta["le"] is not None else "inf)"
    return f"{lo}, {hi}"


def check_value(owner: str, name: str, value: Any, allowed: tuple[type, ...], meta: dict
                ) -> None:
    """ValueError naming `owner.name` unless `value` has an allowed type, lies within the
    bounds and is one of the choices."""
    if value is None and type(None) in allowed:
        return
    is_bool = isinstance(value, bool)
    if is_bool:
        ok = bool in allowed
    elif isinstance(value, int):
        ok = int in allowed or float in allowed
    elif isinstance(value, float):
        ok = float in allowed
    else:
        ok = isinstance(value, tuple(t for t in allowed if t is not type(None)))
    if not ok:
        raise ValueError(f"{owner}.{name} must be {_kind(allowed)}, got {value!r}")
    if isinstance(value, str):
        if meta["choices"] is not None and value not in meta["choices"]:
            raise ValueError(f"unknown {name} {value!r}; choose from "
                             f"{', '.join(meta['choices'])}")
        return
    if is_bool or not isinstance(value, int | float):
        return
    low_ok = ((meta["ge"] is None or value >= meta["ge"])
              and (meta["gt"] is None or value > meta["gt"]))
    if low_ok and (meta["le"] is None or value <= meta["le"]):
        return
    integer_floor = meta["le"] is None and meta["gt"] is None
    if isinstance(value, int) and float not in allowed and integer_floor:
        raise ValueError(f"{owner}.{name} must be an int >= {meta['ge']}, got {value!r}")
    raise ValueError(f"{owner}.{name} must lie in {_bounds(meta)}, got {value!r}")


def check_knobs(config: Any) -> None:
    """Validate every `knob` field of the dataclass instance `config`."""
    cls = type(config)
    allowed = field_types(cls)
    for f in dataclasses.fields(cls):
        if "doc" in f.metadata:
            check_value(cls.__name__, f.name, getattr(config, f.name), allowed[f.name],
                        dict(f.metadata))


def knob_fields(cls: type) -> list[dataclasses.Field]:
    """The `knob` fields of a configuration class, in declaration order."""
    return [f for f in dataclasses.fields(cls) if "doc" in f.metadata]


def check_divides(config: Any, name: str, by: str, wording: str = "is not divisible by",
                  why: str = "") -> None:
    """ValueError unless knob `name` of `config` is a multiple of knob `by` (None: no check)."""
    value, divisor = getattr(config, name), getattr(config, by)
    if divisor is not None and value % divisor:
        raise ValueError(f"{type(config).__name__}.{name}={value} {wording} {by}={divisor}"
                         + (f" ({why})" if why else ""))
