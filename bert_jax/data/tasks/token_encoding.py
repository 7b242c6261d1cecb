"""Encoding of the word-level and multiple-choice tasks with the model's tokenizer, as transformers' example
scripts do:

- words (CoNLL): `run_ner.py`'s alignment. The words are tokenized as pre-split words (`is_split_into_words`; a
  byte-level BPE with a space before every word, `add_prefix_space=True`), truncated to `max_seq_length`; the first
  sub-token of each word carries the word's tag, the other sub-tokens and the specials -100 (ignored by the loss
  and the metrics), or with `label_all_tokens` the word's tag too (a `B-X` tag as `I-X`). Words cut by the length
  are counted and reported, never dropped silently.
- choices (SWAG): `run_swag.py`'s pairs, (context, choice_i) for every choice, as `encoding.encode` encodes a pair,
  [N, C, S].
"""

from __future__ import annotations

import copy
import json
import logging

import numpy as np

from bert_jax.data.tasks import encoding
from bert_jax.data.tasks.base import Example

log = logging.getLogger("bert_jax")

IGNORE = -100  # the label of positions the loss and the metrics skip (torch's CrossEntropyLoss ignore_index)


def words_tokenizer(tokenizer):
    """`tokenizer` for pre-split words: a byte-level BPE gets a space before each word (transformers requires
    `add_prefix_space=True` for `is_split_into_words`), so a word is tokenized as in running text."""
    from tokenizers import pre_tokenizers

    state = json.loads(tokenizer.pre_tokenizer.__getstate__()) if tokenizer.pre_tokenizer is not None else {}
    if state.get("type") != "ByteLevel" or state.get("add_prefix_space"):
        return tokenizer
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=state.get("use_regex", True))
    return tokenizer


def inside_tags(labels: tuple[str, ...]) -> list[int]:
    """For `label_all_tokens`: each label's index on a word's later sub-tokens, `I-X` for `B-X` where the set has it
    (run_ner.py's `b_to_i_label`)."""
    return [labels.index("I-" + name[2:]) if name.startswith("B-") and "I-" + name[2:] in labels else index
            for index, name in enumerate(labels)]


def encode_words(tokenizer, sentences, max_seq_length: int, pad_id: int, token_types: bool = True,
                 label_all_tokens: bool = False, labels: tuple[str, ...] = (), what: str = "") -> dict[str, np.ndarray]:
    """`input_ids`, `input_mask`, `segment_ids` and `labels` [N, max_seq_length] int32 of tagged sentences (objects
    with `words` and `tags`); logs how many words the length cut (`what` names the split)."""
    tokenizer = words_tokenizer(tokenizer)
    tokenizer.enable_truncation(max_seq_length)
    tokenizer.no_padding()
    encodings = tokenizer.encode_batch([list(s.words) for s in sentences], is_pretokenized=True)
    n = len(sentences)
    arrays = {name: np.zeros((n, max_seq_length), np.int32) for name in ("input_ids", "input_mask", "segment_ids")}
    arrays["input_ids"][:] = pad_id
    arrays["labels"] = np.full((n, max_seq_length), IGNORE, np.int32)
    later = inside_tags(labels) if label_all_tokens else None
    cut_words, cut_sentences = 0, 0
    for row, (sentence, enc) in enumerate(zip(sentences, encodings)):
        length = len(enc.ids)
        arrays["input_ids"][row, :length] = enc.ids
        arrays["input_mask"][row, :length] = 1
        if token_types:
            arrays["segment_ids"][row, :length] = enc.type_ids
        previous = None
        for position, word in enumerate(enc.word_ids):
            if word is not None and word != previous:
                arrays["labels"][row, position] = sentence.tags[word]
            elif word is not None and later is not None:
                arrays["labels"][row, position] = later[sentence.tags[word]]
            previous = word
        missing = len(sentence.words) - len({w for w in enc.word_ids if w is not None})
        cut_words += missing
        cut_sentences += bool(missing)
    if cut_words:
        log.warning("%s: %d words in %d of %d sentences have no token within max_seq_length=%d (cut by the length, "
                    "or empty after tokenization): they are not trained on or scored; raise config.phases' "
                    "max_seq_length to keep them", what or "token classification", cut_words, cut_sentences, n,
                    max_seq_length)
    return arrays


def encode_choices(tokenizer, examples, max_seq_length: int, pad_id: int,
                   token_types: bool = True) -> dict[str, np.ndarray]:
    """`input_ids`, `input_mask`, `segment_ids` [N, C, max_seq_length] int32 and `labels` [N] int32 of multiple-choice
    examples (objects with `context`, `choices`, `label`): each choice as the pair (context, choice)."""
    choices = len(examples[0].choices)
    pairs = [Example(e.context, choice, None) for e in examples for choice in e.choices]
    arrays = encoding.encode(tokenizer, pairs, max_seq_length, pad_id, token_types)
    arrays = {name: values.reshape(len(examples), choices, max_seq_length) for name, values in arrays.items()}
    arrays["labels"] = np.array([e.label for e in examples], np.int32)
    return arrays
