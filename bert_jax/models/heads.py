"""Pre-training heads shared by the family: the masked-LM head (dense, activation, LayerNorm, decoder tied to the
word embeddings, output bias) and the next-sentence head.

The heads are added to the model that owns them as attributes (`mlm_transform`, `mlm_layer_norm`, `mlm_bias`,
`nsp`), not as sub-modules, so the parameter paths stay those of every checkpoint written so far.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from bert_jax.models import layers, speed_levers


class MaskedLMHead:
    """Mixin for an `nnx.Module` with a masked-LM head over its word embeddings."""

    def _add_mlm_head(self, config, *, rngs: nnx.Rngs) -> None:
        self.mlm_transform = layers.linear(config, config.hidden_size, config.hidden_size, ("embed", "hidden"),
                                           rngs=rngs)
        self.mlm_layer_norm = layers.layer_norm(config, "hidden", rngs=rngs)
        self.mlm_bias = nnx.Param(jnp.zeros((config.vocab_size,), layers.storage_dtype(config)),
                                  logical_axes=("vocab",))
        self.mlm_activation = layers.ACTIVATIONS[config.hidden_act]
        self.mlm_decoder = speed_levers.tied_decoder(config.decoder_impl)

    def mlm_logits(self, x_BxPxD, embedding_VxD) -> jax.Array:
        """MLM head at the given hidden states: dense, activation, LayerNorm, tied decoder, output bias."""
        h_BxPxD = self.mlm_layer_norm(self.mlm_activation(self.mlm_transform(x_BxPxD)))
        dtype = layers.compute_dtype(self.config)
        return self.mlm_decoder(h_BxPxD.astype(dtype), embedding_VxD.astype(dtype), self.mlm_bias[...].astype(dtype))

    def add_mlm_logits(self, outputs: dict, masked_lm_positions_BxP, embedding_VxD) -> dict:
        """`outputs` (the encoder's) with `mlm_logits`: [B, P, V] at the positions, or [B, S, V] when they are None."""
        x_BxSxD = outputs["sequence_output"]
        if masked_lm_positions_BxP is not None:
            x_BxSxD = gather_positions(x_BxSxD, masked_lm_positions_BxP)
        outputs["mlm_logits"] = self.mlm_logits(x_BxSxD, embedding_VxD)
        return outputs


def gather_positions(x_BxSxD, positions_BxP) -> jax.Array:
    """The hidden states at the given positions: the MLM head runs only there during training, as the original."""
    return jnp.take_along_axis(x_BxSxD, positions_BxP[..., None].astype(jnp.int32), axis=1)


def next_sentence_head(config, *, rngs: nnx.Rngs) -> nnx.Module:
    """Two logits (0 = B follows A, 1 = B is random) from the pooled [CLS] state."""
    return layers.linear(config, config.hidden_size, 2, ("embed", None), rngs=rngs)
