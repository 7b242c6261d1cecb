"""Hugging Face model directories: safetensors read and write, `config.json`, the tokenizer files, export and
import for every architecture of the family (the name tables are in `hf_names.py`).

Loading is safetensors only: a pickle checkpoint (`pytorch_model.bin`) can run arbitrary code when loaded and is
refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import safe_open
from safetensors.numpy import save_file

from bert_jax import fileio, models
from bert_jax.data.tokenizers.wordpiece import is_lowercase_vocab
from bert_jax.errors import CheckpointError
from bert_jax.interop import hf_names

SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")
# A byte-level BPE tokenizer's files, copied as they are from the directory of the run's tokenizer.json.
BPE_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")
# Every file export may write; nothing else is ever created in the output directory.
EXPORT_FILES = (
    SAFETENSORS_FILE,
    "config.json",
    "vocab.txt",
    *BPE_TOKENIZER_FILES,
)
SPECIAL_TOKENS = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}


def architecture(config) -> hf_names.Architecture:
    if config.model_type not in hf_names.ARCHITECTURES:
        raise CheckpointError(f"no Hugging Face name table for model_type {config.model_type!r}")
    return hf_names.ARCHITECTURES[config.model_type]


def _flat_params(model) -> dict[tuple, nnx.Variable]:
    return {tuple(path): var for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param))}


# ----------------------------------------------------------------------------------------------------- export


def _entries(model) -> list[hf_names.Entry]:
    """The name-table entries of the parameters this model has (a `BertForMaskedLM` has no pooler or NSP head)."""
    params = _flat_params(model)
    return [entry for entry in architecture(model.config).entries(model.config) if entry.ours in params]


def to_hf_state_dict(model) -> dict[str, np.ndarray]:
    """Our parameters under HF names (`BertForPreTraining`'s, or `BertForMaskedLM`'s subset), as host NumPy arrays
    in their stored dtype."""
    params = _flat_params(model)
    return {e.hf: np.ascontiguousarray(e.to_hf(np.asarray(jax.device_get(params[e.ours].get_value()))))
            for e in _entries(model)}


def hf_config_dict(config, architecture_name: str = "BertForPreTraining", labels: Sequence[str] | None = None) -> dict:
    """`config.json` for `transformers.{architecture_name}` (and the `Auto*` classes); with `labels` (a model with a
    task head) its `id2label`, `label2id` and `problem_type`."""
    values = {
        "architectures": [architecture_name],
        "model_type": config.model_type,
        **config.to_hf_dict(),
        **architecture(config).config_extra,
        "tie_word_embeddings": True,
        "dtype": config.param_dtype,
    }
    if labels is not None:
        values.update(head_config(config, labels))
    return values


def head_config(config, labels: Sequence[str] = ()) -> dict:
    """config.json's fields of a task head: `id2label` and `label2id` (the task's label names, transformers'
    `LABEL_i` where none are given) and `problem_type` (null when the config leaves it to the labels)."""
    labels = list(labels) or [f"LABEL_{i}" for i in range(config.num_labels)]
    if len(labels) != config.num_labels:
        raise CheckpointError(f"{len(labels)} label names ({labels}) for a head of num_labels={config.num_labels}")
    return {"id2label": {str(i): name for i, name in enumerate(labels)},
            "label2id": {name: i for i, name in enumerate(labels)},
            "problem_type": config.problem_type or None}


def head_fields_from_hf(hf: dict) -> dict:
    """Our task-head fields from a config.json: `num_labels` (as transformers, the size of `id2label`) and
    `problem_type`."""
    values = {}
    if isinstance(hf.get("id2label"), dict) and hf["id2label"]:
        values["num_labels"] = len(hf["id2label"])
    elif isinstance(hf.get("num_labels"), int):
        values["num_labels"] = hf["num_labels"]
    if hf.get("problem_type"):
        values["problem_type"] = hf["problem_type"]
    return values


def label_names(model_dir: str | os.PathLike) -> list[str]:
    """The label names of a directory's config.json (`id2label` in id order), or [] when it has none."""
    hf = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    id2label = hf.get("id2label") or {}
    return [id2label[key] for key in sorted(id2label, key=int)]


