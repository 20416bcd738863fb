"""What the trainers' command lines share: `--set NAME=VALUE` overrides checked against a
config, and bad input reported in one line instead of a traceback."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable

from lake_schema.errors import LakeError, LakeValueError


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


def one_line_errors(prog: str, command: Callable[[], int]) -> int:
    """Run `command`; an error of the input or the data becomes one line on stderr naming it.

    Exit status as `python -m lake_schema`: 2 for bad arguments (an unknown task, split or
    flag value: ValueErrors, raised before any compute), 1 for the lake, a file or the run
    (a missing or file lake root, a corrupted file, a missing reference or model, a diverged
    loss). Anything else is a bug and keeps its traceback.
    """
    try:
        return command()
    except (ValueError, LakeError, LookupError, OSError, FloatingPointError) as e:
        usage = isinstance(e, LakeValueError) or (
            isinstance(e, ValueError) and not isinstance(e, LakeError))
        print(f"{prog}: error: {' '.join(str(e).split()) or type(e).__name__}",
              file=sys.stderr)
        return 2 if usage else 1
