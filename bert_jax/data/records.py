"""The on-disk form of one sentence-pair example (one ArrayRecord record).

A record holds the unmasked pair `[CLS] A [SEP] B [SEP]` and its NSP label; masking happens online
(`masking.py`), so the same record yields a fresh mask each epoch. Segment ids are implied by the length
of segment A and are not stored.

Layout (little endian):
    byte 0      format version (1)
    byte 1      next_sentence_label (0 = true next, 1 = random next, as in the original)
    byte 2      token dtype code (2 = uint16, 4 = uint32)
    byte 3      reserved (0)
    bytes 4-7   uint32 len_a: number of tokens of segment A (without [CLS] and [SEP])
    bytes 8-    token ids of the whole sequence, [CLS] and [SEP]s included
"""

from __future__ import annotations

import dataclasses
import struct

import numpy as np

from bert_jax.errors import InputError

FORMAT_VERSION = 1
_HEADER = struct.Struct("<BBBBI")
_DTYPES = {2: np.dtype("<u2"), 4: np.dtype("<u4")}


@dataclasses.dataclass(frozen=True)
class PairExample:
    """One unmasked pre-training example."""

    input_ids: np.ndarray  # [L] int32: [CLS] A [SEP] B [SEP]
    len_a: int  # tokens in segment A, excluding [CLS] and the first [SEP]
    next_sentence_label: int  # 0 = B follows A, 1 = B is random

    @property
    def segment_ids(self) -> np.ndarray:
        segment_ids = np.ones(len(self.input_ids), dtype=np.int32)
        segment_ids[: self.len_a + 2] = 0
        return segment_ids


def encode(example: PairExample) -> bytes:
    ids = np.asarray(example.input_ids)
    code = 2 if ids.size == 0 or int(ids.max()) < 2**16 else 4
    header = _HEADER.pack(FORMAT_VERSION, int(example.next_sentence_label), code, 0, int(example.len_a))
    return header + ids.astype(_DTYPES[code]).tobytes()


class PairRecordEncoder:
    """Encodes `[CLS] A [SEP] B [SEP]` straight from the raw bytes of A's and B's tokens.

    The result is byte for byte `encode(PairExample(...))` of the same example, without making the example: with
    uint16 tokens a record is a header and five byte strings joined (the builder's hot path); uint32 tokens take
    the general route, since their record's dtype depends on the largest id in it.
    """

    def __init__(self, cls_id: int, sep_id: int, token_dtype: np.dtype | type) -> None:
        dtype = np.dtype(token_dtype)
        if dtype not in (np.dtype("<u2"), np.dtype("<u4")):
            raise ValueError(f"PairRecordEncoder: tokens must be little-endian uint16 or uint32, got {dtype}")
        if not (0 <= min(cls_id, sep_id) and max(cls_id, sep_id) < 2 ** (8 * dtype.itemsize)):
            raise ValueError(f"PairRecordEncoder: [CLS] {cls_id} / [SEP] {sep_id} do not fit in {dtype}")
        self.dtype = dtype
        self.cls_id, self.sep_id = cls_id, sep_id
        self._cls = np.array([cls_id], dtype).tobytes()
        self._sep = np.array([sep_id], dtype).tobytes()

    def encode(self, tokens_a: bytes | memoryview, tokens_b: bytes | memoryview, next_sentence_label: int) -> bytes:
        """`tokens_a`, `tokens_b`: the segments' token ids as bytes in `token_dtype` (without [CLS]/[SEP])."""
        itemsize = self.dtype.itemsize
        len_a = len(tokens_a) // itemsize
        if itemsize == 2:  # every id fits uint16, so `encode` would pick code 2 too
            return b"".join((_HEADER.pack(FORMAT_VERSION, next_sentence_label, 2, 0, len_a), self._cls, tokens_a,
                             self._sep, tokens_b, self._sep))
        input_ids = np.frombuffer(b"".join((self._cls, tokens_a, self._sep, tokens_b, self._sep)), self.dtype)
        return encode(PairExample(input_ids=input_ids, len_a=len_a, next_sentence_label=next_sentence_label))


def decode(record: bytes) -> PairExample:
    if len(record) < _HEADER.size:
        raise InputError(f"pair record too short ({len(record)} bytes): not a bert_jax example record")
    version, label, code, _, len_a = _HEADER.unpack_from(record)
    if version != FORMAT_VERSION or code not in _DTYPES:
        raise InputError(
            f"pair record has format version {version} and dtype code {code}; this bert_jax reads version "
            f"{FORMAT_VERSION}: rebuild the dataset with `python -m bert_jax.data.build`"
        )
    ids = np.frombuffer(record, dtype=_DTYPES[code], offset=_HEADER.size).astype(np.int32)
    return PairExample(input_ids=ids, len_a=len_a, next_sentence_label=label)
