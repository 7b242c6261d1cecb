"""The ONNX graph of an encoder of the family, built node by node from our parameters (no tracing, no PyTorch).

Every architecture is embeddings (its own) + the same post-LN encoder layers; a task adds its head on the encoder's
output (`onnx_tasks.py`). The graph computes what our Flax model computes, in float32, with the operators ONNX
Runtime runs natively: Gather for embeddings, LayerNormalization (opset 17+), MatMul/Add, attention spelled out with
Reshape/Transpose/Softmax over the dynamic batch and sequence axes, erf-based GELU, the tied MLM decoder as a MatMul
with the transposed word-embedding table (one copy of the table in the file).

Inputs and outputs carry optimum's names and axis names, so a model exported here is a drop-in replacement for
`optimum.exporters.onnx`'s. Shape suffixes: B batch, S sequence, D hidden, N heads, H head dim.
"""

from __future__ import annotations

import collections
import math
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 18  # optimum's default; LayerNormalization needs 17
BATCH_AXIS, SEQUENCE_AXIS = "batch_size", "sequence_length"  # optimum's names for the dynamic axes
CHOICES_AXIS = "num_choices"  # multiple choice's inputs are [batch_size, num_choices, sequence_length]
# Every architecture's inputs, as optimum names them: RoBERTa and DistilBERT take no token types.
INPUTS = {
    "bert": ("input_ids", "attention_mask", "token_type_ids"),
    "roberta": ("input_ids", "attention_mask"),
    "distilbert": ("input_ids", "attention_mask"),
}


class GraphBuilder:
    """Collects nodes and initializers; every op returns the name of its (first) output."""

    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._counts = collections.Counter()

    def fresh(self, hint: str) -> str:
        self._counts[hint] += 1
        return f"{hint}_{self._counts[hint]}"

    def weight(self, name: str, array: np.ndarray) -> str:
        """A named initializer (float tensors stored as float32)."""
        array = np.asarray(array)
        if np.issubdtype(array.dtype, np.floating):
            array = array.astype(np.float32)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def const(self, value, dtype=np.float32) -> str:
        return self.weight(self.fresh("const"), np.asarray(value, dtype))

    def scalar_index(self, i: int) -> str:
        """A 0-d int64 index: Gather with it drops the axis (`weight` stores arrays as at least 1-d)."""
        name = self.fresh("index")
        self.initializers.append(numpy_helper.from_array(np.array(i, np.int64), name))
        return name

    def op(self, op_type: str, *inputs: str, **attributes) -> str:
        output = self.fresh(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], name=output, **attributes))
        return output

    def rename(self, tensor: str, name: str) -> str:
        """Gives `tensor` the public name `name` (a graph output's)."""
        self.nodes.append(helper.make_node("Identity", [tensor], [name], name=f"{name}_output"))
        return name

    def model(self, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto], doc: str,
              metadata: dict[str, str]) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "bert_jax", inputs, outputs, self.initializers, doc_string=doc)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="bert_jax")
        helper.set_model_props(model, metadata)
        return model


# ------------------------------------------------------------------------------------------------ building blocks


def dense(g: GraphBuilder, x: str, params, path: tuple, kernel_2d: Callable[[np.ndarray], np.ndarray] = None) -> str:
    """x @ kernel + bias; `kernel_2d` flattens our multi-axis kernels ([D, N, H], [N, H, D]) to [in, out]."""
    kernel, bias = params(*path, "kernel"), params(*path, "bias")
    if kernel_2d is not None:
        kernel = kernel_2d(kernel)
    name = ".".join(map(str, path))
    return g.op("Add", g.op("MatMul", x, g.weight(f"{name}.kernel", kernel)),
                g.weight(f"{name}.bias", bias.reshape(-1)))


def layer_norm(g: GraphBuilder, x: str, params, path: tuple, epsilon: float) -> str:
    name = ".".join(map(str, path))
    return g.op("LayerNormalization", x, g.weight(f"{name}.scale", params(*path, "scale")),
                g.weight(f"{name}.bias", params(*path, "bias")), axis=-1, epsilon=float(epsilon))


