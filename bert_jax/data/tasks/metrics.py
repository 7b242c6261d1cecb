"""Task metrics from a dev split's predictions, as GLUE's official scoring and transformers' `glue_compute_metrics`
define them, computed by scikit-learn and SciPy: accuracy, F1 of the positive class (MRPC, QQP), Matthews
correlation (CoLA), Pearson and Spearman correlations (STS-B). Multi-label tables: exact-match accuracy and micro
F1 over the label indicators."""

from __future__ import annotations

import numpy as np

from bert_jax.data.tasks.base import MULTI_LABEL, REGRESSION
from bert_jax.errors import InputError


def predicted(logits: np.ndarray, problem_type: str) -> np.ndarray:
    """Logits -> predictions: the top label; the regression value; every label whose logit is positive
    (probability above 0.5) for multi-label."""
    logits = np.asarray(logits)
    if problem_type == REGRESSION:
        return logits.reshape(len(logits))
    if problem_type == MULTI_LABEL:
        return (logits > 0).astype(np.int64)
    return np.argmax(logits, axis=-1)


def compute(names: tuple[str, ...], predictions: np.ndarray, labels: np.ndarray, problem_type: str) -> dict:
    """`names` of the metrics -> their values over one split."""
    try:
        from scipy import stats
        from sklearn import metrics as sk
    except ImportError as e:
        raise InputError(f"fine-tuning metrics need scikit-learn and SciPy ({e}): pip install "
                         "'bert_jax[finetune]'") from None

    out = {}
    for name in names:
        if name == "accuracy":
            out[name] = sk.accuracy_score(labels, predictions)
        elif name == "f1":
            out[name] = (sk.f1_score(labels, predictions, average="micro") if problem_type == MULTI_LABEL
                         else sk.f1_score(labels, predictions))
        elif name == "matthews_corrcoef":
            out[name] = sk.matthews_corrcoef(labels, predictions)
        elif name == "pearson":
            out[name] = stats.pearsonr(predictions, labels)[0]
        elif name == "spearmanr":
            out[name] = stats.spearmanr(predictions, labels)[0]
        else:
            raise ValueError(f"unknown metric {name!r}")
    return {name: float(value) for name, value in out.items()}
