"""A lake selection as a Hugging Face dataset folder: what researchers load with
`datasets.load_dataset` and publish on the Hub, with no loading script.

    DIR/README.md                              the dataset card: the Hub's YAML front matter
                                               (configs, features, license) and the text
    DIR/<config>/<split>-<i>-of-<n>.parquet    one config per task (`lbf-8x8-2p-2f`), one
                                               split per quality (`low`, `high`)

The Hub's manual configuration (`configs:` in the card's YAML, `data_files` per split) names
the files, in `push_to_hub`'s own folder layout. One config per task because a config has one
feature schema, and the observation width, dtype and action names differ by env (a task's
number of agents is a list length). Splits are the lake's quality tags, so `split="high"` is
the paper's high-quality dataset and the two never mix by accident. One shard per recorded
checkpoint (one lake steps file, the unit the lake reads: memory stays one checkpoint's), in
lake order: run, checkpoint, episode, step.

One row per environment step, not per episode: a step's lists have fixed shapes ([N][F] obs,
[N] actions), which `datasets` reads as plain nested lists and the Hub's viewer pages in
row groups; an episode row would be a [T][N][F] list of up to a megabyte (rware: 500 steps x
32 agents x 66), too big for the viewer's pages and for `datasets`' batches of 1,000 rows.
The episode key (run, checkpoint, episode) and the episode's return on every row regroup the
episodes, as LeRobot's per-frame rows with their episode index do.

The files hold exactly the Arrow types the card's features declare (actions as int64, a
ClassLabel's type), so the loader's cast changes nothing. Every read is pinned to one version
of the episodes index (which pins the steps), the cards and the references, and the card
records them. The folder is written hidden beside DIR and renamed into place: DIR is absent
or a whole dataset. A hidden folder left by an export that was killed (its process gone) is
removed by the next export to DIR. No JAX, and no `datasets` (the tests load the folder with it).
"""

from __future__ import annotations

import datetime as dt
import glob
import json
import os
import re
import secrets
import shutil
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lake_schema.cards import DatasetCard, code_version, current_cards, obs_summary, return_moments
from lake_schema.catalogue import Task, get_task
from lake_schema.errors import LakeFileError, LakeValueError
from lake_schema.reader import Selection, read_files, read_table, table_versions
from lake_schema.schema import (
    CARD_QUANTILES,
    EPISODES_SCHEMA,
    PARTITION_DESCRIPTIONS,
    QUALITIES,
    description,
    steps_schema,
)
from lake_schema.storage import Lake

LICENSE = "apache-2.0"  # pyproject.toml declares none: Jumanji's, whose environments made the data
PAPER = "Multi-task sequence models generalise in offline multi-agent reinforcement learning"
CITATION = """@misc{multitask_sequence_models_offline_marl,
  title  = {Multi-Task Sequence Models Generalise in Offline Multi-Agent Reinforcement Learning},
  author = {Anonymous},
  note   = {Paper under double-blind review}
}"""
# Rows per Parquet row group: `datasets`' own writer batch (config.DEFAULT_MAX_BATCH_SIZE); at
# most ~3 MB even for 32 rware agents, far under the 100 MB row group the Hub's viewer reads.
ROW_GROUP_ROWS = 1000
_TABLES = ("episodes", "cards", "references")  # the reads, pinned together (steps: by episodes)
_INDEX_COLUMNS = ["run", "quality", "checkpoint", "episode", "length", "return", "env_steps",
                  "steps_file"]
_STEP_COLUMNS = ["episode", "step", "obs", "action", "legal", "reward", "terminated",
                 "truncated"]


# ---------------------------------------------------------------- the rows


@dataclass(frozen=True)
class Column:
    """One exported column: its Arrow type, its `datasets` feature as the card's YAML writes
    it (`Features._to_yaml_list`), its type as people read it, and its meaning."""

    name: str
    type: pa.DataType
    feature: dict
    shown: str
    meaning: str


def _value(name: str, dtype: str, meaning: str) -> Column:
    return Column(name, pa.from_numpy_dtype(np.dtype(dtype)) if dtype != "string"
                  else pa.string(), {"dtype": dtype}, dtype, meaning)


