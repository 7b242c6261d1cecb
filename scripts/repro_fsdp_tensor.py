"""Standalone repro (jax + numpy only) of the XLA SPMD partitioner bug behind the old fsdp x tensor gradient mismatch.

The pattern: `y @ w` where the rows of `y` are split over two mesh axes (A, B), the contracted dimension over a
third axis T on both operands, the output dimension of `w` over B (the *minor* batch axis), and the result wanted
with its columns on T. XLA (jax/jaxlib 0.10.2, Shardy and GSPMD alike, CPU) emits a collective-permute that puts the
rows of `y` in (B, A) order and labels the result as if they were still in (A, B) order: rows of the output are
silently permuted between devices. When w's output dimension is split over the *major* batch axis instead, no
permute is needed and the result is right.

In bert_jax this was the tied MLM decoder's backward pass (cotangent [B, P, V] times the embedding [V, D] split
(tensor, fsdp), feeding the MLM LayerNorm over a tensor-split hidden dimension) with the batch on ("data", "fsdp"):
the loss was exact, the gradients were not. The workaround (bert_jax/training/rules.py) splits the batch over
("fsdp", "data"): parameters use only `fsdp` and `tensor`, so a weight can never sit on the minor batch axis.

Exit status: 1 while the bug reproduces (the buggy layout gives wrong numbers), 0 once XLA gives the right ones;
run it after a jax upgrade to see whether the workaround is still needed.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jaxlib  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import AxisType, NamedSharding, PartitionSpec  # noqa: E402

BUGGY_BATCH = ("data", "fsdp")  # the weight below sits on `fsdp`, the minor batch axis
WORKAROUND_BATCH = ("fsdp", "data")  # `fsdp` major: the same weight layout is partitioned correctly


def row_sources(got: np.ndarray, expected: np.ndarray) -> list[int]:
    """For each row of `got`, the row of `expected` it equals (shows a permutation at a glance)."""
    return [int(np.argmin(np.abs(expected - row).max(axis=1))) for row in got]


def forward_case(mesh, batch_axes, show_hlo: bool) -> float:
    """The smallest form: one matmul, no autodiff. Returns the max abs error against NumPy."""
    rng = np.random.default_rng(0)
    y_BxK = rng.normal(size=(4, 4)).astype(np.float32)
    w_KxN = rng.normal(size=(4, 4)).astype(np.float32)

    def spec(*axes):
        return NamedSharding(mesh, PartitionSpec(*axes))

    matmul = jax.jit(
        jnp.matmul,
        in_shardings=(spec(batch_axes, "tensor"), spec("tensor", "fsdp")),
        out_shardings=spec(batch_axes, "tensor"),
    )
    got = np.asarray(matmul(y_BxK, w_KxN))
    expected = y_BxK @ w_KxN
    print(f"  y @ w, y rows on {batch_axes}, w (tensor, fsdp), out ({batch_axes}, tensor): "
          f"max abs error {np.abs(got - expected).max():.2e}, output rows are input rows {row_sources(got, expected)}")
    if show_hlo:
        compiled = matmul.lower(y_BxK, w_KxN).compile().as_text()
        for line in compiled.splitlines():
            if "collective-permute(" in line:
                print("    " + line.strip()[:220])
    return float(np.abs(got - expected).max())


def gradient_case(mesh, batch_axes) -> float:
    """As BERT met it: a scale on the hidden dim, a tied decoder, log-softmax. The loss is exact; its gradient not."""
    rng = np.random.default_rng(1)
    x_BxD = rng.normal(size=(4, 4)).astype(np.float32)
    scale_D = rng.normal(size=(4,)).astype(np.float32)
    embedding_VxD = rng.normal(size=(4, 4)).astype(np.float32)
    onehot_BxV = np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=4)]

    def loss(scale_D, x_BxD, embedding_VxD):
        log_probs_BxV = jax.nn.log_softmax((x_BxD * scale_D) @ embedding_VxD.T)
        return -jnp.sum(log_probs_BxV * onehot_BxV)

    def spec(*axes):
        return NamedSharding(mesh, PartitionSpec(*axes))

    shardings = (spec("tensor"), spec(batch_axes), spec("tensor", "fsdp"))
    value_and_grad = jax.value_and_grad(loss, argnums=(0, 1))
    (ref_loss, (ref_dscale, ref_dx)) = jax.jit(value_and_grad)(scale_D, x_BxD, embedding_VxD)
    (got_loss, (got_dscale, got_dx)) = jax.jit(value_and_grad, in_shardings=shardings)(scale_D, x_BxD, embedding_VxD)
    error = max(float(np.abs(np.asarray(got_dscale) - np.asarray(ref_dscale)).max()),
                float(np.abs(np.asarray(got_dx) - np.asarray(ref_dx)).max()))
    print(f"  grad of log_softmax((x * scale) @ E.T), x rows on {batch_axes}: loss error "
          f"{abs(float(got_loss) - float(ref_loss)):.2e}, gradient max abs error {error:.2e}, rows of dx are rows "
          f"{row_sources(np.asarray(got_dx), np.asarray(ref_dx))}")
    return error


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--show-hlo", action="store_true", help="print the collective-permute XLA emits")
    args = parser.parse_args(argv)

    print(f"jax {jax.__version__}, jaxlib {jaxlib.__version__}, "
          f"{jax.device_count()} {jax.devices()[0].platform} devices, mesh data 2 x fsdp 2 x tensor 2")
    mesh = jax.make_mesh((2, 2, 2), ("data", "fsdp", "tensor"), axis_types=(AxisType.Auto,) * 3,
                         devices=jax.devices()[:8])
    tolerance = 1e-4
    print(f"batch over {BUGGY_BATCH} (weight on the minor batch axis):")
    buggy = max(forward_case(mesh, BUGGY_BATCH, args.show_hlo), gradient_case(mesh, BUGGY_BATCH))
    print(f"batch over {WORKAROUND_BATCH} (weight on the major batch axis; bert_jax's rule):")
    workaround = max(forward_case(mesh, WORKAROUND_BATCH, args.show_hlo), gradient_case(mesh, WORKAROUND_BATCH))
    if workaround > tolerance:
        print("the workaround layout is wrong too: bert_jax's batch rule no longer protects it")
        return 2
    if buggy > tolerance:
        print("BUG PRESENT: keep the ('fsdp', 'data') batch order")
        return 1
    print("fixed in this jax: both orders give the single-device result")
    return 0


if __name__ == "__main__":
    sys.exit(main())
