"""BERT WordPiece vocabularies: the `vocab.txt` + `tokenizer_config.json` files, the tokenizer they define, and
the learners that make a new vocab from a corpus.

Loading builds the same `tokenizers` pipeline as Hugging Face's `BertTokenizerFast` (BertNormalizer with
clean_text and CJK splitting, BertPreTokenizer, WordPiece with `##` continuations and 100-char words,
`[CLS] A [SEP] B [SEP]` template), so ids are identical to HF's for the same vocab and casing.

Learning has two learners, both run on BERT-pre-tokenized words:
- `wordpiece`: Hugging Face `tokenizers`' WordPieceTrainer behind BertNormalizer + BertPreTokenizer.
- `sentencepiece`: sentencepiece BPE or unigram trained on word counts; pieces are converted to WordPiece form
  (word-initial pieces, those with the `▁` prefix, bare; continuations `##`-prefixed) and every character kept in
  the alphabet is added in both forms, so coverage matches WordPiece.
The default is the learner that measured better on held-out text (docs/data_vocab.md). The CLI that reads a corpus
and writes a vocab is `python -m bert_jax.data.vocab`.
"""

from __future__ import annotations

import collections
import json
import os
import tempfile
from typing import Iterable, Iterator

import tokenizers
from tokenizers import decoders, normalizers, pre_tokenizers, processors, trainers
from tokenizers.models import WordPiece

from bert_jax import fileio
from bert_jax.errors import InputError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD, UNK, CLS, SEP, MASK = SPECIAL_TOKENS
CONTINUATION_PREFIX = "##"
# BERT's WordpieceTokenizer maps any longer word to [UNK] (bounds the greedy matching cost).
MAX_INPUT_CHARS_PER_WORD = 100
TOKENIZER_CONFIG = "tokenizer_config.json"
VOCAB_FILE = "vocab.txt"


def read_vocab(vocab_file: str) -> list[str]:
    """Tokens of a BERT `vocab.txt` (one per line, id = line number); checks BERT's special tokens are there."""
    if not os.path.isfile(vocab_file):
        raise InputError(f"vocab file {vocab_file!r} does not exist: pass the vocab.txt written by "
                         f"`python -m bert_jax.data.vocab` (or a BERT checkpoint's vocab.txt)")
    with open(vocab_file, encoding="utf-8") as f:
        # Only the newline is stripped, as HF's load_vocab does: a token may legitimately contain spaces.
        tokens = [line.rstrip("\n") for line in f]
    if tokens and tokens[-1] == "":
        tokens.pop()  # trailing newline at the end of the file
    if tokens and tokens[0].lstrip().startswith("{"):
        raise InputError(f"{vocab_file} is a JSON file, not a WordPiece vocab.txt (one token per line): a WordPiece "
                         f"vocab is expected here, and a byte-level BPE vocab (tokenizer.json, vocab.json) is not one")
    seen: dict[str, int] = {}
    for line_number, token in enumerate(tokens, start=1):
        if token == "":
            raise InputError(f"{vocab_file}:{line_number}: empty line in vocab; every line must hold one token")
        if token in seen:
            raise InputError(f"{vocab_file}:{line_number}: token {token!r} repeats line {seen[token] + 1}; "
                             f"a vocab must not contain duplicates")
        seen[token] = line_number - 1
    missing = [token for token in SPECIAL_TOKENS if token not in seen]
    if missing:
        raise InputError(f"{vocab_file}: missing BERT special tokens {missing}; a BERT vocab needs all of "
                         f"{list(SPECIAL_TOKENS)}")
    if seen[PAD] != 0:
        raise InputError(f"{vocab_file}: [PAD] is on line {seen[PAD] + 1} but must be the first line (id 0): "
                         f"batches are padded with id 0")
    return tokens


def is_lowercase_vocab(vocab_file: str) -> bool:
    """`do_lower_case` from the `tokenizer_config.json` next to the vocab; False (cased) if there is none."""
    config_path = os.path.join(os.path.dirname(os.path.abspath(vocab_file)), TOKENIZER_CONFIG)
    if not os.path.isfile(config_path):
        return False
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
    except json.JSONDecodeError as error:
        raise InputError(f"{config_path}:{error.lineno}: invalid JSON ({error.msg}); fix or delete the file") from None
    value = config.get("do_lower_case", False)
    if not isinstance(value, bool):
        raise InputError(f"{config_path}: field 'do_lower_case' must be true or false, got {value!r}")
    return value