def _gelu_erf(g: GraphBuilder, x: str) -> str:
    # 0.5 x (1 + erf(x / sqrt 2)), in the order ONNX Runtime's Gelu fusion recognises.
    erf = g.op("Erf", g.op("Div", x, g.const(math.sqrt(2.0))))
    return g.op("Mul", g.op("Mul", x, g.op("Add", erf, g.const(1.0))), g.const(0.5))


def _gelu_tanh(g: GraphBuilder, x: str) -> str:
    # 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), jax.nn.gelu(approximate=True).
    cube = g.op("Mul", g.op("Mul", x, x), x)
    inner = g.op("Mul", g.op("Add", x, g.op("Mul", cube, g.const(0.044715))), g.const(math.sqrt(2.0 / math.pi)))
    return g.op("Mul", g.op("Mul", x, g.op("Add", g.op("Tanh", inner), g.const(1.0))), g.const(0.5))


# HF `ACT2FN` names, as `models/layers.py` defines them.
ACTIVATIONS = {
    "gelu": _gelu_erf,
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "gelu_fast": _gelu_tanh,
    "relu": lambda g, x: g.op("Relu", x),
    "silu": lambda g, x: g.op("Mul", x, g.op("Sigmoid", x)),
    "swish": lambda g, x: g.op("Mul", x, g.op("Sigmoid", x)),
    "tanh": lambda g, x: g.op("Tanh", x),
}


def attention_bias(g: GraphBuilder, attention_mask: str) -> str:
    """[B, 1, 1, S]: 0 where a key is a real token, the lowest float32 where it is padding (added to the scores, so
    padding keys get probability 0 exactly, as our boolean mask gives)."""
    # Unsqueeze twice, Cast, Sub, Mul: transformers' graph, which ONNX Runtime's attention fusion matches.
    mask = g.op("Unsqueeze", g.op("Unsqueeze", attention_mask, g.const([1], np.int64)), g.const([2], np.int64))
    mask = g.op("Cast", mask, to=TensorProto.FLOAT)
    return g.op("Mul", g.op("Sub", g.const(1.0), mask), g.const(np.finfo(np.float32).min))


def self_attention(g: GraphBuilder, x_BxSxD: str, bias_Bx1x1xS: str, params, path: tuple, config) -> str:
    n, h, d = config.num_attention_heads, config.head_dim, config.hidden_size
    heads_shape = g.const([0, 0, n, h], np.int64)  # Reshape's 0 keeps the (dynamic) batch and sequence sizes

    def project(name: str, perm: list[int]) -> str:
        x = dense(g, x_BxSxD, params, path + (name,), lambda k: k.reshape(d, n * h))
        return g.op("Transpose", g.op("Reshape", x, heads_shape), perm=perm)

    q_BxNxSxH = project("query", [0, 2, 1, 3])
    k_BxNxHxS = project("key", [0, 2, 3, 1])
    v_BxNxSxH = project("value", [0, 2, 1, 3])
    scores = g.op("Div", g.op("MatMul", q_BxNxSxH, k_BxNxHxS), g.const(math.sqrt(h)))
    probs = g.op("Softmax", g.op("Add", scores, bias_Bx1x1xS), axis=-1)
    context_BxSxNxH = g.op("Transpose", g.op("MatMul", probs, v_BxNxSxH), perm=[0, 2, 1, 3])
    context_BxSxD = g.op("Reshape", context_BxSxNxH, g.const([0, 0, n * h], np.int64))
    out = dense(g, context_BxSxD, params, path + ("output",), lambda k: k.reshape(n * h, d))
    return layer_norm(g, g.op("Add", out, x_BxSxD), params, path + ("layer_norm",), config.layer_norm_eps)


def encoder_layer(g: GraphBuilder, x: str, bias: str, params, path: tuple, config) -> str:
    x = self_attention(g, x, bias, params, path + ("attention",), config)
    h = ACTIVATIONS[config.hidden_act](g, dense(g, x, params, path + ("intermediate",)))
    out = dense(g, h, params, path + ("output",))
    return layer_norm(g, g.op("Add", out, x), params, path + ("layer_norm",), config.layer_norm_eps)


