"""Our parameter paths <-> Hugging Face state-dict names, one table per architecture (and its heads), with the array
transform both ways. The only place that knows how Hugging Face spells a weight.

Our attention kernels keep heads as their own axis ([D, N, H] and [N, H, D]) so they can be sharded over heads; HF
stores every dense layer as [out, in]. BERT and RoBERTa share the encoder's table under their own prefixes;
DistilBERT's has other names for the same modules (`EncoderLayout`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class Entry:
    ours: tuple  # path in nnx.state(model, nnx.Param)
    hf: str  # Hugging Face state-dict name
    to_hf: Callable[[np.ndarray], np.ndarray]
    from_hf: Callable[[np.ndarray], np.ndarray]


def _same(x):
    return x


def dense(ours, hf) -> list[Entry]:  # our [in, out] kernel <-> HF [out, in] weight
    return [Entry(ours + ("kernel",), hf + ".weight", lambda x: x.T, lambda x: x.T),
            Entry(ours + ("bias",), hf + ".bias", _same, _same)]


def layer_norm(ours, hf) -> list[Entry]:
    return [Entry(ours + ("scale",), hf + ".weight", _same, _same),
            Entry(ours + ("bias",), hf + ".bias", _same, _same)]


@dataclasses.dataclass(frozen=True)
class EncoderLayout:
    """How Hugging Face spells an encoder's weights below the model's prefix: the embedding tables (ours have the
    same names), where the layers are, and each layer's modules (ours are the same `layers.EncoderLayer` in all)."""

    embeddings: tuple[str, ...]
    layers: str
    query: str
    key: str
    value: str
    attention_output: str
    attention_layer_norm: str
    intermediate: str
    output: str
    layer_norm: str


BERT_LAYOUT = EncoderLayout(
    embeddings=("word_embeddings", "position_embeddings", "token_type_embeddings"), layers="encoder.layer",
    query="attention.self.query", key="attention.self.key", value="attention.self.value",
    attention_output="attention.output.dense", attention_layer_norm="attention.output.LayerNorm",
    intermediate="intermediate.dense", output="output.dense", layer_norm="output.LayerNorm",
)
DISTILBERT_LAYOUT = EncoderLayout(
    embeddings=("word_embeddings", "position_embeddings"), layers="transformer.layer",
    query="attention.q_lin", key="attention.k_lin", value="attention.v_lin", attention_output="attention.out_lin",
    attention_layer_norm="sa_layer_norm", intermediate="ffn.lin1", output="ffn.lin2", layer_norm="output_layer_norm",
)


def encoder(config, ours_prefix: str, hf_prefix: str, layout: EncoderLayout = BERT_LAYOUT) -> list[Entry]:
    """Embeddings and encoder layers under `ours_prefix` / `hf_prefix` ("bert", "roberta", "distilbert")."""
    d, n, h = config.hidden_size, config.num_attention_heads, config.head_dim

    def heads_in(ours, hf):  # our [D, N, H] <-> HF [N*H, D]
        return [
            Entry(ours + ("kernel",), hf + ".weight", lambda x: x.reshape(d, n * h).T, lambda x: x.T.reshape(d, n, h)),
            Entry(ours + ("bias",), hf + ".bias", lambda x: x.reshape(n * h), lambda x: x.reshape(n, h)),
        ]

    def heads_out(ours, hf):  # our [N, H, D] <-> HF [D, N*H]
        return [
            Entry(ours + ("kernel",), hf + ".weight", lambda x: x.reshape(n * h, d).T, lambda x: x.T.reshape(n, h, d)),
            Entry(ours + ("bias",), hf + ".bias", _same, _same),
        ]

    emb, hf_emb = (ours_prefix, "embeddings"), f"{hf_prefix}.embeddings"
    entries = [Entry(emb + (table, "embedding"), f"{hf_emb}.{table}.weight", _same, _same)
               for table in layout.embeddings]
    entries += layer_norm(emb + ("layer_norm",), f"{hf_emb}.LayerNorm")
    for i in range(config.num_hidden_layers):
        ours, hf = (ours_prefix, "layers", i), f"{hf_prefix}.{layout.layers}.{i}."
        entries += [
            *heads_in(ours + ("attention", "query"), hf + layout.query),
            *heads_in(ours + ("attention", "key"), hf + layout.key),
            *heads_in(ours + ("attention", "value"), hf + layout.value),
            *heads_out(ours + ("attention", "output"), hf + layout.attention_output),
            *layer_norm(ours + ("attention", "layer_norm"), hf + layout.attention_layer_norm),
            *dense(ours + ("intermediate",), hf + layout.intermediate),
            *dense(ours + ("output",), hf + layout.output),
            *layer_norm(ours + ("layer_norm",), hf + layout.layer_norm),
        ]
    return entries


def _tf_layer_norm_names(key: str) -> str:
    # TF-era checkpoints name LayerNorm parameters gamma/beta; transformers renames them the same way.
    if key.endswith(".gamma"):
        return key[: -len(".gamma")] + ".weight"
    if key.endswith(".beta"):
        return key[: -len(".beta")] + ".bias"
    return key


