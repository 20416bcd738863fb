"""The README's code blocks run, and what it says about the code matches the code.

Every fenced block is checked by its info string: `python` blocks are executed, `sql`
statements run on the lake's DuckDB views and must return rows with no column all null,
`bash` lines (all of them `python -m lake_schema ...`) run through the CLI and must exit 0,
`yaml job=NAME` blocks must be a run config that job accepts (and the offline models it
describes must validate), `yaml instance` blocks must parse. All of this against a small real
lake in a temporary directory, as `./lake`. A block the test cannot afford (`make demo`,
training, a cluster) says so itself, with its reason: ```` ```bash no-test (reason) ````; its
command lines are still checked: every `--flag` must be one its program accepts and every
`make` target must exist. A block without an info string is a diagram, not code.

Beside the blocks: the lake's table of tables names exactly the schema's columns and
partitions, the layout table names existing paths and every module, every relative link and
image exists, and the README section `dagster.yaml` points to exists.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import json
import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from lake_schema.cli import main
from lake_schema.duck import connect
from lake_schema.schema import CARD_QUANTILES, TABLES, describe_table
from lake_schema.storage import Lake
from lake_schema.testing import fill_lake
from lake_schema.writer import Evaluation, write_evaluation, write_reference

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
FENCE = re.compile(r"^(?P<indent> *)```(?P<info>[^`]*)$")
TRAIN, TEST = "lbf/8x8-2p-2f", "lbf/12x12-4p-5f"


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    language: str
    flags: str  # the info string after the language: `no-test (reason)`, `job=NAME`, `instance`
    code: str

    @property
    def tested(self) -> bool:
        return not self.flags.startswith("no-test")

    @property
    def reason(self) -> str:
        """Why a `no-test` block is not run (empty when it gives none)."""
        return self.flags.removeprefix("no-test").strip(" :()")

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
        language, _, flags = m["info"].strip().partition(" ")
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        code = textwrap.dedent("\n".join(lines[i + 1:end]))
        blocks.append(Block(i + 1, language, flags.strip(), code))
        i = end + 1
    return blocks


BLOCKS = readme_blocks()


def _blocks(language: str) -> list[Block]:
    return [b for b in BLOCKS if b.language == language and b.tested]


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
    known = {"", "python", "sql", "bash", "yaml"}
    assert {b.language for b in BLOCKS} <= known, [str(b) for b in BLOCKS
                                                    if b.language not in known]
    assert _blocks("python") and _blocks("sql") and _blocks("bash") and _blocks("yaml")
    untested = [b for b in BLOCKS if not b.tested]
    assert all(b.reason for b in untested), [
        f"{b}: say why it is not run: ```{b.language} no-test (reason)" for b in untested
        if not b.reason]
    assert all(not b.flags for b in BLOCKS if b.language in ("python", "sql") and b.tested)
    yaml_kinds = [b for b in BLOCKS if b.language == "yaml"
                  if not (b.flags.startswith("job=") or b.flags == "instance")]
    assert not yaml_kinds, [f"{b}: a yaml block is `yaml job=NAME` or `yaml instance`"
                            for b in yaml_kinds]


# ---------------------------------------------------------------- what the README says


def _markdown_table(first_header: str) -> list[list[str]]:
    """The rows (cells stripped) of the README table whose header row starts with
    `| first_header |`."""
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split(" | ")])
    return rows


def _ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def test_the_table_of_tables_is_the_schemas():
    """`## The lake`'s table lists every table, its partitions and exactly its columns, in
    the schema's order, each list column with its shape ([5] for the return quantiles)."""
    rows = {_ticked(r[0])[0].split("/")[0]: r for r in _markdown_table("table")}
    assert sorted(rows) == sorted(TABLES)
    for table in TABLES:
        doc = describe_table(table)
        _, _, partitions, columns = rows[table]
        own = [p for p in doc.partitions if not (table == "steps" and p == "env")]
        assert partitions == "/".join(own), (table, partitions)
        names = [c.name for c in doc.columns if not c.partition]
        assert _ticked(columns) == names, f"README's {table} columns differ from the schema"
        for c in doc.columns:
            if c.shape:  # a list column: its shape, as the schema declares it, follows its name
                assert f"`{c.name}` {c.shape}" in columns, f"{table}.{c.name}: not {c.shape}"
    assert f"`return_quantiles` [{len(CARD_QUANTILES)}]" in rows["cards"][3]


def test_the_layout_table_names_real_paths_and_every_module():
    """Each path in the layout table exists (a bare name is in its row's first folder), and
    every module and subpackage of the three packages is named in it."""
    named: set[Path] = set()
    for row in _markdown_table("path"):
        paths = _ticked(row[0])
        first = REPO / paths[0]
        base = first if paths[0].endswith("/") else first.parent
        in_row = [first, *(first.parent / extra for extra in paths[1:])]
        for path in in_row:
            assert path.exists(), f"layout names {path.relative_to(REPO)}, which is not there"
        named.update(in_row)
        for cell in row[1:]:  # files named in the description, in the row's folder
            for name in _ticked(cell):
                if re.fullmatch(r"[a-z_]+\.py|[a-z_]+/", name) and (base / name).exists():
                    named.add(base / name)
    for package in ("lake_schema", "trainer", "pipelines"):
        for path in sorted((REPO / package).iterdir()):
            module = path.suffix == ".py" and not path.name.startswith("__")
            subpackage = path.is_dir() and (path / "__init__.py").exists()
            if module or subpackage:
                assert path in named, f"the README's layout does not name {package}/{path.name}"


