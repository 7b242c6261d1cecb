"""Exact WordPiece or byte-level BPE ids for many sentences at once, through a cache of space-separated chunks.

The builder's tokenization stage: text repeats its words, so tokenizing each distinct chunk ("word," "Hello") once
and joining the cached ids is much faster than running `tokenizers` on every sentence, and (for BERT's and
RoBERTa's pipelines) gives the same ids. See `CachedSentenceEncoder` for why it is exact and `docs/bench_build.md`
for the measurements.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any, Sequence

import numpy as np

# The chunk cache of `CachedSentenceEncoder`: at most this many entries (~135 bytes each with key, ids and dict
# slot, measured: ~17 MiB); when full, only the chunks of the current batch are kept. Chunks longer than
# MAX_CACHED_CHUNK_CHARS are tokenized but never kept.
CHUNK_CACHE_ENTRIES = 2**17
MAX_CACHED_CHUNK_CHARS = 48
WORDPIECE_CHUNKS, BYTE_LEVEL_CHUNKS = "wordpiece", "byte_level"
# Byte-level chunks: marks a sentence's first chunk (no space before it); a printable sentence never holds it.
_FIRST_CHUNK = "\x01"


def chunk_style(pipeline: dict[str, Any]) -> str | None:
    """Which chunk argument (see `CachedSentenceEncoder`) holds for a tokenizer's pipeline (its JSON form): BERT's
    WordPiece, RoBERTa's byte-level BPE, or None (sentences are tokenized whole)."""
    model = pipeline.get("model") or {}
    pre_tokenizer = pipeline.get("pre_tokenizer") or {}
    normalizer = pipeline.get("normalizer")
    added = pipeline.get("added_tokens") or []
    # Special tokens matched inside one chunk, never reaching across the space after them.
    added_in_chunks = all(token["content"] and not any(c.isspace() for c in token["content"])
                          and not (token["rstrip"] or token["single_word"]) for token in added)
    if (model.get("type") == "WordPiece" and pre_tokenizer.get("type") == "BertPreTokenizer"
            and (normalizer or {}).get("type", "BertNormalizer") == "BertNormalizer" and added_in_chunks
            and not any(token["normalized"] or token["lstrip"] for token in added)):
        return WORDPIECE_CHUNKS
    if (model.get("type") == "BPE" and not model.get("dropout") and normalizer is None and added_in_chunks
            and pre_tokenizer.get("type") == "ByteLevel" and pre_tokenizer.get("use_regex", True)
            and not pre_tokenizer.get("add_prefix_space")):
        return BYTE_LEVEL_CHUNKS
    return None


