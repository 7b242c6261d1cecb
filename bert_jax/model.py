"""Flax NNX BERT with masked-LM and next-sentence heads, the same function as Hugging Face's `BertForPreTraining`.

Parameters are stored in `param_dtype` (f32) and cast to the compute `dtype` (e.g. bf16) where they are used, as
t5x does. Every parameter carries logical axis names (`logical_axes` metadata); `sharding.py` maps them to mesh axes,
so this file never names a mesh axis.

Shape suffixes: B batch, S sequence, P masked positions, D hidden, N heads, H head dim, F intermediate, V vocab.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import nnx

# HF `ACT2FN` names we support, with their exact definitions: "gelu" is the erf form, as in the original BERT.
ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_fast": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "tanh": jnp.tanh,
}

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Model hyper-parameters under Hugging Face `BertConfig` names, plus compute and storage dtypes."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    dtype: str = "float32"  # compute dtype of matmuls and activations
    param_dtype: str = "float32"  # storage dtype of parameters (keep f32 for training)
    scan_layers: bool = False  # run the encoder as a lax.scan over stacked layer weights (compile time; not in HF)

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads})"
            )
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"hidden_act {self.hidden_act!r} is not supported; use one of {sorted(ACTIVATIONS)}")
        for field in ("dtype", "param_dtype"):
            if getattr(self, field) not in DTYPES:
                raise ValueError(f"{field} {getattr(self, field)!r} is not supported; use one of {sorted(DTYPES)}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def compute_dtype(self):
        return DTYPES[self.dtype]

    @property
    def storage_dtype(self):
        return DTYPES[self.param_dtype]

    HF_FIELDS = (
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "hidden_act",
        "hidden_dropout_prob",
        "attention_probs_dropout_prob",
        "max_position_embeddings",
        "type_vocab_size",
        "initializer_range",
        "layer_norm_eps",
    )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "BertConfig":
        """Builds a config from a dict or ConfigDict; unknown keys are an error (they would be silently ignored)."""
        values = dict(values)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model config field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**values)

    def to_hf_dict(self) -> dict[str, Any]:
        """The fields of Hugging Face's `BertConfig` (used for `config.json`)."""
        return {name: getattr(self, name) for name in self.HF_FIELDS}


def _init(config: BertConfig):
    # The original BERT draws from tf.truncated_normal_initializer(stddev=initializer_range): a normal with that
    # standard deviation cut at two of them, not rescaled (JAX's truncated_normal does the same).
    return jax.nn.initializers.truncated_normal(stddev=config.initializer_range)


def _linear(config, in_features, out_features, axes, *, rngs, in_axes=-1):
    """A dense layer whose kernel and bias carry logical axis names; kernel shape = in_features + out_features."""
    in_features = tuple(in_features) if isinstance(in_features, (tuple, list)) else (in_features,)
    out_features = tuple(out_features) if isinstance(out_features, (tuple, list)) else (out_features,)
    return nnx.LinearGeneral(
        in_features,
        out_features,
        axis=in_axes,
        dtype=config.compute_dtype,
        param_dtype=config.storage_dtype,
        kernel_init=_init(config),
        kernel_metadata={"logical_axes": axes},
        bias_metadata={"logical_axes": axes[len(in_features) :]},
        rngs=rngs,
    )


def _layer_norm(config, axis_name, *, rngs):
    return nnx.LayerNorm(
        config.hidden_size,
        epsilon=config.layer_norm_eps,
        dtype=config.compute_dtype,
        param_dtype=config.storage_dtype,
        scale_metadata={"logical_axes": (axis_name,)},
        bias_metadata={"logical_axes": (axis_name,)},
        rngs=rngs,
    )


def _embed(config, num, axes, *, rngs):
    return nnx.Embed(
        num,
        config.hidden_size,
        dtype=config.compute_dtype,
        param_dtype=config.storage_dtype,
        embedding_init=_init(config),
        embedding_metadata={"logical_axes": axes},
        rngs=rngs,
    )


# Dropout masks take 16 random bits per element (four elements per 64-bit threefry block), so the rate is rounded to
# this grid.
_DROPOUT_BITS = 16
_THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


