"""A Hugging Face model directory's weight files, read defensively: which safetensors files hold the checkpoint (each
confined to the directory), their tensors (a malformed or truncated file is a `CheckpointError` naming it), and
whether the memory a config's parameters need is there before anything is allocated.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open

from bert_jax.errors import CheckpointError

SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")
# The size fields of the family's configs under BERT's names (DistilBERT's config answers them as properties).
SIZE_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size", "max_position_embeddings",
               "type_vocab_size")
PARAM_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
GIB = 2**30


def _in_hub_blobs(root: Path, resolved: Path) -> bool:
    """The Hugging Face hub cache's layout: `snapshots/REV/NAME` links to `../../blobs/HASH` of the same repo."""
    return root.parent.name == "snapshots" and resolved.parent == root.parent.parent / "blobs"


def confined(model_dir: Path, name, source: Path) -> Path:
    """`model_dir / name` resolved (links followed), refused unless it is a file inside `model_dir` (or the hub
    cache's blob of a snapshot); `source` is the file that named it, for the message."""
    if not isinstance(name, str) or not name:
        raise CheckpointError(f"{source}: a weight file name must be a non-empty string, got {name!r}")
    root = model_dir.resolve()
    resolved = (model_dir / name).resolve()
    if not (resolved.is_relative_to(root) or _in_hub_blobs(root, resolved)):
        raise CheckpointError(f"{source} names weight file {name!r}, which resolves to {resolved}, outside the model "
                              f"directory {root}; a checkpoint's files must be inside its directory")
    if not resolved.is_file():
        raise CheckpointError(f"{source} names weight file {name!r}, but {model_dir / name} is not a file: the "
                              "checkpoint is incomplete; copy or download the missing file")
    return resolved


def _index_files(model_dir: Path, index: Path) -> list[Path]:
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{index} line {e.lineno}: invalid JSON ({e.msg})") from None
    except (UnicodeDecodeError, OSError) as e:
        raise CheckpointError(f"{index} cannot be read ({e})") from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index} has no weight_map (tensor name -> shard file name); re-save the checkpoint "
                              "with save_pretrained")
    for name in weight_map.values():
        if not isinstance(name, str):
            confined(model_dir, name, index)  # the error naming it
    return [confined(model_dir, name, index) for name in sorted(set(weight_map.values()))]


def safetensors_files(model_dir: Path) -> list[Path]:
    """The checkpoint's files: `model.safetensors`, else the shards its index names, each inside `model_dir`."""
    single, index = model_dir / SAFETENSORS_FILE, model_dir / SAFETENSORS_INDEX
    if single.is_file():
        return [confined(model_dir, SAFETENSORS_FILE, model_dir)]
    if index.is_file():
        return _index_files(model_dir, index)
    pickles = [name for name in PICKLE_FILES if (model_dir / name).exists()]
    if pickles:
        raise CheckpointError(
            f"{model_dir} holds only {', '.join(pickles)}: bert_jax loads safetensors only, because pickle checkpoints "
            "can execute arbitrary code when loaded. Convert it once in a trusted environment, e.g. "
            "`BertForPreTraining.from_pretrained(dir).save_pretrained(out_dir)` (transformers writes safetensors)."
        )
    raise CheckpointError(f"no {SAFETENSORS_FILE} or {SAFETENSORS_INDEX} in {model_dir}")


def read_files(paths: list[Path], *, names_only: bool = False) -> dict[str, np.ndarray | None]:
    """All tensors of the files, as NumPy arrays (None with `names_only`: the headers alone are read); a file
    safetensors cannot read is an error naming it."""
    tensors = {}
    for path in paths:
        try:
            with safe_open(path, framework="np") as f:
                for key in f.keys():
                    tensors[key] = None if names_only else f.get_tensor(key)
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{path} is not a readable safetensors file ({e}); it is corrupt or truncated: "
                                  "re-download or re-export it") from None
    return tensors


def tensor_names(paths: list[Path]) -> list[str]:
    return list(read_files(paths, names_only=True))


# ----------------------------------------------------------------------------------------------------- memory


def parameter_count(sizes: dict[str, int]) -> int:
    """An upper bound of the parameters of the family's largest model of these sizes (every head included)."""
    v, d, layers, f, p, t = (sizes[name] for name in SIZE_FIELDS)
    embeddings = (v + p + t) * d + 2 * d
    layer = 4 * (d * d + d) + 2 * d * f + f + d + 4 * d  # Q, K, V, output; intermediate, output; two LayerNorms
    heads = 2 * (d * d + d) + 2 * d + v + 2 * d + 2  # pooler, MLM transform and LayerNorm, MLM bias, NSP
    return embeddings + layers * layer + heads


def _machine_available_memory() -> int:
    """The kernel's estimate of memory available without swapping (Linux), else the free pages; psutil would do
    the same, but it is not a dependency of the package."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**62  # unknown (not Linux): no check rather than a false refusal


def available_memory() -> int:
    """Bytes this process can still allocate: the machine's available memory, or less under a cgroup limit."""
    available = _machine_available_memory()
    for limit_file, usage_file in (("memory.max", "memory.current"), ("memory/memory.limit_in_bytes",
                                                                       "memory/memory.usage_in_bytes")):
        try:
            limit = Path("/sys/fs/cgroup", limit_file).read_text().strip()
            usage = Path("/sys/fs/cgroup", usage_file).read_text().strip()
            if limit.isdigit() and usage.isdigit():
                available = min(available, max(int(limit) - int(usage), 0))
                break
        except OSError:
            continue
    return available


def check_memory(config, config_path: Path, checkpoint_bytes: int = 0, available: int | None = None) -> None:
    """Refuses, before anything is allocated, a config whose parameters (plus the checkpoint's tensors read beside
    them) need more memory than is available; the message names the size field that makes it so."""
    sizes = {name: getattr(config, name) for name in SIZE_FIELDS}
    itemsize = PARAM_BYTES.get(config.param_dtype, 4)
    model_bytes = parameter_count(sizes) * itemsize
    available = available_memory() if available is None else available
    if model_bytes + checkpoint_bytes <= available:
        return
    need = f"{(model_bytes + checkpoint_bytes) / GIB:,.1f} GiB"
    have = f"only {available / GIB:,.1f} GiB of memory is available"
    if model_bytes <= available:
        raise CheckpointError(f"{config_path.parent}: loading needs {need} (the model and its checkpoint's "
                              f"{checkpoint_bytes / GIB:,.1f} GiB of tensors) but {have}; use a machine with more")
    culprit = min(SIZE_FIELDS, key=lambda name: parameter_count({**sizes, name: 1}))  # the most to gain
    names = getattr(type(config), "BERT_NAMES", {})
    raise CheckpointError(
        f"{config_path}: {names.get(culprit, culprit)} {sizes[culprit]:,} gives a model of "
        f"{parameter_count(sizes):,} parameters ({model_bytes / GIB:,.1f} GiB as {config.param_dtype}) but {have}; "
        f"check {names.get(culprit, culprit)} in the config, or use a machine with more memory"
    )


def file_bytes(paths: list[Path]) -> int:
    return sum(os.path.getsize(path) for path in paths)
