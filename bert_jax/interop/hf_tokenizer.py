"""The tokenizer files an export writes beside the weights, as Hugging Face's tokenizers read them."""

from __future__ import annotations

import shutil
from pathlib import Path

from bert_jax import fileio
from bert_jax.data.tokenizers.wordpiece import is_lowercase_vocab, load_tokenizer
from bert_jax.errors import CheckpointError

# A byte-level BPE tokenizer's files, copied as they are from the directory of the run's tokenizer.json.
BPE_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")
SPECIAL_TOKENS = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}


def tokenizer_config_dict(lowercase: bool, tokenizer_class: str = "BertTokenizer") -> dict:
    return {
        "tokenizer_class": tokenizer_class,
        "do_lower_case": lowercase,
        "tokenize_chinese_chars": True,
        "strip_accents": None,
        "model_max_length": 512,
        "clean_up_tokenization_spaces": False,  # the transformers 5 default; the clean-up is lossy
        **SPECIAL_TOKENS,
    }


def export_tokenizer(vocab_file: Path, output_dir: Path, vocab_size: int, tokenizer_class: str,
                     lowercase: bool | None) -> list[Path]:
    """The tokenizer files beside an export: a BPE `tokenizer.json` with the files next to it, copied; or a WordPiece
    `vocab.txt` with its `tokenizer_config.json` (casing from `lowercase`, else the vocab's own config),
    `special_tokens_map.json` and the `tokenizer.json` that `BertTokenizerFast` would save (servers such as
    text-embeddings-inference read only that file). A vocab of another size than the model's is refused."""
    if vocab_file.name == "tokenizer.json":
        import tokenizers

        size = tokenizers.Tokenizer.from_file(str(vocab_file)).get_vocab_size()
        if size != vocab_size:
            raise CheckpointError(f"{vocab_file} has {size} tokens but the model's vocab_size is {vocab_size}; pass "
                                  "the tokenizer the model was trained with")
        names = [name for name in BPE_TOKENIZER_FILES if (vocab_file.parent / name).is_file()]
        return [fileio.write_atomic(output_dir / name, lambda p, name=name: shutil.copyfile(vocab_file.parent / name, p))
                for name in names]
    vocab_text = vocab_file.read_text(encoding="utf-8")
    size = len(vocab_text.splitlines())
    if size != vocab_size:
        raise CheckpointError(
            f"{vocab_file} has {size} tokens but the model's vocab_size is {vocab_size}; "
            "pass the vocab the model was trained with"
        )
    if lowercase is None:
        lowercase = is_lowercase_vocab(str(vocab_file))
    return [
        fileio.write_text(output_dir / "vocab.txt", vocab_text),
        fileio.write_json(output_dir / "tokenizer_config.json",
                          tokenizer_config_dict(lowercase, tokenizer_class), indent=2),
        fileio.write_json(output_dir / "special_tokens_map.json", SPECIAL_TOKENS, indent=2),
        fileio.write_text(output_dir / "tokenizer.json", load_tokenizer(str(vocab_file), lowercase).to_str(pretty=True)),
    ]
