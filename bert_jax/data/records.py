"""The on-disk form of one pre-training example (one ArrayRecord record): a sentence pair or a packed sequence.

Records hold unmasked token ids; masking happens online (`masking.py`), so the same record yields a fresh mask each
epoch. Byte 0 is the format, so a record read as the wrong kind is a clear error, never misread tokens.

Sentence pair (`nsp_pairs`), format 1, little endian:
    byte 0      format (1)
    byte 1      next_sentence_label (0 = true next, 1 = random next, as in the original)
    byte 2      token dtype code (2 = uint16, 4 = uint32)
    byte 3      reserved (0)
    bytes 4-7   uint32 len_a: number of tokens of segment A (without [CLS] and [SEP])
    bytes 8-    token ids of the whole sequence, [CLS] and [SEP]s included
Segment ids are implied by the length of segment A and are not stored.

Packed sequence (`full_sentences`, `doc_sentences`), format 2, little endian:
    byte 0      format (2)
    byte 1      reserved (0)
    byte 2      token dtype code (2 = uint16, 4 = uint32)
    byte 3      reserved (0)
    bytes 4-7   uint32 number of tokens (a check against truncated records)
    bytes 8-    token ids, the document markers (`<s>`/`</s>`, or [CLS]/[SEP]) included
No segment ids (all 0) and no next-sentence label.
"""

from __future__ import annotations

import dataclasses
import struct

import numpy as np

from bert_jax.errors import InputError

FORMAT_VERSION = 1
PACKED_FORMAT_VERSION = 2
_HEADER = struct.Struct("<BBBBI")
_DTYPES = {2: np.dtype("<u2"), 4: np.dtype("<u4")}
_FORMAT_NAMES = {FORMAT_VERSION: "a sentence-pair record (example kind nsp_pairs)",
                 PACKED_FORMAT_VERSION: "a packed-sequence record (example kind full_sentences or doc_sentences)"}


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


@dataclasses.dataclass(frozen=True)
class PackedExample:
    """One unmasked packed sequence: whole sentences of one or more documents, each document `<s> ... </s>`."""

    input_ids: np.ndarray  # [L] int32

    @property
    def segment_ids(self) -> np.ndarray:
        return np.zeros(len(self.input_ids), dtype=np.int32)


def _dtype_code(ids: np.ndarray) -> int:
    """2 (uint16) when every id fits, else 4: a record's size depends on its own ids only."""
    return 2 if ids.size == 0 or int(ids.max()) < 2**16 else 4


def encode(example: PairExample) -> bytes:
    ids = np.asarray(example.input_ids)
    code = _dtype_code(ids)
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


def encode_packed(token_bytes: bytes, token_dtype: np.dtype | type) -> bytes:
    """A packed record from its token ids as raw bytes in `token_dtype` (uint16 or uint32, little endian)."""
    dtype = np.dtype(token_dtype)
    ids = np.frombuffer(token_bytes, dtype)
    code = _dtype_code(ids) if dtype.itemsize == 4 else 2
    if code != dtype.itemsize:
        token_bytes = ids.astype(_DTYPES[code]).tobytes()
    return _HEADER.pack(PACKED_FORMAT_VERSION, 0, code, 0, len(ids)) + bytes(token_bytes)


def _unpack_header(record: bytes, expected_version: int) -> tuple[int, int, int, np.ndarray]:
    """(byte 1, byte 3, the uint32 field, token ids as int32) of a record of format `expected_version`."""
    if len(record) < _HEADER.size:
        raise InputError(f"record too short ({len(record)} bytes): not a bert_jax example record")
    version, flag, code, reserved, field = _HEADER.unpack_from(record)
    if version != expected_version and version in _FORMAT_NAMES:
        raise InputError(
            f"this is {_FORMAT_NAMES[version]}, but {_FORMAT_NAMES[expected_version]} was expected: the dataset was "
            f"built with another --example_kind than the one read (its build_config.json says which)")
    if version != expected_version or code not in _DTYPES:
        raise InputError(
            f"record has format {version} and dtype code {code}; this bert_jax reads formats "
            f"{sorted(_FORMAT_NAMES)}: rebuild the dataset with `python -m bert_jax.data.build`"
        )
    ids = np.frombuffer(record, dtype=_DTYPES[code], offset=_HEADER.size).astype(np.int32)
    return flag, reserved, field, ids


def decode(record: bytes) -> PairExample:
    label, _, len_a, ids = _unpack_header(record, FORMAT_VERSION)
    return PairExample(input_ids=ids, len_a=len_a, next_sentence_label=label)


def decode_packed(record: bytes) -> PackedExample:
    _, _, length, ids = _unpack_header(record, PACKED_FORMAT_VERSION)
    if length != len(ids):
        raise InputError(f"packed record holds {len(ids)} tokens but its header says {length}: the file is "
                         f"damaged; rebuild the dataset")
    return PackedExample(input_ids=ids)
