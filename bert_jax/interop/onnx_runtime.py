"""Running an exported encoder in ONNX Runtime: the session, and the inputs fed as optimum's graphs take them.

ONNX and ONNX Runtime are the optional `onnx` extra: nothing here imports them until a session or an export is
asked for, so training never needs them.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from bert_jax.errors import CheckpointError, InputError

ONNX_FILE = "model.onnx"
EXTERNAL_DATA_FILE = "model.onnx_data"  # the weights beside model.onnx when it is over protobuf's 2 GB
# The faster variants `onnx_variants.py` writes beside model.onnx (an export removes stale ones).
VARIANT_FILES = {"optimized": "model_optimized.onnx", "int8": "model_quantized.onnx"}
# Session graph-optimisation levels by name (onnxruntime.GraphOptimizationLevel members).
OPTIMIZATION_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
                       "all": "ORT_ENABLE_ALL"}


def require_extra() -> None:
    """Raises a clear error unless `onnx` and `onnxruntime` are installed (the `onnx` extra)."""
    missing = [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise InputError(f"{' and '.join(missing)} not installed: ONNX export and inference need the onnx extra "
                         "(pip install 'bert_jax[onnx]')")


def session(path: str | os.PathLike, *, optimization: str = "all", threads: int | None = None,
            optimized_path: str | os.PathLike | None = None):
    """An ONNX Runtime CPU session on `path`; `optimized_path` saves the graph as optimised at `optimization`."""
    require_extra()
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = getattr(onnxruntime.GraphOptimizationLevel, OPTIMIZATION_LEVELS[optimization])
    if threads is not None:
        options.intra_op_num_threads = threads
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxEncoder:
    """An exported encoder in ONNX Runtime, called with the batch arrays of our models (ids, mask, token types); it
    feeds the inputs the graph declares (RoBERTa's and DistilBERT's take no token types) as int64."""

    def __init__(self, path: str | os.PathLike, max_sequence_length: int, **session_options):
        self.path = Path(path)
        self.session = session(self.path, **session_options)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.max_sequence_length = max_sequence_length

    @classmethod
    def from_directory(cls, model_dir: str | os.PathLike, file: str = ONNX_FILE, **session_options) -> "OnnxEncoder":
        """`model_dir/file` with the directory's config.json (for the longest input the position table covers)."""
        from bert_jax.interop import hf

        path = Path(model_dir) / file
        if not path.is_file():
            raise CheckpointError(f"{path} not found; export one with python -m bert_jax.export --format onnx "
                                  f"--task TASK --output {model_dir}")
        return cls(path, hf.config_from_hf(model_dir).max_sequence_length, **session_options)

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray,
                 token_type_ids: np.ndarray | None = None) -> dict[str, np.ndarray]:
        if input_ids.shape[-1] > self.max_sequence_length:
            raise InputError(f"a sequence of {input_ids.shape[-1]} tokens is longer than this model reads "
                             f"({self.max_sequence_length}, its position table)")
        given = {"input_ids": input_ids, "attention_mask": attention_mask,
                 "token_type_ids": np.zeros_like(input_ids) if token_type_ids is None else token_type_ids}
        feeds = {name: np.asarray(given[name], np.int64) for name in self.input_names}
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))


class OnnxFillMaskLogits:
    """Fill-mask's logits from DIR/model.onnx (an export for fill-mask), called as the JAX backend is: with the
    padded batch arrays, returning [B, S, V]."""

    def __init__(self, model_dir: str | os.PathLike, file: str = ONNX_FILE):
        self.encoder = OnnxEncoder.from_directory(model_dir, file)
        if "logits" not in self.encoder.output_names:
            raise CheckpointError(f"{self.encoder.path} has no logits output (it has "
                                  f"{', '.join(self.encoder.output_names)}): fill-mask needs an export with "
                                  "--task fill-mask")
        self.max_sequence_length = self.encoder.max_sequence_length

    def __call__(self, input_ids: np.ndarray, input_mask: np.ndarray, segment_ids: np.ndarray) -> np.ndarray:
        return self.encoder(input_ids, input_mask, segment_ids)["logits"]