def columns(task: Task) -> list[Column]:
    """The exported row: the episode key, the step, then its episode's return and tags."""
    spec, n_f, n_a = task.spec, task.spec.obs_width, task.spec.num_actions
    steps = {f.name: description(f) for f in steps_schema(task.env)}
    episodes = {f.name: description(f) for f in EPISODES_SCHEMA}
    obs_type = pa.from_numpy_dtype(np.dtype(spec.obs_dtype))
    labels = {"names": {str(i): a for i, a in enumerate(spec.action_names)}}
    return [
        _value("run", "string", PARTITION_DESCRIPTIONS["run"]),
        _value("checkpoint", "int32", PARTITION_DESCRIPTIONS["checkpoint"]),
        _value("episode", "int32", "the episode's index within its checkpoint (from 0); "
                                   "(run, checkpoint, episode) is the episode key"),
        _value("step", "int32", steps["step"]),
        Column("obs", pa.list_(pa.list_(obs_type, n_f)),
               {"list": {"list": spec.obs_dtype, "length": n_f}},
               f"{spec.obs_dtype} [N][{n_f}]", "each agent's observation when it chose this "
               "step's action (its features are named below)"),
        Column("action", pa.list_(pa.int64()), {"list": {"class_label": labels}},
               "ClassLabel [N]", f"each agent's action: {', '.join(spec.action_names)}"),
        Column("legal", pa.list_(pa.list_(pa.bool_(), n_a)),
               {"list": {"list": "bool", "length": n_a}}, f"bool [N][{n_a}]",
               f"{steps['legal']}, in the action classes' order"),
        _value("reward", "float32", "the team reward that followed this step's joint action "
                                    f"({spec.team_reward})"),
        _value("terminated", "bool", steps["terminated"]),
        _value("truncated", "bool", steps["truncated"]),
        _value("episode_return", "float64", f"the episode's return, {episodes['return']}, on "
                                            "each of its rows"),
        _value("quality", "string", f"{PARTITION_DESCRIPTIONS['quality']} (the split)"),
        _value("env_steps", "int64", episodes["env_steps"]),
    ]


def row_schema(task: Task) -> pa.Schema:
    """The exported files' Arrow schema: what `datasets` makes of the card's features."""
    return pa.schema([pa.field(c.name, c.type) for c in columns(task)])


def config_name(task: Task) -> str:
    """`lbf/8x8-2p-2f` -> `lbf-8x8-2p-2f`: one path segment, unique (env names hold no `-`)."""
    return f"{task.env}-{task.scenario}"


def _rows(lake: Lake, task: Task, rel: str, index: pa.Table, schema: pa.Schema) -> pa.Table:
    """One steps file's rows, each with its episode's index columns, in the export's schema;
    `index`: the file's episodes rows. Steps that are not those episodes' are a LakeFileError
    naming the file."""
    steps = read_files(lake, [rel], "steps", task.env, _STEP_COLUMNS).sort_by(
        [("episode", "ascending"), ("step", "ascending")])
    at = pc.index_in(steps["episode"], value_set=index["episode"])
    lengths = index["length"].to_numpy()
    if at.null_count or not np.array_equal(
            np.bincount(at.to_numpy(), minlength=len(lengths)), lengths):
        raise LakeFileError(rel, f"its {steps.num_rows} rows are not the {lengths.sum()} "
                                 f"steps of the {len(lengths)} episodes its index rows name")
    episode = index.take(at)
    data = {c: steps[c] for c in _STEP_COLUMNS} | {
        "run": episode["run"], "checkpoint": episode["checkpoint"],
        "episode_return": episode["return"], "quality": episode["quality"],
        "env_steps": episode["env_steps"]}
    return pa.table([data[name] for name in schema.names], names=schema.names).cast(schema)


# ---------------------------------------------------------------- the selection


@dataclass(frozen=True)
class ConfigData:
    """One task's selection: its episodes index rows (sorted in lake order) and the card of
    each of its runs, restricted to the selected checkpoints."""

    task: Task
    index: pa.Table
    cards: tuple[DatasetCard, ...]

    @property
    def name(self) -> str:
        return config_name(self.task)

    @property
    def qualities(self) -> list[str]:
        held = set(self.index["quality"].to_pylist())
        return [q for q in QUALITIES if q in held]

    def of_quality(self, quality: str) -> pa.Table:
        return self.index.filter(pc.equal(self.index["quality"], quality))

    def card_rows(self, quality: str | None = None) -> list[dict]:
        return [r for c in self.cards for r in c.checkpoints
                if quality is None or r["quality"] == quality]


