"""SQuAD examples -> the model's features, as transformers' `run_qa.py` prepares them: the question (leading
spaces stripped, at most `max_query_length` tokens, as the BERT paper's `run_squad.py`) and a window of the context
in the tokenizer's pair template (`[CLS] q [SEP] c [SEP]`, or RoBERTa's `<s> q </s></s> c </s>`). A context
longer than the window is split into overlapping windows, each `doc_stride` tokens overlapping the one before
(transformers' `stride`), so one example may give several features.

Each feature keeps the character offsets of its context tokens (-1 elsewhere) and the index of its example, which
post-processing (`squad_postprocess.py`) uses to map start/end logits back to answer text. The training target is
the first answer's start and end token; 0 (the `[CLS]`/`<s>` token) when the window does not hold the whole answer or
the question has none.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np

from bert_jax.data.tasks.squad import SquadExample
from bert_jax.errors import ConfigError

NOT_CONTEXT = -1  # the offsets of a token outside the context (question, special tokens, padding)
CLS_INDEX = 0  # the target of an answer outside the window, and of no answer


@dataclasses.dataclass(frozen=True)
class Windowing:
    max_seq_length: int  # tokens per feature
    doc_stride: int  # tokens each context window shares with the one before
    max_query_length: int  # the question's tokens beyond this are cut


def check_windowing(windowing: Windowing, tokenizer) -> int:
    """The room a context window has beside the longest question and the special tokens; a stride that does not fit
    in it is a ConfigError naming the fields."""
    specials = tokenizer.num_special_tokens_to_add(is_pair=True)
    room = windowing.max_seq_length - windowing.max_query_length - specials
    if room <= 0:
        raise ConfigError(f"finetune.max_query_length {windowing.max_query_length} leaves no context tokens in a "
                          f"sequence of {windowing.max_seq_length} (phases[0].max_seq_length); lower it")
    if not 0 <= windowing.doc_stride < room:
        raise ConfigError(f"finetune.doc_stride {windowing.doc_stride} must be at least 0 and below the context "
                          f"window of {room} tokens (max_seq_length - max_query_length - {specials} special tokens); "
                          "lower it")
    return room


def build(tokenizer, examples: list[SquadExample], windowing: Windowing, pad_id: int,
          token_types: bool = True) -> dict[str, np.ndarray]:
    """The features of `examples`: `input_ids`, `input_mask`, `segment_ids`, `start_positions`, `end_positions`,
    `example_index` [F] (the example each feature comes from) and `offsets` [F, S, 2] (context character spans)."""
    check_windowing(windowing, tokenizer)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    questions = tokenizer.encode_batch([e.question.lstrip() for e in examples], add_special_tokens=False)
    # A paragraph has several questions (about five in SQuAD): each distinct context is encoded once, and copied
    # for each question, as truncation (into the windows) changes an encoding in place.
    distinct = list(dict.fromkeys(e.context for e in examples))
    contexts = dict(zip(distinct, tokenizer.encode_batch(distinct, add_special_tokens=False)))
    rows = []
    for index, (example, question) in enumerate(zip(examples, questions)):
        question.truncate(windowing.max_query_length)
        room = windowing.max_seq_length - len(question.ids) - tokenizer.num_special_tokens_to_add(is_pair=True)
        context = copy.copy(contexts[example.context])
        context.truncate(room, stride=windowing.doc_stride)
        for window in [context, *context.overflowing]:
            rows.append(_feature(tokenizer, example, index, question, window))
    return _arrays(rows, windowing.max_seq_length, pad_id, token_types)


def _feature(tokenizer, example: SquadExample, index: int, question, window) -> dict:
    # The pair template from the tokenizer itself; offsets from the window as encoded (post-processing again would
    # trim a byte-level BPE's offsets twice).
    encoding = tokenizer.post_process(question, window, add_special_tokens=True)
    sequence_ids = encoding.sequence_ids
    offsets = np.full((len(encoding.ids), 2), NOT_CONTEXT, np.int64)
    in_context = np.array([s == 1 for s in sequence_ids])
    offsets[in_context] = window.offsets
    start = end = CLS_INDEX
    if example.answer_texts:
        start, end = _answer_tokens(offsets, in_context, example.answer_starts[0],
                                    example.answer_starts[0] + len(example.answer_texts[0]))
    return {"ids": encoding.ids, "type_ids": encoding.type_ids, "offsets": offsets, "start": start, "end": end,
            "example_index": index}


def _answer_tokens(offsets: np.ndarray, in_context: np.ndarray, start_char: int, end_char: int) -> tuple[int, int]:
    """The tokens holding the answer's first and last characters, or (CLS, CLS) when the window does not hold both."""
    positions = np.flatnonzero(in_context)
    if not len(positions) or offsets[positions[0], 0] > start_char or offsets[positions[-1], 1] < end_char:
        return CLS_INDEX, CLS_INDEX
    starts_before = positions[offsets[positions, 0] <= start_char]
    ends_after = positions[offsets[positions, 1] >= end_char]
    return int(starts_before[-1]), int(ends_after[0])


def _arrays(rows: list[dict], length: int, pad_id: int, token_types: bool) -> dict[str, np.ndarray]:
    count = len(rows)
    arrays = {"input_ids": np.full((count, length), pad_id, np.int32),
              "input_mask": np.zeros((count, length), np.int32),
              "segment_ids": np.zeros((count, length), np.int32),
              "start_positions": np.array([r["start"] for r in rows], np.int32),
              "end_positions": np.array([r["end"] for r in rows], np.int32),
              "example_index": np.array([r["example_index"] for r in rows], np.int32),
              "offsets": np.full((count, length, 2), NOT_CONTEXT, np.int32)}
    for row, feature in enumerate(rows):
        n = len(feature["ids"])
        arrays["input_ids"][row, :n] = feature["ids"]
        arrays["input_mask"][row, :n] = 1
        arrays["offsets"][row, :n] = feature["offsets"]
        if token_types:
            arrays["segment_ids"][row, :n] = feature["type_ids"]
    return arrays
