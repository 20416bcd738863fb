"""Task names -> catalogue tasks: the one place the trainer turns what a user wrote
(`env/scenario`, a bare scenario with an env, a split) into tasks.

Why one function: online training, dataset selections and evaluation all accept task names;
resolving them once gives one set of rules and one kind of error (`SelectionError`, a
ValueError) instead of the catalogue's KeyError wrapped in three places.
"""

from __future__ import annotations

from collections.abc import Sequence

from lake_schema.catalogue import Task, UnknownTaskError, env_spec, get_task, split_tasks
from trainer.errors import SelectionError


def resolve_tasks(env: str | None = None, tasks: Sequence[str | Task] | None = None,
                  split: str | None = None, first_k: int | None = None) -> tuple[Task, ...]:
    """The tasks of `split` (its first `first_k`) or the named `tasks` (`env/scenario`, or a
    bare scenario of `env`), in order; all from one environment (`env` when given)."""
    if (tasks is None) == (split is None):
        raise SelectionError("give exactly one of tasks= or split=")
    try:
        if env is not None:
            env_spec(env)
        if split is not None:
            if env is None:
                raise SelectionError(f"split={split!r} needs env=")
            found = split_tasks(env, split)
            if first_k is not None:
                if not isinstance(first_k, int) or not 1 <= first_k <= len(found):
                    raise SelectionError(
                        f"first_k={first_k!r} is outside 1..{len(found)} "
                        f"(the {env} split {split!r} has {len(found)} tasks)")
                found = found[:first_k]
            return tuple(found)
        if first_k is not None:
            raise SelectionError("first_k needs split= (the first k tasks of a split)")
        if not tasks:
            raise SelectionError("tasks=() selects nothing")
        out = []
        for t in tasks:
            if not isinstance(t, Task) and "/" not in t:
                if env is None:
                    raise SelectionError(f"task {t!r} has no environment: write env/scenario "
                                         "or give env=")
                t = f"{env}/{t}"
            out.append(resolve_task(t))
    except UnknownTaskError as e:
        raise SelectionError(str(e)) from e
    envs = sorted({t.env for t in out} | ({env} if env else set()))
    if len(envs) > 1:
        raise SelectionError(
            f"tasks from {len(envs)} environments ({', '.join(envs)}): "
            f"{[t.name for t in out]}; one selection (and one model's observation space) is "
            "one environment")
    return tuple(out)


def resolve_task(task: str | Task) -> Task:
    """A catalogue task from its `env/scenario` name; unknown names are a SelectionError."""
    if isinstance(task, Task):
        return task
    try:
        return get_task(str(task))
    except UnknownTaskError as e:
        raise SelectionError(str(e)) from e
