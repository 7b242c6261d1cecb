"""Where a run starts from a trained model: a Hugging Face directory (`config.json` + safetensors), a Hub id found
in the local Hugging Face cache (`hf:ORG/NAME`), or one of our training workdirs (`checkpoints/`). Fine-tuning
(`finetune.model`) and continued pre-training (`config.init_from`) both read them. `describe` reads what the run needs
before any JAX work (the encoder's architecture and tokenizer); `load_encoder` copies the encoder (and whatever else
matches) into a model with a new head, reporting what was freshly initialised; `state_dict` gives all of a source's
weights under Hugging Face's names."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from bert_jax.errors import CheckpointError

HF, WORKDIR = "hf", "workdir"
VOCAB_NAMES = ("vocab.txt", "tokenizer.json")  # a WordPiece vocab, a byte-level BPE tokenizer


@dataclasses.dataclass(frozen=True)
class Source:
    path: str  # the local directory (a Hub id's snapshot in the cache)
    kind: str  # HF or WORKDIR
    model_config: Any  # the encoder's architecture config (BertConfig, RobertaConfig, DistilBertConfig)
    vocab_file: str  # its tokenizer: vocab.txt (WordPiece) or tokenizer.json (byte-level BPE)
    lowercase: bool  # WordPiece casing


def resolve(spec: str) -> str:
    """The local directory of a source: `hf:DIR` or a path as given; `hf:ORG/NAME` (or a bare id) that is no
    directory, the Hub id's snapshot in the local Hugging Face cache (`hub_cache`)."""
    path = str(spec).removeprefix("hf:")
    if os.path.exists(path) or "://" in path:
        return path
    from bert_jax.interop import hub_cache

    if hub_cache.is_repo_id(path):
        try:
            return str(hub_cache.snapshot(path))
        except CheckpointError as e:
            if str(spec).startswith("hf:"):
                raise
            raise CheckpointError(f"{spec} is no directory (a Hugging Face model directory or a training workdir), "
                                  f"and as a Hub id: {e}") from None
    raise CheckpointError(f"{spec}: no such directory (a Hugging Face model directory or a training workdir), and not "
                          "a Hub id (hf:ORG/NAME)")


def describe(path: str) -> Source:
    from bert_jax.data.tokenizers.wordpiece import is_lowercase_vocab
    from bert_jax.training.workdir import is_run_workdir

    spec, path = path, resolve(path)
    root = Path(path)
    if (root / "config.json").is_file() and not is_run_workdir(path):
        from bert_jax.interop import hf

        config = hf.config_from_hf(root)
        vocab = _vocab_in(root)
        if vocab is None:
            raise CheckpointError(f"{root} has no vocab.txt or tokenizer.json: the run tokenises with the model's own "
                                  "tokenizer; copy it into the directory")
        names = hf.architecture(config)
        encoder = [n for n in hf.read_safetensors_names(root) if names.canonical(n).startswith(names.prefix + ".")]
        if not encoder:
            raise CheckpointError(f"{root / hf.SAFETENSORS_FILE} holds no {config.model_type} encoder weights (no "
                                  f"tensor under {names.prefix + '.'!r} or the bare encoder's names): give a directory "
                                  "with a pre-trained encoder")
        lowercase = vocab.name == "vocab.txt" and is_lowercase_vocab(str(vocab))
        return Source(path, HF, config, str(vocab), lowercase)
    if (root / "checkpoints").is_dir():
        from bert_jax import models
        from bert_jax.training import checkpointing

        manager = checkpointing.make_manager(path, keep=1, read_only=True)
        try:
            step = manager.latest_step()
            if step is None:
                raise CheckpointError(f"the workdir {path} holds no complete checkpoint: train it first")
            saved = checkpointing.read_metadata(manager, step)["config"]
        finally:
            manager.close()
        data = saved.get("data", {})
        return Source(path, WORKDIR, models.model_config(saved["model"]), _workdir_vocab(root, data),
                      bool(data.get("lowercase", False)))
    raise CheckpointError(f"{spec} is neither a Hugging Face model directory (config.json and "
                          "model.safetensors) nor a training --workdir (checkpoints/)")


def _vocab_in(directory: Path) -> Path | None:
    return next((directory / name for name in VOCAB_NAMES if (directory / name).is_file()), None)


def _workdir_vocab(root: Path, data: dict) -> str:
    """A run's vocab: its export's copy when it finished, else its config's `data.vocab_file` or the copy its built
    dataset carries, where they still exist ("" when none does)."""
    candidates = [_vocab_in(root / "export"), data.get("vocab_file") or None,
                  _vocab_in(Path(data["dir"])) if data.get("dir") else None]
    return next((str(path) for path in candidates if path is not None and os.path.isfile(path)), "")


def state_dict(source: Source) -> dict[str, Any]:
    """All the source's weights under Hugging Face's names, as host NumPy arrays: an HF directory's safetensors
    (after checking that memory holds them), or a workdir's latest checkpoint."""
    from bert_jax.interop import hf, hf_files

    if source.kind == HF:
        files = hf_files.safetensors_files(Path(source.path))
        hf_files.check_memory(source.model_config, Path(source.path) / "config.json", hf_files.file_bytes(files))
        return hf_files.read_files(files)
    from bert_jax.training import checkpointing

    run_model, _, _ = checkpointing.load_run_model(source.path)
    return hf.to_hf_state_dict(run_model)


def load_encoder(source: Source, model) -> str:
    """Copies the source's parameters into `model` (in place) wherever name and shape match; returns the report
    for the log. A source none of whose encoder parameters fits is an error."""
    from flax import nnx

    if source.kind == HF:
        from bert_jax.interop import hf

        report = hf.from_hf_state_dict(model, hf.read_safetensors(source.path))
        prefix = hf.architecture(model.config).prefix + "."
        if not any(name.startswith(prefix) for name in report.loaded):
            raise CheckpointError(f"{source.path} holds no {model.config.model_type} encoder weights (no tensor "
                                  f"under {prefix!r} or the bare encoder's names): give a directory with a pre-trained "
                                  "encoder")
        return report.summary()
    from bert_jax.training import checkpointing

    run_model, _, step = checkpointing.load_run_model(source.path)
    theirs = dict(nnx.to_flat_state(nnx.state(run_model, nnx.Param)))
    loaded, fresh = [], []
    for path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        value = theirs.get(path)
        if value is not None and value.get_value().shape == variable.get_value().shape:
            variable.set_value(value.get_value().astype(variable.get_value().dtype))
            loaded.append(path)
        else:
            fresh.append("/".join(map(str, path)))
    if not any(path[0] == model.encoder_name for path in loaded):
        raise CheckpointError(f"the workdir {source.path} (step {step}) holds no encoder this model can use")
    unused = sorted("/".join(map(str, p)) for p in set(theirs) - set(loaded))
    lines = [f"loaded {len(loaded)} parameters from {os.path.join(source.path, 'checkpoints', str(step))}"]
    if fresh:
        lines.append(f"freshly initialised {len(fresh)} parameters (the new head): {', '.join(fresh)}")
    if unused:
        lines.append(f"ignored {len(unused)} parameters of the run (its pre-training heads): {', '.join(unused)}")
    return "\n".join(lines)
