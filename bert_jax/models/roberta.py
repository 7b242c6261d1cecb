"""Flax NNX RoBERTa, the same functions as Hugging Face's `RobertaModel` and `RobertaForMaskedLM`: BERT's encoder
(`layers.py`) and masked-LM head (`heads.py`), with RoBERTa's embeddings, whose position ids count the non-padding
tokens from `pad_token_id + 1` (fairseq's `make_positions`), and no pooler in the masked-LM model.

Shape suffixes: B batch, S sequence, P masked positions, D hidden.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from bert_jax.models import heads, layers
from bert_jax.models.roberta_config import RobertaConfig


def position_ids(input_ids_BxS, pad_token_id: int):
    """pad_token_id + 1, + 2, ... for the non-padding tokens, pad_token_id for padding (as transformers does)."""
    real_BxS = (input_ids_BxS != pad_token_id).astype(jnp.int32)
    return jnp.cumsum(real_BxS, axis=1) * real_BxS + pad_token_id


class RobertaEmbeddings(nnx.Module):
    """Word + position (from the ids) + token-type embeddings, LayerNorm, dropout."""

    def __init__(self, config: RobertaConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.word_embeddings = layers.embed(config, config.vocab_size, ("vocab", "embed"), rngs=rngs)
        self.position_embeddings = layers.embed(config, config.max_position_embeddings, ("position", "embed"),
                                                rngs=rngs)
        self.token_type_embeddings = layers.embed(config, config.type_vocab_size, ("token_type", "embed"), rngs=rngs)
        self.layer_norm = layers.layer_norm(config, "embed", rngs=rngs)
        self.dropout = layers.dropout(config, config.hidden_dropout_prob)

    def __call__(self, input_ids_BxS, segment_ids_BxS, *, deterministic, rngs):
        x_BxSxD = (
            self.word_embeddings(input_ids_BxS)
            + self.token_type_embeddings(segment_ids_BxS)
            + self.position_embeddings(position_ids(input_ids_BxS, self.config.pad_token_id))
        )
        x_BxSxD = self.layer_norm(x_BxSxD)
        return self.dropout(x_BxSxD, deterministic=deterministic, rngs=rngs)


class RobertaModel(nnx.Module):
    """Embeddings and encoder stack (RoBERTa's pre-training uses no pooler; fine-tuning heads bring their own)."""

    def __init__(self, config: RobertaConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.embeddings = RobertaEmbeddings(config, rngs=rngs)
        self.layers = nnx.List([layers.EncoderLayer(config, rngs=rngs) for _ in range(config.num_hidden_layers)])

    def __call__(self, input_ids_BxS, input_mask_BxS, segment_ids_BxS=None, *, deterministic: bool = True,
                 rngs: nnx.Rngs | None = None, output_hidden_states: bool = False):
        if segment_ids_BxS is None:
            segment_ids_BxS = jnp.zeros_like(input_ids_BxS)
        x_BxSxD = self.embeddings(input_ids_BxS, segment_ids_BxS, deterministic=deterministic, rngs=rngs)
        return layers.encode(self.layers, x_BxSxD, input_mask_BxS, scan=self.config.scan_layers,
                             deterministic=deterministic, rngs=rngs, output_hidden_states=output_hidden_states)


class RobertaForMaskedLM(nnx.Module, heads.MaskedLMHead):
    """RoBERTa with the masked-LM head (dense, GELU, LayerNorm, decoder tied to the word embeddings, bias)."""

    def __init__(self, config: RobertaConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.roberta = RobertaModel(config, rngs=rngs)
        self._add_mlm_head(config, rngs=rngs)

    def __call__(self, input_ids_BxS, input_mask_BxS, segment_ids_BxS=None, masked_lm_positions_BxP=None, *,
                 deterministic: bool = True, rngs: nnx.Rngs | None = None, output_hidden_states: bool = False):
        """Returns `mlm_logits` [B, P, V] (or [B, S, V] without positions) with the encoder's outputs."""
        outputs = self.roberta(input_ids_BxS, input_mask_BxS, segment_ids_BxS, deterministic=deterministic,
                               rngs=rngs, output_hidden_states=output_hidden_states)
        return self.add_mlm_logits(outputs, masked_lm_positions_BxP,
                                   self.roberta.embeddings.word_embeddings.embedding[...])


# The model for each set of heads an objective reads.
MODELS_BY_HEADS = {
    ("mlm",): RobertaForMaskedLM,
}