def _select(lake: Lake, task: Task, qualities: Sequence[str] | None, runs: Sequence[str] | None,
            as_of: dict[str, int]) -> ConfigData:
    """The task's selected episodes and cards; a selection with no episodes, or episodes
    without a current card, is a LakeValueError naming the task (and what the lake holds)."""
    sel = Selection(env=task.env, tasks=[task.scenario], runs=runs, as_of=as_of)
    index = read_table(lake, "episodes", sel, _INDEX_COLUMNS)
    which = task.name + (f" run {', '.join(runs)}" if runs else "")
    if index.num_rows == 0:
        held = sorted(set(read_table(lake, "episodes", Selection(
            env=task.env, tasks=[task.scenario], as_of=as_of), ["run"])["run"].to_pylist()))
        raise LakeValueError(f"no episodes of {which} in {lake.root}"
                             + (f" (its runs: {', '.join(held)})" if held else ""))
    held = [q for q in QUALITIES if q in set(index["quality"].to_pylist())]
    if qualities is not None:
        missing = [q for q in qualities if q not in held]
        if missing:
            raise LakeValueError(f"no {' or '.join(missing)} quality episodes of {which} in "
                                 f"{lake.root} (it holds {', '.join(held)})")
        index = index.filter(pc.is_in(index["quality"], pa.array(list(qualities))))
    index = index.sort_by([("run", "ascending"), ("checkpoint", "ascending"),
                           ("episode", "ascending")])
    return ConfigData(task, index, _cards(lake, task, index, sel))


def _cards(lake: Lake, task: Task, index: pa.Table, sel: Selection) -> tuple[DatasetCard, ...]:
    """Each run's card over exactly the selected checkpoints (cards paired with the index by
    steps file, so a stale card never counts)."""
    cards = current_cards(lake, sel)
    refs = {r["run"]: r for r in read_table(lake, "references", sel).to_pylist()}
    keys = sorted({(r["run"], r["checkpoint"], r["steps_file"]) for r in index.to_pylist()})
    stale = [f"{run} checkpoint {ck}" for run, ck, f in keys if f not in cards]
    if stale:
        raise LakeValueError(f"{task.name}: no current dataset card for {', '.join(stale)}: "
                             "run `python -m lake_schema card --backfill`")
    out = []
    for run in sorted({k[0] for k in keys}):
        rows = tuple(cards[f] for r, _, f in keys if r == run)
        out.append(DatasetCard(task, run, rows, refs.get(run)))
    return tuple(out)


# ---------------------------------------------------------------- writing


@dataclass(frozen=True)
class SplitFiles:
    """One split of one config: its shards (paths relative to the folder) and their size."""

    config: str
    split: str
    files: tuple[str, ...]
    episodes: int
    steps: int
    arrow_bytes: int  # the rows in memory (Arrow), as `datasets` records a split's num_bytes
    file_bytes: int  # the Parquet files (the Hub's download size)


@dataclass(frozen=True)
class ExportResult:
    path: Path
    splits: tuple[SplitFiles, ...]

    @property
    def episodes(self) -> int:
        return sum(s.episodes for s in self.splits)

    @property
    def steps(self) -> int:
        return sum(s.steps for s in self.splits)


def check_dest(dest: str | os.PathLike) -> Path:
    """DEST may not exist yet, or be an empty folder: an export never mixes with other files."""
    path = Path(dest)
    if path.exists() and not path.is_dir():
        raise LakeValueError(f"{path}: is a file; export-hf writes a dataset folder there")
    if path.is_dir() and any(path.iterdir()):
        raise LakeValueError(f"{path}: the folder exists and is not empty; name a new or "
                             "empty folder")
    return path


def _hidden_prefix(dest: Path) -> str:
    return f".{dest.name}.export-hf-"


