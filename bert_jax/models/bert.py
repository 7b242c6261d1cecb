"""Flax NNX BERT, the same functions as Hugging Face's `BertModel`, `BertForPreTraining`, `BertForMaskedLM` and the
fine-tuning models (`BertForSequenceClassification`, `...TokenClassification`, `...QuestionAnswering`,
`...MultipleChoice`).

The encoder blocks are in `layers.py`, the pre-training heads in `heads.py`; this file assembles them the way the
reference BERT does. Shape suffixes: B batch, S sequence, P masked positions, D hidden.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from bert_jax.models import heads, layers
from bert_jax.models.bert_config import BertConfig


class BertEmbeddings(nnx.Module):
    """Word + position + token-type embeddings, LayerNorm, dropout."""

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        self.word_embeddings = layers.embed(config, config.vocab_size, ("vocab", "embed"), rngs=rngs)
        self.position_embeddings = layers.embed(config, config.max_position_embeddings, ("position", "embed"),
                                                rngs=rngs)
        self.token_type_embeddings = layers.embed(config, config.type_vocab_size, ("token_type", "embed"), rngs=rngs)
        self.layer_norm = layers.layer_norm(config, "embed", rngs=rngs)
        self.dropout = layers.dropout(config, config.hidden_dropout_prob)

    def __call__(self, input_ids_BxS, segment_ids_BxS, *, deterministic, rngs):
        seq_len = input_ids_BxS.shape[1]
        x_BxSxD = (
            self.word_embeddings(input_ids_BxS)
            + self.position_embeddings(jnp.arange(seq_len)[None, :])
            + self.token_type_embeddings(segment_ids_BxS)
        )
        x_BxSxD = self.layer_norm(x_BxSxD)
        return self.dropout(x_BxSxD, deterministic=deterministic, rngs=rngs)


class BertModel(nnx.Module):
    """Embeddings, encoder stack and (unless `add_pooling_layer=False`) the tanh pooler over the [CLS] token."""

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs, add_pooling_layer: bool = True):
        self.config = config
        self.embeddings = BertEmbeddings(config, rngs=rngs)
        self.layers = nnx.List([layers.EncoderLayer(config, rngs=rngs) for _ in range(config.num_hidden_layers)])
        if add_pooling_layer:
            self.pooler = layers.linear(config, config.hidden_size, config.hidden_size, ("embed", "hidden"), rngs=rngs)

    def __call__(
        self,
        input_ids_BxS,
        input_mask_BxS,
        segment_ids_BxS,
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
        output_hidden_states: bool = False,
    ):
        x_BxSxD = self.embeddings(input_ids_BxS, segment_ids_BxS, deterministic=deterministic, rngs=rngs)
        outputs = layers.encode(self.layers, x_BxSxD, input_mask_BxS, scan=self.config.scan_layers,
                                deterministic=deterministic, rngs=rngs, output_hidden_states=output_hidden_states)
        if hasattr(self, "pooler"):
            outputs["pooled_output"] = jnp.tanh(self.pooler(outputs["sequence_output"][:, 0]))
        return outputs


class BertForMaskedLM(nnx.Module, heads.MaskedLMHead):
    """BERT with the masked-LM head and no pooler, as Hugging Face's `BertForMaskedLM`."""

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.bert = BertModel(config, rngs=rngs, add_pooling_layer=False)
        self._add_mlm_head(config, rngs=rngs)

    def __call__(
        self,
        input_ids_BxS,
        input_mask_BxS,
        segment_ids_BxS,
        masked_lm_positions_BxP=None,
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
        output_hidden_states: bool = False,
    ):
        """Returns `mlm_logits` [B, P, V] (or [B, S, V] when `masked_lm_positions_BxP` is None) with the encoder's
        outputs."""
        outputs = self.bert(input_ids_BxS, input_mask_BxS, segment_ids_BxS, deterministic=deterministic, rngs=rngs,
                            output_hidden_states=output_hidden_states)
        return self.add_mlm_logits(outputs, masked_lm_positions_BxP, self.bert.embeddings.word_embeddings.embedding[...])


class BertForPreTraining(BertForMaskedLM):
    """BERT with the masked-LM head and the next-sentence head over the pooled [CLS] state."""

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.bert = BertModel(config, rngs=rngs)
        self._add_mlm_head(config, rngs=rngs)
        self.nsp = heads.next_sentence_head(config, rngs=rngs)

    def __call__(self, *args, **kwargs):
        """Returns `mlm_logits` as `BertForMaskedLM` does and `nsp_logits` [B, 2]."""
        outputs = super().__call__(*args, **kwargs)
        outputs["nsp_logits"] = self.nsp(outputs["pooled_output"])
        return outputs


def classifier_dropout(config) -> float:
    """transformers' rule: `classifier_dropout`, or the hidden dropout when it is None."""
    return config.hidden_dropout_prob if config.classifier_dropout is None else config.classifier_dropout


class BertForSequenceClassification(heads.TaskModel):
    """`classifier` on the pooled [CLS] state (after dropout): `logits` [B, num_labels]."""

    encoder_name = "bert"

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs, outputs: int | None = None):
        self.config = config
        self.bert = BertModel(config, rngs=rngs)
        self.dropout = layers.dropout(config, classifier_dropout(config))
        self.classifier = heads.classifier(config, config.num_labels if outputs is None else outputs, rngs=rngs)

    def head(self, outputs, *, deterministic, rngs):
        return {"logits": self.classifier(self.dropout(outputs["pooled_output"], deterministic=deterministic,
                                                       rngs=rngs))}


class BertForMultipleChoice(BertForSequenceClassification):
    """One score per choice from its pooled [CLS] state: inputs [B, C, S], `logits` [B, C]."""

    choices = True

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        super().__init__(config, rngs=rngs, outputs=1)


class BertForTokenClassification(heads.TokenClassificationModel):
    """`classifier` at every token (after dropout), no pooler: `logits` [B, S, num_labels]."""

    encoder_name = "bert"

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.bert = BertModel(config, rngs=rngs, add_pooling_layer=False)
        self._add_head(config, classifier_dropout(config), rngs=rngs)


class BertForQuestionAnswering(heads.QuestionAnsweringModel):
    """`qa_outputs` at every token, no pooler and no dropout: `start_logits`, `end_logits` [B, S]."""

    encoder_name = "bert"

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.bert = BertModel(config, rngs=rngs, add_pooling_layer=False)
        self._add_head(config, 0.0, rngs=rngs)


# The model for each set of heads an objective reads (objectives name theirs in `Objective.heads`).
MODELS_BY_HEADS = {
    ("mlm", "nsp"): BertForPreTraining,
    ("mlm",): BertForMaskedLM,
    (heads.SEQUENCE_CLASSIFICATION,): BertForSequenceClassification,
    (heads.TOKEN_CLASSIFICATION,): BertForTokenClassification,
    (heads.QUESTION_ANSWERING,): BertForQuestionAnswering,
    (heads.MULTIPLE_CHOICE,): BertForMultipleChoice,
}


def count_parameters(config: BertConfig, model_class=BertForPreTraining) -> int:
    """Parameter count without allocating: shapes only, through `jax.eval_shape`."""
    abstract = nnx.eval_shape(lambda: model_class(config, rngs=nnx.Rngs(0)))
    leaves = jax.tree.leaves(nnx.state(abstract, nnx.Param))
    return sum(math.prod(leaf.shape) for leaf in leaves)
