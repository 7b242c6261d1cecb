"""CPU speed levers, kept out of the model definitions and chosen by config (`model.dropout_impl`,
`model.decoder_impl`): each is the same function as the stock path (dropout: the same distribution), only faster
where it was measured to be.

- `Threefry16Dropout`: dropout masks from 16 random bits per element, hashed by an unrolled Threefry-2x32 that fuses
  into the consumer. Measured on the small config's attention probabilities (2.1M per layer) on CPU: stock
  `nnx.Dropout` (`jax.random.bernoulli`) 38 ms of CPU, this 4 ms.
- `matmul_bias_grad_decoder`: the tied MLM decoder with a hand-written gradient whose bias gradient is a
  vector-matrix product. XLA:CPU compiles autodiff's row sum of the [M, V] logits gradient to a YNNPACK reduction that
  took 150 ms of CPU on the small config's [640, 30522]; the product takes 5 ms.

"auto" takes these on CPU, where they were measured (docs/bench_train_step.md: 1.2x the train step together with the
stacked Q/K/V projection), and the stock path on TPU and GPU, where nothing was measured; `docs/architecture.md`
records the choice.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

# The platforms whose measurements chose the levers; "auto" elsewhere is the stock path.
_MEASURED_FASTER_ON = ("cpu",)


def resolve(impl: str, platform: str | None = None, *, fast: str) -> str:
    """"auto" -> `fast` on the platforms where it was measured faster, else "stock"; other choices unchanged."""
    if impl != "auto":
        return impl
    platform = platform or jax.default_backend()
    return fast if platform in _MEASURED_FASTER_ON else "stock"


def make_dropout(rate: float, impl: str) -> nnx.Module:
    """A dropout module called as `dropout(x, deterministic=..., rngs=nnx.Rngs(dropout=key))`."""
    impl = resolve(impl, fast="threefry16")
    if impl == "threefry16":
        return Threefry16Dropout(rate)
    if impl == "stock":
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"dropout rate must be in [0, 1]; got {rate}")
        return nnx.Dropout(rate)
    raise ValueError(f"dropout_impl {impl!r} is not one of 'auto', 'stock', 'threefry16'")


def tied_decoder(impl: str):
    """`decoder(h [..., D], embedding [V, D], bias [V]) -> logits [..., V]` for the model's `decoder_impl`."""
    impl = resolve(impl, fast="matmul_bias_grad")
    if impl == "matmul_bias_grad":
        return matmul_bias_grad_decoder
    if impl == "stock":
        return stock_decoder
    raise ValueError(f"decoder_impl {impl!r} is not one of 'auto', 'stock', 'matmul_bias_grad'")


# ------------------------------------------------------------------------------------------------------- dropout

# Dropout masks take 16 random bits per element (four elements per 64-bit threefry block), so the rate is rounded to
# this grid.
_DROPOUT_BITS = 16
_THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


class Threefry16Dropout(nnx.Module):
    """Inverted dropout whose mask costs about a tenth of `jax.random.bernoulli`'s on CPU.

    Two changes from `nnx.Dropout`: (1) 16 random bits decide an element instead of 32 (the drop probability is
    rounded to a multiple of 2^-16, 0.1 -> 0.100006, and kept elements are scaled by the exact 1 / keep probability,
    so the expected output is the input); (2) the bits come from JAX's own Threefry-2x32 hash (20 rounds,
    checked against `jax.extend.random.threefry_2x32` in the tests) written out round by round, because JAX lowers
    threefry on CPU as a rolled loop that writes every intermediate array to memory, while the unrolled hash fuses
    into the elementwise consumer. Counters are the global element-block index (an iota), so any mesh draws the same
    mask.
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


# ------------------------------------------------------------------------------------------------- tied decoder


def stock_decoder(h_MxD: jax.Array, embedding_VxD: jax.Array, bias_V: jax.Array) -> jax.Array:
    """MLM output logits `h @ embedding.T + bias`, differentiated by autodiff (as `nnx.Embed.attend`)."""
    return jnp.einsum("...d,vd->...v", h_MxD, embedding_VxD) + bias_V


@jax.custom_vjp
def matmul_bias_grad_decoder(h_MxD: jax.Array, embedding_VxD: jax.Array, bias_V: jax.Array) -> jax.Array:
    """`stock_decoder` with the gradient written out (`_decoder_bwd`): the bias gradient, a sum over the rows of
    the [M, V] logits gradient, is computed as the vector-matrix product `ones @ g`."""
    return _decoder_fwd(h_MxD, embedding_VxD, bias_V)[0]


def _decoder_fwd(h, embedding, bias):
    return stock_decoder(h, embedding, bias), (h, embedding)


def _decoder_bwd(residuals, g_MxV):
    h, embedding = residuals
    d, v = h.shape[-1], embedding.shape[0]
    g_2d, h_2d = g_MxV.reshape(-1, v), h.reshape(-1, d)
    grad_h = (g_2d @ embedding).reshape(h.shape).astype(h.dtype)
    grad_embedding = (g_2d.T @ h_2d).astype(embedding.dtype)
    ones = jnp.ones((g_2d.shape[0],), g_2d.dtype)
    grad_bias = jnp.dot(ones, g_2d, preferred_element_type=jnp.float32).astype(g_MxV.dtype)
    return grad_h, grad_embedding, grad_bias


matmul_bias_grad_decoder.defvjp(_decoder_fwd, _decoder_bwd)
