"""The seam between the dataset build and the examples it writes: the `TokenizedDocument` every example kind is
fed, and the interface (`ExampleKind`, `PartExamples`, `PartCounts`) a kind implements to plug into the builder.

The builder owns everything that does not depend on what an example is: input shards, worker processes,
tokenization, the train/eval split, part and output files, resumption and the corpus-level stats. A kind owns what
does: which examples a document gives, their record bytes, their counters and warnings in stats.json, and (for the
loader) how a record is decoded and what an eval padding row is.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

import numpy as np

from bert_jax.data.build_layout import BuildConfig
from bert_jax.data.tokenizers.vocabs import SpecialIds


@dataclasses.dataclass(frozen=True, eq=False)
class TokenizedDocument:
    """One document: its sentences' token ids concatenated, and where each sentence ends.

    One flat array instead of a list of arrays keeps a document at ~2-4 bytes per token plus a few per sentence,
    so a window of documents stays small. Every sentence has at least one token.
    """

    token_ids: np.ndarray  # [num_tokens] unsigned ints, all sentences back to back
    sentence_ends: list[int]  # sentence i is token_ids[sentence_ends[i-1]:sentence_ends[i]] (start 0)

    @classmethod
    def from_sentences(cls, sentences: Sequence[Sequence[int]], dtype: np.dtype | type = np.uint32
                       ) -> "TokenizedDocument":
        """Builds a document from per-sentence token ids; empty sentences are not allowed (drop them first)."""
        ends: list[int] = []
        total = 0
        for sentence in sentences:
            if len(sentence) == 0:
                raise ValueError("TokenizedDocument: empty sentence; drop sentences without tokens first")
            total += len(sentence)
            ends.append(total)
        token_ids = np.fromiter(itertools.chain.from_iterable(sentences), dtype=dtype, count=total)
        return cls(token_ids=token_ids, sentence_ends=ends)

    @property
    def num_sentences(self) -> int:
        return len(self.sentence_ends)

    @property
    def num_tokens(self) -> int:
        return int(self.token_ids.shape[0])

    def sentence_start(self, index: int) -> int:
        return self.sentence_ends[index - 1] if index > 0 else 0

    @functools.cached_property
    def token_bytes(self) -> memoryview:
        """The token ids as raw bytes (no copy): slice `[start * itemsize:end * itemsize]` for a span's bytes."""
        return memoryview(np.ascontiguousarray(self.token_ids)).cast("B")


# Where a part's records go: the `write` of the part file of each (max_seq_length, split).
RecordWriters = Mapping[tuple[int, str], Callable[[bytes], None]]


@dataclasses.dataclass(frozen=True)
class PartCounts:
    """What one input shard's examples add to its part stats.

    `per_length[str(L)]` becomes stats.json's `per_length` entry; its `train` and `eval` dicts must count the
    `examples` and `record_bytes` written to each (L, split), which the builder plans the output shards from.
    `documents[split]` holds the kind's own per-document counters, merged into the split's document counters.
    """

    per_length: dict[str, dict[str, Any]]
    documents: dict[str, dict[str, int]]


class PartExamples(Protocol):
    """One input shard's examples of one kind: `add` is called for each document in stream order, then `finish`."""

    def add(self, index: int, split: str, document: TokenizedDocument, sentence_lengths: np.ndarray) -> None:
        """Document `index` of the shard (counting dropped ones), in `split`; `sentence_lengths` are the token
        counts of its sentences (all positive). Writes the examples that are ready."""

    def finish(self) -> PartCounts:
        """Writes the examples still held back, and returns the counters."""


class ExampleKind(Protocol):
    """A kind of pre-training example the builder can write (`BuildConfig.example_kind` names it)."""

    name: str
    labels: tuple[str, ...]  # the batch fields beyond the masked-LM ones that its examples give (e.g. NSP labels)
    segments: int  # how many segment (token type) ids its examples use

    def check(self, config: BuildConfig) -> None:
        """Raises `InputError` for settings this kind cannot build, before any work is done."""

    def start_part(self, config: BuildConfig, shard_index: int, specials: SpecialIds, token_dtype: np.dtype,
                   writers: RecordWriters) -> PartExamples:
        """The examples of input shard `shard_index`; records are written as `token_dtype` ids, with the vocab's
        `specials` ([CLS]/[SEP] or <s>/</s>) around sequences or documents."""

    def summarize(self, config: BuildConfig, part_stats: Sequence[dict[str, Any]],
                  documents: Mapping[str, Mapping[str, int]]) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """stats.json's `per_length` from the parts' `per_length` entries (`documents`: the summed document
        counters per split), and warnings for the user."""

    def decode(self, record: bytes) -> Any:
        """The example a record holds (`records.PairExample` or `records.PackedExample`), for the loader."""

    def padding_example(self, specials: SpecialIds) -> Any:
        """An example with nothing to predict, made of special tokens only: the loader's eval padding rows."""


def sum_counters(dicts: Iterable[Mapping[str, int]], maximum_keys: tuple[str, ...] = ()) -> dict[str, int]:
    """Counters summed over parts (the largest value for `maximum_keys`), sorted by name."""
    total: collections.Counter[str] = collections.Counter()
    for d in dicts:
        for key, value in d.items():
            total[key] = max(total[key], value) if key in maximum_keys else total[key] + value
    return dict(sorted(total.items()))


def summed_split_counters(part_stats: Sequence[Mapping[str, Any]], length_key: str, split: str,
                          names: Sequence[str]) -> tuple[dict[str, Any], np.ndarray]:
    """One (length, split)'s counters summed over the parts (each of `names` present, 0 when no part counted it),
    and its length histogram summed."""
    entries = [p["per_length"][length_key][split] for p in part_stats]
    counters: dict[str, Any] = {name: 0 for name in names}
    counters.update(sum_counters({k: v for k, v in entry.items() if k != "length_histogram"} for entry in entries))
    return counters, np.sum([entry["length_histogram"] for entry in entries], axis=0)