# ------------------------------------------------------------------------------------------------- embeddings


def _table(g: GraphBuilder, params, prefix: str, name: str) -> str:
    """An embedding table of the encoder as an initializer, e.g. `bert.embeddings.word_embeddings`."""
    return g.weight(f"{prefix}.embeddings.{name}", params(prefix, "embeddings", name, "embedding"))


def _leading_positions(g: GraphBuilder, table: str, input_ids: str) -> str:
    """Rows 0 .. S-1 of a position table: [S, D], broadcast over the batch."""
    seq_len = g.op("Shape", input_ids, start=1, end=2)
    return g.op("Slice", table, g.const([0], np.int64), seq_len, g.const([0], np.int64))


def _bert_embeddings(g: GraphBuilder, inputs: dict[str, str], params, prefix: str, config) -> str:
    ids = inputs["input_ids"]
    x = g.op("Add", g.op("Gather", _table(g, params, prefix, "word_embeddings"), ids),
             _leading_positions(g, _table(g, params, prefix, "position_embeddings"), ids))
    return g.op("Add", x, g.op("Gather", _table(g, params, prefix, "token_type_embeddings"), inputs["token_type_ids"]))


def _roberta_embeddings(g: GraphBuilder, inputs: dict[str, str], params, prefix: str, config) -> str:
    # Position ids count the non-padding tokens from pad_token_id + 1 (fairseq's make_positions); one token type.
    ids = inputs["input_ids"]
    real = g.op("Cast", g.op("Not", g.op("Equal", ids, g.const(config.pad_token_id, np.int64))), to=TensorProto.INT64)
    positions = g.op("Add", g.op("Mul", g.op("CumSum", real, g.const(1, np.int64)), real),
                     g.const(config.pad_token_id, np.int64))
    token_type_0 = g.weight(f"{prefix}.embeddings.token_type_embeddings.0",
                            params(prefix, "embeddings", "token_type_embeddings", "embedding")[0])
    x = g.op("Add", g.op("Gather", _table(g, params, prefix, "word_embeddings"), ids), token_type_0)
    return g.op("Add", x, g.op("Gather", _table(g, params, prefix, "position_embeddings"), positions))


def _distilbert_embeddings(g: GraphBuilder, inputs: dict[str, str], params, prefix: str, config) -> str:
    ids = inputs["input_ids"]
    return g.op("Add", g.op("Gather", _table(g, params, prefix, "word_embeddings"), ids),
                _leading_positions(g, _table(g, params, prefix, "position_embeddings"), ids))


EMBEDDINGS = {"bert": _bert_embeddings, "roberta": _roberta_embeddings, "distilbert": _distilbert_embeddings}


def word_embedding_name(prefix: str) -> str:
    """The initializer of the word-embedding table (the MLM decoder is tied to it)."""
    return f"{prefix}.embeddings.word_embeddings"


def encoder(g: GraphBuilder, inputs: dict[str, str], params, prefix: str, config) -> str:
    """The encoder's output [B, S, D] (`sequence_output`): embeddings, LayerNorm, the layers."""
    x = EMBEDDINGS[config.model_type](g, inputs, params, prefix, config)
    x = layer_norm(g, x, params, (prefix, "embeddings", "layer_norm"), config.layer_norm_eps)
    bias = attention_bias(g, inputs["attention_mask"])
    for i in range(config.num_hidden_layers):
        x = encoder_layer(g, x, bias, params, (prefix, "layers", i), config)
    return x


