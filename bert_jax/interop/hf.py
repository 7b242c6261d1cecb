"""Our parameters <-> Hugging Face BERT parameter names; safetensors read and write; HF directory export and import.

The table `_name_map` is the single source of the correspondence. Our attention kernels keep heads as their own axis
([D, N, H] and [N, H, D]) so they can be sharded over heads; HF stores every dense layer as [out, in]. Loading is
safetensors only: a pickle checkpoint (`pytorch_model.bin`) can run arbitrary code when loaded and is refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import safe_open
from safetensors.numpy import save_file

from bert_jax import fileio
from bert_jax.data.tokenizers.wordpiece import is_lowercase_vocab
from bert_jax.errors import CheckpointError
from bert_jax.models.bert import BertForPreTraining
from bert_jax.models.bert_config import BertConfig

SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")
# Every file export may write; nothing else is ever created in the output directory.
EXPORT_FILES = (
    SAFETENSORS_FILE,
    "config.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
SPECIAL_TOKENS = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}
# Weights that HF checkpoints carry but that are not parameters (buffers) or duplicate a tied parameter.
_IGNORED_KEYS = ("embeddings.position_ids", "cls.predictions.decoder.weight")
# Which HF head each key prefix belongs to, for the "freshly initialised" report.
HEADS = {
    "bert.pooler.": "pooler",
    "cls.predictions.": "MLM head",
    "cls.seq_relationship.": "NSP head",
}


@dataclasses.dataclass(frozen=True)
class _Entry:
    ours: tuple  # path in nnx.state(model, nnx.Param)
    hf: str  # HF BertForPreTraining state-dict name
    to_hf: Callable[[np.ndarray], np.ndarray]
    from_hf: Callable[[np.ndarray], np.ndarray]


def _same(x):
    return x


def _name_map(config: BertConfig) -> list[_Entry]:
    d, n, h = config.hidden_size, config.num_attention_heads, config.head_dim

    def dense(ours, hf):  # our [in, out] kernel <-> HF [out, in] weight
        return [
            _Entry(ours + ("kernel",), hf + ".weight", lambda x: x.T, lambda x: x.T),
            _Entry(ours + ("bias",), hf + ".bias", _same, _same),
        ]

    def layer_norm(ours, hf):
        return [
            _Entry(ours + ("scale",), hf + ".weight", _same, _same),
            _Entry(ours + ("bias",), hf + ".bias", _same, _same),
        ]

    def heads_in(ours, hf):  # our [D, N, H] <-> HF [N*H, D]
        return [
            _Entry(ours + ("kernel",), hf + ".weight", lambda x: x.reshape(d, n * h).T, lambda x: x.T.reshape(d, n, h)),
            _Entry(ours + ("bias",), hf + ".bias", lambda x: x.reshape(n * h), lambda x: x.reshape(n, h)),
        ]

    def heads_out(ours, hf):  # our [N, H, D] <-> HF [D, N*H]
        return [
            _Entry(ours + ("kernel",), hf + ".weight", lambda x: x.reshape(n * h, d).T, lambda x: x.T.reshape(n, h, d)),
            _Entry(ours + ("bias",), hf + ".bias", _same, _same),
        ]

    emb = ("bert", "embeddings")
    entries = [
        _Entry(emb + ("word_embeddings", "embedding"), "bert.embeddings.word_embeddings.weight", _same, _same),
        _Entry(emb + ("position_embeddings", "embedding"), "bert.embeddings.position_embeddings.weight", _same, _same),
        _Entry(emb + ("token_type_embeddings", "embedding"), "bert.embeddings.token_type_embeddings.weight", _same, _same),
        *layer_norm(emb + ("layer_norm",), "bert.embeddings.LayerNorm"),
    ]
    for i in range(config.num_hidden_layers):
        ours, hf = ("bert", "layers", i), f"bert.encoder.layer.{i}"
        entries += [
            *heads_in(ours + ("attention", "query"), hf + ".attention.self.query"),
            *heads_in(ours + ("attention", "key"), hf + ".attention.self.key"),
            *heads_in(ours + ("attention", "value"), hf + ".attention.self.value"),
            *heads_out(ours + ("attention", "output"), hf + ".attention.output.dense"),
            *layer_norm(ours + ("attention", "layer_norm"), hf + ".attention.output.LayerNorm"),
            *dense(ours + ("intermediate",), hf + ".intermediate.dense"),
            *dense(ours + ("output",), hf + ".output.dense"),
            *layer_norm(ours + ("layer_norm",), hf + ".output.LayerNorm"),
        ]
    entries += [
        *dense(("bert", "pooler"), "bert.pooler.dense"),
        *dense(("mlm_transform",), "cls.predictions.transform.dense"),
        *layer_norm(("mlm_layer_norm",), "cls.predictions.transform.LayerNorm"),
        _Entry(("mlm_bias",), "cls.predictions.bias", _same, _same),
        *dense(("nsp",), "cls.seq_relationship"),
    ]
    return entries


def _flat_params(model: BertForPreTraining) -> dict[tuple, nnx.Variable]:
    return {tuple(path): var for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param))}


# ----------------------------------------------------------------------------------------------------- export


def _entries(model) -> list[_Entry]:
    """The name-table entries of the parameters this model has (a `BertForMaskedLM` has no pooler or NSP head)."""
    params = _flat_params(model)
    return [entry for entry in _name_map(model.config) if entry.ours in params]


def to_hf_state_dict(model) -> dict[str, np.ndarray]:
    """Our parameters under HF names (`BertForPreTraining`'s, or `BertForMaskedLM`'s subset), as host NumPy arrays
    in their stored dtype."""
    params = _flat_params(model)
    return {e.hf: np.ascontiguousarray(e.to_hf(np.asarray(jax.device_get(params[e.ours].get_value()))))
            for e in _entries(model)}


def hf_config_dict(config: BertConfig, architecture: str = "BertForPreTraining") -> dict:
    """`config.json` for `transformers.{architecture}` (and `AutoModel`)."""
    return {
        "architectures": [architecture],
        "model_type": "bert",
        **config.to_hf_dict(),
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "tie_word_embeddings": True,
        "dtype": config.param_dtype,
    }


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


def tokenizer_config_dict(lowercase: bool) -> dict:
    return {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": lowercase,
        "tokenize_chinese_chars": True,
        "strip_accents": None,
        "model_max_length": 512,
        "clean_up_tokenization_spaces": False,  # the transformers 5 default; the clean-up is lossy
        **SPECIAL_TOKENS,
    }


def export_pretrained(
    model: BertForPreTraining,
    output_dir: str | os.PathLike,
    *,
    vocab_file: str | os.PathLike | None = None,
    lowercase: bool | None = None,
    force: bool = False,
) -> list[Path]:
    """Writes an HF `BertForPreTraining` directory: `model.safetensors`, `config.json` and, with a vocab, the tokenizer.

    `lowercase` defaults to what the vocab's own `tokenizer_config.json` says (cased when it says nothing).
    """
    output_dir = _check_output_dir(Path(output_dir), force)
    tensors = to_hf_state_dict(model)
    # fileio replaces (never follows) a symlink planted at one of these names, so nothing outside output_dir is written.
    written = [fileio.write_atomic(output_dir / SAFETENSORS_FILE, lambda p: save_file(tensors, p, metadata={"format": "pt"}))]
    written.append(fileio.write_json(output_dir / "config.json",
                                     hf_config_dict(model.config, type(model).__name__), indent=2))
    if vocab_file is not None:
        vocab_file = Path(vocab_file)
        vocab_text = vocab_file.read_text(encoding="utf-8")
        vocab_size = len(vocab_text.splitlines())
        if vocab_size != model.config.vocab_size:
            raise CheckpointError(
                f"{vocab_file} has {vocab_size} tokens but the model's vocab_size is {model.config.vocab_size}; "
                "pass the vocab the model was trained with"
            )
        if lowercase is None:
            lowercase = is_lowercase_vocab(str(vocab_file))
        written.append(fileio.write_text(output_dir / "vocab.txt", vocab_text))
        written.append(fileio.write_json(output_dir / "tokenizer_config.json", tokenizer_config_dict(lowercase), indent=2))
        written.append(fileio.write_json(output_dir / "special_tokens_map.json", SPECIAL_TOKENS, indent=2))
    return written


# ----------------------------------------------------------------------------------------------------- import


@dataclasses.dataclass
class ImportReport:
    """What an import took from the checkpoint, what it had to initialise, and what it left unused."""

    loaded: list[str]
    missing: list[str]  # HF names absent from the checkpoint, freshly initialised
    unused: list[str]  # checkpoint names that are not part of BertForPreTraining

    @property
    def missing_heads(self) -> list[str]:
        heads = {head for name in self.missing for prefix, head in HEADS.items() if name.startswith(prefix)}
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


def config_from_hf(model_dir: str | os.PathLike, **overrides) -> BertConfig:
    """Our `BertConfig` from an HF `config.json`; fields we do not model are refused if they change the function."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path} not found: a Hugging Face model directory needs config.json")
    try:
        hf = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} line {e.lineno}: invalid JSON ({e.msg})") from None
    model_type = hf.get("model_type", "bert")
    if model_type != "bert":
        raise CheckpointError(f"{path}: model_type is {model_type!r}; bert_jax loads BERT checkpoints (model_type 'bert')")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(
            f"{path}: position_embedding_type {hf['position_embedding_type']!r} is not supported (only 'absolute')"
        )
    values = {name: hf[name] for name in BertConfig.HF_FIELDS if name in hf}
    values.update(overrides)
    try:
        return BertConfig.from_mapping(values)
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