class Dropout(nnx.Module):
    """Inverted dropout whose mask costs about a tenth of `jax.random.bernoulli`'s on CPU.

    Two changes from `nnx.Dropout`: (1) 16 random bits decide an element instead of 32 (the drop probability is
    rounded to a multiple of 2^-16, 0.1 -> 0.100006, and kept elements are scaled by the exact 1 / keep probability,
    so the expected output is the input); (2) the bits come from JAX's own Threefry-2x32 hash (20 rounds,
    checked against `jax.extend.random.threefry_2x32` in the tests) written out round by round, because JAX lowers
    threefry on CPU as a rolled loop that writes every intermediate array to memory, while the unrolled hash fuses
    into the elementwise consumer. Counters are the global element-block index (an iota), so any mesh draws the same
    mask. Measured on the small config's attention probabilities, 2.1M per layer: `bernoulli` 38 ms of CPU, this
    4 ms (docs/bench_train_step.md).
    """

    def __init__(self, rate: float):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"dropout rate must be in [0, 1]; got {rate}")
        self.rate = rate

    def __call__(self, x, *, deterministic: bool, rngs: nnx.Rngs | None):
        if deterministic or self.rate == 0.0:
            return x
        if rngs is None:
            raise ValueError("dropout needs rngs=nnx.Rngs(dropout=key) when deterministic=False")
        threshold = round(self.rate * 2**_DROPOUT_BITS)
        if threshold >= 2**_DROPOUT_BITS:
            return jnp.zeros_like(x)
        keep_mask = dropout_keep_mask(rngs.dropout(), x.shape, threshold)
        return jnp.where(keep_mask, x / (1.0 - threshold / 2**_DROPOUT_BITS), jnp.zeros((), x.dtype))


def threefry2x32(key1, key2, count_hi, count_lo):
    """Threefry-2x32 with 20 rounds (Salmon et al. 2011), exactly as JAX's `threefry_2x32`, unrolled."""
    ks = (key1, key2, key1 ^ key2 ^ jnp.uint32(0x1BD11BDA))
    x0, x1 = count_hi + ks[0], count_lo + ks[1]
    for group in range(5):
        for rotation in _THREEFRY_ROTATIONS[group % 2]:
            x0 = x0 + x1
            x1 = x0 ^ ((x1 << jnp.uint32(rotation)) | (x1 >> jnp.uint32(32 - rotation)))
        x0 = x0 + ks[(group + 1) % 3]
        x1 = x1 + ks[(group + 2) % 3] + jnp.uint32(group + 1)
    return x0, x1


def dropout_keep_mask(key: jax.Array, shape: tuple[int, ...], threshold: int) -> jax.Array:
    """Boolean mask of `shape`, True with probability 1 - threshold / 2^16. Along the last axis, elements 4j .. 4j+3
    take the four 16-bit halves of threefry block j of that row (a bitcast, no copies)."""
    if not shape:
        return dropout_keep_mask(key, (1,), threshold).reshape(())
    key_words = jax.random.key_data(key).reshape(-1)
    if key_words.shape != (2,) or key_words.dtype != jnp.uint32:  # not a threefry key: draw a key pair from it
        key_words = jax.random.bits(key, (2,), jnp.uint32)
    key1, key2 = key_words[0], key_words[1]
    last = shape[-1]
    blocks = (last + 3) // 4
    if math.prod(shape[:-1]) * blocks >= 2**32:
        raise ValueError(f"dropout over {shape} needs more than 2^32 random blocks; split the tensor")
    counters = jax.lax.broadcasted_iota(jnp.uint32, (*shape[:-1], blocks), len(shape) - 1)
    for axis in range(len(shape) - 2, -1, -1):  # row-major global block index
        stride = math.prod(shape[axis + 1 : -1]) * blocks
        counters = counters + jax.lax.broadcasted_iota(jnp.uint32, counters.shape, axis) * jnp.uint32(stride)
    words = jnp.stack(threefry2x32(key1, key2, jnp.zeros_like(counters), counters), axis=-1)
    halves = jax.lax.bitcast_convert_type(words, jnp.uint16).reshape(*shape[:-1], 4 * blocks)
    return halves[..., :last] >= threshold