@dataclasses.dataclass(frozen=True)
class Architecture:
    """What Hugging Face calls an architecture's weights and config fields."""

    model_type: str
    prefix: str  # the encoder's prefix in HF names ("bert." in BertForPreTraining)
    entries: Callable[[Any], list[Entry]]  # every weight of the largest head set; a model uses those it has
    heads: dict[str, str]  # HF name prefix -> head, for the "freshly initialised" report
    ignored: tuple[str, ...]  # buffers and tied duplicates that checkpoints carry
    renames: dict[str, str]  # names some classes or versions use -> ours
    config_extra: dict[str, Any]  # config.json fields beyond the config's own
    bare_roots: tuple[str, ...] = ("embeddings.", "encoder.", "pooler.")  # the bare encoder class's, unprefixed
    tokenizer_class: str = "BertTokenizer"  # tokenizer_config.json's for a WordPiece vocab

    def canonical(self, key: str) -> str:
        """A checkpoint key as the largest model class spells it, whatever class or era wrote it."""
        if key.startswith(self.bare_roots):  # the bare encoder class has no prefix
            key = f"{self.prefix}.{key}"
        key = _tf_layer_norm_names(key)
        return self.renames.get(key, key)


# The fine-tuning heads' layers, spelled the same in ours and in transformers (`classifier` of the sequence, token and
# multiple-choice models; `qa_outputs` of question answering). A model uses the entries of the layers it has.
TASK_HEADS = (("classifier",), ("qa_outputs",))
TASK_HEAD_NAMES = {"classifier.": "classification head", "qa_outputs.": "question-answering head"}


def _task_heads(*extra: tuple[str, ...]) -> list[Entry]:
    return [entry for path in (*TASK_HEADS, *extra) for entry in dense(path, ".".join(path))]


def _bert_entries(config) -> list[Entry]:
    return [
        *encoder(config, "bert", "bert"),
        *dense(("bert", "pooler"), "bert.pooler.dense"),
        *dense(("mlm_transform",), "cls.predictions.transform.dense"),
        *layer_norm(("mlm_layer_norm",), "cls.predictions.transform.LayerNorm"),
        Entry(("mlm_bias",), "cls.predictions.bias", _same, _same),
        *dense(("nsp",), "cls.seq_relationship"),
        *_task_heads(),
    ]


def _roberta_entries(config) -> list[Entry]:
    return [
        *encoder(config, "roberta", "roberta"),
        *dense(("roberta", "pooler"), "roberta.pooler.dense"),  # multiple choice's only
        *dense(("mlm_transform",), "lm_head.dense"),
        *layer_norm(("mlm_layer_norm",), "lm_head.layer_norm"),
        Entry(("mlm_bias",), "lm_head.bias", _same, _same),
        *_task_heads(("classifier", "dense"), ("classifier", "out_proj")),  # sequence classification's head
    ]


def _distilbert_entries(config) -> list[Entry]:
    return [
        *encoder(config, "distilbert", "distilbert", DISTILBERT_LAYOUT),
        *dense(("mlm_transform",), "vocab_transform"),
        *layer_norm(("mlm_layer_norm",), "vocab_layer_norm"),
        Entry(("mlm_bias",), "vocab_projector.bias", _same, _same),
        *_task_heads(("pre_classifier",)),
    ]


ARCHITECTURES = {
    "bert": Architecture(
        model_type="bert", prefix="bert", entries=_bert_entries,
        heads={"bert.pooler.": "pooler", "cls.predictions.": "MLM head", "cls.seq_relationship.": "NSP head",
               **TASK_HEAD_NAMES},
        ignored=("embeddings.position_ids", "cls.predictions.decoder.weight"),
        renames={"cls.predictions.decoder.bias": "cls.predictions.bias"},  # tied to the head's bias
        config_extra={"pad_token_id": 0, "position_embedding_type": "absolute"},
    ),
    "roberta": Architecture(
        model_type="roberta", prefix="roberta", entries=_roberta_entries,
        heads={"lm_head.": "MLM head", "roberta.pooler.": "pooler", **TASK_HEAD_NAMES},
        ignored=("embeddings.position_ids", "embeddings.token_type_ids", "lm_head.decoder.weight"),
        renames={"lm_head.decoder.bias": "lm_head.bias"},
        config_extra={"position_embedding_type": "absolute"},
    ),
    "distilbert": Architecture(
        model_type="distilbert", prefix="distilbert", entries=_distilbert_entries,
        heads={"vocab_transform.": "MLM head", "vocab_layer_norm.": "MLM head", "vocab_projector.": "MLM head",
               "pre_classifier.": "classification head", **TASK_HEAD_NAMES},
        ignored=("embeddings.position_ids", "vocab_projector.weight"),  # a buffer; the decoder tied to the embeddings
        renames={},
        config_extra={},
        bare_roots=("embeddings.", "transformer."),
        # Its tokenizer is BERT's WordPiece, but DistilBertTokenizer gives no token_type_ids, which
        # DistilBertForMaskedLM does not take (`model(**tokenizer(text))` must work).
        tokenizer_class="DistilBertTokenizer",
    ),
}
