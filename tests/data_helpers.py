"""Builds small synthetic datasets in the builder's on-disk layout, for the masking/pipeline/inspect tests.

The examples are random but well formed (`[CLS] A [SEP] B [SEP]`, words made of a head token and optional
`##` pieces), so these tests do not depend on the builder being present or fast.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Iterator

import numpy as np
import pytest
from array_record.python.array_record_module import ArrayRecordWriter

from bert_jax.data import build_parts, records

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
UNUSED = [f"[unused{i}]" for i in range(5)]


def make_vocab_tokens(num_words: int = 60, num_pieces: int = 30) -> list[str]:
    """Specials, some `[unusedN]`, whole words, then `##` continuation pieces."""
    return SPECIAL + UNUSED + [f"w{i}" for i in range(num_words)] + [f"##p{i}" for i in range(num_pieces)]


def random_segment(rng: np.random.Generator, heads: np.ndarray, pieces: np.ndarray, num_tokens: int) -> list[int]:
    """A segment of whole words: each word is a head token followed by 0-2 `##` pieces."""
    words_heads = rng.choice(heads, size=num_tokens)
    pieces_per_word = rng.integers(0, 3, size=num_tokens)
    word_pieces = rng.choice(pieces, size=(num_tokens, 2))
    ids: list[int] = []
    for head, count, word in zip(words_heads.tolist(), pieces_per_word.tolist(), word_pieces.tolist()):
        ids.append(head)
        ids.extend(word[:count])
        if len(ids) >= num_tokens:
            break
    return ids[:num_tokens]  # may cut a word short; a word is still a head plus the pieces that follow it


def random_examples(
    num_examples: int, max_seq_length: int, tokens: list[str], seed: int, min_length: int = 8
) -> list[records.PairExample]:
    rng = np.random.default_rng(seed)
    cls_id, sep_id = tokens.index("[CLS]"), tokens.index("[SEP]")
    heads = np.array([i for i, t in enumerate(tokens) if not t.startswith("##") and not t.startswith("[")])
    pieces = np.array([i for i, t in enumerate(tokens) if t.startswith("##")])
    examples = []
    for _ in range(num_examples):
        total = int(rng.integers(min_length, max_seq_length + 1)) - 3
        len_a = int(rng.integers(1, total))
        segment_a = random_segment(rng, heads, pieces, len_a)
        segment_b = random_segment(rng, heads, pieces, total - len_a)
        ids = np.array([cls_id, *segment_a, sep_id, *segment_b, sep_id], dtype=np.int32)
        examples.append(records.PairExample(ids, len_a, int(rng.integers(0, 2))))
    return examples


def write_shards(directory: str, split: str, examples: list[records.PairExample], num_shards: int) -> list[str]:
    """Writes examples in order into `{split}-{i:05d}-of-{n:05d}.array_record`, contiguous slices per shard."""
    os.makedirs(directory, exist_ok=True)
    bounds = np.linspace(0, len(examples), num_shards + 1).astype(int)
    paths = []
    for shard in range(num_shards):
        path = os.path.join(directory, f"{split}-{shard:05d}-of-{num_shards:05d}.array_record")
        writer = ArrayRecordWriter(path, "group_size:1")
        for example in examples[bounds[shard] : bounds[shard + 1]]:
            writer.write(records.encode(example))
        writer.close()
        paths.append(path)
    return paths


def write_dataset(
    root: str,
    *,
    lengths: tuple[int, ...] = (32,),
    num_train: int = 200,
    num_eval: int = 37,
    train_shards: int = 3,
    seed: int = 0,
) -> dict[int, dict[str, list[records.PairExample]]]:
    """A dataset directory as `python -m bert_jax.data.build` lays it out; returns the examples written."""
    tokens = make_vocab_tokens()
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(tokens) + "\n")
    with open(os.path.join(root, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"do_lower_case": False, "tokenizer_class": "BertTokenizer", "model_max_length": 512}, f)
    written: dict[int, dict[str, list[records.PairExample]]] = {}
    for offset, length in enumerate(lengths):
        train = random_examples(num_train, length, tokens, seed=seed * 1000 + 2 * offset)
        evaluation = random_examples(num_eval, length, tokens, seed=seed * 1000 + 2 * offset + 1)
        write_shards(os.path.join(root, f"seq_{length}"), "train", train, train_shards)
        write_shards(os.path.join(root, f"seq_{length}"), "eval", evaluation, 1)
        written[length] = {"train": train, "eval": evaluation}
    stats = {
        "overall": {"documents": 10, "examples": num_train + num_eval},
        "per_length": {str(length): {"train_examples": num_train, "eval_examples": num_eval} for length in lengths},
    }
    with open(os.path.join(root, "stats.json"), "w", encoding="utf-8") as f:
        json.dump(stats, f)
    with open(os.path.join(root, "build_config.json"), "w", encoding="utf-8") as f:
        json.dump({"max_seq_length": list(lengths), "seed": seed}, f)
    return written


@contextlib.contextmanager
def killed_while_building_part(index: int) -> Iterator[None]:
    """Within the block, an in-process build (workers=1) raises KeyboardInterrupt as input shard `index`'s part is
    being finished: a kill after its records were written, before its completion mark."""
    original_finish = build_parts._PartBuilder.finish

    def finish(self):
        if self.task.index == index:
            raise KeyboardInterrupt(f"simulated kill while input shard {index} is being written")
        return original_finish(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(build_parts._PartBuilder, "finish", finish)
        yield