@jax.custom_vjp
def tied_decoder(h_MxD: jax.Array, embedding_VxD: jax.Array, bias_V: jax.Array) -> jax.Array:
    """MLM output logits `h @ embedding.T + bias` over the vocabulary, for h of shape [..., D].

    The gradient is written out (`_tied_decoder_bwd`) because autodiff's bias gradient, a sum over the rows of the
    [M, V] logits gradient, compiles on XLA:CPU to a YNNPACK reduction that took 150 ms of CPU on the small config's
    [640, 30522], against 5 ms for the same sum as the vector-matrix product `ones @ g` used here."""
    return _tied_decoder_fwd(h_MxD, embedding_VxD, bias_V)[0]


def _tied_decoder_fwd(h, embedding, bias):
    logits = jnp.einsum("...d,vd->...v", h, embedding) + bias
    return logits, (h, embedding)


def _tied_decoder_bwd(residuals, g_MxV):
    h, embedding = residuals
    d, v = h.shape[-1], embedding.shape[0]
    g_2d, h_2d = g_MxV.reshape(-1, v), h.reshape(-1, d)
    grad_h = (g_2d @ embedding).reshape(h.shape).astype(h.dtype)
    grad_embedding = (g_2d.T @ h_2d).astype(embedding.dtype)
    ones = jnp.ones((g_2d.shape[0],), g_2d.dtype)
    grad_bias = jnp.dot(ones, g_2d, preferred_element_type=jnp.float32).astype(g_MxV.dtype)
    return grad_h, grad_embedding, grad_bias


tied_decoder.defvjp(_tied_decoder_fwd, _tied_decoder_bwd)


class BertEmbeddings(nnx.Module):
    """Word + position + token-type embeddings, LayerNorm, dropout."""

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        self.word_embeddings = _embed(config, config.vocab_size, ("vocab", "embed"), rngs=rngs)
        self.position_embeddings = _embed(config, config.max_position_embeddings, ("position", "embed"), rngs=rngs)
        self.token_type_embeddings = _embed(config, config.type_vocab_size, ("token_type", "embed"), rngs=rngs)
        self.layer_norm = _layer_norm(config, "embed", rngs=rngs)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def __call__(self, input_ids_BxS, segment_ids_BxS, *, deterministic, rngs):
        seq_len = input_ids_BxS.shape[1]
        x_BxSxD = (
            self.word_embeddings(input_ids_BxS)
            + self.position_embeddings(jnp.arange(seq_len)[None, :])
            + self.token_type_embeddings(segment_ids_BxS)
        )
        x_BxSxD = self.layer_norm(x_BxSxD)
        return self.dropout(x_BxSxD, deterministic=deterministic, rngs=rngs)


