"""Start/end logits of a split's features -> one answer text per question, as transformers' `utils_qa.py`
(`postprocess_qa_predictions`) selects it: over all the windows of a question, the `n_best_size` highest start and
end logits of each window make candidate spans, kept when both ends are context tokens, the end is not before the
start and the span is at most `max_answer_length` tokens; the best candidate by start + end logit wins, its text cut
from the context by the tokens' character offsets.

SQuAD v2.0: the no-answer score of a window is its `[CLS]` start + end logit; the question's is the lowest over its
windows. The question is answered "" when that score beats the best span's by more than `null_score_diff_threshold`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bert_jax.data.tasks.squad_features import NOT_CONTEXT


@dataclasses.dataclass(frozen=True)
class SpanSelection:
    n_best_size: int = 20  # start and end candidates per window (and candidate spans kept per question)
    max_answer_length: int = 30  # the longest answer, in tokens
    version_2: bool = False  # questions may have no answer
    null_score_diff_threshold: float = 0.0  # v2.0: answer "" when null score - best span score exceeds this


@dataclasses.dataclass(frozen=True)
class Answers:
    predictions: dict[str, str]  # question id -> the answer ("" = no answer)
    best_spans: dict[str, str]  # question id -> the best span's text, whatever the null score
    null_score_diffs: dict[str, float]  # v2.0: question id -> null score - best span score (official na_prob)


def select_answers(examples, example_index: np.ndarray, offsets: np.ndarray, start_logits: np.ndarray,
                   end_logits: np.ndarray, selection: SpanSelection) -> Answers:
    """The answers of `examples` from their features' logits [F, S] (`example_index` [F], `offsets` [F, S, 2] as
    `squad_features.build` makes them)."""
    features = {}
    for feature, index in enumerate(np.asarray(example_index)):
        features.setdefault(int(index), []).append(feature)
    predictions, best_spans, diffs = {}, {}, {}
    for index, example in enumerate(examples):
        chosen = features.get(index, [])
        spans = _candidates(chosen, offsets, start_logits, end_logits, selection)
        best_text, best_score = ("", 0.0) if not spans else (example.context[spans[0][1]:spans[0][2]], spans[0][0])
        best_spans[example.id] = predictions[example.id] = best_text
        if selection.version_2 and chosen:
            null = min(float(start_logits[f, 0] + end_logits[f, 0]) for f in chosen)
            diffs[example.id] = null - best_score
            if diffs[example.id] > selection.null_score_diff_threshold:
                predictions[example.id] = ""
    return Answers(predictions, best_spans, diffs)


def _candidates(features: list[int], offsets, start_logits, end_logits, selection: SpanSelection) -> list:
    """(score, start char, end char) of the valid spans of a question's windows, best first (ties in window, start,
    end order, as a stable sort of transformers' candidate list)."""
    found = []
    for feature in features:
        start, end, spans = start_logits[feature], end_logits[feature], offsets[feature]
        starts = np.argsort(start)[-1:-selection.n_best_size - 1:-1]
        ends = np.argsort(end)[-1:-selection.n_best_size - 1:-1]
        s, e = np.meshgrid(starts, ends, indexing="ij")
        valid = ((spans[s, 0] != NOT_CONTEXT) & (spans[e, 0] != NOT_CONTEXT) & (e >= s)
                 & (e - s + 1 <= selection.max_answer_length))
        for i, j in zip(s[valid], e[valid]):
            found.append((float(start[i] + end[j]), int(spans[i, 0]), int(spans[j, 1])))
    order = sorted(range(len(found)), key=lambda k: -found[k][0])
    return [found[k] for k in order]
