"""The README's code blocks run, and its column tables are the schema's.

Every fenced block is checked by its info string: `python` blocks are executed, `sql`
statements run on the lake's DuckDB views and must return rows, `bash` lines (all of them
`python -m lake_schema ...`) run through the CLI and must exit 0, `json` and `yaml` blocks
must parse (the `evaluations.config` example must have exactly the layout the code writes).
All of this against a small real lake in a temporary directory, as `./lake`. A block the
test cannot afford (`make demo`, training, a Vault that is not there) says so itself:
```` ```bash no-test ````; a block without an info string is a diagram, not code.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from lake_schema.cli import main, schema_markdown
from lake_schema.duck import connect
from lake_schema.schema import TABLES, describe_table
from lake_schema.storage import Lake
from lake_schema.testing import fill_lake
from lake_schema.writer import Evaluation, write_evaluation, write_reference

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^(?P<indent> *)```(?P<info>[^`]*)$")
TRAIN, TEST = "lbf/8x8-2p-2f", "lbf/12x12-4p-5f"


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    language: str
    flags: tuple[str, ...]
    code: str

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.language or 'text'})"


def readme_blocks() -> list[Block]:
    lines = README.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        info = m["info"].split()
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        code = textwrap.dedent("\n".join(lines[i + 1:end]))
        blocks.append(Block(i + 1, info[0] if info else "", tuple(info[1:]), code))
        i = end + 1
    return blocks


BLOCKS = readme_blocks()


def _blocks(language: str) -> list[Block]:
    return [b for b in BLOCKS if b.language == language and "no-test" not in b.flags]


def _real_config_json(selection_quality: str, num_updates: int) -> str:
    """An `evaluations.config` as the trainer writes it (its own function, its own configs)."""
    from trainer.data import DataSelection
    from trainer.offline.config import EvalConfig, OfflineConfig, config_id
    from trainer.offline.evaluation import evaluation_config_json

    config = OfflineConfig.profile("demo", env="lbf", algorithm="bc", num_updates=num_updates)
    selection = DataSelection(env="lbf", tasks=(TRAIN,), quality=selection_quality)
    info = {"config_id": config_id(config, selection), "config": config.to_json(),
            "selection": selection.to_json(), "tasks": [TRAIN]}
    return evaluation_config_json(info, EvalConfig())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A directory holding `./lake`: two tasks of run sable-seed0 at 3 checkpoints, their
    references, and one model's evaluations (a train and a test task)."""
    root = tmp_path_factory.mktemp("readme")
    lake = Lake(root / "lake")
    fill_lake(lake, [TRAIN, TEST], runs=("sable-seed0",), checkpoints=3, episodes=2,
              lengths=(3, 12))
    for task in (TRAIN, TEST):
        write_reference(lake, task, "sable-seed0", sable_returns=[0.8, 1.0],
                        random_returns=[0.1], env_steps=1000)
    config = _real_config_json("high", 50)
    model = json.loads(config)["config_id"]
    for task, split in ((TRAIN, "train"), (TEST, "test")):
        write_evaluation(lake, task, model, Evaluation(
            "bc", split, 50, episodes=4, mean_return=0.45, std_return=0.1,
            normalised_return=0.5, reference_return=0.9, config=config, data_versions="{}"))
    return root


def test_every_block_is_of_a_kind_the_test_knows():
    known = {"", "python", "sql", "bash", "json", "yaml"}
    assert {b.language for b in BLOCKS} <= known, [str(b) for b in BLOCKS
                                                    if b.language not in known]
    assert _blocks("python") and _blocks("sql") and _blocks("bash") and _blocks("json")


def test_the_column_tables_are_the_schemas():
    """The README's `### Columns` tables are what `schema TABLE --format markdown` prints,
    verbatim, each under its table's heading: a schema change without its README fails."""
    text = README.read_text()
    for table in TABLES:
        generated = schema_markdown(describe_table(table))
        heading = f"#### `{table}`\n\n"
        assert heading + generated + "\n" in text, (
            f"README's {table} columns differ from the schema; regenerate them with "
            f"`python -m lake_schema schema {table} --format markdown`")


@pytest.mark.parametrize("block", _blocks("python"), ids=str)
def test_python_blocks_run(block, workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    monkeypatch.delenv("SABLE_LAKE", raising=False)
    exec(compile(block.code, str(block), "exec"), {"__name__": "readme"})
    assert capsys.readouterr().out.strip()  # it printed what it read


def _statements(sql: str) -> list[str]:
    code = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in code.split(";") if s.strip()]


@pytest.mark.parametrize("block", _blocks("sql"), ids=str)
def test_sql_blocks_run_and_answer(block, workdir):
    con = connect(Lake(workdir / "lake"))
    for statement in _statements(block.code):
        rows = con.sql(statement).fetchall()
        assert rows, f"{block}: no rows from {statement!r}"


def _shell_lines(code: str) -> list[str]:
    joined = code.replace("\\\n", " ")
    return [line for line in joined.splitlines() if shlex.split(line, comments=True)]


@pytest.mark.parametrize("block", _blocks("bash"), ids=str)
def test_shell_blocks_run(block, workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    monkeypatch.delenv("SABLE_LAKE", raising=False)
    for line in _shell_lines(block.code):
        words = shlex.split(line, comments=True)
        prefix = words[:3]
        assert prefix in (["python", "-m", "lake_schema"],
                          [".venv/bin/python", "-m", "lake_schema"]), (
            f"{block}: {line!r} is not a `python -m lake_schema` command this test can run; "
            "if it is expensive, mark its block `bash no-test`")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(words[3:])
        assert status == 0 and out.getvalue().strip(), f"{block}: {line!r}: {err.getvalue()}"


def _layout(value: object) -> object:
    """The shape of a JSON value: dicts by their keys (recursively), anything else by kind."""
    if isinstance(value, dict):
        return {k: _layout(v) for k, v in value.items()}
    return "list" if isinstance(value, list) else "value"


@pytest.mark.parametrize("block", _blocks("json") + _blocks("yaml"), ids=str)
def test_json_and_yaml_blocks_parse(block):
    doc = json.loads(block.code) if block.language == "json" else yaml.safe_load(block.code)
    assert doc
    if block.language == "json" and "config_id" in doc:  # the evaluations.config example
        assert _layout(doc) == _layout(json.loads(_real_config_json("high", 300))), (
            f"{block}: the evaluations.config example's keys differ from what "
            "trainer.offline.evaluation.evaluation_config_json writes")
