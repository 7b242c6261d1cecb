"""Fine-tuning tasks: readers of labelled text (GLUE's distributed TSVs, or any CSV/JSONL/Parquet table with column
arguments), their label sets, problem types and metrics. Pure Python plus NumPy: no JAX.

    task = tasks.get("rte")                      # an unknown name is an InputError listing the known ones
    data = task.read("glue_data/RTE")            # TaskData: train and dev examples, labels as indices or floats

A task is a `Task` (base.py); GLUE's nine are in glue.py, the generic table task in tables.py, SQuAD v1.1 and v2.0
(extractive question answering) in squad.py.
"""

from __future__ import annotations

from bert_jax.data.tasks.base import Example, Task, TaskData
from bert_jax.errors import InputError

__all__ = ["Example", "Task", "TaskData", "get", "names"]


def _tasks() -> dict[str, Task]:
    from bert_jax.data.tasks import glue, squad, tables

    return {**glue.TASKS, tables.TABLE.name: tables.TABLE, **squad.TASKS}


def names() -> list[str]:
    return sorted(_tasks())


def get(name: str) -> Task:
    """The task called `name` (case-insensitive: `SST-2`, `sst2`, `MNLI`)."""
    key = name.lower().replace("-", "")
    tasks = _tasks()
    if key not in tasks:
        raise InputError(f"task {name!r} does not exist; the tasks are {', '.join(names())}")
    return tasks[key]
