"""SQuAD's metrics with the official scripts' semantics (evaluate-v1.1.py and evaluate-v2.0.py, written here from
their definitions; neither is a PyPI package, and the `evaluate` library's `squad` metrics load from the Hugging Face
Hub): answers are normalised (lower case, punctuation removed, the articles a/an/the removed, whitespace collapsed);
exact match is equality of the normalised texts, F1 the bag-of-tokens overlap of the normalised texts; each is the
best over a question's gold answers, averaged over questions and reported in percent.

v2.0: a question with no answer has the single gold answer "" (so predicting "" scores 1, anything else 0); the
scores are split into `HasAns_*` and `NoAns_*`, and the official "find best threshold" reports the exact match and
F1 of the best no-answer threshold on the questions' no-answer scores (`best_*` and `best_*_thresh`).
"""

from __future__ import annotations

import collections
import re
import string

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (the official `normalize_answer`)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str) -> float:
    """Token-overlap F1 of the normalised texts; when either is empty, 1 if both are, else 0 (v2.0's rule)."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((collections.Counter(predicted) & collections.Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def gold_answers(answer_texts) -> list[str]:
    """The answers a prediction is scored against: those that normalise to something, or [""] for none (v2.0)."""
    return [text for text in answer_texts if normalize_answer(text)] or [""]


def question_scores(prediction: str, answer_texts) -> tuple[float, float]:
    """(exact match, F1) of one prediction: the best over the gold answers."""
    golds = gold_answers(answer_texts)
    return max(exact_match(prediction, g) for g in golds), max(f1(prediction, g) for g in golds)


def compute(examples, predictions: dict[str, str], version_2: bool = False,
            null_scores: dict[str, float] | None = None, best_predictions: dict[str, str] | None = None) -> dict:
    """The split's metrics (percent) of `predictions` (question id -> answer text, "" for no answer).

    v2.0 adds the HasAns/NoAns splits and, from `null_scores` (question id -> how much the no-answer beats the
    best span: the official na_prob) with `best_predictions` (question id -> the best non-empty span), the official
    best threshold: answer where the null score is at most the threshold."""
    exact, overlap = {}, {}
    for example in examples:
        exact[example.id], overlap[example.id] = question_scores(predictions[example.id], example.answer_texts)
    out = {"exact_match": _percent(exact.values()), "f1": _percent(overlap.values())}
    if not version_2:
        return out
    has_answer = {example.id: bool(example.answer_texts) for example in examples}
    for name, wanted in (("HasAns", True), ("NoAns", False)):
        ids = [qid for qid, has in has_answer.items() if has == wanted]
        out[f"{name}_exact_match"] = _percent(exact[qid] for qid in ids)
        out[f"{name}_f1"] = _percent(overlap[qid] for qid in ids)
        out[f"{name}_total"] = len(ids)
    if null_scores is not None:
        best = best_predictions if best_predictions is not None else predictions
        best_scores = {e.id: question_scores(best[e.id], e.answer_texts) for e in examples}
        for position, name in enumerate(("exact_match", "f1")):
            value, threshold = best_threshold({qid: s[position] for qid, s in best_scores.items()}, best,
                                              null_scores, has_answer)
            out[f"best_{name}"], out[f"best_{name}_thresh"] = value, threshold
    return out


def best_threshold(scores: dict[str, float], predictions: dict[str, str], null_scores: dict[str, float],
                   has_answer: dict[str, bool]) -> tuple[float, float]:
    """The official `find_best_thresh`: start from every question answered "no answer" (the no-answer questions'
    score), then answer them in increasing null score, keeping the best total; returns (percent, threshold)."""
    current = best = sum(1 for has in has_answer.values() if not has)
    threshold = 0.0
    for qid in sorted(null_scores, key=lambda q: null_scores[q]):
        if qid not in scores:
            continue
        if has_answer[qid]:
            current += scores[qid]
        elif predictions[qid]:
            current -= 1
        if current > best:
            best, threshold = current, null_scores[qid]
    return 100.0 * best / len(scores), float(threshold)


def _percent(values) -> float:
    values = list(values)
    return 100.0 * sum(values) / len(values) if values else 0.0
