"""Our parameter paths <-> Hugging Face state-dict names, one table per architecture (and its heads), with the array
transform both ways. The only place that knows how Hugging Face spells a weight.

Our attention kernels keep heads as their own axis ([D, N, H] and [N, H, D]) so they can be sharded over heads; HF
stores every dense layer as [out, in]. BERT and RoBERTa share the encoder's table under their own prefixes.
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


def encoder(config, ours_prefix: str, hf_prefix: str) -> list[Entry]:
    """Embeddings and encoder layers of BERT's layout under `ours_prefix` / `hf_prefix` ("bert", "roberta")."""
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
    entries = [
        Entry(emb + ("word_embeddings", "embedding"), f"{hf_emb}.word_embeddings.weight", _same, _same),
        Entry(emb + ("position_embeddings", "embedding"), f"{hf_emb}.position_embeddings.weight", _same, _same),
        Entry(emb + ("token_type_embeddings", "embedding"), f"{hf_emb}.token_type_embeddings.weight", _same, _same),
        *layer_norm(emb + ("layer_norm",), f"{hf_emb}.LayerNorm"),
    ]
    for i in range(config.num_hidden_layers):
        ours, hf = (ours_prefix, "layers", i), f"{hf_prefix}.encoder.layer.{i}"
        entries += [
            *heads_in(ours + ("attention", "query"), hf + ".attention.self.query"),
            *heads_in(ours + ("attention", "key"), hf + ".attention.self.key"),
            *heads_in(ours + ("attention", "value"), hf + ".attention.self.value"),
            *heads_out(ours + ("attention", "output"), hf + ".attention.output.dense"),
            *layer_norm(ours + ("attention", "layer_norm"), hf + ".attention.output.LayerNorm"),
            *dense(ours + ("intermediate",), hf + ".intermediate.dense"),
            *dense(ours + ("output",), hf + ".output.dense"),
            *layer_norm(ours + ("layer_norm",), hf + ".output.LayerNorm"),
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

    def canonical(self, key: str) -> str:
        """A checkpoint key as the largest model class spells it, whatever class or era wrote it."""
        if key.startswith(("embeddings.", "encoder.", "pooler.")):  # the bare encoder class has no prefix
            key = f"{self.prefix}.{key}"
        key = _tf_layer_norm_names(key)
        return self.renames.get(key, key)


def _bert_entries(config) -> list[Entry]:
    return [
        *encoder(config, "bert", "bert"),
        *dense(("bert", "pooler"), "bert.pooler.dense"),
        *dense(("mlm_transform",), "cls.predictions.transform.dense"),
        *layer_norm(("mlm_layer_norm",), "cls.predictions.transform.LayerNorm"),
        Entry(("mlm_bias",), "cls.predictions.bias", _same, _same),
        *dense(("nsp",), "cls.seq_relationship"),
    ]


def _roberta_entries(config) -> list[Entry]:
    return [
        *encoder(config, "roberta", "roberta"),
        *dense(("mlm_transform",), "lm_head.dense"),
        *layer_norm(("mlm_layer_norm",), "lm_head.layer_norm"),
        Entry(("mlm_bias",), "lm_head.bias", _same, _same),
    ]


ARCHITECTURES = {
    "bert": Architecture(
        model_type="bert", prefix="bert", entries=_bert_entries,
        heads={"bert.pooler.": "pooler", "cls.predictions.": "MLM head", "cls.seq_relationship.": "NSP head"},
        ignored=("embeddings.position_ids", "cls.predictions.decoder.weight"),
        renames={"cls.predictions.decoder.bias": "cls.predictions.bias"},  # tied to the head's bias
        config_extra={"pad_token_id": 0, "position_embedding_type": "absolute"},
    ),
    "roberta": Architecture(
        model_type="roberta", prefix="roberta", entries=_roberta_entries,
        heads={"lm_head.": "MLM head"},
        ignored=("embeddings.position_ids", "embeddings.token_type_ids", "lm_head.decoder.weight"),
        renames={"lm_head.decoder.bias": "lm_head.bias"},
        config_extra={"position_embedding_type": "absolute"},
    ),
}