def mlm_logits(g: GraphBuilder, x_BxSxD: str, params, prefix: str, config) -> str:
    """The masked-LM head: dense, activation, LayerNorm, the decoder tied to the word embeddings, the output bias."""
    h = ACTIVATIONS[config.hidden_act](g, dense(g, x_BxSxD, params, ("mlm_transform",)))
    h = layer_norm(g, h, params, ("mlm_layer_norm",), config.layer_norm_eps)
    decoder_DxV = g.op("Transpose", word_embedding_name(prefix), perm=[1, 0])  # folded once when a session loads
    return g.op("Add", g.op("MatMul", h, decoder_DxV), g.weight("mlm_bias", params("mlm_bias")))


# ------------------------------------------------------------------------------------------- fine-tuning heads
# What `models/heads.py` and the architectures' task models compute at inference (dropout is the identity there).


def first_token(g: GraphBuilder, x_BxSxD: str) -> str:
    """[B, D]: the [CLS] (<s>) state."""
    return g.op("Gather", x_BxSxD, g.scalar_index(0), axis=1)


def _bert_pooled_classifier(g: GraphBuilder, x_BxSxD: str, params, prefix: str, config) -> str:
    # BertForSequenceClassification, BertForMultipleChoice, RobertaForMultipleChoice: the tanh pooler, `classifier`.
    pooled_BxD = g.op("Tanh", dense(g, first_token(g, x_BxSxD), params, (prefix, "pooler")))
    return dense(g, pooled_BxD, params, ("classifier",))


def _roberta_classifier(g: GraphBuilder, x_BxSxD: str, params, prefix: str, config) -> str:
    # RobertaClassificationHead on <s>: dense, tanh, out_proj.
    h_BxD = g.op("Tanh", dense(g, first_token(g, x_BxSxD), params, ("classifier", "dense")))
    return dense(g, h_BxD, params, ("classifier", "out_proj"))


def _distilbert_classifier(g: GraphBuilder, x_BxSxD: str, params, prefix: str, config) -> str:
    # DistilBertForSequenceClassification and ForMultipleChoice on [CLS]: pre_classifier, ReLU, classifier.
    h_BxD = g.op("Relu", dense(g, first_token(g, x_BxSxD), params, ("pre_classifier",)))
    return dense(g, h_BxD, params, ("classifier",))


# model type -> (g, encoder output, params, prefix, config) -> logits [B, outputs], for each sequence-level head.
SEQUENCE_CLASSIFIERS = {"bert": _bert_pooled_classifier, "roberta": _roberta_classifier,
                        "distilbert": _distilbert_classifier}
MULTIPLE_CHOICE_CLASSIFIERS = {"bert": _bert_pooled_classifier, "roberta": _bert_pooled_classifier,
                               "distilbert": _distilbert_classifier}


def question_answering_logits(g: GraphBuilder, x_BxSxD: str, params) -> tuple[str, str]:
    """`qa_outputs` at every token, split into the start and end scores [B, S]."""
    logits_BxSx2 = dense(g, x_BxSxD, params, ("qa_outputs",))
    return tuple(g.op("Gather", logits_BxSx2, g.scalar_index(i), axis=2) for i in (0, 1))


def flatten_choices(g: GraphBuilder, inputs: dict[str, str]) -> dict[str, str]:
    """[B, C, S] inputs -> [B*C, S]: every choice is one sequence of the encoder's batch."""
    return {name: g.op("Flatten", tensor, axis=2) for name, tensor in inputs.items()}


def unflatten_choices(g: GraphBuilder, logits_BCx1: str, input_ids_BxCxS: str) -> str:
    """[B*C, 1] -> [B, C]: one score per choice."""
    return g.op("Reshape", logits_BCx1, g.op("Shape", input_ids_BxCxS, start=0, end=2))


def tensor_info(name: str, elem_type: int, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, shape)


def input_infos(model_type: str, choices: bool = False) -> list[onnx.ValueInfoProto]:
    """The int64 inputs with optimum's dynamic axes; with `choices`, multiple choice's [batch, choices, sequence]."""
    shape = [BATCH_AXIS, CHOICES_AXIS, SEQUENCE_AXIS] if choices else [BATCH_AXIS, SEQUENCE_AXIS]
    return [tensor_info(name, TensorProto.INT64, shape) for name in INPUTS[model_type]]
