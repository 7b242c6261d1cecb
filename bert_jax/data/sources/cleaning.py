"""Text cleaning and sentence splitting, shared by every reader: BERT's `_clean_text`, the Wikipedia-style cleanup
of raw documents, sentencex sentence splitting, and the caps that bound a sentence's and a document's size."""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from typing import Iterator

from bert_jax.data.sources.base import SourceStats

# A "sentence" longer than this is not language (a base64 blob, a 10 MB "word"): it is dropped and counted.
MAX_SENTENCE_CHARS = 100_000
# Longer documents are emitted in parts, which keeps a worker's memory bounded on a file without blank lines.
MAX_DOCUMENT_SENTENCES = 50_000
SENTENCE_SPLITTER_LANGUAGE = "en"


# ---------------------------------------------------------------------------------------------------------------
# Cleaning, as BERT's tokenization.py `_clean_text`.

@functools.cache
def _removed_chars_pattern() -> re.Pattern[str]:
    """Matches what BERT's _clean_text drops: NUL, U+FFFD and category C* except tab/newline/CR."""
    ranges: list[tuple[int, int]] = []
    for code_point in range(sys.maxunicode + 1):
        if unicodedata.category(chr(code_point)).startswith("C") and chr(code_point) not in "\t\n\r":
            if ranges and ranges[-1][1] == code_point - 1:
                ranges[-1] = (ranges[-1][0], code_point)
            else:
                ranges.append((code_point, code_point))
    ranges.append((0xFFFD, 0xFFFD))
    char_class = "".join(re.escape(chr(low)) if low == high else f"{re.escape(chr(low))}-{re.escape(chr(high))}"
                         for low, high in ranges)
    return re.compile(f"[{char_class}]+")


def clean_text(text: str, stats: SourceStats) -> str:
    """BERT's `_clean_text` plus whitespace normalisation.

    Removed U+FFFD are counted as `replacement_chars_removed` (those that decoding introduced are also counted
    as `invalid_utf8_replaced` by `decode_bytes`), all other removed characters as `control_chars_removed`.
    """
    if text.isprintable() and "\ufffd" not in text:
        # Fast path for most lines: isprintable() is False for every category C* character (and most Z*).
        return " ".join(text.split())
    cleaned = _removed_chars_pattern().sub("", text)
    replacements = text.count("\ufffd")
    stats.count("replacement_chars_removed", replacements)
    stats.count("control_chars_removed", len(text) - len(cleaned) - replacements)
    # str.split() splits on every Unicode whitespace (Zs, tab, newline, ...), which BERT also maps to a space.
    return " ".join(cleaned.split())


def decode_bytes(data: bytes, stats: SourceStats) -> str:
    """UTF-8 with invalid bytes replaced; counts the U+FFFD that decoding introduced (not those in the source)."""
    text = data.decode("utf-8", errors="replace")
    introduced = text.count("\ufffd") - data.count(b"\xef\xbf\xbd")
    if introduced:
        stats.count("invalid_utf8_replaced", introduced)
    return text


def keep_sentence(sentence: str, stats: SourceStats, where: str) -> bool:
    """Whether a cleaned sentence is kept: not empty and within `MAX_SENTENCE_CHARS` (what is not is counted)."""
    if not sentence:
        stats.count("empty_lines")
        return False
    if len(sentence) > MAX_SENTENCE_CHARS:
        stats.note("dropped_overlong_sentences",
                   f"{where}: sentence of {len(sentence):,} characters exceeds {MAX_SENTENCE_CHARS:,}; dropped")
        return False
    return True


# ---------------------------------------------------------------------------------------------------------------
# Wikipedia-style cleanup and sentence splitting of raw documents.

_LIST_LINE = re.compile(r"^(?:[*#•·▪◦‣+\-–—]|\d{1,3}[.)](?=\s))")
_TABLE_LINE = re.compile(r"^(?:\{\||\|\}|\|-|\||!)")
_HEADER_LINE = re.compile(r"^(=+).*?\1$")
# A line ending like this is prose, not a title.
_FINAL_PUNCTUATION = tuple(".!?:;…\"'”’»)]。！？")
# Longer unpunctuated lines are kept as prose; shorter ones are section titles ("Early life", "See also").
MAX_TITLE_WORDS = 8


def classify_raw_line(line: str) -> str | None:
    """Why a stripped line of a raw document is dropped ("list", "table", "header"), or None to keep it."""
    if _TABLE_LINE.match(line) or line.count("||") >= 1 or line.count(" | ") >= 2:
        return "table"
    if _LIST_LINE.match(line):
        return "list"
    if _HEADER_LINE.match(line):
        return "header"
    if not line.endswith(_FINAL_PUNCTUATION) and len(line.split()) <= MAX_TITLE_WORDS:
        return "header"
    return None


def split_sentences(paragraph: str) -> list[str]:
    """Sentences of a cleaned paragraph, by sentencex (abbreviation-aware, offline)."""
    import sentencex  # imported here: BERT-format text never needs it

    return [sentence.strip() for sentence in sentencex.segment(SENTENCE_SPLITTER_LANGUAGE, paragraph)
            if sentence.strip()]


def raw_document_sentences(text: str, stats: SourceStats, where: str, *, wiki_cleanup: bool = True) -> list[str]:
    """Cleanup, cleaning and sentence splitting of one raw document; lines are paragraphs."""
    sentences: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue  # paragraph break
        if wiki_cleanup:
            reason = classify_raw_line(line)
            if reason is not None:
                stats.count(f"dropped_{reason}_lines")
                continue
        paragraph = clean_text(line, stats)
        if not paragraph:
            stats.count("empty_lines")
            continue
        for sentence in split_sentences(paragraph):
            if keep_sentence(sentence, stats, where):
                sentences.append(sentence)
    return sentences


def emit_document(sentences: list[str], stats: SourceStats) -> Iterator[list[str]]:
    """A document as the readers yield it: counted, and in parts of at most `MAX_DOCUMENT_SENTENCES` sentences."""
    if not sentences:
        stats.count("empty_documents")
        return
    for start in range(0, len(sentences), MAX_DOCUMENT_SENTENCES):
        if start:
            stats.count("documents_split_at_cap")
        part = sentences[start:start + MAX_DOCUMENT_SENTENCES]
        stats.count("documents")
        stats.count("sentences", len(part))
        yield part
