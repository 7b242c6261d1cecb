"""Hugging Face model directories: safetensors read and write, `config.json`, the tokenizer files, export and
import for every architecture of the family (the name tables are in `hf_names.py`).

Loading is safetensors only: a pickle checkpoint (`pytorch_model.bin`) can run arbitrary code when loaded and is
refused. A directory is checked before it is trusted (`hf_files.py`: weight files confined to it, readable headers,
memory for the config's parameters); an import missing encoder weights or holding non-finite ones is refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors.numpy import save_file

from bert_jax import fileio, models
from bert_jax.errors import CheckpointError
from bert_jax.interop import hf_files, hf_names, hf_tokenizer, model_card
from bert_jax.interop.hf_tokenizer import BPE_TOKENIZER_FILES
from bert_jax.interop.hf_files import PICKLE_FILES, SAFETENSORS_FILE, SAFETENSORS_INDEX  # noqa: F401 (our API)

# Every file export may write; nothing else is ever created in the output directory.
EXPORT_FILES = (
    SAFETENSORS_FILE,
    "model.onnx",
    "model.onnx_data",  # an ONNX export's weights when they are over protobuf's 2 GB
    "model_optimized.onnx",  # its variants (python -m bert_jax.optimize_onnx), removed when model.onnx is replaced
    "model_quantized.onnx",
    "config.json",
    "vocab.txt",
    *BPE_TOKENIZER_FILES,  # tokenizer.json among them: a WordPiece export writes one too
    model_card.CARD_FILE,  # README.md, the Hub's model card
)


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


def check_output_dir(output_dir: Path, force: bool) -> Path:
    """The export directory, created; refuses a non-empty one unless `force`, and any export name that is a directory."""
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


def export_pretrained(
    model,
    output_dir: str | os.PathLike,
    *,
    vocab_file: str | os.PathLike | None = None,
    lowercase: bool | None = None,
    force: bool = False,
    labels: Sequence[str] | None = None,
    run: model_card.RunInfo | None = None,
    license: str | None = None,
) -> list[Path]:
    """Writes an HF directory of the model's class (`BertForPreTraining`, `RobertaForMaskedLM`,
    `DistilBertForMaskedLM`, `BertForSequenceClassification`, ...):
    `model.safetensors`, `config.json` and, with a vocab, the tokenizer: a WordPiece `vocab.txt` with its
    `tokenizer_config.json`, or a byte-level BPE `tokenizer.json` with the files beside it.

    `lowercase` (WordPiece) defaults to what the vocab's own `tokenizer_config.json` says (cased when it says nothing).
    A model with a task head gets `id2label`/`label2id` from `labels` (`LABEL_i` without them) and its
    `problem_type` in config.json. The model card `README.md` (`model_card.py`) describes the model and, with `run`,
    the training run it comes from; `license` overrides the run's `export_license`.
    """
    output_dir = check_output_dir(Path(output_dir), force)
    tensors = to_hf_state_dict(model)
    card = model_card.build_card(type(model).__name__, model.config, sum(t.size for t in tensors.values()), run=run,
                                 license=license)  # before any file is written: a bad license id changes nothing
    # fileio replaces (never follows) a symlink planted at one of these names, so nothing outside output_dir is written.
    written = [fileio.write_atomic(output_dir / SAFETENSORS_FILE, lambda p: save_file(tensors, p, metadata={"format": "pt"}))]
    written += write_config_and_tokenizer(model, output_dir, vocab_file=vocab_file, lowercase=lowercase, labels=labels)
    return written + [fileio.write_atomic(output_dir / model_card.CARD_FILE, card.save)]


def write_config_and_tokenizer(model, output_dir: Path, *, vocab_file: str | os.PathLike | None,
                               lowercase: bool | None, labels: Sequence[str] | None = None) -> list[Path]:
    """`config.json` and (with a vocab) the tokenizer files, which every export format writes beside its weights."""
    from bert_jax.models.heads import TaskModel

    if labels is None and isinstance(model, TaskModel):
        labels = ()
    written = [fileio.write_json(output_dir / "config.json",
                                 hf_config_dict(model.config, type(model).__name__, labels), indent=2)]
    if vocab_file is not None:
        written += hf_tokenizer.export_tokenizer(Path(vocab_file), output_dir, model.config.vocab_size,
                                                 architecture(model.config).tokenizer_class, lowercase)
    return written


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

    @property
    def missing_encoder(self) -> list[str]:
        """Missing tensors that belong to no head: the embeddings and encoder layers."""
        return [name for name in self.missing if not name.startswith(tuple(self.heads))]

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
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{path} is not UTF-8 text ({e})") from None
    if not isinstance(hf, dict):
        raise CheckpointError(f"{path} holds a JSON {type(hf).__name__}, not an object of config fields")
    model_type = hf.get("model_type", "bert")
    if not isinstance(model_type, str) or model_type not in hf_names.ARCHITECTURES:
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


def read_safetensors_names(model_dir: str | os.PathLike) -> list[str]:
    """The tensor names of a (possibly sharded) safetensors checkpoint, without reading the tensors."""
    return hf_files.tensor_names(hf_files.safetensors_files(Path(model_dir)))


def read_safetensors(model_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of a (possibly sharded) safetensors checkpoint, as NumPy arrays."""
    return hf_files.read_files(hf_files.safetensors_files(Path(model_dir)))


