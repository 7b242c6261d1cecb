"""Faster variants of an exported `model.onnx`, written beside it, with what each costs in accuracy:

- `optimized` (`model_optimized.onnx`): ONNX Runtime's transformer fusions (one Attention op per layer,
  SkipLayerNormalization, BiasGelu) applied offline. The export's attention is built in the pattern they match.
- `int8` (`model_quantized.onnx`): dynamic int8 quantisation (`onnxruntime.quantization.quantize_dynamic`) of the
  optimised graph's matmul and attention weights, per output channel; activations are quantised per call, and the
  embedding tables stay float32.

The accuracy cost is measured here as the max abs difference from `model.onnx` at the export's validation shapes;
`scripts/bench_onnx.py` measures fill-mask top-1 agreement on held-out text.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from bert_jax import fileio
from bert_jax.errors import CheckpointError
from bert_jax.interop import hf
from bert_jax.interop.onnx_runtime import EXTERNAL_DATA_FILE, ONNX_FILE, VARIANT_FILES, OnnxEncoder  # noqa: F401


@contextlib.contextmanager
def _quiet(logger_name: str | None):
    """Only errors from that logger (None: the root logger) while the block runs."""
    log = logging.getLogger(logger_name)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _source(model_dir: Path) -> Path:
    path = model_dir / ONNX_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} not found; export it first with python -m bert_jax.export --format onnx")
    if (model_dir / EXTERNAL_DATA_FILE).exists():
        raise CheckpointError(f"{path} keeps its weights in {EXTERNAL_DATA_FILE} (over 2 GB); the optimised and int8 "
                              "variants are made for single-file models only")
    return path


def optimize(model_dir: str | os.PathLike) -> Path:
    """Writes `model_optimized.onnx`: ONNX Runtime's transformer fusions of `model.onnx`."""
    from onnxruntime.transformers import fusion_options, optimizer

    model_dir = Path(model_dir)
    source = _source(model_dir)
    config = hf.config_from_hf(model_dir)
    options = fusion_options.FusionOptions("bert")  # the encoder layers of all three architectures are BERT's
    # The 2D mask as given, not a length per row: the fused attention stays right for padding on either side.
    options.attention_mask_format = fusion_options.AttentionMaskFormat.AttentionMask
    with _quiet("onnxruntime.transformers.optimizer"):  # notes that our producer is not "pytorch"; the patterns match
        fused = optimizer.optimize_model(str(source), model_type="bert", num_heads=config.num_attention_heads,
                                         hidden_size=config.hidden_size, optimization_options=options)
    target = model_dir / VARIANT_FILES["optimized"]
    return fileio.write_atomic(target, lambda path: fused.save_model_to_file(path))


def quantize_int8(model_dir: str | os.PathLike) -> Path:
    """Writes `model_quantized.onnx`: the optimised graph (made first if missing) with int8 weights."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model_dir = Path(model_dir)
    _source(model_dir)
    optimized = model_dir / VARIANT_FILES["optimized"]
    if not optimized.is_file():
        optimize(model_dir)
    target = model_dir / VARIANT_FILES["int8"]
    with tempfile.TemporaryDirectory(dir=model_dir, prefix=".quantize.") as scratch:  # its intermediate files
        staged = Path(scratch) / target.name
        with _quiet(None):  # its advice to pre-process: the optimised graph is what that would make
            # Per-channel scales and fp32 embedding tables: MiniLM's sentence embeddings keep a mean cosine of 0.993
            # with fp32 this way, 0.959 with one scale per tensor and int8 tables (docs/onnx.md). Shape inference
            # cannot type the fused (com.microsoft) ops' outputs; they are float32.
            quantize_dynamic(str(optimized), str(staged), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul", "Attention"],
                             extra_options={"DefaultTensorType": TensorProto.FLOAT})
        return fileio.write_atomic(target, lambda path: os.replace(staged, path))


MAKERS = {"optimized": optimize, "int8": quantize_int8}


def max_abs_diffs(model_dir: str | os.PathLike, variant: str) -> list[tuple[tuple[int, int], float]]:
    """((batch, sequence), max abs difference of the first output) of a variant against `model.onnx`, at the
    export's validation shapes."""
    from bert_jax.interop.onnx_export import validation_batches

    model_dir = Path(model_dir)
    reference = OnnxEncoder.from_directory(model_dir)
    candidate = OnnxEncoder.from_directory(model_dir, VARIANT_FILES[variant])
    output = reference.output_names[0]
    diffs = []
    for _, ids, mask, types in validation_batches(hf.config_from_hf(model_dir)):
        diff = np.max(np.abs(candidate(ids, mask, types)[output] - reference(ids, mask, types)[output]))
        diffs.append((ids.shape, float(diff)))
    return diffs