def test_every_relative_link_and_image_exists():
    links = re.findall(r"\]\(([^)#:]+)\)", README.read_text())
    assert links and all((REPO / link).exists() for link in links), [
        link for link in links if not (REPO / link).exists()]


def test_the_readme_section_dagster_yaml_points_to_exists():
    text = (REPO / "dagster.yaml").read_text().replace("\n#", "")
    sections = re.findall(r'see README, "([^"]+)"', text)
    assert sections
    headings = {line.lstrip("#").strip() for line in README.read_text().splitlines()
                if re.match(r"#{2,6} ", line)}  # sections; a code comment is "# ..."
    assert set(sections) <= headings, (sections, sorted(headings))


# ---------------------------------------------------------------- blocks that run


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
    """Rows, and no column null in every row (a JSON path that names nothing reads null)."""
    con = connect(Lake(workdir / "lake"))
    for statement in _statements(block.code):
        result = con.sql(statement)
        rows = result.fetchall()
        assert rows, f"{block}: no rows from {statement!r}"
        empty = [name for i, name in enumerate(result.columns)
                 if all(row[i] is None for row in rows)]
        assert not empty, f"{block}: columns {empty} are null in every row of {statement!r}"


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
            "if it is expensive, mark its block `bash no-test (reason)`")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(words[3:])
        assert status == 0 and out.getvalue().strip(), f"{block}: {line!r}: {err.getvalue()}"


# ---------------------------------------------------------------- blocks checked, not run

PROGRAM = re.compile(r"(?:-m\s+(?P<module>lake_schema|trainer\.offline|trainer\.online)"
                     r"|(?P<script>benchmarks/reproduce\.py)|bin/(?P<cli>dagster)(?=\s))"
                     r"(?P<args>[^\"#;|&]*)")


def _help(program: str, args: list[str]) -> str:
    """`program args --help`, in this process where the program has a `main(argv)`."""
    if program == "dagster":  # its CLI is click's; run it as a user would
        out = subprocess.run([sys.executable, "-m", "dagster", *args, "--help"],
                             capture_output=True, text=True, timeout=120)
        return out.stdout
    if program.endswith(".py"):
        spec = importlib.util.spec_from_file_location("readme_script", REPO / program)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(
            "lake_schema.cli" if program == "lake_schema" else f"{program}.__main__")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        module.main([*args, "--help"])
    return out.getvalue()


def _command_flags(program: str, words: list[str]) -> tuple[str, set[str]]:
    """(help text of the program and of the subcommands the words name, the words' flags)."""
    if program == "dagster":
        subcommands = [w for w in words[:2] if not w.startswith("-")]
        return _help(program, subcommands), {w.split("=")[0] for w in words if w.startswith("--")}
    text = _help(program, [])
    choices = re.search(r"\{([a-z-]+(?:,[a-z-]+)+)\}", text)
    sub = next((w for w in words if choices and w in choices[1].split(",")), None)
    if sub:
        text += _help(program, [sub])
    return text, {w.split("=")[0] for w in words if w.startswith("--")}


def test_command_lines_use_flags_their_programs_accept():
    """Every `--flag` of every command line in a block (run or not) is in its program's
    `--help`, and every `make` target exists."""
    targets = set(re.findall(r"^([a-z-]+):", (REPO / "Makefile").read_text(), re.MULTILINE))
    wrong, seen = [], 0
    for block in (b for b in BLOCKS if b.language == "bash"):
        for line in block.code.replace("\\\n", " ").splitlines():
            code = line.split(" #")[0]
            if code.split()[:1] == ["make"]:
                if code.split()[1] not in targets:
                    wrong.append(f"{block}: no make target {code.split()[1]!r}")
                continue
            for m in PROGRAM.finditer(code):
                seen += 1
                program = m["module"] or m["script"] or m["cli"]
                text, flags = _command_flags(program, m["args"].split())
                wrong += [f"{block}: {program} has no {flag}" for flag in sorted(flags)
                          if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text)]
    assert seen and not wrong, wrong


def _yaml_blocks(kind: str) -> list[Block]:
    return [b for b in BLOCKS if b.language == "yaml" and b.flags.split("=")[0] == kind]


@pytest.mark.parametrize("block", _yaml_blocks("job"), ids=str)
def test_run_config_blocks_are_what_their_job_accepts(block):
    import dagster as dg

    from pipelines.definitions import defs
    from pipelines.experiments import LaunchConfig

    run_config = yaml.safe_load(block.code)
    job = defs.resolve_job_def(block.flags.removeprefix("job="))
    dg.validate_run_config(job, run_config)  # DagsterInvalidConfigError names the bad key
    ops = run_config["ops"]
    if "submit_experiment" in ops:  # values too: every model's tasks, choices, bounds
        assert LaunchConfig(**ops["submit_experiment"]["config"]).experiment().models


@pytest.mark.parametrize("block", _yaml_blocks("instance"), ids=str)
def test_instance_blocks_parse(block):
    local = yaml.safe_load((REPO / "dagster.yaml").read_text())
    doc = yaml.safe_load(block.code)
    assert doc and set(doc) <= set(local) | {"run_launcher"}, sorted(doc)
