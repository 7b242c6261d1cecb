"""ONNX export of a model of the family for one task: the graph (`onnx_graph.py`, `onnx_tasks.py`), written as
`model.onnx` (and `model.onnx_data` when the weights pass protobuf's 2 GB limit) beside the same `config.json` and
tokenizer files as the safetensors export, and validated in ONNX Runtime against our JAX model before it is kept.

Validation runs the written file at several (batch, sequence) shapes, with padding and at the longest sequence the
model reads (512 or its position table's limit), and refuses the export when any output differs from the JAX
model's by more than `TOLERANCE`; the differences are reported either way.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Callable, Sequence

import jax
import numpy as np
import onnx
from flax import nnx

from bert_jax import fileio, models
from bert_jax.errors import CheckpointError
from bert_jax.interop import hf, hf_names, onnx_graph, onnx_tasks
from bert_jax.interop.onnx_runtime import EXTERNAL_DATA_FILE, ONNX_FILE, VARIANT_FILES, OnnxEncoder

TOLERANCE = 1e-4  # max abs difference from the JAX model (float32 on CPU is ~1e-6)
# Weights above this go to model.onnx_data: one protobuf message cannot exceed 2 GiB, and the graph needs a margin.
EXTERNAL_DATA_THRESHOLD = 2_000_000_000
VALIDATION_LENGTH = 512  # the longest validated sequence, unless the position table is shorter


class ValidationError(CheckpointError):
    """The exported graph does not compute what the JAX model computes; nothing was written."""


@dataclasses.dataclass(frozen=True)
class ShapeCheck:
    batch: int
    length: int
    padded: bool
    max_abs_diff: dict[str, float]  # per output
    choices: int | None = None  # multiple choice: the inputs were [batch, choices, length]

    def __str__(self) -> str:
        diffs = ", ".join(f"{name} {diff:.2e}" for name, diff in self.max_abs_diff.items())
        choices = f" x {self.choices} choices" if self.choices else ""
        return (f"batch {self.batch}{choices} x sequence {self.length}{' (padded)' if self.padded else ''}: "
                f"max abs diff {diffs}")


def exportable_model_types() -> list[str]:
    return sorted(onnx_graph.EMBEDDINGS)


def check_exportable(model_type: str) -> None:
    if model_type not in onnx_graph.EMBEDDINGS:
        raise onnx_tasks.TaskError(f"model_type {model_type!r} cannot be exported to ONNX; the architectures that can "
                                   f"are {', '.join(exportable_model_types())}")


def _what_it_is(architecture: str) -> str:
    """`architecture` (a transformers class name) with the task it is exported for."""
    task = onnx_tasks.task_of_architecture(architecture)
    if task is None:
        return f"a {architecture}, which has no fine-tuning head (--task fill-mask or feature-extraction exports it)"
    return f"a {architecture}, a {task} model (--task {task} exports it)"


def check_model_for_task(model, task: onnx_tasks.Task) -> None:
    """A fine-tuning task exports our model with exactly its head (e.g. `BertForSequenceClassification`)."""
    if task.fine_tuning_head is None:
        return  # the pre-training tasks read the encoder, or the MLM head `build` finds
    expected = models.model_class(model.config, (task.fine_tuning_head,))
    if type(model) is not expected:  # not isinstance: a multiple-choice model subclasses the classifier
        raise onnx_tasks.TaskError(f"--task {task.name} exports a {expected.__name__}, and the model is "
                                   f"{_what_it_is(type(model).__name__)}")


def load_pretrained(model_dir: str | os.PathLike, task: str, *, allow_missing: bool = False):
    """(model, import report) of the HF directory `model_dir` for `task`: a fine-tuning task's model (with its head,
    e.g. `BertForQuestionAnswering`), refused when config.json names a model of another task; the importer's
    default model (pre-training heads) for fill-mask and feature-extraction."""
    spec = onnx_tasks.task(task)
    if spec.fine_tuning_head is None:
        return hf.load_pretrained(model_dir, allow_missing=allow_missing)
    try:  # a missing or malformed config.json is the importer's to report
        architectures = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))["architectures"]
    except (OSError, ValueError, KeyError, TypeError):
        architectures = []
    for architecture in architectures if isinstance(architectures, list) else []:
        if isinstance(architecture, str) and onnx_tasks.task_of_architecture(architecture) not in (None, task):
            raise onnx_tasks.TaskError(f"--task {task} needs a model with a {spec.head} "
                                       f"(*{spec.architecture_suffix}); {model_dir} holds "
                                       f"{_what_it_is(architecture)}")
    return hf.load_pretrained(model_dir, heads=(spec.fine_tuning_head,), allow_missing=allow_missing)


def float32_model(model):
    """The model computing in float32 (a run trained in bfloat16 included): the graph is float32, and so must be the
    reference it is validated against."""
    config = model.config
    if config.dtype == "float32" and config.param_dtype == "float32":
        return model
    config32 = dataclasses.replace(config, dtype="float32", param_dtype="float32")
    heads = next(h for h in models.model_heads(config) if models.model_class(config, h) is type(model))
    model32 = models.constructor(config32, heads)(nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    nnx.update(model32, jax.tree.map(lambda x: np.asarray(x, np.float32), params))
    return model32


def build(model, task: onnx_tasks.Task) -> onnx.ModelProto:
    """The ONNX graph of `model` (our Flax model) for `task`, its weights copied in as float32."""
    config = model.config
    check_exportable(config.model_type)
    flat = {tuple(path): var for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param))}

    def params(*path) -> np.ndarray:
        if path not in flat:
            raise CheckpointError(f"the model has no parameter {'/'.join(map(str, path))}: a {type(model).__name__} "
                                  f"cannot be exported for {task.name}")
        return np.asarray(jax.device_get(flat[path].get_value()), np.float32)

    prefix = hf_names.ARCHITECTURES[config.model_type].prefix
    g = onnx_graph.GraphBuilder()
    inputs = {name: name for name in onnx_graph.INPUTS[config.model_type]}
    if task.choices:
        inputs = onnx_graph.flatten_choices(g, inputs)
    x = onnx_graph.encoder(g, inputs, params, prefix, config)
    outputs = task.graph(g, x, params, prefix, config)
    if task.choices:
        outputs = {name: onnx_graph.unflatten_choices(g, tensor, "input_ids") for name, tensor in outputs.items()}
    outputs = {name: g.rename(tensor, name) for name, tensor in outputs.items()}
    shapes = task.output_shapes(config)
    return g.model(
        onnx_graph.input_infos(config.model_type, choices=task.choices),
        [onnx_graph.tensor_info(name, onnx.TensorProto.FLOAT, shapes[name]) for name in outputs],
        doc=f"{type(model).__name__} exported by bert_jax for {task.name}",
        metadata={"bert_jax.task": task.name, "bert_jax.model_type": config.model_type},
    )


def save(proto: onnx.ModelProto, directory: Path, external_data_threshold: int) -> list[Path]:
    """Writes `directory/model.onnx`, with its weights in `model.onnx_data` when they exceed the threshold."""
    path = directory / ONNX_FILE
    weight_bytes = sum(len(t.raw_data) for t in proto.graph.initializer)
    if weight_bytes <= external_data_threshold:
        onnx.save_model(proto, path)
        onnx.checker.check_model(str(path))
        return [path]
    onnx.save_model(proto, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location=EXTERNAL_DATA_FILE, size_threshold=1024)
    os.chmod(directory / EXTERNAL_DATA_FILE, 0o644)  # onnx creates it private; it is as public as model.onnx
    onnx.checker.check_model(str(path))  # from the path: the checker reads the external data
    return [path, directory / EXTERNAL_DATA_FILE]


# ------------------------------------------------------------------------------------------------- validation


def validation_batches(config, seed: int = 0) -> list[tuple[bool, np.ndarray, np.ndarray, np.ndarray]]:
    """(padded, input ids, attention mask, token types) at three shapes: padded rows of several lengths, and the
    longest sequence validated. Padding uses the model's pad id (RoBERTa's positions depend on it)."""
    rng = np.random.default_rng(seed)
    pad = getattr(config, "pad_token_id", 0)
    longest = min(VALIDATION_LENGTH, config.max_sequence_length)
    batches = []
    for batch, length, lengths in ((2, 16, (16, 9)), (3, min(37, longest), (min(37, longest), 20, 5)),
                                   (1, longest, (longest,))):
        ids = rng.integers(0, config.vocab_size, size=(batch, length))
        ids[ids == pad] = (pad + 1) % config.vocab_size
        mask = np.zeros((batch, length), np.int64)
        types = np.zeros((batch, length), np.int64)
        for row, n in enumerate(lengths):
            n = min(n, length)
            mask[row, :n] = 1
            ids[row, n:] = pad
            if config.type_vocab_size > 1:
                types[row, n // 2 : n] = 1
        batches.append((any(n < length for n in lengths), ids, mask, types))
    return batches


def validate(encoder: OnnxEncoder, model, task: onnx_tasks.Task, log: Callable[[str], None]) -> list[ShapeCheck]:
    """Runs the exported graph and the JAX model on `validation_batches`; raises ValidationError past TOLERANCE."""
    checks = []
    for padded, ids, mask, types in validation_batches(model.config):
        if task.choices:  # [B, 2, S]: each example's second choice is the next example's sequence
            ids, mask, types = (np.stack([x, np.roll(x, 1, axis=0)], axis=1) for x in (ids, mask, types))
        # Eagerly, op by op: three shapes run once each, which costs less than compiling them.
        expected = task.reference(model(ids.astype(np.int32), mask.astype(np.int32), types.astype(np.int32)))
        got = encoder(ids, mask, types)
        diffs = {name: float(np.max(np.abs(got[name].astype(np.float64) - np.asarray(expected[name], np.float64))))
                 for name in expected}
        check = ShapeCheck(ids.shape[0], ids.shape[-1], padded, diffs, ids.shape[1] if task.choices else None)
        log(f"validation (ONNX Runtime vs JAX): {check}")
        checks.append(check)
    worst = max(checks, key=lambda c: max(c.max_abs_diff.values()))
    if max(worst.max_abs_diff.values()) > TOLERANCE:
        raise ValidationError(f"the ONNX graph differs from the JAX model at {worst}, over the tolerance "
                              f"{TOLERANCE:g}; nothing was written (please report this as a bug)")
    return checks


# ------------------------------------------------------------------------------------------------------ export


def _remove(directory: Path, names) -> None:
    for name in names:
        if os.path.lexists(directory / name):
            os.unlink(directory / name)  # a file or a link itself, never a link's target


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def export_onnx(
    model,
    output_dir: str | os.PathLike,
    *,
    task: str,
    vocab_file: str | os.PathLike | None = None,
    lowercase: bool | None = None,
    force: bool = False,
    missing_heads: Sequence[str] = (),
    labels: Sequence[str] | None = None,
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD,
    log: Callable[[str], None] = _stderr,
) -> tuple[list[Path], list[ShapeCheck]]:
    """Writes `model.onnx` for `task` (validated first), `config.json` and the tokenizer files into `output_dir`;
    returns the files written and the validation checks. `missing_heads` are the heads the import had to initialise
    (a model without its task's head is refused rather than exported with random weights); `labels` are a task
    head's label names for config.json (`id2label`, `label2id`; `LABEL_i` without them)."""
    spec = onnx_tasks.task(task)
    check_exportable(model.config.model_type)
    check_model_for_task(model, spec)
    # A fine-tuning model needs every head it has (a BERT classifier reads the pooler too).
    untrained = list(missing_heads) if spec.fine_tuning_head else [spec.head] if spec.head in missing_heads else []
    if untrained:
        hint = ("fine-tune it first (python -m bert_jax.finetune) or export its encoder with --task feature-extraction"
                if spec.fine_tuning_head else "export a checkpoint with one, or --task feature-extraction for the "
                "encoder alone")
        raise CheckpointError(f"the model has no trained {', '.join(untrained)}, which --task {task} needs; {hint}")
    output_dir = hf.check_output_dir(Path(output_dir), force)
    model32 = float32_model(model)
    staging = output_dir / f".onnx_export.{os.getpid()}{fileio.TEMPORARY_SUFFIX}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        files = save(build(model32, spec), staging, external_data_threshold)
        encoder = OnnxEncoder(staging / ONNX_FILE, model.config.max_sequence_length)
        checks = validate(encoder, model32, spec, log)
        del encoder  # closes the files before they move
        # An earlier export's files would no longer match the new model.onnx (ours: only --force gets here with
        # them): its variants go first, its external weights once the new model.onnx no longer points at them.
        _remove(output_dir, VARIANT_FILES.values())
        written = []
        for path in files:
            fileio.commit(str(path), output_dir / path.name)
            written.append(output_dir / path.name)
        if len(files) == 1:
            _remove(output_dir, [EXTERNAL_DATA_FILE])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    written += hf.write_config_and_tokenizer(model, output_dir, vocab_file=vocab_file, lowercase=lowercase,
                                             labels=labels)
    return written, checks
