"""Byte-level BPE vocabularies as RoBERTa's: the learner, the tokenizer they define, and their files.

The tokenizer is the pipeline of Hugging Face's `RobertaTokenizer` (transformers 5) and of the released
`roberta-base` `tokenizer.json`: no normaliser, the ByteLevel pre-tokenizer (GPT-2's regex, `add_prefix_space`
false, so a text's first word has no leading-space marker), a BPE model without continuation prefix, dropout or
unknown token (every byte has a symbol), `<s> A </s>` / `<s> A </s></s> B </s>` post-processing, and the special
tokens `<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3 and `<mask>` last (50264 in RoBERTa's 50,265 ids), `<mask>` with
`lstrip` as RoBERTa's (it swallows the space before it). Ids are therefore those of `AutoTokenizer` on the same
directory (tested on unicode-heavy text).

A vocab directory holds `vocab.json` and `merges.txt` (GPT-2's files), `tokenizer.json` (the whole pipeline, what
we load), `tokenizer_config.json` and `special_tokens_map.json` (what transformers reads to pick the class and its
special tokens).
"""

from __future__ import annotations

import json
import os
from typing import Iterable, Sequence

import tokenizers
from tokenizers import decoders, pre_tokenizers, processors, trainers
from tokenizers.models import BPE

from bert_jax import fileio
from bert_jax.errors import InputError

BOS, PAD, EOS, UNK, MASK = "<s>", "<pad>", "</s>", "<unk>", "<mask>"
LEADING_SPECIAL_TOKENS = (BOS, PAD, EOS, UNK)  # ids 0-3, as RoBERTa's; <mask> takes the last id
SPECIAL_TOKENS = LEADING_SPECIAL_TOKENS + (MASK,)
# The byte-level symbol of a space: a token that starts with it starts a word.
WORD_START_MARKER = "\u0120"  # "Ġ"
NUM_BYTE_SYMBOLS = 256
MIN_VOCAB_SIZE = len(SPECIAL_TOKENS) + NUM_BYTE_SYMBOLS
DEFAULT_MIN_FREQUENCY = 2  # as Hugging Face's RoBERTa recipe: a pair seen once is not worth a token
MODEL_MAX_LENGTH = 512

TOKENIZER_FILE = "tokenizer.json"
VOCAB_JSON = "vocab.json"
MERGES_FILE = "merges.txt"
TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"
FILES = (VOCAB_JSON, MERGES_FILE, TOKENIZER_FILE, TOKENIZER_CONFIG, SPECIAL_TOKENS_MAP)


def _special(token: str) -> tokenizers.AddedToken:
    # Matched verbatim in text and skipped on decode, as in transformers; <mask> also takes the space before it.
    return tokenizers.AddedToken(token, special=True, normalized=False, lstrip=token == MASK, rstrip=False)


def make_tokenizer(vocab: dict[str, int], merges: Sequence[tuple[str, str]]) -> tokenizers.Tokenizer:
    """RoBERTa's tokenizer pipeline around a BPE `vocab` (token -> id, the special tokens included) and `merges`."""
    missing = [token for token in SPECIAL_TOKENS if token not in vocab]
    if missing:
        raise InputError(f"byte-level BPE vocab lacks RoBERTa's special tokens {missing}")
    tokenizer = tokenizers.Tokenizer(BPE(vocab=vocab, merges=list(merges), dropout=None, continuing_subword_prefix="",
                                         end_of_word_suffix="", fuse_unk=False))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([_special(token) for token in SPECIAL_TOKENS])
    tokenizer.post_processor = processors.RobertaProcessing((EOS, vocab[EOS]), (BOS, vocab[BOS]), trim_offsets=True,
                                                            add_prefix_space=False)
    return tokenizer


def _merges_of(tokenizer: tokenizers.Tokenizer) -> list[tuple[str, str]]:
    merges = json.loads(tokenizer.to_str())["model"]["merges"]
    # tokenizers writes merges as pairs; older files hold "a b" strings.
    return [tuple(merge) if isinstance(merge, list) else tuple(merge.split(" ", 1)) for merge in merges]


