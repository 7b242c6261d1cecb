"""Flax NNX RoBERTa, the same functions as Hugging Face's `RobertaModel`, `RobertaForMaskedLM` and the fine-tuning
models (`RobertaFor{SequenceClassification,TokenClassification,QuestionAnswering,MultipleChoice}`): BERT's encoder
(`layers.py`) and masked-LM head (`heads.py`), with RoBERTa's embeddings, whose position ids count the non-padding
tokens from `pad_token_id + 1` (fairseq's `make_positions`), and no pooler in the masked-LM model.

Shape suffixes: B batch, S sequence, P masked positions, D hidden.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from bert_jax.models import heads, layers
from bert_jax.models.bert import BertForSequenceClassification, classifier_dropout
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
    """Embeddings and encoder stack, and with `add_pooling_layer` BERT's tanh pooler over <s> (RoBERTa's pre-training
    uses none; of the fine-tuning models only multiple choice reads it, as in transformers)."""

    def __init__(self, config: RobertaConfig, *, rngs: nnx.Rngs, add_pooling_layer: bool = False):
        self.config = config
        self.embeddings = RobertaEmbeddings(config, rngs=rngs)
        self.layers = nnx.List([layers.EncoderLayer(config, rngs=rngs) for _ in range(config.num_hidden_layers)])
        if add_pooling_layer:
            self.pooler = layers.linear(config, config.hidden_size, config.hidden_size, ("embed", "hidden"), rngs=rngs)

    def __call__(self, input_ids_BxS, input_mask_BxS, segment_ids_BxS=None, *, deterministic: bool = True,
                 rngs: nnx.Rngs | None = None, output_hidden_states: bool = False):
        if segment_ids_BxS is None:
            segment_ids_BxS = jnp.zeros_like(input_ids_BxS)
        x_BxSxD = self.embeddings(input_ids_BxS, segment_ids_BxS, deterministic=deterministic, rngs=rngs)
        outputs = layers.encode(self.layers, x_BxSxD, input_mask_BxS, scan=self.config.scan_layers,
                                deterministic=deterministic, rngs=rngs, output_hidden_states=output_hidden_states)
        if hasattr(self, "pooler"):
            outputs["pooled_output"] = jnp.tanh(self.pooler(outputs["sequence_output"][:, 0]))
        return outputs


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


class RobertaClassificationHead(nnx.Module):
    """transformers' `RobertaClassificationHead` on the <s> state: dropout, `dense`, tanh, dropout, `out_proj`."""

    def __init__(self, config: RobertaConfig, *, rngs: nnx.Rngs):
        self.dense = heads.square_dense(config, rngs=rngs)
        self.dropout = layers.dropout(config, classifier_dropout(config))
        self.out_proj = heads.classifier(config, config.num_labels, rngs=rngs)

    def __call__(self, x_BxD, *, deterministic, rngs):
        x_BxD = jnp.tanh(self.dense(self.dropout(x_BxD, deterministic=deterministic, rngs=rngs)))
        return self.out_proj(self.dropout(x_BxD, deterministic=deterministic, rngs=rngs))


class RobertaForSequenceClassification(heads.TaskModel):
    """`classifier` (dense, tanh, out_proj) on the <s> token, no pooler: `logits` [B, num_labels]."""

    encoder_name = "roberta"

    def __init__(self, config: RobertaConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.roberta = RobertaModel(config, rngs=rngs)
        self.classifier = RobertaClassificationHead(config, rngs=rngs)

    def head(self, outputs, *, deterministic, rngs):
        return {"logits": self.classifier(outputs["sequence_output"][:, 0], deterministic=deterministic, rngs=rngs)}


class RobertaForMultipleChoice(BertForSequenceClassification):
    """BERT's multiple-choice head over RoBERTa's pooler: inputs [B, C, S], `logits` [B, C]."""

    encoder_name = "roberta"
    choices = True

    def __init__(self, config: RobertaConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.roberta = RobertaModel(config, rngs=rngs, add_pooling_layer=True)
        self.dropout = layers.dropout(config, classifier_dropout(config))
        self.classifier = heads.classifier(config, 1, rngs=rngs)


class RobertaForTokenClassification(heads.TokenClassificationModel):
    """BERT's token-classification head (dropout, `classifier`) over RoBERTa's encoder."""

    encoder_name = "roberta"

    def __init__(self, config: RobertaConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.roberta = RobertaModel(config, rngs=rngs)
        self._add_head(config, classifier_dropout(config), rngs=rngs)


class RobertaForQuestionAnswering(heads.QuestionAnsweringModel):
    """BERT's `qa_outputs` (no dropout) over RoBERTa's encoder."""

    encoder_name = "roberta"

    def __init__(self, config: RobertaConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.roberta = RobertaModel(config, rngs=rngs)
        self._add_head(config, 0.0, rngs=rngs)


# The model for each set of heads an objective reads.
MODELS_BY_HEADS = {
    ("mlm",): RobertaForMaskedLM,
    (heads.SEQUENCE_CLASSIFICATION,): RobertaForSequenceClassification,
    (heads.TOKEN_CLASSIFICATION,): RobertaForTokenClassification,
    (heads.QUESTION_ANSWERING,): RobertaForQuestionAnswering,
    (heads.MULTIPLE_CHOICE,): RobertaForMultipleChoice,
}
