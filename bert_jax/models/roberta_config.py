"""RoBERTa's hyper-parameters under Hugging Face `RobertaConfig` names. Pure Python, like `bert_config.py`.

RoBERTa is BERT's encoder with other data and defaults: a byte-level BPE vocabulary (50,265 ids released), one
token type, LayerNorm eps 1e-5, and position ids that start after the padding id (`pad_token_id + 1`), so 514
position embeddings cover 512 tokens.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from bert_jax.models.bert_config import BertConfig


@dataclasses.dataclass(frozen=True)
class RobertaConfig(BertConfig):
    vocab_size: int = 50265
    max_position_embeddings: int = 514
    type_vocab_size: int = 1
    layer_norm_eps: float = 1e-5
    model_type: str = "roberta"
    pad_token_id: int = 1  # also the position table's padding index: real tokens take positions pad_token_id + 1 ...
    bos_token_id: int = 0  # <s>
    eos_token_id: int = 2  # </s>

    HF_FIELDS = BertConfig.HF_FIELDS + ("pad_token_id", "bos_token_id", "eos_token_id")
    VOCAB_KIND = "bpe"  # byte-level BPE, as released

    @classmethod
    def check_fields(cls, values: Mapping[str, Any], prefix: str = "") -> None:
        super().check_fields(values, prefix)
        vocab_size = values.get("vocab_size", cls.vocab_size)
        for field in ("pad_token_id", "bos_token_id", "eos_token_id"):
            value = values.get(field, cls.__dataclass_fields__[field].default)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{prefix}{field} must be an integer id, got {value!r}")
            if not 0 <= value < vocab_size:
                raise ValueError(f"{prefix}{field} ({value}) must be an id below {prefix}vocab_size ({vocab_size})")
        positions = values.get("max_position_embeddings", cls.max_position_embeddings)
        pad = values.get("pad_token_id", cls.pad_token_id)
        if positions <= pad + 1:
            raise ValueError(f"{prefix}max_position_embeddings ({positions}) must exceed {prefix}pad_token_id + 1 "
                             f"({pad + 1}): positions start after the padding id")

    @property
    def max_sequence_length(self) -> int:
        """Positions pad_token_id + 1 .. max_position_embeddings - 1 are the real tokens' (512 of RoBERTa's 514)."""
        return self.max_position_embeddings - self.pad_token_id - 1


# The registry entry (bert_jax/models/__init__.py finds `*_config` modules by name).
MODEL_TYPE = "roberta"
CONFIG_CLASS = RobertaConfig
MODELS_MODULE = "bert_jax.models.roberta"