def learn_bpe(texts: Iterable[str], vocab_size: int, *,
              min_frequency: int = DEFAULT_MIN_FREQUENCY) -> tokenizers.Tokenizer:
    """A byte-level BPE tokenizer of at most `vocab_size` ids learned from `texts` by `tokenizers`' BpeTrainer.

    `<s> <pad> </s> <unk>` take ids 0-3, the 256 byte symbols follow, then the merges by rank, and `<mask>` takes
    the last id (`vocab_size - 1`, or less when the corpus has fewer pairs worth merging). `texts` should be what
    the build tokenizes: documents with their sentences joined by single spaces (`vocab.iterate_sentences` with
    `join_documents`), so words are counted with the leading space they will have.
    """
    if vocab_size < MIN_VOCAB_SIZE:
        raise InputError(f"vocab_size must be at least {MIN_VOCAB_SIZE} ({len(SPECIAL_TOKENS)} special tokens and "
                         f"{NUM_BYTE_SYMBOLS} byte symbols), got {vocab_size}")
    if min_frequency < 1:
        raise InputError(f"--min_frequency must be at least 1, got {min_frequency}")
    learner = tokenizers.Tokenizer(BPE())
    learner.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 1, min_frequency=min_frequency,
                                  special_tokens=list(LEADING_SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    learner.train_from_iterator(texts, trainer)
    vocab = learner.get_vocab(with_added_tokens=True)
    if [vocab.get(token) for token in LEADING_SPECIAL_TOKENS] != [0, 1, 2, 3]:
        raise AssertionError(f"BpeTrainer did not put {LEADING_SPECIAL_TOKENS} at ids 0-3")
    vocab[MASK] = len(vocab)
    return make_tokenizer(vocab, _merges_of(learner))


def tokenizer_file(path: str) -> str:
    """The `tokenizer.json` a path names: the file itself or the one in the directory."""
    return os.path.join(path, TOKENIZER_FILE) if os.path.isdir(path) else path


def check_tokenizer(tokenizer: tokenizers.Tokenizer, where: str) -> None:
    """Raises `InputError` unless `tokenizer` is a byte-level BPE the build and masking can use exactly."""
    pipeline = json.loads(tokenizer.to_str())
    model = pipeline.get("model") or {}
    pre_tokenizer = pipeline.get("pre_tokenizer") or {}
    problems = []
    if model.get("type") != "BPE":
        problems.append(f"its model is {model.get('type')!r}, not BPE")
    if model.get("dropout"):
        problems.append("it has BPE dropout (random tokenization)")
    if pre_tokenizer.get("type") != "ByteLevel":
        problems.append(f"its pre-tokenizer is {pre_tokenizer.get('type')!r}, not ByteLevel")
    missing = [token for token in SPECIAL_TOKENS if tokenizer.token_to_id(token) is None]
    if missing:
        problems.append(f"it lacks RoBERTa's special tokens {missing}")
    if problems:
        raise InputError(f"{where} is not a byte-level BPE tokenizer as RoBERTa's: {'; '.join(problems)}. Learn one "
                         f"with `python -m bert_jax.data.vocab --kind bpe`")


def load_tokenizer(path: str) -> tokenizers.Tokenizer:
    """The tokenizer of a BPE vocab directory or its `tokenizer.json`; a directory with only `vocab.json` and
    `merges.txt` (GPT-2's files) gets RoBERTa's pipeline around them."""
    file = tokenizer_file(path)
    if os.path.isfile(file) and not file.endswith(".json"):
        raise InputError(f"{file} is not a tokenizer.json: a byte-level BPE vocab (RoBERTa's tokenizer.json, or its "
                         f"directory) is expected here, and a WordPiece vocab.txt is not one")
    if os.path.isfile(file) and os.path.basename(file) != VOCAB_JSON:
        try:
            tokenizer = tokenizers.Tokenizer.from_file(file)
        except Exception as error:  # tokenizers raises a bare Exception for unparsable files
            raise InputError(f"{file}: not a readable tokenizer.json ({error})") from None
        check_tokenizer(tokenizer, file)
        return tokenizer
    directory = path if os.path.isdir(path) else os.path.dirname(path)
    vocab_path, merges_path = os.path.join(directory, VOCAB_JSON), os.path.join(directory, MERGES_FILE)
    if not (os.path.isfile(vocab_path) and os.path.isfile(merges_path)):
        raise InputError(f"{path!r} holds no byte-level BPE vocab: expected {TOKENIZER_FILE}, or {VOCAB_JSON} and "
                         f"{MERGES_FILE}, as `python -m bert_jax.data.vocab --kind bpe` writes")
    try:
        with open(vocab_path, encoding="utf-8") as f:
            vocab = json.load(f)
    except json.JSONDecodeError as error:
        raise InputError(f"{vocab_path}:{error.lineno}: invalid JSON ({error.msg})") from None
    with open(merges_path, encoding="utf-8") as f:
        merges = [tuple(line.rstrip("\n").split(" ", 1)) for line in f
                  if line.strip() and not line.startswith("#version")]
    tokenizer = make_tokenizer(vocab, merges)
    check_tokenizer(tokenizer, directory)
    return tokenizer


def tokens_by_id(tokenizer: tokenizers.Tokenizer) -> list[str]:
    """Every token, indexed by id (added tokens included); a gap in the ids is an error."""
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    tokens = [""] * len(vocab)
    for token, index in vocab.items():
        if index >= len(tokens):
            raise InputError(f"byte-level BPE vocab has {len(vocab)} tokens but an id of {index}: its ids must be "
                             f"0..{len(vocab) - 1}")
        tokens[index] = token
    return tokens


def special_token_ids(tokenizer: tokenizers.Tokenizer) -> list[int]:
    """Ids of the added tokens marked special (RoBERTa's five, or more in another BPE vocab)."""
    added = json.loads(tokenizer.to_str()).get("added_tokens") or []
    return sorted(token["id"] for token in added if token.get("special"))


def write_vocab_dir(tokenizer: tokenizers.Tokenizer, output_dir: str) -> str:
    """Writes the five files of a BPE vocab directory (each atomically); returns the `tokenizer.json` path."""
    check_tokenizer(tokenizer, "the tokenizer to write")
    os.makedirs(output_dir, exist_ok=True)
    tokens = tokens_by_id(tokenizer)
    vocab_text = json.dumps({token: index for index, token in enumerate(tokens)}, ensure_ascii=False)
    fileio.write_text(os.path.join(output_dir, VOCAB_JSON), vocab_text + "\n")
    merges = _merges_of(tokenizer)
    fileio.write_text(os.path.join(output_dir, MERGES_FILE),
                      "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    tokenizer_path = os.path.join(output_dir, TOKENIZER_FILE)
    fileio.write_text(tokenizer_path, tokenizer.to_str() + "\n")
    special_map = {"bos_token": BOS, "eos_token": EOS, "unk_token": UNK, "sep_token": EOS, "pad_token": PAD,
                   "cls_token": BOS, "mask_token": MASK}
    config = {
        "tokenizer_class": "RobertaTokenizer",
        "model_max_length": MODEL_MAX_LENGTH,
        "add_prefix_space": False,
        "trim_offsets": True,
        "errors": "replace",
        # transformers 5's default, written out so every version decodes alike (as our BERT export does).
        "clean_up_tokenization_spaces": False,
        **special_map,
    }
    fileio.write_json(os.path.join(output_dir, TOKENIZER_CONFIG), config, indent=2)
    mask = {"content": MASK, "lstrip": True, "normalized": False, "rstrip": False, "single_word": False}
    fileio.write_json(os.path.join(output_dir, SPECIAL_TOKENS_MAP), {**special_map, "mask_token": mask}, indent=2)
    return tokenizer_path