def read_safetensors(model_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of a (possibly sharded) safetensors checkpoint, as NumPy arrays."""
    tensors = {}
    for path in _safetensors_files(Path(model_dir)):
        with safe_open(path, framework="np") as f:
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    return tensors


def _canonical_name(key: str) -> str:
    """HF names as `BertForPreTraining` spells them, whatever class or era wrote the checkpoint."""
    if key.startswith(("embeddings.", "encoder.", "pooler.")):  # BertModel has no "bert." prefix
        key = "bert." + key
    # TF-era checkpoints name LayerNorm parameters gamma/beta; transformers renames them the same way.
    if key.endswith(".gamma"):
        key = key[: -len(".gamma")] + ".weight"
    elif key.endswith(".beta"):
        key = key[: -len(".beta")] + ".bias"
    if key == "cls.predictions.decoder.bias":  # tied to cls.predictions.bias
        key = "cls.predictions.bias"
    return key


def from_hf_state_dict(model, tensors: dict[str, np.ndarray]) -> ImportReport:
    """Copies HF tensors into `model` in place (cast to its param dtype); returns what was loaded and missing."""
    by_name = {}
    unused = []
    for key, value in tensors.items():
        name = _canonical_name(key)
        if any(name.endswith(ignored) for ignored in _IGNORED_KEYS):
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
    return ImportReport(loaded=loaded, missing=missing, unused=unused)


def load_pretrained(
    model_dir: str | os.PathLike, *, seed: int = 0, model_class=BertForPreTraining, **config_overrides
) -> tuple[BertForPreTraining, ImportReport]:
    """Loads any HF BERT safetensors checkpoint (`BertModel`, `BertForPreTraining`, `BertForMaskedLM`, ...).

    Parameters the checkpoint lacks (e.g. the NSP head of a `BertForMaskedLM`) keep their fresh initialisation from
    `seed` and are listed in the report. `config_overrides` (e.g. `dtype="bfloat16"`) replace config.json values.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise CheckpointError(f"model directory {model_dir} does not exist")
    config = config_from_hf(model_dir, **config_overrides)
    tensors = read_safetensors(model_dir)
    model = model_class(config, rngs=nnx.Rngs(seed))
    report = from_hf_state_dict(model, tensors)
    if not report.loaded:
        raise CheckpointError(f"no BERT tensor names found in {model_dir}: is it a BERT checkpoint?")
    return model, report


def export_to(graphdef, params, workdir: str, *, vocab_file: str, lowercase: bool) -> list[Path]:
    """Writes WORKDIR/export, the Hugging Face directory of a run's parameters (host arrays), replacing an earlier
    export there. `export_pretrained` writes a local directory atomically; an object-store workdir (gs://) gets a copy
    of it."""
    import logging
    import tempfile

    from etils import epath

    out = epath.Path(workdir) / "export"
    local = out if "://" not in str(workdir) else epath.Path(tempfile.mkdtemp(prefix="bert_jax_export_"))
    written = export_pretrained(nnx.merge(graphdef, params), str(local), vocab_file=vocab_file, lowercase=lowercase,
                                force=True)
    if local != out:
        out.mkdir(parents=True, exist_ok=True)
        for path in written:
            (local / path.name).copy(out / path.name, overwrite=True)
    logging.getLogger("bert_jax").info("exported %s to %s", ", ".join(p.name for p in written), out)
    return written