def _check_output_dir(output_dir: Path, force: bool) -> Path:
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise CheckpointError(f"export target {output_dir} exists and is not a directory; choose another --output")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not force:
        raise CheckpointError(
            f"export target {output_dir} is not empty; choose an empty or new directory, or pass --force to "
            f"overwrite the export files ({', '.join(EXPORT_FILES)}) in it"
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    for name in EXPORT_FILES:
        if (output_dir / name).is_dir() and not (output_dir / name).is_symlink():
            raise CheckpointError(f"{output_dir / name} is a directory; export would need to replace it with a file")
    return output_dir.resolve()


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


def export_pretrained(
    model,
    output_dir: str | os.PathLike,
    *,
    vocab_file: str | os.PathLike | None = None,
    lowercase: bool | None = None,
    force: bool = False,
    labels: Sequence[str] | None = None,
) -> list[Path]:
    """Writes an HF directory of the model's class (`BertForPreTraining`, `RobertaForMaskedLM`,
    `DistilBertForMaskedLM`, `BertForSequenceClassification`, ...):
    `model.safetensors`, `config.json` and, with a vocab, the tokenizer: a WordPiece `vocab.txt` with its
    `tokenizer_config.json`, or a byte-level BPE `tokenizer.json` with the files beside it.

    `lowercase` (WordPiece) defaults to what the vocab's own `tokenizer_config.json` says (cased when it says nothing).
    A model with a task head gets `id2label`/`label2id` from `labels` (`LABEL_i` without them) and its
    `problem_type` in config.json.
    """
    from bert_jax.models.heads import TaskModel

    if labels is None and isinstance(model, TaskModel):
        labels = ()
    output_dir = _check_output_dir(Path(output_dir), force)
    tensors = to_hf_state_dict(model)
    # fileio replaces (never follows) a symlink planted at one of these names, so nothing outside output_dir is written.
    written = [fileio.write_atomic(output_dir / SAFETENSORS_FILE, lambda p: save_file(tensors, p, metadata={"format": "pt"}))]
    written.append(fileio.write_json(output_dir / "config.json",
                                     hf_config_dict(model.config, type(model).__name__, labels), indent=2))
    if vocab_file is not None:
        written += _export_tokenizer(Path(vocab_file), output_dir, model.config, lowercase)
    return written


def _export_tokenizer(vocab_file: Path, output_dir: Path, config, lowercase: bool | None) -> list[Path]:
    vocab_size = config.vocab_size
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
                          tokenizer_config_dict(lowercase, architecture(config).tokenizer_class), indent=2),
        fileio.write_json(output_dir / "special_tokens_map.json", SPECIAL_TOKENS, indent=2),
    ]


# ----------------------------------------------------------------------------------------------------- import


