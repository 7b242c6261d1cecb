"""The tasks an ONNX export serves, as optimum names them: for each, the head of ours it reads, the graph of that head
on the encoder's output, and the outputs (optimum's names and axes) with where our model keeps each.

Adding a fine-tuning head's task is one entry in `TASKS`: its head name, a graph function from the encoder's output
to the output tensors, and the mapping from our model's output dict to optimum's names (`FINE_TUNING_TASKS` lists
what optimum calls each task's outputs).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from bert_jax.errors import InputError
from bert_jax.interop import onnx_graph
from bert_jax.interop.onnx_graph import BATCH_AXIS, SEQUENCE_AXIS


class TaskError(InputError):
    """A task that cannot be exported (yet); the message lists those that can."""


@dataclasses.dataclass(frozen=True)
class Task:
    name: str  # optimum's task name (`--task`)
    head: str | None  # the head it needs, as the import report names it ("MLM head"); None: the encoder alone
    # (builder, encoder output [B, S, D], params, encoder prefix, config) -> {output name: graph tensor}
    graph: Callable[..., dict[str, str]]
    # config -> {output name: its shape, with the dynamic axes named}
    output_shapes: Callable[..., dict[str, list]]
    # our model's outputs (dict) -> {output name: array}: the reference the export is validated against
    reference: Callable[[dict], dict]


TASKS = {
    "fill-mask": Task(
        name="fill-mask", head="MLM head",
        graph=lambda g, x, params, prefix, config: {"logits": onnx_graph.mlm_logits(g, x, params, prefix, config)},
        output_shapes=lambda config: {"logits": [BATCH_AXIS, SEQUENCE_AXIS, config.vocab_size]},
        reference=lambda outputs: {"logits": outputs["mlm_logits"]},
    ),
    "feature-extraction": Task(
        name="feature-extraction", head=None,
        graph=lambda g, x, params, prefix, config: {"last_hidden_state": x},
        output_shapes=lambda config: {"last_hidden_state": [BATCH_AXIS, SEQUENCE_AXIS, config.hidden_size]},
        reference=lambda outputs: {"last_hidden_state": outputs["sequence_output"]},
    ),
}

# optimum's tasks that need a fine-tuning head, with their outputs; multiple-choice inputs are
# [batch_size, num_choices, sequence_length]. None of these heads exists yet.
FINE_TUNING_TASKS = {
    "text-classification": ("logits",),
    "token-classification": ("logits",),
    "question-answering": ("start_logits", "end_logits"),
    "multiple-choice": ("logits",),
}
ALL_TASKS = (*TASKS, *FINE_TUNING_TASKS)


def task(name: str) -> Task:
    if name in TASKS:
        return TASKS[name]
    exportable = ", ".join(TASKS)
    if name in FINE_TUNING_TASKS:
        raise TaskError(f"--task {name} needs a fine-tuning head, and bert_jax has none yet (heads come with "
                        f"fine-tuning); the tasks that can be exported today are {exportable}")
    raise TaskError(f"--task {name!r} is not an ONNX export task; the tasks that can be exported are {exportable}")