class BertSelfAttention(nnx.Module):
    """Multi-head self-attention with the padding mask, then the output projection, dropout, residual, LayerNorm."""

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        n, h, d = config.num_attention_heads, config.head_dim, config.hidden_size
        self.config = config
        self.query = _linear(config, d, (n, h), ("embed", "heads", "kv"), rngs=rngs)
        self.key = _linear(config, d, (n, h), ("embed", "heads", "kv"), rngs=rngs)
        self.value = _linear(config, d, (n, h), ("embed", "heads", "kv"), rngs=rngs)
        self.output = _linear(config, (n, h), d, ("heads", "kv", "embed"), in_axes=(-2, -1), rngs=rngs)
        self.attention_dropout = Dropout(config.attention_probs_dropout_prob)
        self.output_dropout = Dropout(config.hidden_dropout_prob)
        self.layer_norm = _layer_norm(config, "embed", rngs=rngs)

    def _attend(self, q_BxSxNxH, k_BxSxNxH, v_BxSxNxH, mask_Bx1x1xS, *, deterministic, rngs):
        if deterministic or self.config.attention_probs_dropout_prob == 0.0:
            # No dropout on the probabilities: the fused kernel (cuDNN flash attention on GPU) applies.
            return jax.nn.dot_product_attention(q_BxSxNxH, k_BxSxNxH, v_BxSxNxH, mask=mask_Bx1x1xS)
        # The original drops attention probabilities, which the fused kernel cannot do; spell it out.
        scale = 1.0 / math.sqrt(q_BxSxNxH.shape[-1])
        logits_BxNxSxS = jnp.einsum("bqnh,bknh->bnqk", q_BxSxNxH, k_BxSxNxH).astype(jnp.float32) * scale
        logits_BxNxSxS = jnp.where(mask_Bx1x1xS, logits_BxNxSxS, jnp.finfo(jnp.float32).min)
        probs_BxNxSxS = jax.nn.softmax(logits_BxNxSxS, axis=-1).astype(v_BxSxNxH.dtype)
        probs_BxNxSxS = self.attention_dropout(probs_BxNxSxS, deterministic=False, rngs=rngs)
        return jnp.einsum("bnqk,bknh->bqnh", probs_BxNxSxS, v_BxSxNxH)

    def _project_qkv(self, x_BxSxD):
        """Query, key and value in one matmul against the three kernels stacked at compute time: one [D, 3D] product
        forward and one each for the input and weight gradients, instead of three of each plus two sums of the
        input gradients (the parameters stay three, with their own names)."""
        dtype = self.config.compute_dtype
        projections = (self.query, self.key, self.value)
        kernel_Dx3xNxH = jnp.stack([p.kernel[...] for p in projections], axis=1).astype(dtype)
        bias_3xNxH = jnp.stack([p.bias[...] for p in projections]).astype(dtype)
        qkv_BxSx3xNxH = jnp.einsum("bsd,dtnh->bstnh", x_BxSxD.astype(dtype), kernel_Dx3xNxH) + bias_3xNxH
        return qkv_BxSx3xNxH[:, :, 0], qkv_BxSx3xNxH[:, :, 1], qkv_BxSx3xNxH[:, :, 2]

    def __call__(self, x_BxSxD, mask_Bx1x1xS, *, deterministic, rngs):
        context_BxSxNxH = self._attend(
            *self._project_qkv(x_BxSxD),
            mask_Bx1x1xS,
            deterministic=deterministic,
            rngs=rngs,
        )
        out_BxSxD = self.output_dropout(self.output(context_BxSxNxH), deterministic=deterministic, rngs=rngs)
        return self.layer_norm(out_BxSxD + x_BxSxD)


class BertLayer(nnx.Module):
    """One post-LN encoder layer: attention block, then feed-forward block with residual and LayerNorm."""

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        self.attention = BertSelfAttention(config, rngs=rngs)
        self.intermediate = _linear(config, config.hidden_size, config.intermediate_size, ("embed", "mlp"), rngs=rngs)
        self.output = _linear(config, config.intermediate_size, config.hidden_size, ("mlp", "embed"), rngs=rngs)
        self.output_dropout = Dropout(config.hidden_dropout_prob)
        self.layer_norm = _layer_norm(config, "embed", rngs=rngs)
        self.activation = ACTIVATIONS[config.hidden_act]

    def __call__(self, x_BxSxD, mask_Bx1x1xS, *, deterministic, rngs):
        x_BxSxD = self.attention(x_BxSxD, mask_Bx1x1xS, deterministic=deterministic, rngs=rngs)
        h_BxSxF = self.activation(self.intermediate(x_BxSxD))
        out_BxSxD = self.output_dropout(self.output(h_BxSxF), deterministic=deterministic, rngs=rngs)
        return self.layer_norm(out_BxSxD + x_BxSxD)


