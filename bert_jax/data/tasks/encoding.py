"""Task examples -> the model's inputs, with the tokenizer of the model being fine-tuned: one text as
`[CLS] a [SEP]`, a pair as `[CLS] a [SEP] b [SEP]` with token types 0 then 1 (WordPiece), or `<s> a </s></s> b </s>`
with token types 0 (RoBERTa's byte-level BPE), truncated longest-first to `max_seq_length` and padded: the ids of
transformers' `AutoTokenizer(a, b, truncation=True, max_length=L, padding="max_length")` on the same directory."""

from __future__ import annotations

import numpy as np

from bert_jax.data.tasks.base import MULTI_LABEL, REGRESSION, Example


def encode(tokenizer, examples: list[Example], max_seq_length: int, pad_id: int,
           token_types: bool = True) -> dict[str, np.ndarray]:
    """`input_ids`, `input_mask`, `segment_ids` [N, max_seq_length] int32 of the examples' texts. `token_types`
    False (a model with one token type: RoBERTa, DistilBERT) keeps every segment id 0."""
    tokenizer.enable_truncation(max_seq_length, strategy="longest_first")
    tokenizer.no_padding()
    pairs = [(e.text_a, e.text_b) if e.text_b is not None else e.text_a for e in examples]
    encodings = tokenizer.encode_batch(pairs)
    arrays = {name: np.zeros((len(examples), max_seq_length), np.int32)
              for name in ("input_ids", "input_mask", "segment_ids")}
    arrays["input_ids"][:] = pad_id
    for row, encoding in enumerate(encodings):
        n = len(encoding.ids)
        arrays["input_ids"][row, :n] = encoding.ids
        arrays["input_mask"][row, :n] = 1
        if token_types:
            arrays["segment_ids"][row, :n] = encoding.type_ids
    return arrays


def label_array(examples: list[Example], problem_type: str, num_labels: int) -> np.ndarray:
    """The labels as the objective reads them: indices [N] int32, values [N] float32 (regression) or indicators
    [N, num_labels] float32 (multi-label)."""
    if problem_type == REGRESSION:
        return np.array([e.label for e in examples], np.float32)
    if problem_type == MULTI_LABEL:
        indicators = np.zeros((len(examples), num_labels), np.float32)
        for row, example in enumerate(examples):
            indicators[row, list(example.label)] = 1.0
        return indicators
    return np.array([e.label for e in examples], np.int32)
