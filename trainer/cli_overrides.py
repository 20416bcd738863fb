"""What the trainers' command lines share: `--set NAME=VALUE` overrides checked against a
config, help that shows every flag's default, and bad input reported in one line instead of
a traceback."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable

from lake_schema.errors import LakeError, LakeValueError
from trainer.knobs import unknown_field


class HelpFormatter(argparse.RawDescriptionHelpFormatter,
                    argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written (its command examples keep their lines), and each
    flag's default after its help; a default of None (the help says what stands in), of an
    on/off flag or of an empty list is not repeated."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default == []:
            return action.help
        return super()._get_help_string(action)


def parse_overrides(pairs: list[str], config_cls: type) -> dict[str, object]:
    """`name=value` pairs for the dataclass `config_cls`; values are read as JSON (numbers,
    true/false, null, lists) or else as strings. A pair without `=` or an unknown name is a
    ValueError naming the pair and the closest field names (`trainer.knobs.unknown_field`;
    a usage error: exit 2)."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    out: dict[str, object] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep:
            raise ValueError(f"--set {pair!r}: expected NAME=VALUE")
        if name not in fields:
            raise ValueError(f"--set {pair!r}: {unknown_field(config_cls, name)}")
        try:
            out[name] = json.loads(raw)
        except json.JSONDecodeError:
            out[name] = raw
    return out


def one_line_errors(prog: str, command: Callable[[], int]) -> int:
    """Run `command`; an error of the input or the data becomes one line on stderr naming it.

    Exit status as `python -m lake_schema`: 2 for bad arguments (an unknown task, split or
    flag value: ValueErrors, raised before any compute), 1 for the lake, a file or the run
    (a missing or file lake root, a root that holds no lake, a corrupted file, a missing
    reference or model, a diverged loss). Anything else is a bug and keeps its traceback.
    """
    try:
        return command()
    except (ValueError, LakeError, LookupError, OSError, FloatingPointError) as e:
        usage = isinstance(e, LakeValueError) or (
            isinstance(e, ValueError) and not isinstance(e, LakeError))
        print(f"{prog}: error: {' '.join(str(e).split()) or type(e).__name__}",
              file=sys.stderr)
        return 2 if usage else 1