def _all_finite(value: np.ndarray) -> bool:
    try:
        return bool(np.isfinite(value).all())
    except TypeError:  # an integer or boolean tensor
        return True


def from_hf_state_dict(model, tensors: dict[str, np.ndarray], source: str | os.PathLike = "the checkpoint"
                       ) -> ImportReport:
    """Copies HF tensors into `model` in place (cast to its param dtype); returns what was loaded and missing.
    A tensor of the wrong shape or with NaN or inf values is an error naming `source`."""
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
                f"{source}: tensor {entry.hf} has shape {tuple(by_name[entry.hf].shape)}, which does not fit the config "
                f"(expected {tuple(entry.to_hf(np.zeros(current.shape)).shape)}); config.json and weights disagree"
            )
        if not _all_finite(value):
            raise CheckpointError(f"{source}: tensor {entry.hf} holds NaN or infinite values; the checkpoint is "
                                  "corrupt or from a diverged run: export it again from a healthy checkpoint")
        variable.set_value(jnp.asarray(value, dtype=current.dtype))
        loaded.append(entry.hf)
    unused = sorted(set(by_name) - known)
    return ImportReport(loaded=loaded, missing=missing, unused=unused, heads=names.heads)


def _listing(names: list[str], shown: int = 4) -> str:
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def load_pretrained(model_dir: str | os.PathLike, *, seed: int = 0, heads: tuple[str, ...] = ("mlm", "nsp"),
                    allow_missing: bool = False, **config_overrides):
    """Loads any HF safetensors checkpoint of the family (`BertModel`, `BertForPreTraining`, `BertForMaskedLM`,
    `RobertaModel`, `RobertaForMaskedLM`, `DistilBertModel`, `DistilBertForMaskedLM`, ...) into our model of its
    architecture with `heads` (BERT's default: MLM and NSP, as `BertForPreTraining`; RoBERTa and DistilBERT have the
    MLM head only).

    Heads the checkpoint lacks (e.g. the NSP head of a `BertForMaskedLM`) keep their fresh initialisation from
    `seed` and are listed in the report; missing encoder weights (embeddings, layers) are an error unless
    `allow_missing`, which initialises them likewise. `config_overrides` (e.g. `dtype="bfloat16"`) replace
    config.json values. The memory the parameters need is checked before anything is allocated.
    """
    model_dir = Path(model_dir)
    if not model_dir.exists():
        raise CheckpointError(f"model directory {model_dir} does not exist")
    if not model_dir.is_dir():
        raise CheckpointError(f"{model_dir} is not a directory; pass a Hugging Face model directory (config.json and "
                              f"{SAFETENSORS_FILE})")
    config = config_from_hf(model_dir, **config_overrides)
    files = hf_files.safetensors_files(model_dir)
    hf_files.check_memory(config, model_dir / "config.json", hf_files.file_bytes(files))
    tensors = hf_files.read_files(files)
    available = models.model_heads(config)
    heads = tuple(heads) if tuple(heads) in available else available[0]
    model = models.constructor(config, heads)(nnx.Rngs(seed))
    report = from_hf_state_dict(model, tensors, model_dir)
    if not report.loaded:
        raise CheckpointError(f"no {config.model_type} tensor names found in {model_dir}: is it a "
                              f"{config.model_type} checkpoint?")
    if report.missing_encoder and not allow_missing:
        raise CheckpointError(
            f"{model_dir} lacks {len(report.missing_encoder)} encoder tensors its config.json calls for "
            f"({_listing(report.missing_encoder)}): the checkpoint is incomplete or config.json does not match it; "
            "pass --allow_missing (allow_missing=True) to initialise them freshly instead"
        )
    return model, report


def export_to(graphdef, params, workdir: str, *, vocab_file: str, lowercase: bool, name: str = "export",
              labels: Sequence[str] | None = None, run: model_card.RunInfo | None = None) -> list[Path]:
    """Writes WORKDIR/export (or WORKDIR/`name`), the Hugging Face directory of a run's parameters (host arrays),
    replacing an earlier export there; `labels` and `run` (for the model card) as `export_pretrained`. `export_pretrained` writes a local directory atomically; an object-store workdir (gs://) gets a copy
    of it."""
    import logging
    import tempfile

    from etils import epath

    out = epath.Path(workdir) / name
    local = out if "://" not in str(workdir) else epath.Path(tempfile.mkdtemp(prefix="bert_jax_export_"))
    written = export_pretrained(nnx.merge(graphdef, params), str(local), vocab_file=vocab_file, lowercase=lowercase,
                                force=True, labels=labels, run=run)
    if local != out:
        out.mkdir(parents=True, exist_ok=True)
        for path in written:
            (local / path.name).copy(out / path.name, overwrite=True)
    logging.getLogger("bert_jax").info("exported %s to %s", ", ".join(p.name for p in written), out)
    return written
