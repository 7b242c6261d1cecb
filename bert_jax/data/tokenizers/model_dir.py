"""A model directory's tokenizer (Hugging Face layout): `vocab.txt` (WordPiece, built as `BertTokenizerFast` with
the directory's casing) or `tokenizer.json` (byte-level BPE, as written), with its special tokens. Shared by
fill-mask and fine-tuning."""

from __future__ import annotations

import json
from pathlib import Path

import tokenizers

from bert_jax.data.tokenizers.wordpiece import MASK, PAD, load_tokenizer
from bert_jax.errors import CheckpointError, InputError


def _token_text(value, default: str) -> str:
    """A special token as tokenizer configs spell it: a string, or an AddedToken dict with its `content`."""
    if isinstance(value, dict):
        return value.get("content", default)
    return value or default


def load_model_tokenizer(model_dir: str | Path) -> tuple[tokenizers.Tokenizer, bool, dict[str, str]]:
    """The directory's tokenizer, whether decoding cleans up spaces (its `clean_up_tokenization_spaces`), and its
    mask and pad tokens (`[MASK]`/`[PAD]` for BERT's WordPiece, `<mask>`/`<pad>` for RoBERTa's BPE)."""
    model_dir = Path(model_dir)
    config_path = model_dir / "tokenizer_config.json"
    try:
        tokenizer_config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{config_path} is not valid JSON ({e})") from None
    if not isinstance(tokenizer_config, dict):
        raise CheckpointError(f"{config_path} holds a JSON {type(tokenizer_config).__name__}, not an object")
    specials = {"mask": _token_text(tokenizer_config.get("mask_token"), MASK),
                "pad": _token_text(tokenizer_config.get("pad_token"), PAD)}
    if (model_dir / "vocab.txt").is_file():
        tokenizer = load_tokenizer(str(model_dir / "vocab.txt"))  # casing from the directory's tokenizer_config.json
    elif (model_dir / "tokenizer.json").is_file():
        try:
            tokenizer = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        except Exception as e:  # the tokenizers library raises plain Exceptions for a malformed file
            raise CheckpointError(f"{model_dir / 'tokenizer.json'} is not a valid tokenizer file ({e})") from None
        tokenizer.no_padding()
        tokenizer.no_truncation()
    else:
        raise InputError(f"{model_dir} has no vocab.txt or tokenizer.json; export the model with its vocab")
    return tokenizer, bool(tokenizer_config.get("clean_up_tokenization_spaces", False)), specials