def load_tokenizer(vocab_file: str, lowercase: bool | None = None) -> tokenizers.Tokenizer:
    """A tokenizer equal to HF `BertTokenizerFast(vocab_file, do_lower_case=lowercase)`.

    `lowercase=None` reads `do_lower_case` from the `tokenizer_config.json` next to the vocab (cased if absent).
    As in BERT, lowercasing also strips accents; a cased tokenizer keeps them.
    """
    tokens = read_vocab(vocab_file)
    if lowercase is None:
        lowercase = is_lowercase_vocab(vocab_file)
    vocab = {token: index for index, token in enumerate(tokens)}
    tokenizer = tokenizers.Tokenizer(
        WordPiece(vocab, unk_token=UNK, continuing_subword_prefix=CONTINUATION_PREFIX,
                  max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix=CONTINUATION_PREFIX)
    # As in HF: the special tokens are matched verbatim in text ("[MASK]" stays one token) and skipped on decode.
    tokenizer.add_special_tokens([tokenizers.AddedToken(token, special=True, normalized=False)
                                  for token in SPECIAL_TOKENS])
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{CLS}:0 $A:0 {SEP}:0",
        pair=f"{CLS}:0 $A:0 {SEP}:0 $B:1 {SEP}:1",
        special_tokens=[(CLS, vocab[CLS]), (SEP, vocab[SEP])],
    )
    return tokenizer


def write_vocab_dir(tokens: list[str], output_dir: str, *, lowercase: bool) -> str:
    """Writes `output_dir/vocab.txt` and an HF `tokenizer_config.json`; returns the vocab path."""
    os.makedirs(output_dir, exist_ok=True)
    vocab_path = os.path.join(output_dir, VOCAB_FILE)
    fileio.write_text(vocab_path, "".join(token + "\n" for token in tokens))
    config = {
        "do_lower_case": lowercase,
        "tokenize_chinese_chars": True,
        "strip_accents": None,
        "unk_token": UNK,
        "sep_token": SEP,
        "pad_token": PAD,
        "cls_token": CLS,
        "mask_token": MASK,
        "tokenizer_class": "BertTokenizer",
        "model_max_length": 512,
    }
    fileio.write_text(os.path.join(output_dir, TOKENIZER_CONFIG), json.dumps(config, indent=2) + "\n")
    read_vocab(vocab_path)  # the file we wrote must satisfy our own contract
    return vocab_path


# ---------------------------------------------------------------------------------------------------------------
# Learning.

LEARNERS = ("wordpiece", "sentencepiece")
# docs/data_vocab.md: on held-out text sentencepiece BPE ties WordPiece (tokens per word within about 1%, fewer
# [UNK]), and unlike tokenizers' WordPieceTrainer it is deterministic and reaches the exact size asked for.
DEFAULT_LEARNER = "sentencepiece"
SENTENCEPIECE_MODEL_TYPES = ("bpe", "unigram")
DEFAULT_SENTENCEPIECE_MODEL_TYPE = "bpe"
# As HF's BertWordPieceTokenizer: the 1000 most frequent characters; rarer ones become [UNK].
DEFAULT_MAX_ALPHABET = 1000
SENTENCEPIECE_WORD_MARKER = "\u2581"  # "▁"


def bert_pre_tokenizer(lowercase: bool) -> tuple[normalizers.Normalizer, pre_tokenizers.PreTokenizer]:
    """BERT's normaliser and pre-tokenizer for the casing: the words a learner counts are those it will see."""
    return (normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                       lowercase=lowercase),
            pre_tokenizers.BertPreTokenizer())


def count_words(sentences: Iterable[str], lowercase: bool) -> collections.Counter[str]:
    """Frequencies of BERT-pre-tokenized words (normalised as the tokenizer will normalise them)."""
    normalizer, pre_tokenizer = bert_pre_tokenizer(lowercase)
    counts: collections.Counter[str] = collections.Counter()
    for sentence in sentences:
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(sentence)))
    return counts


def learn_wordpiece(sentences: Iterable[str], vocab_size: int, *, lowercase: bool,
                    max_alphabet: int = DEFAULT_MAX_ALPHABET) -> list[str]:
    """Tokens learned by `tokenizers`' WordPieceTrainer, special tokens first."""
    tokenizer = tokenizers.Tokenizer(WordPiece(unk_token=UNK, continuing_subword_prefix=CONTINUATION_PREFIX,
                                               max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD))
    tokenizer.normalizer, tokenizer.pre_tokenizer = bert_pre_tokenizer(lowercase)
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                        limit_alphabet=max_alphabet, continuing_subword_prefix=CONTINUATION_PREFIX,
                                        show_progress=False)
    tokenizer.train_from_iterator(sentences, trainer)
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    return [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]


def _alphabet(word_counts: collections.Counter[str], max_alphabet: int) -> list[str]:
    char_counts: collections.Counter[str] = collections.Counter()
    for word, count in word_counts.items():
        for char in word:
            char_counts[char] += count
    # Most frequent first; ties by character so the result does not depend on input order.
    return [char for char, _ in sorted(char_counts.items(), key=lambda item: (-item[1], item[0]))[:max_alphabet]]


def sentencepiece_to_wordpiece(pieces: Iterable[str]) -> Iterator[str]:
    """`▁word` -> `word`, `piece` -> `##piece`; the bare `▁` and SentencePiece's meta pieces are dropped."""
    for piece in pieces:
        if piece in ("<unk>", "<s>", "</s>", "<pad>") or piece == SENTENCEPIECE_WORD_MARKER:
            continue
        if piece.startswith(SENTENCEPIECE_WORD_MARKER):
            yield piece[len(SENTENCEPIECE_WORD_MARKER):]
        else:
            yield CONTINUATION_PREFIX + piece


