"""BERT's hyper-parameters under Hugging Face `BertConfig` names, plus compute choices. Pure Python: loading and
validating a run's config imports this, never JAX."""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Iterable, Mapping

# HF `ACT2FN` names we support (models/layers.py holds their definitions; a test keeps the two lists equal).
ACTIVATION_NAMES = ("gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu", "silu", "swish", "tanh")
DTYPE_NAMES = ("float32", "bfloat16", "float16")
# Implementations of dropout and of the tied MLM decoder (models/speed_levers.py): "auto" picks per platform.
DROPOUT_IMPLS = ("auto", "stock", "threefry16")
DECODER_IMPLS = ("auto", "stock", "matmul_bias_grad")
# Hugging Face's `problem_type` values, which pick a sequence-classification loss; "" is its None (decided from the
# labels: regression for one output, single-label for integer labels).
PROBLEM_TYPES = ("", "regression", "single_label_classification", "multi_label_classification")


def check_numbers(values: Mapping[str, Any], sizes: Iterable[str], reals: Iterable[str], prefix: str = "",
                  probabilities: Iterable[str] = ()) -> None:
    """Raises ValueError naming the first of `sizes` present that is not a positive integer, of `reals` that is
    not a finite non-negative number (a string, a negative size or 0 heads in a config.json), or of
    `probabilities` (dropout rates) outside [0, 1)."""
    for field in sizes:
        value = values.get(field, 1)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{prefix}{field} must be a positive integer, got {value!r}")
    for field in reals:
        value = values.get(field, 0)
        if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
                or value < 0):
            raise ValueError(f"{prefix}{field} must be a finite non-negative number, got {value!r}")
    for field in probabilities:
        value = values.get(field, 0)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
            raise ValueError(f"{prefix}{field} must be a probability in [0, 1) (0.1 is BERT's), got {value!r}")


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Model hyper-parameters under Hugging Face `BertConfig` names, plus compute and storage dtypes."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    model_type: str = "bert"  # the architecture (HF's name for it); selects this class in bert_jax.models
    dtype: str = "float32"  # compute dtype of matmuls and activations
    param_dtype: str = "float32"  # storage dtype of parameters (keep f32 for training)
    scan_layers: bool = False  # run the encoder as a lax.scan over stacked layer weights (compile time; not in HF)
    dropout_impl: str = "auto"  # one of DROPOUT_IMPLS; "auto" is resolved per platform before the model is built
    decoder_impl: str = "auto"  # one of DECODER_IMPLS; likewise
    num_labels: int = 2  # outputs of a classification head (HF derives it from id2label; 1 = regression)
    problem_type: str = ""  # one of PROBLEM_TYPES: the sequence-classification loss (objectives/classification.py)
    classifier_dropout: float | None = None  # dropout before a classification head; None = hidden_dropout_prob

    def __post_init__(self):
        self.check_fields(dataclasses.asdict(self))

    @classmethod
    def check_fields(cls, values: Mapping[str, Any], prefix: str = "") -> None:
        """Raises ValueError naming the first bad field (as `{prefix}field`: "model." in a run's config)."""
        own_type = cls.__dataclass_fields__["model_type"].default
        if values.get("model_type", own_type) != own_type:
            raise ValueError(f"{prefix}model_type {values['model_type']!r} is not {cls.__name__}'s ({own_type!r})")
        check_numbers(values, ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                               "intermediate_size", "max_position_embeddings", "type_vocab_size"),
                      ("initializer_range", "layer_norm_eps"), prefix,
                      probabilities=("hidden_dropout_prob", "attention_probs_dropout_prob"))
        hidden, heads = values.get("hidden_size", cls.hidden_size), values.get("num_attention_heads",
                                                                                  cls.num_attention_heads)
        if hidden % heads:
            raise ValueError(f"{prefix}hidden_size ({hidden}) must be divisible by {prefix}num_attention_heads "
                             f"({heads})")
        choices = dict(hidden_act=ACTIVATION_NAMES, dtype=DTYPE_NAMES, param_dtype=DTYPE_NAMES,
                       dropout_impl=DROPOUT_IMPLS, decoder_impl=DECODER_IMPLS)
        for field, allowed in choices.items():
            if field in values and values[field] not in allowed:
                raise ValueError(f"{prefix}{field} {values[field]!r} is not supported; use one of {list(allowed)}")
        check_head_fields(values, prefix)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def max_sequence_length(self) -> int:
        """The longest input the position table covers."""
        return self.max_position_embeddings

    # The fields of Hugging Face's `BertConfig`: what defines the parameters and the function (config.json).
    HF_FIELDS = (
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "hidden_act",
        "hidden_dropout_prob",
        "attention_probs_dropout_prob",
        "max_position_embeddings",
        "type_vocab_size",
        "initializer_range",
        "layer_norm_eps",
        "classifier_dropout",
    )

    # The tokenizer the architecture's released models use; a dataset of another kind is refused (its special ids
    # and word boundaries differ).
    VOCAB_KIND = "wordpiece"

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], prefix: str = "") -> "BertConfig":
        """Builds a config from a dict or ConfigDict; unknown keys are an error (they would be silently ignored).
        Errors name fields as `{prefix}field`."""
        values = dict(values)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model config field(s) {unknown}; known fields: {sorted(known)}")
        cls.check_fields(values, prefix)
        return cls(**values)

    def to_hf_dict(self) -> dict[str, Any]:
        """The fields of Hugging Face's `BertConfig` (used for `config.json`)."""
        return {name: getattr(self, name) for name in self.HF_FIELDS}

    def architecture(self) -> dict[str, Any]:
        """What a checkpoint's parameters depend on: a resumed run must match it."""
        return {"model_type": self.model_type, **self.to_hf_dict()}

    def encoder_matmul_params(self) -> int:
        """Weights of the encoder's dense layers (Q, K, V, attention output, intermediate, output)."""
        d, f = self.hidden_size, self.intermediate_size
        return self.num_hidden_layers * (4 * d * d + 2 * d * f)

    def encoder_flops_per_token(self, seq_len: int) -> float:
        """Training (forward + backward) FLOPs per token of the encoder at sequence length `seq_len`:
        6 N_encoder for its dense layers + 12 L D S for the attention scores and weighted sum (S keys per query)."""
        return float(6 * self.encoder_matmul_params() + 12 * self.num_hidden_layers * self.hidden_size * seq_len)


def check_head_fields(values: Mapping[str, Any], prefix: str = "") -> None:
    """The task-head fields every architecture shares: a positive label count and a known problem type."""
    num_labels = values.get("num_labels", 2)
    if not isinstance(num_labels, int) or num_labels < 1:
        raise ValueError(f"{prefix}num_labels ({num_labels!r}) must be a positive integer")
    if values.get("problem_type", "") not in PROBLEM_TYPES:
        raise ValueError(f"{prefix}problem_type {values['problem_type']!r} is not supported; use one of "
                         f"{list(PROBLEM_TYPES)}")


# The registry entry (bert_jax/models/__init__.py finds `*_config` modules by name).
MODEL_TYPE = "bert"
CONFIG_CLASS = BertConfig
MODELS_MODULE = "bert_jax.models.bert"
