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
}
# What a run whose saved config predates `config.objective` was trained with.
DEFAULT = "mlm_nsp"


def create(name: str):
    """The objective named `name` (the value of `config.objective`)."""
    if name not in OBJECTIVES:
        raise ValueError(f"objective {name!r} is not supported; use one of {sorted(OBJECTIVES)}")
    module, cls = OBJECTIVES[name]
    return getattr(importlib.import_module(module), cls)()