@dataclasses.dataclass
class ImportReport:
    """What an import took from the checkpoint, what it had to initialise, and what it left unused."""

    loaded: list[str]
    missing: list[str]  # HF names absent from the checkpoint, freshly initialised
    unused: list[str]  # checkpoint names that are not part of the model
    heads: dict[str, str] = dataclasses.field(default_factory=dict)  # HF name prefix -> head, for the report

    @property
    def missing_heads(self) -> list[str]:
        heads = {head for name in self.missing for prefix, head in self.heads.items() if name.startswith(prefix)}
        return sorted(heads)

    def summary(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors"]
        if self.missing:
            heads = self.missing_heads
            lines.append(
                f"freshly initialised {len(self.missing)} tensors"
                + (f" (missing heads: {', '.join(heads)})" if heads else "")
                + ": "
                + ", ".join(self.missing)
            )
        if self.unused:
            lines.append(f"ignored {len(self.unused)} checkpoint tensors: " + ", ".join(self.unused))
        return "\n".join(lines)


def config_from_hf(model_dir: str | os.PathLike, **overrides):
    """Our config of the directory's architecture (`BertConfig`, `RobertaConfig`, `DistilBertConfig`) from its
    `config.json`; fields we do not model are refused if they change the function."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path} not found: a Hugging Face model directory needs config.json")
    try:
        hf = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} line {e.lineno}: invalid JSON ({e.msg})") from None
    model_type = hf.get("model_type", "bert")
    if model_type not in hf_names.ARCHITECTURES:
        raise CheckpointError(f"{path}: model_type is {model_type!r}; bert_jax loads "
                              f"{', '.join(sorted(hf_names.ARCHITECTURES))} checkpoints")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(
            f"{path}: position_embedding_type {hf['position_embedding_type']!r} is not supported (only 'absolute')"
        )
    config_class = models.config_class(model_type)
    values = {name: hf[name] for name in config_class.HF_FIELDS if name in hf}
    values.update(head_fields_from_hf(hf))
    values.update(overrides, model_type=model_type)
    try:
        return config_class.from_mapping(values)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: {e}") from None


def _safetensors_files(model_dir: Path) -> list[Path]:
    single, index = model_dir / SAFETENSORS_FILE, model_dir / SAFETENSORS_INDEX
    if single.is_file():
        return [single]
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return [model_dir / name for name in sorted(set(weight_map.values()))]
    pickles = [name for name in PICKLE_FILES if (model_dir / name).exists()]
    if pickles:
        raise CheckpointError(
            f"{model_dir} holds only {', '.join(pickles)}: bert_jax loads safetensors only, because pickle checkpoints "
            "can execute arbitrary code when loaded. Convert it once in a trusted environment, e.g. "
            "`BertForPreTraining.from_pretrained(dir).save_pretrained(out_dir)` (transformers writes safetensors)."
        )
    raise CheckpointError(f"no {SAFETENSORS_FILE} or {SAFETENSORS_INDEX} in {model_dir}")


def read_safetensors_names(model_dir: str | os.PathLike) -> list[str]:
    """The tensor names of a (possibly sharded) safetensors checkpoint, without reading the tensors."""
    names = []
    for path in _safetensors_files(Path(model_dir)):
        with safe_open(path, framework="np") as f:
            names.extend(f.keys())
    return names


def read_safetensors(model_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of a (possibly sharded) safetensors checkpoint, as NumPy arrays."""
    tensors = {}
    for path in _safetensors_files(Path(model_dir)):
        with safe_open(path, framework="np") as f:
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    return tensors


def from_hf_state_dict(model, tensors: dict[str, np.ndarray]) -> ImportReport:
    """Copies HF tensors into `model` in place (cast to its param dtype); returns what was loaded and missing."""
    names = architecture(model.config)
    by_name = {}
    for key, value in tensors.items():
        name = names.canonical(key)
        if any(name.endswith(ignored) for ignored in names.ignored):
            continue
        by_name[name] = value
    params = _flat_params(model)
    known = set()
    loaded, missing = [], []
    for entry in _entries(model):
        known.add(entry.hf)
        if entry.hf not in by_name:
            missing.append(entry.hf)
            continue
        variable = params[entry.ours]
        value = entry.from_hf(np.asarray(by_name[entry.hf]))
        current = variable.get_value()
        if value.shape != current.shape:
            raise CheckpointError(
                f"tensor {entry.hf} has shape {tuple(by_name[entry.hf].shape)}, which does not fit the config "
                f"(expected {tuple(entry.to_hf(np.zeros(current.shape)).shape)}); config.json and weights disagree"
            )
        variable.set_value(jnp.asarray(value, dtype=current.dtype))
        loaded.append(entry.hf)
    unused = sorted(set(by_name) - known)
    return ImportReport(loaded=loaded, missing=missing, unused=unused, heads=names.heads)


def load_pretrained(model_dir: str | os.PathLike, *, seed: int = 0, heads: tuple[str, ...] = ("mlm", "nsp"),
                    **config_overrides):
    """Loads any HF safetensors checkpoint of the family (`BertModel`, `BertForPreTraining`, `BertForMaskedLM`,
    `RobertaModel`, `RobertaForMaskedLM`, `DistilBertModel`, `DistilBertForMaskedLM`, ...) into our model of its
    architecture with `heads` (BERT's default: MLM and NSP, as `BertForPreTraining`; RoBERTa and DistilBERT have the
    MLM head only).

    Parameters the checkpoint lacks (e.g. the NSP head of a `BertForMaskedLM`) keep their fresh initialisation from
    `seed` and are listed in the report. `config_overrides` (e.g. `dtype="bfloat16"`) replace config.json values.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise CheckpointError(f"model directory {model_dir} does not exist")
    config = config_from_hf(model_dir, **config_overrides)
    tensors = read_safetensors(model_dir)
    available = models.model_heads(config)
    heads = tuple(heads) if tuple(heads) in available else available[0]
    model = models.constructor(config, heads)(nnx.Rngs(seed))
    report = from_hf_state_dict(model, tensors)
    if not report.loaded:
        raise CheckpointError(f"no {config.model_type} tensor names found in {model_dir}: is it a "
                              f"{config.model_type} checkpoint?")
    return model, report


def export_to(graphdef, params, workdir: str, *, vocab_file: str, lowercase: bool, name: str = "export",
              labels: Sequence[str] | None = None) -> list[Path]:
    """Writes WORKDIR/export (or WORKDIR/`name`), the Hugging Face directory of a run's parameters (host arrays),
    replacing an earlier export there; `labels` as `export_pretrained`. `export_pretrained` writes a local directory atomically; an object-store workdir (gs://) gets a copy
    of it."""
    import logging
    import tempfile

    from etils import epath

    out = epath.Path(workdir) / name
    local = out if "://" not in str(workdir) else epath.Path(tempfile.mkdtemp(prefix="bert_jax_export_"))
    written = export_pretrained(nnx.merge(graphdef, params), str(local), vocab_file=vocab_file, lowercase=lowercase,
                                force=True, labels=labels)
    if local != out:
        out.mkdir(parents=True, exist_ok=True)
        for path in written:
            (local / path.name).copy(out / path.name, overwrite=True)
    logging.getLogger("bert_jax").info("exported %s to %s", ", ".join(p.name for p in written), out)
    return written
