"""Token-classification metrics as transformers' `run_ner.py` reports them: seqeval's entity-level precision,
recall and F1 (micro-averaged over entity types, seqeval's default mode: IOB chunks, no strict scheme) and the
accuracy over the labelled tokens, from per-position predictions and labels (positions labelled -100 skipped)."""

from __future__ import annotations

import numpy as np

from bert_jax.data.tasks.token_encoding import IGNORE
from bert_jax.errors import InputError


def tag_sequences(predicted: np.ndarray, labels: np.ndarray,
                  names: tuple[str, ...]) -> tuple[list[list[str]], list[list[str]]]:
    """(true, predicted) tag names per sentence at the labelled positions of [N, S] label and prediction ids."""
    true, pred = [], []
    for row_pred, row_labels in zip(predicted, labels):
        keep = row_labels != IGNORE
        true.append([names[i] for i in row_labels[keep]])
        pred.append([names[i] for i in row_pred[keep]])
    return true, pred


def entity_scores(true: list[list[str]], predicted: list[list[str]]) -> dict[str, float]:
    """`precision`, `recall`, `f1` (entities) and `accuracy` (tags) of tag sequences."""
    try:
        from seqeval import metrics
    except ImportError as e:
        raise InputError(f"token-classification metrics need seqeval ({e}): pip install 'bert_jax[finetune]'") from None
    return {"precision": float(metrics.precision_score(true, predicted, zero_division=0)),
            "recall": float(metrics.recall_score(true, predicted, zero_division=0)),
            "f1": float(metrics.f1_score(true, predicted, zero_division=0)),
            "accuracy": float(metrics.accuracy_score(true, predicted))}