class CachedSentenceEncoder:
    """Ids of many sentences at once, equal to `tokenizer.encode(sentence, add_special_tokens=False).ids` for each,
    with a cache of space-separated chunks ("word," "Hello") in front of the tokenizer.

    Exact: for a BERT tokenizer (BertNormalizer, BertPreTokenizer, WordPiece, special tokens without spaces matched
    verbatim) and a sentence whose only whitespace is the ASCII space (`str.isprintable()`: no control, format or
    separator character but the space), every step stays inside a space-separated chunk: the normaliser maps
    characters one at a time (cleaning, lowercasing, accent stripping, spaces around CJK), the pre-tokenizer splits
    at whitespace and around punctuation, WordPiece works on one word at a time, and "[MASK]" in text contains no
    space. A sentence's ids are therefore its chunks' ids concatenated. Other sentences (rare once `sources`
    normalised the whitespace) and any other tokenizer pipeline go to the tokenizer whole. Tested against the
    tokenizer on unicode-heavy text.

    Exact for a byte-level BPE too (RoBERTa's: no normaliser, the ByteLevel pre-tokenizer with GPT-2's regex and no
    prefix space, BPE without dropout, special tokens without spaces that may swallow the space *before* them but
    not after), with a sentence's chunks taken with the space before them: "a b, c" is "a", " b,", " c". The regex
    `'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+` never matches across a
    space except by the optional leading space of ` ?X+`, and where a single space is followed by a non-space, one
    of those three alternatives matches there (every character is a letter, a number or neither), taking the space
    and the run after it: exactly the piece the chunk " b," starts with when tokenized alone. So pre-tokens never
    cross chunk boundaries, special tokens (no space inside, `lstrip` taking the space that begins their own
    chunk) neither, and BPE merges within a pre-token: a sentence's ids are its chunks' ids concatenated. It takes
    sentences whose only whitespace is single ASCII spaces: with two spaces in a row the regex makes the first a
    pre-token of its own and attaches a run of three or more differently (`\\s+(?!\\S)`), so such a sentence goes
    whole. A leading space (the space between a document's sentences, `Vocab.sentence_texts`) is an empty first
    chunk and the next chunk with its space, as in the full sentence. The byte-level normalisation of characters to
    byte symbols is per character, and nothing in the pipeline looks at what is outside a chunk.

    Fast: text repeats its words (Zipf), so most chunks are cache hits, and the per-word work is a few C-level
    passes (split, set, dict lookups, one `b"".join`) instead of `tokenizers` normalising, aligning and matching
    every word again, which dominated the build (docs/bench_build.md). The chunks not yet cached are tokenized in
    one call per batch; an ASCII chunk without special-token text skips the normaliser (it would only lowercase,
    which `str.lower` does identically on ASCII). The output never depends on the cache's state, only the speed.
    """

    def __init__(self, tokenizer: Any, token_dtype: np.dtype | type, *, max_entries: int = CHUNK_CACHE_ENTRIES,
                 max_chunk_chars: int = MAX_CACHED_CHUNK_CHARS) -> None:
        self.tokenizer = tokenizer
        self.token_dtype = np.dtype(token_dtype)
        self.max_entries = max_entries
        self.max_chunk_chars = max_chunk_chars
        self._cache: dict[str, bytes] = {}
        pipeline = json.loads(tokenizer.to_str())
        normalizer = pipeline.get("normalizer") or {}
        added = pipeline.get("added_tokens") or []
        # Where a chunk argument above holds; anything else is tokenized whole, sentence by sentence.
        self.chunk_style = chunk_style(pipeline)
        self.chunkable = self.chunk_style is not None
        # A chunk the bare tokenizer may take: ASCII without special-token text in it.
        self._needs_full_tokenizer = re.compile("|".join([r"[^\x00-\x7f]"] + [re.escape(token["content"])
                                                                               for token in added]))
        self._lowercase = bool(normalizer.get("lowercase", False))
        # The same WordPiece and pre-tokenizer without normaliser or special tokens, for ASCII chunks (see above).
        bare = dict(pipeline, normalizer=None, added_tokens=[], post_processor=None)
        wordpiece_chunks = self.chunk_style == WORDPIECE_CHUNKS
        self._bare_tokenizer = type(tokenizer).from_str(json.dumps(bare)) if wordpiece_chunks else None
        self.sentences_whole = 0  # sentences tokenized whole (not printable, or not chunkable)
        self.chunks_tokenized = 0  # cache misses

    def encode(self, sentences: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(token_ids [T] of all sentences back to back in `token_dtype`, token count per sentence [N] int64)."""
        chunks, chunk_counts, whole = self._split(sentences)
        distinct = set(chunks)
        missing = list(distinct.difference(self._cache))  # C-level: iterates `distinct`, looks up the dict
        if len(self._cache) + len(missing) > self.max_entries:
            # Full: keep only what this batch uses (the frequent chunks), which bounds memory at little cost.
            self._cache = {chunk: self._cache[chunk] for chunk in distinct.intersection(self._cache)}
        cache = self._cache
        if missing:
            cache.update(zip(missing, self._tokenize_chunks(missing)))
            self.chunks_tokenized += len(missing)
        pieces = list(map(cache.__getitem__, chunks))
        for chunk in missing:  # a 100,000-character "word" must not stay in memory
            if len(chunk) > self.max_chunk_chars:
                del cache[chunk]
        itemsize = self.token_dtype.itemsize
        # Token count per chunk, then per sentence (sentences tokenized whole count 0 chunks here).
        chunk_tokens = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces)) // itemsize
        token_ends = np.concatenate(([0], np.cumsum(chunk_tokens)))[np.cumsum(chunk_counts)]
        sentence_lengths = np.diff(token_ends, prepend=0)
        token_bytes = b"".join(pieces)
        if whole:
            self.sentences_whole += len(whole)
            encodings = self.tokenizer.encode_batch_fast([sentences[index] for index in whole],
                                                         add_special_tokens=False)
            # Splice them in: a whole sentence has no chunks, so the chunked tokens before it end at its token_end.
            parts, previous = [], 0
            for index, encoding in zip(whole, encodings):
                end = int(token_ends[index]) * itemsize
                parts += [token_bytes[previous:end], np.array(encoding.ids, dtype=self.token_dtype).tobytes()]
                sentence_lengths[index] = len(encoding.ids)
                previous = end
            parts.append(token_bytes[previous:])
            token_bytes = b"".join(parts)
        return np.frombuffer(token_bytes, dtype=self.token_dtype), sentence_lengths

    def _split(self, sentences: Sequence[str]) -> tuple[list[str], np.ndarray, list[int]]:
        """(all chunks in order, chunks per sentence [N], indices of the sentences to tokenize whole).

        Chunks are split at single spaces, so a sentence of k spaces has k + 1 chunks, some maybe empty (they have
        no tokens); then a printable batch is split in one call. Byte-level chunks are keys: a sentence's first
        chunk is marked (`_FIRST_CHUNK`), every other one stands for itself with the space before it.
        """
        if not self.chunkable or not sentences:
            return [], np.zeros(len(sentences), dtype=np.int64), list(range(len(sentences)))
        byte_level = self.chunk_style == BYTE_LEVEL_CHUNKS
        text = " ".join(sentences)
        if byte_level:
            text_marked = _FIRST_CHUNK + (" " + _FIRST_CHUNK).join(sentences)
        # The usual case: sentences from `sources` have no other whitespace (nor, byte-level, two spaces in a row).
        if text.isprintable() and not (byte_level and "  " in text_marked):
            spaces = np.fromiter(map(str.count, sentences, itertools.repeat(" ")), dtype=np.int64,
                                 count=len(sentences))
            return (text_marked if byte_level else text).split(" "), spaces + 1, []

        def chunks_of(sentence: str) -> list[str] | None:
            if not sentence.isprintable() or (byte_level and "  " in sentence):
                return None
            return (_FIRST_CHUNK + sentence if byte_level else sentence).split(" ")

        chunk_lists = [chunks_of(sentence) for sentence in sentences]
        whole = [index for index, chunk_list in enumerate(chunk_lists) if chunk_list is None]
        chunk_counts = np.array([len(chunk_list) if chunk_list is not None else 0 for chunk_list in chunk_lists],
                                dtype=np.int64)
        return list(itertools.chain.from_iterable(filter(None, chunk_lists))), chunk_counts, whole

    def _tokenize_chunks(self, chunks: list[str]) -> list[bytes]:
        """Each chunk's ids as bytes. WordPiece: ASCII chunks without special-token text go lowercased (if the
        normaliser lowercases) to the bare tokenizer, the others to the full one. Byte-level: every chunk to the
        tokenizer, with the space before it unless it starts a sentence. Each group is one pre-split sequence whose
        `word_ids` say which chunk each token came from (a chunk may give several tokens, or none)."""
        if self.chunk_style == BYTE_LEVEL_CHUNKS:
            words = [chunk[1:] if chunk.startswith(_FIRST_CHUNK) else " " + chunk for chunk in chunks]
            groups = [(self.tokenizer, list(range(len(chunks))), words)]
        else:
            needs_full = self._needs_full_tokenizer.search
            bare: list[int] = []
            full: list[int] = []
            for index, chunk in enumerate(chunks):
                (full if needs_full(chunk) else bare).append(index)
            bare_words = [chunks[index].lower() if self._lowercase else chunks[index] for index in bare]
            groups = [(self._bare_tokenizer, bare, bare_words), (self.tokenizer, full, [chunks[i] for i in full])]
        result: list[bytes] = [b""] * len(chunks)
        for tokenizer, indices, words in groups:
            if not indices:
                continue
            encoding = tokenizer.encode(words, is_pretokenized=True, add_special_tokens=False)
            token_bytes = np.array(encoding.ids, dtype=self.token_dtype).tobytes()
            word_of_token = np.array(encoding.word_ids, dtype=np.int64)
            bounds = (np.searchsorted(word_of_token, np.arange(len(words) + 1)) * self.token_dtype.itemsize).tolist()
            for index, start, end in zip(indices, bounds, bounds[1:]):
                result[index] = token_bytes[start:end]
        return result