class BertModel(nnx.Module):
    """Embeddings, encoder stack and tanh pooler over the first ([CLS]) token."""

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.embeddings = BertEmbeddings(config, rngs=rngs)
        self.layers = nnx.List([BertLayer(config, rngs=rngs) for _ in range(config.num_hidden_layers)])
        self.pooler = _linear(config, config.hidden_size, config.hidden_size, ("embed", "hidden"), rngs=rngs)

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
        mask_Bx1x1xS = input_mask_BxS.astype(jnp.bool_)[:, None, None, :]
        x_BxSxD = self.embeddings(input_ids_BxS, segment_ids_BxS, deterministic=deterministic, rngs=rngs)
        hidden_states = [x_BxSxD]
        if self.config.scan_layers and not output_hidden_states:
            x_BxSxD = self._scan_layers(x_BxSxD, mask_Bx1x1xS, deterministic=deterministic, rngs=rngs)
        else:
            for layer in self.layers:
                x_BxSxD = layer(x_BxSxD, mask_Bx1x1xS, deterministic=deterministic, rngs=rngs)
                hidden_states.append(x_BxSxD)
        pooled_BxD = jnp.tanh(self.pooler(x_BxSxD[:, 0]))
        outputs = {"sequence_output": x_BxSxD, "pooled_output": pooled_BxD}
        if output_hidden_states:
            outputs["hidden_states"] = tuple(hidden_states)
        return outputs

    def _scan_layers(self, x_BxSxD, mask_Bx1x1xS, *, deterministic, rngs):
        """The encoder as one `lax.scan` over the layers, so XLA compiles one layer body instead of L copies.

        The parameters stay one module per layer (the checkpoint, the sharding rules and the Hugging Face mapping
        do not change); they are stacked along a new leading axis here, inside the step. Each layer's dropout key
        is split from one draw, so the masks differ from the unrolled encoder's (same distribution); without
        dropout both compute the same function (tested). `output_hidden_states` takes the unrolled loop, which
        keeps every layer's output."""
        graphdef, _ = nnx.split(self.layers[0])
        stacked_state = jax.tree.map(lambda *leaves: jnp.stack(leaves), *(nnx.state(layer) for layer in self.layers))
        keys = None
        if not deterministic and rngs is not None:
            keys = jax.random.split(rngs.dropout(), len(self.layers))

        def layer_step(x, state_and_key):
            state, key = state_and_key
            layer = nnx.merge(graphdef, state)
            layer_rngs = None if key is None else nnx.Rngs(dropout=key)
            return layer(x, mask_Bx1x1xS, deterministic=deterministic, rngs=layer_rngs), None

        x_BxSxD, _ = jax.lax.scan(layer_step, x_BxSxD, (stacked_state, keys))
        return x_BxSxD


class BertForPreTraining(nnx.Module):
    """BERT with the masked-LM head (decoder tied to the word embeddings) and the next-sentence head."""

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.bert = BertModel(config, rngs=rngs)
        self.mlm_transform = _linear(config, config.hidden_size, config.hidden_size, ("embed", "hidden"), rngs=rngs)
        self.mlm_layer_norm = _layer_norm(config, "hidden", rngs=rngs)
        self.mlm_bias = nnx.Param(
            jnp.zeros((config.vocab_size,), config.storage_dtype), logical_axes=("vocab",)
        )
        self.nsp = _linear(config, config.hidden_size, 2, ("embed", None), rngs=rngs)
        self.activation = ACTIVATIONS[config.hidden_act]

    def mlm_logits(self, x_BxPxD):
        """MLM head at the given hidden states: dense, activation, LayerNorm, tied decoder, output bias."""
        h_BxPxD = self.mlm_layer_norm(self.activation(self.mlm_transform(x_BxPxD)))
        dtype = self.config.compute_dtype
        embedding_VxD = self.bert.embeddings.word_embeddings.embedding[...].astype(dtype)
        return tied_decoder(h_BxPxD.astype(dtype), embedding_VxD, self.mlm_bias[...].astype(dtype))

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
        """Returns `mlm_logits` [B, P, V] (or [B, S, V] when `masked_lm_positions_BxP` is None) and `nsp_logits`."""
        outputs = self.bert(
            input_ids_BxS,
            input_mask_BxS,
            segment_ids_BxS,
            deterministic=deterministic,
            rngs=rngs,
            output_hidden_states=output_hidden_states,
        )
        x_BxSxD = outputs["sequence_output"]
        if masked_lm_positions_BxP is not None:
            # Only the P gathered positions go through the vocabulary projection, as in the original.
            x_BxSxD = jnp.take_along_axis(x_BxSxD, masked_lm_positions_BxP[..., None].astype(jnp.int32), axis=1)
        outputs["mlm_logits"] = self.mlm_logits(x_BxSxD)
        outputs["nsp_logits"] = self.nsp(outputs["pooled_output"])
        return outputs


def count_parameters(config: BertConfig) -> int:
    """Parameter count without allocating: shapes only, through `jax.eval_shape`."""
    abstract = nnx.eval_shape(lambda: BertForPreTraining(config, rngs=nnx.Rngs(0)))
    leaves = jax.tree.leaves(nnx.state(abstract, nnx.Param))
    return sum(math.prod(leaf.shape) for leaf in leaves)
