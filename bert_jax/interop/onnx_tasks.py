"""The tasks an ONNX export serves, as optimum names them: for each, the head of ours it reads, the graph of that head
on the encoder's output, and the outputs (optimum's names and axes) with where our model keeps each.

Adding a task is one entry in `TASKS`: the head it needs (and, for a fine-tuning head, the model of ours that has it
and transformers' class suffix), a graph function from the encoder's output to the output tensors, their shapes,
and the mapping from our model's output dict to optimum's names.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from bert_jax.errors import InputError
from bert_jax.interop import onnx_graph
from bert_jax.interop.onnx_graph import BATCH_AXIS, CHOICES_AXIS, SEQUENCE_AXIS
from bert_jax.models import heads


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
    reference: Callable[[dict], dict] = lambda outputs: {"logits": outputs["logits"]}
    # A fine-tuning task: the head of ours (`models.heads`) whose model is loaded and exported, and transformers'
    # class suffix for it ("ForSequenceClassification"); None for the pre-training tasks.
    fine_tuning_head: str | None = None
    architecture_suffix: str | None = None
    choices: bool = False  # inputs [batch_size, num_choices, sequence_length], flattened into the encoder's batch


def _sequence_logits(g, x, params, prefix, config):
    return {"logits": onnx_graph.SEQUENCE_CLASSIFIERS[config.model_type](g, x, params, prefix, config)}


def _choice_logits(g, x, params, prefix, config):  # [B*C, 1]; the export reshapes it to [B, C]
    return {"logits": onnx_graph.MULTIPLE_CHOICE_CLASSIFIERS[config.model_type](g, x, params, prefix, config)}


def _answer_logits(g, x, params, prefix, config):
    return dict(zip(("start_logits", "end_logits"), onnx_graph.question_answering_logits(g, x, params)))


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
    "text-classification": Task(
        name="text-classification", head="classification head", graph=_sequence_logits,
        output_shapes=lambda config: {"logits": [BATCH_AXIS, config.num_labels]},
        fine_tuning_head=heads.SEQUENCE_CLASSIFICATION, architecture_suffix="ForSequenceClassification",
    ),
    "token-classification": Task(
        name="token-classification", head="classification head",
        graph=lambda g, x, params, prefix, config: {"logits": onnx_graph.dense(g, x, params, ("classifier",))},
        output_shapes=lambda config: {"logits": [BATCH_AXIS, SEQUENCE_AXIS, config.num_labels]},
        fine_tuning_head=heads.TOKEN_CLASSIFICATION, architecture_suffix="ForTokenClassification",
    ),
    "question-answering": Task(
        name="question-answering", head="question-answering head", graph=_answer_logits,
        output_shapes=lambda config: {"start_logits": [BATCH_AXIS, SEQUENCE_AXIS],
                                      "end_logits": [BATCH_AXIS, SEQUENCE_AXIS]},
        reference=lambda outputs: {"start_logits": outputs["start_logits"], "end_logits": outputs["end_logits"]},
        fine_tuning_head=heads.QUESTION_ANSWERING, architecture_suffix="ForQuestionAnswering",
    ),
    "multiple-choice": Task(
        name="multiple-choice", head="classification head", graph=_choice_logits,
        output_shapes=lambda config: {"logits": [BATCH_AXIS, CHOICES_AXIS]},
        fine_tuning_head=heads.MULTIPLE_CHOICE, architecture_suffix="ForMultipleChoice", choices=True,
    ),
}
# transformers' class suffix -> our task name, to name what a directory holds when it is not what --task needs
TASK_OF_SUFFIX = {spec.architecture_suffix: name for name, spec in TASKS.items() if spec.architecture_suffix}


def task(name: str) -> Task:
    if name in TASKS:
        return TASKS[name]
    raise TaskError(f"--task {name!r} is not an ONNX export task; the tasks that can be exported are "
                    f"{', '.join(TASKS)}")


def task_of_architecture(architecture: str) -> str | None:
    """The task of a transformers class name (`BertForSequenceClassification` -> text-classification), or None for
    the encoder and pre-training classes."""
    return next((name for suffix, name in TASK_OF_SUFFIX.items() if architecture.endswith(suffix)), None)
