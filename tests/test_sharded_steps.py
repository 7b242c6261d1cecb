"""The jitted, sharded train step: any mesh gives the single-device losses; accumulation and NaN guard are exact."""

import functools

import jax
import ml_collections
import numpy as np
import pytest

from bert_jax import optim, sharding, steps
from bert_jax.data.synthetic import synthetic_batch
from bert_jax.model import BertConfig

MODEL = BertConfig(vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                   max_position_embeddings=64)
OPT = ml_collections.ConfigDict(dict(name="adamw", learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-6, weight_decay=0.01,
                                     warmup_steps=2, end_learning_rate=0.0, grad_clip_norm=1.0))
BATCH, SEQ, PRED, STEPS = 16, 32, 5, 5
TOLERANCE = 2e-5  # f32; a different mesh changes reduction order only


def run(mesh_sizes, *, grad_accum_steps=1, batches=None, steps_to_run=STEPS):
    devices = jax.devices()[: abs(np.prod(list(mesh_sizes.values())))] if -1 not in mesh_sizes.values() else None
    mesh = sharding.make_mesh(mesh_sizes, devices)
    optimizer = optim.make_optimizer(OPT, train_steps=10)
    graphdef, state, shardings = sharding.init_sharded_state(MODEL, optimizer, mesh, seed=0)
    step_fn = jax.jit(
        functools.partial(steps.train_step, graphdef=graphdef, optimizer=optimizer,
                          schedule=optim.learning_rate_schedule(OPT, 10), seed=0, grad_accum_steps=grad_accum_steps),
        in_shardings=(shardings, None),
        out_shardings=(shardings, None),
        donate_argnums=0,
    )
    history = []
    for i in range(steps_to_run):
        batch = batches[i] if batches else synthetic_batch(BATCH, SEQ, PRED, MODEL.vocab_size, seed=0)
        state, metrics = step_fn(state, sharding.global_batch(batch, mesh))
        history.append({k: float(v) for k, v in metrics.items()})
    return history, state, shardings


@pytest.fixture(scope="module")
def single_device():
    return run({"data": 1, "fsdp": 1, "tensor": 1})[0]


FSDP_X_TENSOR_BUG = pytest.mark.xfail(
    strict=True,
    reason="open: on a mesh splitting fsdp and tensor at once, gradients (not losses) differ from one device's by "
    "~1e-2 even without dropout; fsdp-only and tensor-only meshes agree. Recorded in docs/architecture.md.",
)


@pytest.mark.parametrize("mesh_sizes", [
    {"data": 16, "fsdp": 1, "tensor": 1},
    {"data": 4, "fsdp": 4, "tensor": 1},
    {"data": 4, "fsdp": 1, "tensor": 4},
    pytest.param({"data": 4, "fsdp": 2, "tensor": 2}, marks=FSDP_X_TENSOR_BUG),
], ids=["data16", "data4_fsdp4", "data4_tensor4", "data4_fsdp2_tensor2"])
def test_mesh_gives_single_device_losses(single_device, mesh_sizes):
    history, state, shardings = run(mesh_sizes)
    for step, (a, b) in enumerate(zip(history, single_device)):
        assert abs(a["loss"] - b["loss"]) <= TOLERANCE, f"step {step}: {a['loss']} vs {b['loss']}"
        assert abs(a["grad_norm"] - b["grad_norm"]) <= 1e-4 * max(1.0, b["grad_norm"])
    assert history[-1]["loss"] < history[0]["loss"]  # it fits the repeated batch
    # Parameters really are distributed the way the rules say.
    query = state.params["bert"]["layers"][0]["attention"]["query"]["kernel"].get_value()
    spec = query.sharding.spec
    if mesh_sizes["tensor"] > 1:
        assert spec[1] == "tensor"
    if mesh_sizes["fsdp"] > 1:
        assert spec[0] == "fsdp"
        mu = jax.tree.leaves(state.opt_state)[1]
        assert any(s is not None for s in mu.sharding.spec) or mu.ndim < 2


def test_gradient_accumulation_equals_full_batch():
    full, _, _ = run({"data": 1, "fsdp": 1, "tensor": 1}, steps_to_run=2)
    accumulated, _, _ = run({"data": 4, "fsdp": 1, "tensor": 1}, grad_accum_steps=4, steps_to_run=2)
    # Dropout keys differ per micro-batch, so compare with dropout's effect removed: the first step's counts
    # and the loss normalisation must be exact, the losses close.
    assert accumulated[0]["mlm_count"] == full[0]["mlm_count"]
    assert accumulated[0]["nsp_count"] == full[0]["nsp_count"]
    assert abs(accumulated[0]["loss"] - full[0]["loss"]) < 0.05 * full[0]["loss"]


def test_nonfinite_step_leaves_state_unchanged():
    batches = [synthetic_batch(BATCH, SEQ, PRED, MODEL.vocab_size, seed=i) for i in range(3)]
    bad = dict(batches[1], masked_lm_weights=np.full_like(batches[1]["masked_lm_weights"], np.nan))
    history, state, _ = run({"data": 2, "fsdp": 1, "tensor": 1}, batches=[batches[0], bad, batches[2]], steps_to_run=2)
    assert history[1]["nonfinite"] == 1 and int(state.nonfinite_streak) == 1 and int(state.step) == 2
    reference, ref_state, _ = run({"data": 2, "fsdp": 1, "tensor": 1}, batches=batches, steps_to_run=1)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref_state.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(jax.tree.leaves(state.opt_state), jax.tree.leaves(ref_state.opt_state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_weight_decay_mask_and_schedule():
    _, state, _ = run({"data": 1, "fsdp": 1, "tensor": 1}, steps_to_run=0)
    mask = optim.decay_mask(state.params)
    flat = {jax.tree_util.keystr(p).removesuffix(".value"): v for p, v in jax.tree_util.tree_flatten_with_path(mask)[0]}
    assert len(flat) == len(jax.tree.leaves(state.params))
    assert all(not v for k, v in flat.items() if "layer_norm" in k or k.endswith("['bias']") or "mlm_bias" in k)
    assert all(v for k, v in flat.items() if k.endswith("['kernel']") or k.endswith("['embedding']"))
    schedule = optim.learning_rate_schedule(ml_collections.ConfigDict(dict(OPT, warmup_steps=10_000)), 1_000_000)
    assert float(schedule(0)) == 0.0 and abs(float(schedule(5_000)) - 5e-4) < 1e-9
    assert abs(float(schedule(10_000)) - 1e-3) < 1e-9 and abs(float(schedule(505_000)) - 5e-4) < 1e-9
    assert float(schedule(1_000_000)) == 0.0


def test_mesh_errors_name_the_fix():
    with pytest.raises(sharding.MeshError, match="needs 32 devices but 16"):
        sharding.make_mesh({"data": 16, "fsdp": 2, "tensor": 1})
    with pytest.raises(sharding.MeshError, match="not divisible"):
        sharding.make_mesh({"data": -1, "fsdp": 3, "tensor": 1})
