"""`--set NAME=VALUE` overrides for the trainers' command lines, checked against a config."""

from __future__ import annotations

import dataclasses
import json


def parse_overrides(pairs: list[str], config_cls: type) -> dict[str, object]:
    """`name=value` pairs for the dataclass `config_cls`; values are read as JSON (numbers,
    true/false, null, lists) or else as strings. An unknown name is a usage error naming it."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    out: dict[str, object] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or name not in fields:
            raise SystemExit(f"--set {pair!r}: expected NAME=VALUE, NAME one of {sorted(fields)}")
        try:
            out[name] = json.loads(raw)
        except json.JSONDecodeError:
            out[name] = raw
    return out
