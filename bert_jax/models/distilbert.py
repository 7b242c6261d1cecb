"""Flax NNX DistilBERT, the same functions as Hugging Face's `DistilBertModel`, `DistilBertForMaskedLM` and the
fine-tuning models (`DistilBertFor{SequenceClassification,TokenClassification,QuestionAnswering,MultipleChoice}`): BERT's
post-LN encoder layers (`layers.py`, without the dropout after the attention's output projection, as DistilBERT's
`TransformerBlock`) and masked-LM head (`heads.py`), with word + position embeddings only and no pooler.

The parameter paths are BERT's under `distilbert` instead of `bert` (and no `token_type_embeddings`), so a student
is initialised from a BERT teacher by copying subtrees (`models/extraction.py`).

Shape suffixes: B batch, S sequence, P masked positions, D hidden.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from bert_jax.models import heads, layers
from bert_jax.models.distilbert_config import DistilBertConfig


def sinusoidal_positions(num_positions: int, dim: int) -> np.ndarray:
    """transformers' `create_sinusoidal_embeddings`: sin at even, cos at odd columns of pos / 10000^(2*(j//2)/dim),
    computed in float64 and rounded to float32 as it does."""
    pos_Px1 = np.arange(num_positions, dtype=np.float64)[:, None]
    angles_PxD = pos_Px1 / np.power(10000, 2 * (np.arange(dim) // 2) / dim)
    table_PxD = np.empty((num_positions, dim), np.float32)
    table_PxD[:, 0::2] = np.sin(angles_PxD[:, 0::2])
    table_PxD[:, 1::2] = np.cos(angles_PxD[:, 1::2])
    return table_PxD


class DistilBertEmbeddings(nnx.Module):
    """Word + position embeddings, LayerNorm, dropout (no token types)."""

    def __init__(self, config: DistilBertConfig, *, rngs: nnx.Rngs):
        self.word_embeddings = layers.embed(config, config.vocab_size, ("vocab", "embed"), rngs=rngs)
        position_init = None
        if config.sinusoidal_pos_embds:  # a start, not a constraint: transformers trains the table afterwards

            def position_init(key, shape, dtype):
                return jnp.asarray(sinusoidal_positions(*shape), dtype)

        self.position_embeddings = layers.embed(config, config.max_position_embeddings, ("position", "embed"),
                                                rngs=rngs, init=position_init)
        self.layer_norm = layers.layer_norm(config, "embed", rngs=rngs)
        self.dropout = layers.dropout(config, config.hidden_dropout_prob)

    def __call__(self, input_ids_BxS, *, deterministic, rngs):
        seq_len = input_ids_BxS.shape[1]
        x_BxSxD = self.word_embeddings(input_ids_BxS) + self.position_embeddings(jnp.arange(seq_len)[None, :])
        return self.dropout(self.layer_norm(x_BxSxD), deterministic=deterministic, rngs=rngs)


class DistilBertModel(nnx.Module):
    """Embeddings and encoder stack; segment ids are accepted (the objectives pass them) and ignored."""

    def __init__(self, config: DistilBertConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.embeddings = DistilBertEmbeddings(config, rngs=rngs)
        self.layers = nnx.List([layers.EncoderLayer(config, rngs=rngs, attention_output_dropout=False)
                                for _ in range(config.n_layers)])

    def __call__(self, input_ids_BxS, input_mask_BxS, segment_ids_BxS=None, *, deterministic: bool = True,
                 rngs: nnx.Rngs | None = None, output_hidden_states: bool = False):
        del segment_ids_BxS  # DistilBERT has no token-type embeddings
        x_BxSxD = self.embeddings(input_ids_BxS, deterministic=deterministic, rngs=rngs)
        return layers.encode(self.layers, x_BxSxD, input_mask_BxS, scan=self.config.scan_layers,
                             deterministic=deterministic, rngs=rngs, output_hidden_states=output_hidden_states)


class DistilBertForMaskedLM(nnx.Module, heads.MaskedLMHead):
    """DistilBERT with the masked-LM head: `vocab_transform`, activation, `vocab_layer_norm`, `vocab_projector` tied to
    the word embeddings, its bias (our `mlm_transform`, `mlm_layer_norm`, `mlm_bias`, BERT's names)."""

    def __init__(self, config: DistilBertConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.distilbert = DistilBertModel(config, rngs=rngs)
        self._add_mlm_head(config, rngs=rngs)

    def __call__(self, input_ids_BxS, input_mask_BxS, segment_ids_BxS=None, masked_lm_positions_BxP=None, *,
                 deterministic: bool = True, rngs: nnx.Rngs | None = None, output_hidden_states: bool = False):
        """Returns `mlm_logits` [B, P, V] (or [B, S, V] without positions) with the encoder's outputs."""
        outputs = self.distilbert(input_ids_BxS, input_mask_BxS, deterministic=deterministic, rngs=rngs,
                                  output_hidden_states=output_hidden_states)
        return self.add_mlm_logits(outputs, masked_lm_positions_BxP,
                                   self.distilbert.embeddings.word_embeddings.embedding[...])


class DistilBertForSequenceClassification(heads.TaskModel):
    """On the [CLS] state: `pre_classifier`, ReLU, dropout (`seq_classif_dropout`), `classifier`: `logits`
    [B, num_labels]."""

    encoder_name = "distilbert"

    def __init__(self, config: DistilBertConfig, *, rngs: nnx.Rngs, outputs: int | None = None):
        self.config = config
        self.distilbert = DistilBertModel(config, rngs=rngs)
        self.pre_classifier = heads.square_dense(config, rngs=rngs)
        self.dropout = layers.dropout(config, config.seq_classif_dropout)
        self.classifier = heads.classifier(config, config.num_labels if outputs is None else outputs, rngs=rngs)

    def head(self, outputs, *, deterministic, rngs):
        x_BxD = jax.nn.relu(self.pre_classifier(outputs["sequence_output"][:, 0]))
        return {"logits": self.classifier(self.dropout(x_BxD, deterministic=deterministic, rngs=rngs))}


class DistilBertForMultipleChoice(DistilBertForSequenceClassification):
    """The same head with one output, per choice: inputs [B, C, S], `logits` [B, C]."""

    choices = True

    def __init__(self, config: DistilBertConfig, *, rngs: nnx.Rngs):
        super().__init__(config, rngs=rngs, outputs=1)


class DistilBertForTokenClassification(heads.TokenClassificationModel):
    """Dropout (`dropout`) and `classifier` at every token: `logits` [B, S, num_labels]."""

    encoder_name = "distilbert"

    def __init__(self, config: DistilBertConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.distilbert = DistilBertModel(config, rngs=rngs)
        self._add_head(config, config.dropout, rngs=rngs)


class DistilBertForQuestionAnswering(heads.QuestionAnsweringModel):
    """Dropout (`qa_dropout`) and `qa_outputs` at every token: `start_logits`, `end_logits` [B, S]."""

    encoder_name = "distilbert"

    def __init__(self, config: DistilBertConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.distilbert = DistilBertModel(config, rngs=rngs)
        self._add_head(config, config.qa_dropout, rngs=rngs)


# The model for each set of heads an objective reads.
MODELS_BY_HEADS = {
    ("mlm",): DistilBertForMaskedLM,
    (heads.SEQUENCE_CLASSIFICATION,): DistilBertForSequenceClassification,
    (heads.TOKEN_CLASSIFICATION,): DistilBertForTokenClassification,
    (heads.QUESTION_ANSWERING,): DistilBertForQuestionAnswering,
    (heads.MULTIPLE_CHOICE,): DistilBertForMultipleChoice,
}