def learn_sentencepiece(sentences: Iterable[str], vocab_size: int, *, lowercase: bool,
                        model_type: str = DEFAULT_SENTENCEPIECE_MODEL_TYPE,
                        max_alphabet: int = DEFAULT_MAX_ALPHABET, num_threads: int = 2) -> list[str]:
    """SentencePiece pieces in WordPiece form: specials, the alphabet (`c` and `##c`), then pieces by rank."""
    import sentencepiece

    if model_type not in SENTENCEPIECE_MODEL_TYPES:
        raise InputError(f"unknown sentencepiece model type {model_type!r}; choose one of {SENTENCEPIECE_MODEL_TYPES}")
    word_counts = count_words(sentences, lowercase)
    # Longer words are [UNK] for WordPiece whatever the vocab, so they would only waste pieces.
    word_counts = collections.Counter({word: count for word, count in word_counts.items()
                                       if len(word) <= MAX_INPUT_CHARS_PER_WORD})
    if not word_counts:
        raise InputError("the input has no words to learn a vocab from")
    alphabet = _alphabet(word_counts, max_alphabet)
    allowed = set(alphabet)
    head = list(SPECIAL_TOKENS) + [token for char in alphabet for token in (char, CONTINUATION_PREFIX + char)]
    if len(head) >= vocab_size:
        raise InputError(f"vocab_size {vocab_size} leaves no room for pieces after {len(head)} special and "
                         f"alphabet tokens; raise --vocab_size or lower --max_alphabet")
    with tempfile.TemporaryDirectory(prefix="bert_jax_vocab_") as work_dir:
        words_path = os.path.join(work_dir, "words.tsv")
        with open(words_path, "w", encoding="utf-8") as f:
            for word, count in sorted(word_counts.items()):
                # Words with characters outside the alphabet will be [UNK] anyway; a literal "▁" or tab would be
                # misread by SentencePiece as its word marker or the TSV separator.
                if "\t" not in word and SENTENCEPIECE_WORD_MARKER not in word and set(word) <= allowed:
                    f.write(f"{word}\t{count}\n")
        request = vocab_size - len(head) + len(alphabet) + 16
        best: list[str] = head
        for _ in range(6):  # conversion merges duplicates, so ask for more pieces until the size is reached
            pieces = _train_sentencepiece(words_path, os.path.join(work_dir, "sp"), request, model_type,
                                          num_threads)
            tokens = list(dict.fromkeys(head + [token for token in sentencepiece_to_wordpiece(pieces)
                                                if token and token != CONTINUATION_PREFIX]))
            best = tokens if len(tokens) > len(best) else best
            if len(tokens) >= vocab_size or len(pieces) < request:  # done, or the corpus has no more pieces
                break
            request += vocab_size - len(tokens) + 16
    return best[:vocab_size]


def _train_sentencepiece(words_path: str, model_prefix: str, vocab_size: int, model_type: str,
                         num_threads: int) -> list[str]:
    import sentencepiece

    sentencepiece.SentencePieceTrainer.Train(
        input=words_path, input_format="tsv", model_prefix=model_prefix, model_type=model_type,
        vocab_size=vocab_size, hard_vocab_limit=False, character_coverage=1.0,
        normalization_rule_name="identity", add_dummy_prefix=True, remove_extra_whitespaces=False,
        split_digits=False, byte_fallback=False, bos_id=-1, eos_id=-1, unk_id=0, pad_id=-1,
        max_sentence_length=1 << 16, num_threads=num_threads, minloglevel=2)
    processor = sentencepiece.SentencePieceProcessor(model_file=model_prefix + ".model")
    return [processor.id_to_piece(index) for index in range(processor.get_piece_size())]


def learn_vocab(sentences: Iterable[str], vocab_size: int, *, lowercase: bool, learner: str = DEFAULT_LEARNER,
                max_alphabet: int = DEFAULT_MAX_ALPHABET,
                sentencepiece_model_type: str = DEFAULT_SENTENCEPIECE_MODEL_TYPE) -> list[str]:
    """A BERT vocab (special tokens at ids 0..4) of at most `vocab_size` tokens learned from `sentences`."""
    if vocab_size <= len(SPECIAL_TOKENS):
        raise InputError(f"vocab_size must exceed the {len(SPECIAL_TOKENS)} special tokens, got {vocab_size}")
    if learner == "wordpiece":
        tokens = learn_wordpiece(sentences, vocab_size, lowercase=lowercase, max_alphabet=max_alphabet)
    elif learner == "sentencepiece":
        tokens = learn_sentencepiece(sentences, vocab_size, lowercase=lowercase, max_alphabet=max_alphabet,
                                     model_type=sentencepiece_model_type)
    else:
        raise InputError(f"unknown learner {learner!r}; choose one of {LEARNERS}")
    if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
        raise AssertionError(f"learner {learner} did not put the special tokens first: {tokens[:5]}")
    return tokens
