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


def decode(record: bytes) -> PairExample:
    if len(record) < _HEADER.size:
        raise ValueError(f"pair record too short ({len(record)} bytes): not a bert_jax example record")
    version, label, code, _, len_a = _HEADER.unpack_from(record)
    if version != FORMAT_VERSION or code not in _DTYPES:
        raise ValueError(
            f"pair record has format version {version} and dtype code {code}; this bert_jax reads version "
            f"{FORMAT_VERSION}: rebuild the dataset with `python -m bert_jax.data.build`"
        )
    ids = np.frombuffer(record, dtype=_DTYPES[code], offset=_HEADER.size).astype(np.int32)
    return PairExample(input_ids=ids, len_a=len_a, next_sentence_label=label)