def _remove_abandoned(dest: Path) -> None:
    """Remove the hidden folders beside `dest` of exports to it that were killed: written on
    this host by a process that no longer runs. Another export still writing, here or on
    another host sharing the folder, keeps its own."""
    host = socket.gethostname()
    for folder in dest.parent.glob(f"{glob.escape(_hidden_prefix(dest))}*"):
        writer, _, token = folder.name.removeprefix(_hidden_prefix(dest)).rpartition("-")
        on_host, _, pid = writer.rpartition("-")
        if on_host == host and pid.isdigit() and token and not _running(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _write_split(lake: Lake, config: ConfigData, quality: str, folder: Path) -> SplitFiles:
    index = config.of_quality(quality)
    files = list(dict.fromkeys(index["steps_file"].to_pylist()))
    schema = row_schema(config.task)
    (folder / config.name).mkdir(exist_ok=True)
    names, arrow_bytes = [], 0
    for i, rel in enumerate(files):  # one recorded checkpoint per shard
        name = f"{config.name}/{quality}-{i:05d}-of-{len(files):05d}.parquet"
        rows = _rows(lake, config.task, rel, index.filter(pc.equal(index["steps_file"], rel)),
                     schema)
        pq.write_table(rows, folder / name, row_group_size=ROW_GROUP_ROWS, compression="zstd")
        names.append(name)
        arrow_bytes += rows.nbytes
    return SplitFiles(config.name, quality, tuple(names), index.num_rows,
                      pc.sum(index["length"]).as_py(), arrow_bytes,
                      sum((folder / n).stat().st_size for n in names))


def export_hf(lake: Lake, dest: str | os.PathLike, tasks: Sequence[str | Task],
              quality: str | Sequence[str] | None = None, runs: Sequence[str] | None = None
              ) -> ExportResult:
    """Write the selected episodes of `tasks` as the Hugging Face dataset folder `dest` (new
    or empty): one config per task, one split per quality (`quality`: those only, each must
    hold episodes; None: every quality the selection holds), `runs` (None: all)."""
    path = check_dest(dest)
    chosen = list(dict.fromkeys(get_task(t) if isinstance(t, str) else t for t in tasks))
    if not chosen:
        raise LakeValueError("export-hf needs at least one task")
    qualities = [quality] if isinstance(quality, str) else quality
    lake.check_readable()
    as_of = table_versions(lake, _TABLES)
    configs = [_select(lake, t, qualities, runs, as_of) for t in chosen]
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(path)
    tmp = path.parent / f"{_hidden_prefix(path)}{socket.gethostname()}-{os.getpid()}-" \
                        f"{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        splits = tuple(_write_split(lake, c, q, tmp) for c in configs for q in c.qualities)
        (tmp / "README.md").write_text(dataset_card(lake, configs, splits, as_of),
                                       encoding="utf-8")
        try:
            os.rename(tmp, path)  # replaces an empty folder; refuses one filled meanwhile
        except OSError as e:
            raise LakeValueError(f"{path}: cannot move the export into place ({e})") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(path, splits)


# ---------------------------------------------------------------- the card


def dataset_card(lake: Lake, configs: Sequence[ConfigData], splits: Sequence[SplitFiles],
                 as_of: dict[str, int]) -> str:
    """README.md: the Hub's YAML front matter, then the card as Markdown."""
    parts = ["---", _yaml(front_matter(configs, splits)).rstrip(), "---", "",
             _introduction(configs, splits), _columns_section(configs)]
    parts += [_config_section(c) for c in configs]
    parts += [_provenance(lake, configs, as_of), "## Citation", "",
              f"The datasets of *{PAPER}*:", "", "```bibtex", CITATION, "```", "",
              "## License", "", f"{LICENSE}.", ""]
    return "\n".join(parts)


def front_matter(configs: Sequence[ConfigData], splits: Sequence[SplitFiles]) -> dict:
    """The card's metadata as the Hub and `datasets` read it: `configs` (the files of each
    split) and `dataset_info` (each config's features and split sizes: the loader checks
    the rows it reads against `num_examples`, so a lost shard is an error, not a smaller
    dataset)."""
    by_config = {c.name: [s for s in splits if s.config == c.name] for c in configs}
    return {
        "license": LICENSE,
        "pretty_name": "sable-lake: " + ", ".join(c.task.name for c in configs),
        "task_categories": ["reinforcement-learning"],
        "tags": ["multi-agent-reinforcement-learning", "offline-reinforcement-learning",
                 "jumanji", *dict.fromkeys(c.task.env for c in configs)],
        "size_categories": [_size_category(sum(s.steps for s in splits))],
        "configs": [{"config_name": name, "data_files": [
            {"split": s.split, "path": f"{name}/{s.split}-*.parquet"} for s in mine]}
            for name, mine in by_config.items()],
        "dataset_info": [{"config_name": c.name,
                          "features": [{"name": col.name, **col.feature}
                                       for col in columns(c.task)],
                          "splits": [{"name": s.split, "num_bytes": s.arrow_bytes,
                                      "num_examples": s.steps} for s in by_config[c.name]],
                          "download_size": sum(s.file_bytes for s in by_config[c.name]),
                          "dataset_size": sum(s.arrow_bytes for s in by_config[c.name])}
                         for c in configs],
    }


_SIZES = ((10**3, "n<1K"), (10**4, "1K<n<10K"), (10**5, "10K<n<100K"), (10**6, "100K<n<1M"),
          (10**7, "1M<n<10M"), (10**8, "10M<n<100M"), (10**9, "100M<n<1B"))


def _size_category(rows: int) -> str:
    """The Hub's size category of a number of rows."""
    return next((name for limit, name in _SIZES if rows < limit), "1B<n<10B")


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(v).replace("|", "\\|") for v in r] for r in [header, *rows]]
    lines = ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join([lines[0], "| " + " | ".join("---" for _ in header) + " |", *lines[1:]])


