"""DistilBERT's hyper-parameters under Hugging Face `DistilBertConfig` names. Pure Python, like `bert_config.py`.

DistilBERT is BERT's post-LN encoder without token-type embeddings or pooler, with half the layers, LayerNorm eps
fixed at 1e-12 (transformers has no field for it) and no dropout after the attention's output projection. Its
tokenizer is BERT's WordPiece.

The shared code (`layers.py`, `heads.py`, the training core, `configuration.validate`) reads BERT's field names; this
config answers them as read-only properties over its own fields (`hidden_size` is `dim`, ...), as transformers'
`attribute_map` does, so none of that code names DistilBERT.
"""

from __future__ import annotations

import dataclasses
import operator
from typing import Any, Mapping

from bert_jax.models.bert_config import (ACTIVATION_NAMES, DECODER_IMPLS, DROPOUT_IMPLS, DTYPE_NAMES, BertConfig,
                                        check_head_fields, check_numbers)


@dataclasses.dataclass(frozen=True)
class DistilBertConfig:
    """Model hyper-parameters under Hugging Face `DistilBertConfig` names (its defaults), plus compute choices."""

    vocab_size: int = 30522
    max_position_embeddings: int = 512
    sinusoidal_pos_embds: bool = False  # True: the position table starts as sines and cosines (still trained)
    n_layers: int = 6
    n_heads: int = 12
    dim: int = 768
    hidden_dim: int = 3072
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation: str = "gelu"
    initializer_range: float = 0.02
    pad_token_id: int = 0
    model_type: str = "distilbert"
    dtype: str = "float32"  # compute dtype of matmuls and activations
    param_dtype: str = "float32"  # storage dtype of parameters (keep f32 for training)
    scan_layers: bool = False  # run the encoder as a lax.scan over stacked layer weights (compile time; not in HF)
    dropout_impl: str = "auto"  # one of DROPOUT_IMPLS; "auto" is resolved per platform before the model is built
    decoder_impl: str = "auto"  # one of DECODER_IMPLS; likewise
    num_labels: int = 2  # outputs of a classification head (HF derives it from id2label; 1 = regression)
    problem_type: str = ""  # one of PROBLEM_TYPES (bert_config.py): the sequence-classification loss
    seq_classif_dropout: float = 0.2  # dropout before the sequence-classification and multiple-choice classifier
    qa_dropout: float = 0.1  # dropout before the question-answering outputs

    # BERT's name -> DistilBERT's, for the fields both have (transformers' `DistilBertConfig.attribute_map` and more).
    BERT_NAMES = {
        "hidden_size": "dim",
        "num_hidden_layers": "n_layers",
        "num_attention_heads": "n_heads",
        "intermediate_size": "hidden_dim",
        "hidden_act": "activation",
        "hidden_dropout_prob": "dropout",
        "attention_probs_dropout_prob": "attention_dropout",
    }
    HF_FIELDS = ("vocab_size", "max_position_embeddings", "sinusoidal_pos_embds", "n_layers", "n_heads", "dim",
                 "hidden_dim", "dropout", "attention_dropout", "activation", "initializer_range", "pad_token_id",
                 "seq_classif_dropout", "qa_dropout")
    VOCAB_KIND = "wordpiece"  # BERT's vocabulary, as released (distilbert-base-uncased is bert-base-uncased's)
    layer_norm_eps = 1e-12  # transformers hard-codes it in every DistilBERT LayerNorm
    # No token-type embeddings: segment ids are read by no parameter, every token is of the one type. (The trainer
    # compares a dataset's segment count with this.)
    type_vocab_size = 1

    @classmethod
    def check_fields(cls, values: Mapping[str, Any], prefix: str = "") -> None:
        """Raises ValueError naming the first bad field (as `{prefix}field`: "model." in a run's config)."""
        v = {**{f.name: f.default for f in dataclasses.fields(cls)}, **dict(values)}
        if v["model_type"] != cls.model_type:
            raise ValueError(f"{prefix}model_type {v['model_type']!r} is not {cls.__name__}'s ({cls.model_type!r})")
        check_numbers(v, ("vocab_size", "max_position_embeddings", "n_layers", "n_heads", "dim", "hidden_dim"),
                      ("initializer_range",), prefix, probabilities=("dropout", "attention_dropout"))
        if isinstance(v["pad_token_id"], bool) or not isinstance(v["pad_token_id"], int):
            raise ValueError(f"{prefix}pad_token_id must be an integer, got {v['pad_token_id']!r}")
        if v["dim"] % v["n_heads"]:
            raise ValueError(f"{prefix}dim ({v['dim']}) must be divisible by {prefix}n_heads ({v['n_heads']})")
        choices = dict(activation=ACTIVATION_NAMES, dtype=DTYPE_NAMES, param_dtype=DTYPE_NAMES,
                       dropout_impl=DROPOUT_IMPLS, decoder_impl=DECODER_IMPLS)
        for field, allowed in choices.items():
            if v[field] not in allowed:
                raise ValueError(f"{prefix}{field} {v[field]!r} is not supported; use one of {list(allowed)}")
        if not 0 <= v["pad_token_id"] < v["vocab_size"]:
            raise ValueError(f"{prefix}pad_token_id ({v['pad_token_id']}) must be an id below {prefix}vocab_size "
                             f"({v['vocab_size']})")
        check_head_fields(v, prefix)

    # What reads only BERT's names (the properties defined after the class) is BERT's own code, not a copy.
    __post_init__ = BertConfig.__post_init__
    from_mapping = classmethod(BertConfig.from_mapping.__func__)
    to_hf_dict = BertConfig.to_hf_dict
    architecture = BertConfig.architecture
    head_dim = BertConfig.head_dim
    max_sequence_length = BertConfig.max_sequence_length
    encoder_matmul_params = BertConfig.encoder_matmul_params
    encoder_flops_per_token = BertConfig.encoder_flops_per_token


# BERT's names, read by the shared code, as read-only properties over DistilBERT's fields.
for _bert_name, _own_name in DistilBertConfig.BERT_NAMES.items():
    setattr(DistilBertConfig, _bert_name, property(operator.attrgetter(_own_name), doc=f"BERT's `{_own_name}`"))

# The registry entry (bert_jax/models/__init__.py finds `*_config` modules by name).
MODEL_TYPE = "distilbert"
CONFIG_CLASS = DistilBertConfig
MODELS_MODULE = "bert_jax.models.distilbert"
