"""Which kind of vocabulary a path holds, and one view of either kind (`Vocab`) for the build, masking and the
trainer: its tokens, special-token ids, casing, tokenizer, and the files a built dataset carries.

Kinds: `wordpiece` (BERT: `vocab.txt` + `tokenizer_config.json`, `tokenizers/wordpiece.py`) and `bpe` (RoBERTa's
byte-level BPE: `tokenizer.json` and friends, `tokenizers/bpe.py`). A path is a vocab file or a directory:

    vocab.txt, or a directory with vocab.txt (and no BPE tokenizer.json)      -> wordpiece
    tokenizer.json of a BPE model, vocab.json, merges.txt, or their directory -> bpe

The kind is read from the files, never from a flag, so a built directory (which carries the vocab it was built
with) always says what it holds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any, Sequence

from bert_jax.data.tokenizers import bpe, wordpiece
from bert_jax.errors import InputError

WORDPIECE, BPE = "wordpiece", "bpe"
KINDS = (WORDPIECE, BPE)
DESCRIPTIONS = {WORDPIECE: "a WordPiece vocab (BERT's vocab.txt)",
                BPE: "a byte-level BPE vocab (RoBERTa's tokenizer.json, or vocab.json + merges.txt)"}
_HOW_TO_MAKE = {WORDPIECE: "python -m bert_jax.data.vocab --kind wordpiece",
                BPE: "python -m bert_jax.data.vocab --kind bpe"}
# BERT's special tokens and [unusedN]: never masked, never drawn as a random replacement.
_WORDPIECE_SPECIAL = re.compile(r"^\[[^\[\]\s]+\]$")


@dataclasses.dataclass(frozen=True)
class SpecialIds:
    """The ids the build and masking use: `cls`/`sep` are `[CLS]`/`[SEP]` (WordPiece) or `<s>`/`</s>` (BPE), which
    open and close a sequence (pairs) or a document (packed examples)."""

    pad: int
    unk: int
    cls: int
    sep: int
    mask: int


@dataclasses.dataclass(frozen=True, eq=False)
class Vocab:
    """A vocabulary of either kind, read from `path` (the `vocab.txt` or `tokenizer.json` that defines it)."""

    kind: str
    path: str
    tokens: tuple[str, ...]  # id -> token
    specials: SpecialIds
    special_token_ids: tuple[int, ...]  # every special token: never masked, never a random replacement
    lowercase: bool  # WordPiece only: lowercase and strip accents; a BPE vocab is always cased

    @property
    def size(self) -> int:
        return len(self.tokens)

    def continues_word(self, token: str) -> bool:
        """Whether `token` continues the word of the token before it: a `##` piece (WordPiece), or a token without
        the leading-space marker `Ġ` (BPE). Used by whole-word masking."""
        if self.kind == WORDPIECE:
            return token.startswith(wordpiece.CONTINUATION_PREFIX)
        return not token.startswith(bpe.WORD_START_MARKER)

    def sentence_texts(self, sentences: Sequence[str]) -> list[str]:
        """What the tokenizer encodes for a document's sentences, one string each, so that their ids put together
        are the ids of the whole document. WordPiece ignores spaces: the sentences. A byte-level BPE sees the space
        before a word (`Ġ`): every sentence but the first gets the space that separates it from the one before, so
        the ids are those of the document text with its sentences joined by single spaces (and a sentence's first
        word is tokenized as it is in running text, not as a text's first word)."""
        if self.kind == WORDPIECE:
            return list(sentences)
        return [sentence if number == 0 else " " + sentence for number, sentence in enumerate(sentences)]

    def tokenizer(self) -> Any:
        """A `tokenizers.Tokenizer` equal to Hugging Face's for this vocab (BertTokenizerFast / RobertaTokenizer)."""
        if self.kind == WORDPIECE:
            return wordpiece.load_tokenizer(self.path, lowercase=self.lowercase)
        return bpe.load_tokenizer(self.path)

    def write_dir(self, output_dir: str) -> None:
        """Writes the vocab files into `output_dir` (a built dataset carries the vocab it was built with)."""
        if self.kind == WORDPIECE:
            wordpiece.write_vocab_dir(list(self.tokens), output_dir, lowercase=self.lowercase)
        else:
            bpe.write_vocab_dir(self.tokenizer(), output_dir)

    def file_names(self) -> tuple[str, ...]:
        """The names `write_dir` writes (a build claims them in its manifest before writing)."""
        if self.kind == WORDPIECE:
            return wordpiece.VOCAB_FILE, wordpiece.TOKENIZER_CONFIG
        return bpe.FILES

    def source_files(self) -> list[str]:
        """The files this vocab was read from, which a build fingerprints: the `vocab.txt` or `tokenizer.json`, or
        a directory's `vocab.json` and `merges.txt`."""
        if os.path.isdir(self.path):
            return [os.path.join(self.path, bpe.VOCAB_JSON), os.path.join(self.path, bpe.MERGES_FILE)]
        return [self.path]

    def summary(self) -> dict[str, Any]:
        """What stats.json records: the kind, the number of ids and the special ids."""
        return {"kind": self.kind, "size": self.size, "special_ids": dataclasses.asdict(self.specials)}


def _json_model_type(path: str) -> str | None:
    """The `model.type` of a tokenizer.json, None for any other JSON file (e.g. vocab.json)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: not a readable JSON vocab file ({error})") from None
    model = data.get("model") if isinstance(data, dict) else None
    return model.get("type") if isinstance(model, dict) else None


def detect_kind(path: str) -> tuple[str, str]:
    """(kind, defining file) of a vocab path; an `InputError` naming what was looked for otherwise."""
    if os.path.isdir(path):
        tokenizer_json = os.path.join(path, bpe.TOKENIZER_FILE)
        if os.path.isfile(tokenizer_json) and _json_model_type(tokenizer_json) == "BPE":
            return BPE, tokenizer_json
        if os.path.isfile(os.path.join(path, wordpiece.VOCAB_FILE)):
            return WORDPIECE, os.path.join(path, wordpiece.VOCAB_FILE)
        if os.path.isfile(os.path.join(path, bpe.VOCAB_JSON)):
            return BPE, path
        raise InputError(f"vocab directory {path!r} holds neither {wordpiece.VOCAB_FILE} (WordPiece) nor "
                         f"{bpe.TOKENIZER_FILE} / {bpe.VOCAB_JSON} + {bpe.MERGES_FILE} (byte-level BPE)")
    if not os.path.isfile(path):
        raise InputError(f"vocab {path!r} does not exist: pass a vocab.txt (WordPiece) or a tokenizer.json or its "
                         f"directory (byte-level BPE), as `python -m bert_jax.data.vocab` writes them")
    name = os.path.basename(path)
    if name in (bpe.VOCAB_JSON, bpe.MERGES_FILE):
        return BPE, os.path.dirname(os.path.abspath(path))
    if name.endswith(".json"):
        model_type = _json_model_type(path)
        if model_type == "BPE":
            return BPE, path
        raise InputError(f"{path} is a tokenizer file with a {model_type!r} model; expected a byte-level BPE "
                         f"tokenizer.json, or pass a WordPiece vocab as its vocab.txt")
    return WORDPIECE, path


def load(path: str, *, lowercase: bool | None = None, expected_kind: str | None = None) -> Vocab:
    """The vocab at `path` (file or directory, see the module docstring).

    `lowercase` (WordPiece only): None reads `do_lower_case` from the vocab's tokenizer_config.json; a BPE vocab is
    cased, so `lowercase=True` with one is an error. `expected_kind`: where only one kind will do, any other is an
    `InputError` naming the file, what it is and what was expected.
    """
    kind, file = detect_kind(path)
    if expected_kind is not None and kind != expected_kind:
        raise InputError(f"{file} is {DESCRIPTIONS[kind]}, but {DESCRIPTIONS[expected_kind]} is expected here; "
                         f"pass one (make it with `{_HOW_TO_MAKE[expected_kind]}`)")
    if kind == WORDPIECE:
        lowercase = wordpiece.is_lowercase_vocab(file) if lowercase is None else lowercase
        return wordpiece_vocab(wordpiece.read_vocab(file), path=file, lowercase=lowercase)
    if lowercase:
        raise InputError(f"{file} is {DESCRIPTIONS[BPE]}, which is cased (byte-level: no lowercasing); drop "
                         f"--lowercase / set lowercase to false")
    tokenizer = bpe.load_tokenizer(file)
    tokens = bpe.tokens_by_id(tokenizer)
    ids = {token: tokenizer.token_to_id(token) for token in bpe.SPECIAL_TOKENS}
    specials = SpecialIds(pad=ids[bpe.PAD], unk=ids[bpe.UNK], cls=ids[bpe.BOS], sep=ids[bpe.EOS], mask=ids[bpe.MASK])
    return Vocab(BPE, file, tuple(tokens), specials, tuple(bpe.special_token_ids(tokenizer)), False)


def wordpiece_vocab(tokens: list[str], *, path: str, lowercase: bool) -> Vocab:
    """A WordPiece `Vocab` from its tokens in id order (`read_vocab` validates a file's)."""
    index = {token: token_id for token_id, token in enumerate(tokens)}
    missing = [token for token in wordpiece.SPECIAL_TOKENS if token not in index]
    if missing:
        raise InputError(f"{path}: vocabulary lacks the BERT special tokens {missing}")
    specials = SpecialIds(pad=index[wordpiece.PAD], unk=index[wordpiece.UNK], cls=index[wordpiece.CLS],
                          sep=index[wordpiece.SEP], mask=index[wordpiece.MASK])
    special_ids = [token_id for token_id, token in enumerate(tokens) if _WORDPIECE_SPECIAL.match(token)]
    return Vocab(WORDPIECE, path, tuple(tokens), specials, tuple(special_ids), bool(lowercase))


def from_data_dir(data_dir: str) -> Vocab:
    """The vocab a built dataset carries (`python -m bert_jax.data.build` copies it into its output)."""
    wordpiece_file = os.path.join(data_dir, wordpiece.VOCAB_FILE)
    bpe_file = os.path.join(data_dir, bpe.TOKENIZER_FILE)
    present = [file for file in (wordpiece_file, bpe_file) if os.path.isfile(file)]
    if not present:
        raise InputError(f"dataset directory {data_dir!r} holds no vocab ({wordpiece.VOCAB_FILE} or "
                         f"{bpe.TOKENIZER_FILE}): it is not a finished build of `python -m bert_jax.data.build`")
    if len(present) == 2:
        raise InputError(f"dataset directory {data_dir!r} holds both {wordpiece.VOCAB_FILE} and "
                         f"{bpe.TOKENIZER_FILE}: it mixes two builds; rebuild it into an empty directory")
    return load(present[0])
