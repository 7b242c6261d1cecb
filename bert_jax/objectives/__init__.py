"""The training objectives, by `config.objective`. Importing this package imports no JAX: a config names its
objective and is validated without it.

Adding an objective is one module with an `Objective` subclass, plus one line in `OBJECTIVES`.
"""

from __future__ import annotations

import importlib

# config.objective -> (module, class)
OBJECTIVES = {
    "mlm_nsp": ("bert_jax.objectives.pretraining", "MaskedLMAndNextSentence"),  # BERT: masked LM + next sentence
    "mlm": ("bert_jax.objectives.mlm", "MaskedLM"),  # masked LM alone (RoBERTa, DistilBERT)
    "distillation": ("bert_jax.objectives.distillation", "Distillation"),  # a student against a frozen teacher
    "classification": ("bert_jax.objectives.classification", "SequenceClassification"),  # fine-tuning (GLUE, tables)
    "question_answering": ("bert_jax.objectives.question_answering", "QuestionAnswering"),  # SQuAD v1.1 / v2.0
}
# What a run whose saved config predates `config.objective` was trained with.
DEFAULT = "mlm_nsp"


def objective_class(name: str) -> type:
    """The class of the objective named `name` (its `heads` and `name` are class attributes)."""
    if name not in OBJECTIVES:
        raise ValueError(f"objective {name!r} is not supported; use one of {sorted(OBJECTIVES)}")
    module, cls = OBJECTIVES[name]
    return getattr(importlib.import_module(module), cls)


def create(name: str, config=None):
    """The objective named `name` (the value of `config.objective`), configured by the run's `config` where it
    reads fields of its own (distillation's teacher and loss weights)."""
    return objective_class(name)(config)
