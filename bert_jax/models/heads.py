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


# ------------------------------------------------------------------------------------------- fine-tuning heads

# The fine-tuning heads, as an objective names them in `Objective.heads` (one per model class, as transformers'
# `*ForSequenceClassification`, `*ForTokenClassification`, `*ForQuestionAnswering`, `*ForMultipleChoice`).
SEQUENCE_CLASSIFICATION = "sequence_classification"
TOKEN_CLASSIFICATION = "token_classification"
QUESTION_ANSWERING = "question_answering"
MULTIPLE_CHOICE = "multiple_choice"


def classifier(config, outputs: int, *, rngs: nnx.Rngs) -> nnx.Module:
    """A task's output layer: hidden state -> `outputs` logits."""
    return layers.linear(config, config.hidden_size, outputs, ("embed", None), rngs=rngs)


def square_dense(config, *, rngs: nnx.Rngs) -> nnx.Module:
    """A hidden -> hidden dense layer (RoBERTa's classification `dense`, DistilBERT's `pre_classifier`)."""
    return layers.linear(config, config.hidden_size, config.hidden_size, ("embed", "hidden"), rngs=rngs)


class TaskModel(nnx.Module):
    """An encoder with one fine-tuning head. Subclasses build the encoder under `encoder_name` (Hugging Face's base
    model prefix: `bert`, `roberta`, `distilbert`) and the head's layers, and define `head(outputs, deterministic,
    rngs) -> dict` (`logits`, or `start_logits` and `end_logits`).

    Multiple-choice models (`choices = True`) take inputs of shape [B, C, S], run the encoder on the B*C sequences
    and return `logits` [B, C], one score per choice, as transformers does.
    """

    encoder_name: str
    choices: bool = False

    def __call__(self, input_ids, input_mask, segment_ids=None, *, deterministic: bool = True,
                 rngs: nnx.Rngs | None = None, output_hidden_states: bool = False):
        leading = input_ids.shape[:-1]
        if segment_ids is None:
            segment_ids = jnp.zeros_like(input_ids)
        if self.choices:  # [B, C, S] -> [B*C, S]
            input_ids, input_mask, segment_ids = (x.reshape(-1, x.shape[-1])
                                                  for x in (input_ids, input_mask, segment_ids))
        outputs = getattr(self, self.encoder_name)(input_ids, input_mask, segment_ids, deterministic=deterministic,
                                                   rngs=rngs, output_hidden_states=output_hidden_states)
        outputs.update(self.head(outputs, deterministic=deterministic, rngs=rngs))
        if self.choices:
            outputs["logits"] = outputs["logits"].reshape(leading)
        return outputs


class TokenClassificationModel(TaskModel):
    """Dropout and `classifier` at every token: `logits` [B, S, num_labels]. Subclasses build the encoder and call
    `_add_head` with their architecture's dropout rate."""

    def _add_head(self, config, dropout_rate: float, *, rngs: nnx.Rngs) -> None:
        self.dropout = layers.dropout(config, dropout_rate)
        self.classifier = classifier(config, config.num_labels, rngs=rngs)

    def head(self, outputs, *, deterministic, rngs):
        x_BxSxD = self.dropout(outputs["sequence_output"], deterministic=deterministic, rngs=rngs)
        return {"logits": self.classifier(x_BxSxD)}


class QuestionAnsweringModel(TaskModel):
    """Dropout (none in BERT and RoBERTa) and `qa_outputs` at every token: the answer's start and end scores,
    `start_logits` and `end_logits` [B, S]. transformers sizes `qa_outputs` by `num_labels`, which must be 2."""

    def _add_head(self, config, dropout_rate: float, *, rngs: nnx.Rngs) -> None:
        if config.num_labels != 2:
            raise ValueError(f"a question-answering head has 2 outputs (answer start and end) but num_labels is "
                             f"{config.num_labels}; set num_labels=2")
        self.dropout = layers.dropout(config, dropout_rate)
        self.qa_outputs = classifier(config, 2, rngs=rngs)

    def head(self, outputs, *, deterministic, rngs):
        x_BxSxD = self.dropout(outputs["sequence_output"], deterministic=deterministic, rngs=rngs)
        logits_BxSx2 = self.qa_outputs(x_BxSxD)
        return {"start_logits": logits_BxSx2[..., 0], "end_logits": logits_BxSx2[..., 1]}