def _num(x: float) -> str:
    return f"{x:.4g}"


def _introduction(configs: Sequence[ConfigData], splits: Sequence[SplitFiles]) -> str:
    first = configs[0]
    rows = [[f"`{c.name}`", c.task.name, c.task.num_agents, c.task.time_limit, f"`{s.split}`",
             s.episodes, s.steps, len(s.files)]
            for c in configs for s in splits if s.config == c.name]
    return "\n".join([
        f"# sable-lake: {', '.join(c.task.name for c in configs)}", "",
        "Episodes of online Sable recorded at fixed checkpoints of its training on Jumanji "
        f"tasks: the offline multi-agent RL datasets of *{PAPER}*, exported from a "
        "sable-lake lake. Each config is one task; its splits are the checkpoints' quality: "
        "`low`, recorded in the first two thirds of online training, `high` in the last "
        "third (the paper's appendix D).", "",
        "```python", "from datasets import load_dataset", "",
        f'steps = load_dataset("<this folder or its Hub id>", name="{first.name}", '
        f'split="{first.qualities[-1]}")', "```", "",
        "One row per environment step; an episode's rows are consecutive, step 0 first, in "
        "the order run, checkpoint, episode.", "",
        "## Configs and splits", "",
        _table(["config", "task", "agents", "time limit", "split", "episodes", "steps",
                "files"], rows), ""])


def _columns_section(configs: Sequence[ConfigData]) -> str:
    """The columns of each env's configs (their types and action classes differ by env)."""
    envs = {c.task.env: c.task for c in configs}
    lines = ["## Columns", "", "N is the task's number of agents.", ""]
    for env, task in envs.items():
        if len(envs) > 1:
            lines += [f"### {env} configs", ""]
        lines += [_table(["column", "type", "meaning"],
                         [[f"`{c.name}`", c.shown, c.meaning] for c in columns(task)]), ""]
    return "\n".join(lines)


def _config_section(config: ConfigData) -> str:
    t = config.task
    return "\n".join([
        f"## `{config.name}`", "",
        f"Task {t.name}: {t.num_agents} agents, time limit {t.time_limit} steps, generator "
        f"{json.dumps(dict(t.generator))}; {sum(c.episodes for c in config.cards)} episodes, "
        f"{sum(c.steps for c in config.cards)} steps.", "",
        _returns(config),
        "### Reference returns", "",
        "The paper normalises a return by online Sable's final return on the task; the "
        "uniformly random legal policy's is the floor.", "",
        _references(config), "",
        _features(config)])


def _returns(config: ConfigData) -> str:
    """Episode-return statistics per quality (merged over runs) and per checkpoint."""
    q_names = [f"p{round(q * 100)}" for q in CARD_QUANTILES]
    per_checkpoint = [
        [r["run"], r["checkpoint"], r["quality"], r["env_steps"], r["episodes"], r["steps"],
         _num(r["return_mean"]), _num(np.sqrt(r["return_m2"] / r["episodes"])),
         _num(r["return_min"]), *map(_num, r["return_quantiles"]), _num(r["return_max"])]
        for r in config.card_rows()]
    per_quality = []
    for q in config.qualities:
        rows = config.card_rows(q)
        m = return_moments(rows)
        per_quality.append([f"`{q}`", len(rows), m.count, sum(r["steps"] for r in rows),
                            _num(m.mean[0]), _num(m.std[0]),
                            _num(min(r["return_min"] for r in rows)),
                            _num(max(r["return_max"] for r in rows))])
    return "\n".join([
        "### Returns per quality", "",
        _table(["quality", "checkpoints", "episodes", "steps", "mean", "std", "min", "max"],
               per_quality), "",
        "### Returns per checkpoint", "",
        _table(["run", "checkpoint", "quality", "env_steps", "episodes", "steps", "mean", "std",
                "min", *q_names, "max"], per_checkpoint), ""])


