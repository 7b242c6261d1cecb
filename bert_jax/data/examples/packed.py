"""The packed example kinds: RoBERTa's FULL-SENTENCES (`full_sentences`) and DOC-SENTENCES (`doc_sentences`) inputs
(Liu et al. 2019, section 4.2), no next-sentence prediction, and their part of the dataset build.

Each document becomes `<s> sentence ... sentence </s>` (`[CLS] ... [SEP]` with a WordPiece vocab), and sentences
are packed in order into sequences of at most `max_seq_length` tokens:

* `full_sentences` packs one stream per input shard and split, so a sequence may hold the end of one document and
  the start of the next (the model card's "512 contiguous tokens that may span documents");
* `doc_sentences` never crosses a document: a document's last sequence is padded (RoBERTa grew the batch size
  instead; here the padding is counted).

A sentence that does not fit in what is left of the current sequence closes it, unless that would leave more than
`MAX_PADDING_FRACTION` of the sequence as padding; then the sentence is cut: its head fills the sequence and the rest
opens the next one. Whole sentences alone cannot fill sequences densely: next-fit packing of whole items is optimal
among contiguous packings and still wastes about E[s^2] / (2 E[s]) tokens per sequence for sentences of s tokens
(7 tokens, 1.4% of 512, on the sample corpus; more on real text), so the cut is what keeps the non-pad share at
least 99% (docs/data_build.md has the measurements). A sentence longer than a sequence is always cut.

Determinism: a stream is the documents of one input shard and split, in file order, and the packer's choices depend
only on token counts, so the output does not depend on workers or scheduling. Each stream's last sequence is
partial; a stream with fewer tokens than one sequence (a corpus smaller than one sequence) is one short, padded
example, counted (`short_streams`) and reported in the warnings rather than dropped.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from bert_jax.data import records
from bert_jax.data.build_layout import SPLITS, BuildConfig
from bert_jax.data.examples.base import PartCounts, RecordWriters, TokenizedDocument, summed_split_counters
from bert_jax.data.tokenizers.vocabs import SpecialIds
from bert_jax.errors import InputError

# Room for a document's two markers and one token.
MIN_MAX_SEQ_LENGTH = 3
# A sentence that would leave more padding than this share of the sequence is cut to fill it (module docstring).
MAX_PADDING_FRACTION = 0.01
# What a stream's packer counts per (length, split); see `SequencePacker`.
PACKED_COUNTERS = ("examples", "tokens", "record_bytes", "multi_document_examples", "partial_examples",
                   "cut_sentences", "overlong_sentences", "short_streams")
TARGET_NON_PAD_FRACTION = 0.99


class SequencePacker:
    """Packs one stream of items (a sentence's token ids as raw bytes) into sequences of at most `length` tokens and
    writes each one as a packed record.

    `add` every item in order (`opens_document` for a document's first), `flush` at the end of the stream (a
    document, for `doc_sentences`). `max_padding` tokens: the most padding a sequence may be closed with to keep the
    next sentence whole (`length` or more: never cut a sentence that fits in a sequence).
    """

    def __init__(self, length: int, token_dtype: np.dtype, write: Callable[[bytes], None], *,
                 max_padding: int) -> None:
        self.length = length
        self.token_dtype = np.dtype(token_dtype)
        self.write = write
        self.max_padding = max_padding
        self.counts: collections.Counter[str] = collections.Counter()
        # A plain list: one `+= 1` per example is cheaper than on a NumPy array.
        self.histogram = [0] * (length + 1)
        self._parts: list[bytes | memoryview] = []
        self._fill = 0
        self._spans_documents = False
        self._stream_tokens = 0

    def add(self, item: bytes | memoryview, opens_document: bool = False) -> None:
        itemsize = self.token_dtype.itemsize
        remaining = len(item) // itemsize
        self._stream_tokens += remaining
        if remaining > self.length:
            self.counts["overlong_sentences"] += 1
        cut = False
        while remaining > self.length - self._fill:
            room = self.length - self._fill
            if self._fill and room <= self.max_padding:
                self._emit()  # keep the sentence whole: the padding left is within the allowance
                continue
            self._append(item[:room * itemsize], room, opens_document)
            item, remaining, opens_document, cut = item[room * itemsize:], remaining - room, False, True
            self._emit()
        if remaining:
            self._append(item, remaining, opens_document)
            if self._fill == self.length:
                self._emit()
        self.counts["cut_sentences"] += cut

    def flush(self) -> None:
        """Writes the partial sequence at the end of a stream, and counts a stream shorter than one sequence."""
        if self._fill:
            self.counts["partial_examples"] += 1
            self._emit()
        if 0 < self._stream_tokens < self.length:
            self.counts["short_streams"] += 1
        self._stream_tokens = 0

    def _append(self, item: bytes | memoryview, count: int, opens_document: bool) -> None:
        self._spans_documents |= opens_document and self._fill > 0
        self._parts.append(item)
        self._fill += count

    def _emit(self) -> None:
        record = records.encode_packed(b"".join(self._parts), self.token_dtype)
        self.write(record)
        self.counts["examples"] += 1
        self.counts["tokens"] += self._fill
        self.counts["record_bytes"] += len(record)
        self.counts["multi_document_examples"] += self._spans_documents
        self.histogram[self._fill] += 1
        self._parts, self._fill, self._spans_documents = [], 0, False


def max_padding_tokens(length: int) -> int:
    return int(MAX_PADDING_FRACTION * length)


class PackedPart:
    """One input shard's packed sequences: a packer per (length, split), each document wrapped in the markers."""

    def __init__(self, config: BuildConfig, cls_id: int, sep_id: int, token_dtype: np.dtype,
                 writers: RecordWriters, *, across_documents: bool) -> None:
        self.config = config
        self.itemsize = np.dtype(token_dtype).itemsize
        self.across_documents = across_documents
        self.open_bytes = np.array([cls_id], token_dtype).tobytes()
        self.close_bytes = np.array([sep_id], token_dtype).tobytes()
        self.packers = {(length, split): SequencePacker(length, token_dtype, writers[(length, split)],
                                                        max_padding=max_padding_tokens(length))
                        for length in config.max_seq_lengths for split in SPLITS}

    def add(self, index: int, split: str, document: TokenizedDocument, sentence_lengths: np.ndarray) -> None:
        data, itemsize = document.token_bytes, self.itemsize
        starts = [0] + document.sentence_ends[:-1]
        items: list[bytes | memoryview] = [data[start * itemsize:end * itemsize]
                                           for start, end in zip(starts, document.sentence_ends)]
        items[0] = self.open_bytes + bytes(items[0])
        items[-1] = bytes(items[-1]) + self.close_bytes
        for length in self.config.max_seq_lengths:
            packer = self.packers[(length, split)]
            for number, item in enumerate(items):
                packer.add(item, opens_document=number == 0)
            if not self.across_documents:
                packer.flush()

    def finish(self) -> PartCounts:
        per_length: dict[str, dict[str, Any]] = {}
        for length in self.config.max_seq_lengths:
            entry = per_length.setdefault(str(length), {})
            for split in SPLITS:
                packer = self.packers[(length, split)]
                packer.flush()
                entry[split] = {**dict(packer.counts), "length_histogram": packer.histogram}
        return PartCounts(per_length=per_length, documents={})


class PackedSentences:
    """A packed kind: `full_sentences` (`across_documents`) or `doc_sentences`; records are `records.PackedExample`."""

    labels = ()
    segments = 1

    def __init__(self, name: str, across_documents: bool) -> None:
        self.name = name
        self.across_documents = across_documents

    def check(self, config: BuildConfig) -> None:
        for length in config.max_seq_lengths:
            if length < MIN_MAX_SEQ_LENGTH:
                raise InputError(f"--max_seq_length {length} is too short for {self.name}: a document needs its two "
                                 f"markers and a token, at least {MIN_MAX_SEQ_LENGTH}")

    def start_part(self, config: BuildConfig, shard_index: int, specials: SpecialIds, token_dtype: np.dtype,
                   writers: RecordWriters) -> PackedPart:
        return PackedPart(config, specials.cls, specials.sep, token_dtype, writers,
                          across_documents=self.across_documents)

    decode = staticmethod(records.decode_packed)

    def padding_example(self, specials: SpecialIds) -> records.PackedExample:
        # <s> </s>: nothing maskable, so no predictions; real positions keep attention finite.
        return records.PackedExample(np.array([specials.cls, specials.sep], dtype=np.int32))

    def summarize(self, config: BuildConfig, part_stats: Sequence[dict[str, Any]],
                  documents: Mapping[str, Mapping[str, int]]) -> tuple[dict[str, dict[str, Any]], list[str]]:
        warnings = []
        per_length: dict[str, dict[str, Any]] = {}
        for length in config.max_seq_lengths:
            key = str(length)
            entry: dict[str, Any] = {"max_padding_tokens": max_padding_tokens(length)}
            for split in SPLITS:
                counters, histogram = summed_split_counters(part_stats, key, split, PACKED_COUNTERS)
                examples, tokens = counters["examples"], counters["tokens"]
                counters["mean_length"] = tokens / examples if examples else 0.0
                # The share of real (non-pad) positions in the batches this split makes.
                counters["non_pad_fraction"] = tokens / (examples * length) if examples else 0.0
                counters["length_histogram"] = histogram.tolist()
                entry[split] = counters
                warnings += self._warnings(length, split, counters, len(part_stats))
            per_length[key] = entry
        return per_length, warnings

    def _warnings(self, length: int, split: str, counters: Mapping[str, Any], num_parts: int) -> list[str]:
        if not counters["examples"] or not self.across_documents:
            return []  # doc_sentences pads every document's end by design
        if counters["tokens"] < length:
            return [f"seq_{length} {split}: the corpus holds {counters['tokens']:,} tokens, less than one sequence of "
                    f"{length}: the split is one padded example (non-pad share "
                    f"{counters['non_pad_fraction']:.3f}). Use a larger corpus or a shorter --max_seq_length."]
        if split == "train" and counters["non_pad_fraction"] < TARGET_NON_PAD_FRACTION:
            return [f"seq_{length} train: {1 - counters['non_pad_fraction']:.1%} of positions are padding, mostly in "
                    f"the last, partial sequence of each of the {num_parts} input shards "
                    f"({counters['partial_examples']:,} partial of {counters['examples']:,} examples; "
                    f"{counters['short_streams']:,} shards hold less than one sequence). Put the corpus in fewer, "
                    f"larger input files."]
        return []


FULL_SENTENCES = PackedSentences("full_sentences", across_documents=True)
DOC_SENTENCES = PackedSentences("doc_sentences", across_documents=False)
