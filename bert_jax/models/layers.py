"""The building blocks every encoder of the family shares: dense, LayerNorm and embedding layers with logical axis
names, post-LN self-attention, the encoder layer, and the layer stack (unrolled or as a `lax.scan`).

Parameters are stored in `param_dtype` (f32) and cast to the compute `dtype` (e.g. bf16) where they are used, as
t5x does. Every parameter carries logical axis names (`logical_axes` metadata); the training code maps them to mesh
axes, so no model file names a mesh axis.

Shape suffixes: B batch, S sequence, P masked positions, D hidden, N heads, H head dim, F intermediate, V vocab.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from bert_jax.models import speed_levers

# HF `ACT2FN` names with their exact definitions: "gelu" is the erf form, as in the original BERT.
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


def compute_dtype(config):
    return DTYPES[config.dtype]


def storage_dtype(config):
    return DTYPES[config.param_dtype]


def initializer(config):
    # The original BERT draws from tf.truncated_normal_initializer(stddev=initializer_range): a normal with that
    # standard deviation cut at two of them, not rescaled (JAX's truncated_normal does the same).
    return jax.nn.initializers.truncated_normal(stddev=config.initializer_range)


def linear(config, in_features, out_features, axes, *, rngs, in_axes=-1):
    """A dense layer whose kernel and bias carry logical axis names; kernel shape = in_features + out_features."""
    in_features = tuple(in_features) if isinstance(in_features, (tuple, list)) else (in_features,)
    out_features = tuple(out_features) if isinstance(out_features, (tuple, list)) else (out_features,)
    return nnx.LinearGeneral(
        in_features,
        out_features,
        axis=in_axes,
        dtype=compute_dtype(config),
        param_dtype=storage_dtype(config),
        kernel_init=initializer(config),
        kernel_metadata={"logical_axes": axes},
        bias_metadata={"logical_axes": axes[len(in_features) :]},
        rngs=rngs,
    )


def layer_norm(config, axis_name, *, rngs):
    return nnx.LayerNorm(
        config.hidden_size,
        epsilon=config.layer_norm_eps,
        dtype=compute_dtype(config),
        param_dtype=storage_dtype(config),
        scale_metadata={"logical_axes": (axis_name,)},
        bias_metadata={"logical_axes": (axis_name,)},
        rngs=rngs,
    )


def embed(config, num, axes, *, rngs, init=None):
    """An embedding table [num, D]; `init(key, shape, dtype)` replaces the truncated normal (DistilBERT's sines)."""
    return nnx.Embed(
        num,
        config.hidden_size,
        dtype=compute_dtype(config),
        param_dtype=storage_dtype(config),
        embedding_init=init or initializer(config),
        embedding_metadata={"logical_axes": axes},
        rngs=rngs,
    )


def dropout(config, rate: float):
    return speed_levers.make_dropout(rate, config.dropout_impl)


class SelfAttention(nnx.Module):
    """Multi-head self-attention with the padding mask, then the output projection, dropout, residual, LayerNorm."""

    def __init__(self, config, *, rngs: nnx.Rngs, output_dropout: bool = True):
        n, h, d = config.num_attention_heads, config.head_dim, config.hidden_size
        self.config = config
        self.query = linear(config, d, (n, h), ("embed", "heads", "kv"), rngs=rngs)
        self.key = linear(config, d, (n, h), ("embed", "heads", "kv"), rngs=rngs)
        self.value = linear(config, d, (n, h), ("embed", "heads", "kv"), rngs=rngs)
        self.output = linear(config, (n, h), d, ("heads", "kv", "embed"), in_axes=(-2, -1), rngs=rngs)
        self.attention_dropout = dropout(config, config.attention_probs_dropout_prob)
        self.output_dropout = dropout(config, config.hidden_dropout_prob if output_dropout else 0.0)
        self.layer_norm = layer_norm(config, "embed", rngs=rngs)

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
        dtype = compute_dtype(self.config)
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


class EncoderLayer(nnx.Module):
    """One post-LN encoder layer: attention block, then feed-forward block with residual and LayerNorm.

    `attention_output_dropout=False` leaves out the dropout after the attention's output projection, which
    DistilBERT's layer does not have (BERT's and RoBERTa's do); the parameters are the same either way.
    """

    def __init__(self, config, *, rngs: nnx.Rngs, attention_output_dropout: bool = True):
        self.attention = SelfAttention(config, rngs=rngs, output_dropout=attention_output_dropout)
        self.intermediate = linear(config, config.hidden_size, config.intermediate_size, ("embed", "mlp"), rngs=rngs)
        self.output = linear(config, config.intermediate_size, config.hidden_size, ("mlp", "embed"), rngs=rngs)
        self.output_dropout = dropout(config, config.hidden_dropout_prob)
        self.layer_norm = layer_norm(config, "embed", rngs=rngs)
        self.activation = ACTIVATIONS[config.hidden_act]

    def __call__(self, x_BxSxD, mask_Bx1x1xS, *, deterministic, rngs):
        x_BxSxD = self.attention(x_BxSxD, mask_Bx1x1xS, deterministic=deterministic, rngs=rngs)
        h_BxSxF = self.activation(self.intermediate(x_BxSxD))
        out_BxSxD = self.output_dropout(self.output(h_BxSxF), deterministic=deterministic, rngs=rngs)
        return self.layer_norm(out_BxSxD + x_BxSxD)


def run_layers(layers, x_BxSxD, mask_Bx1x1xS, *, scan: bool, deterministic, rngs, output_hidden_states=False):
    """The layer stack over `x`; returns (output, every layer's output or None).

    With `scan`, the layers run as one `lax.scan`, so XLA compiles one layer body instead of L copies. The
    parameters stay one module per layer (the checkpoint, the sharding rules and the Hugging Face mapping do not
    change); they are stacked along a new leading axis here, inside the step. Each layer's dropout key is split from
    one draw, so the masks differ from the unrolled stack's (same distribution); without dropout both compute the
    same function (tested). `output_hidden_states` takes the unrolled loop, which keeps every layer's output.
    """
    if scan and not output_hidden_states:
        graphdef, _ = nnx.split(layers[0])
        stacked_state = jax.tree.map(lambda *leaves: jnp.stack(leaves), *(nnx.state(layer) for layer in layers))
        keys = None
        if not deterministic and rngs is not None:
            keys = jax.random.split(rngs.dropout(), len(layers))

        def layer_step(x, state_and_key):
            state, key = state_and_key
            layer = nnx.merge(graphdef, state)
            layer_rngs = None if key is None else nnx.Rngs(dropout=key)
            return layer(x, mask_Bx1x1xS, deterministic=deterministic, rngs=layer_rngs), None

        x_BxSxD, _ = jax.lax.scan(layer_step, x_BxSxD, (stacked_state, keys))
        return x_BxSxD, None
    hidden_states = [x_BxSxD]
    for layer in layers:
        x_BxSxD = layer(x_BxSxD, mask_Bx1x1xS, deterministic=deterministic, rngs=rngs)
        hidden_states.append(x_BxSxD)
    return x_BxSxD, (tuple(hidden_states) if output_hidden_states else None)


def encode(layers, x_BxSxD, input_mask_BxS, *, scan: bool, deterministic, rngs, output_hidden_states=False) -> dict:
    """The encoder's outputs from its embeddings' output `x` and the padding mask (1 = real token):
    `sequence_output`, and `hidden_states` (the embeddings' output, then each layer's) when asked."""
    mask_Bx1x1xS = input_mask_BxS.astype(jnp.bool_)[:, None, None, :]
    x_BxSxD, hidden_states = run_layers(layers, x_BxSxD, mask_Bx1x1xS, scan=scan, deterministic=deterministic,
                                        rngs=rngs, output_hidden_states=output_hidden_states)
    outputs = {"sequence_output": x_BxSxD}
    if output_hidden_states:
        outputs["hidden_states"] = hidden_states
    return outputs