def _features(config: ConfigData) -> str:
    """What each `obs` entry and `action` class is, with their statistics from the cards."""
    spec, rows = config.task.spec, config.card_rows()
    obs = obs_summary(rows)
    features = [[i, f"`{name}`", _num(obs.moments.mean[i]), _num(obs.moments.std[i]),
                 _num(obs.min[i]), _num(obs.max[i])] for i, name in enumerate(spec.obs_features)]
    counts = np.sum([r["action_counts"] for r in rows], axis=0).sum(axis=0)  # [A]
    actions = [[i, f"`{a}`", f"{c / max(counts.sum(), 1):.3f}"]
               for i, (a, c) in enumerate(zip(spec.action_names, counts, strict=True))]
    return "\n".join([
        "### Observation features", "",
        f"What each of an agent's {spec.obs_width} `obs` entries is, with its statistics over "
        "the config's agent-steps:", "",
        _table(["index", "feature", "mean", "std", "min", "max"], features), "",
        "### Actions", "",
        "The `action` classes, with their share of the config's agent-steps:", "",
        _table(["class", "action", "share"], actions), ""])


def _references(config: ConfigData) -> str:
    rows = [[c.run, f"{_num(r['sable_return'])} (std {_num(r['sable_return_std'])}, "
                    f"{r['sable_episodes']} episodes)",
             f"{_num(r['random_return'])} (std {_num(r['random_return_std'])}, "
             f"{r['random_episodes']} episodes)", r["env_steps"]]
            for c in config.cards if (r := c.reference) is not None]
    if not rows:
        return "None recorded (the online run has not finished)."
    return _table(["run", "online Sable", "random", "env_steps"], rows)


def _provenance(lake: Lake, configs: Sequence[ConfigData], as_of: dict[str, int]) -> str:
    lines = ["## Provenance", "",
             f"Exported by {code_version()} on "
             f"{dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} from the lake "
             f"`{lake.root}`, reading the table versions `{json.dumps(as_of, sort_keys=True)}` "
             "(the episodes version pins the steps read).", ""]
    for c in configs:
        for config, version in dict.fromkeys(
                (r["config"], r["code_version"]) for r in c.card_rows()):
            lines += [f"`{c.name}` recorded by {version or 'unknown code'} with the config:", "",
                      "```json", config or "null (unknown)", "```", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- YAML, without a YAML library

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.*/-]*")  # safe unquoted in YAML
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def _scalar(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    text = str(v)
    if _PLAIN.fullmatch(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text)  # a JSON string is a YAML double-quoted scalar


def _yaml_lines(obj: object, indent: int) -> list[str]:
    pad, lines = "  " * indent, []
    items = obj.items() if isinstance(obj, dict) else [(None, v) for v in obj]
    for key, value in items:
        head = f"{pad}{_scalar(key)}:" if key is not None else f"{pad}-"
        if isinstance(value, dict | list) and value:
            if key is None:  # a mapping or list in a list starts on the dash's line
                inner = _yaml_lines(value, indent + 1)
                lines += [f"{head} {inner[0].lstrip()}", *inner[1:]]
            else:
                lines += [head, *_yaml_lines(value, indent + 1)]
        else:
            empty = "{}" if isinstance(value, dict) else "[]"
            lines.append(f"{head} {empty if isinstance(value, dict | list) else _scalar(value)}")
    return lines


def _yaml(obj: dict) -> str:
    """Block YAML of dicts, lists, strings, ints and bools (the front matter's kinds)."""
    return "\n".join(_yaml_lines(obj, 0)) + "\n"


__all__ = ["CITATION", "LICENSE", "Column", "ConfigData", "ExportResult", "SplitFiles",
           "check_dest", "columns", "config_name", "dataset_card", "export_hf",
           "front_matter", "row_schema"]
