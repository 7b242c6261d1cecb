"""The benchmark CLI and the FLOPs formula behind MFU.

The formula (bert_jax/flops.py) is checked against XLA twice: it must equal, exactly, the FLOPs of every matmul in
the jitted train step (2 x output elements x contracted size, summed over the step's dot_generals), and XLA's
`cost_analysis()["flops"]` of the compiled step must exceed it by no more than the elementwise work we can bound
(`non_matmul_flops_bound`). Two configs: the tiny one with dropout through the CLI, and a second shape without
dropout (the fused-attention path) in process.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from bert_jax import benchmark, models, objectives
from bert_jax.objectives.base import BatchShape
from bert_jax.training import flops, optim, sharding, state as state_lib, step as steps
from bert_jax.configuration import load_config, model_config
from bert_jax.data.synthetic import synthetic_batch
from bert_jax.models.bert import BertConfig, count_parameters
from tests.conftest import REPO

OPT = ml_collections.ConfigDict(dict(name="adamw", learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-6, weight_decay=0.01,
                                     warmup_steps=2, end_learning_rate=0.0, grad_clip_norm=1.0))
# The CLI run: the tiny config (2 layers, hidden 128, vocab 4096) with dropout 0.1 at batch 8 x 64 tokens.
CLI_ARGS = ["--config", "configs/base_cased.py:tiny", "--config.model.hidden_dropout_prob=0.1",
            "--config.model.attention_probs_dropout_prob=0.1", "--config.batch_size=8", "--max_seq_length", "64",
            "--steps", "2", "--warmup", "1", "--peak_size", "256", "--json"]
CLI_SHAPE = dict(batch=8, seq_len=64, max_predictions=10)  # 10 = ceil(15% of 64): the phase is 128 long
# A second shape, without dropout (jax.nn.dot_product_attention), for the in-process checks.
SECOND = BertConfig(vocab_size=500, hidden_size=96, num_hidden_layers=2, num_attention_heads=3, intermediate_size=384,
                    max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
SECOND_SHAPE = dict(batch=4, seq_len=48, max_predictions=8)


def non_matmul_flops_bound(config: BertConfig, batch: int, seq_len: int, max_predictions: int) -> float:
    """Upper bound on what XLA's cost analysis counts beyond matmuls in one train step (1 FLOP per elementwise op per
    element; it counts integer ops, selects and reductions too). Per element, forward + backward, with room for
    XLA fusions that recompute a producer in several consumers (observed: the compiled count is ~2% of the total
    above the unfused one):
      - each parameter: clipping (square, sum, scale), Adam (2 moments, bias corrections, sqrt, divide), weight decay,
        the update, the finite-step selects: ~25 ops -> 40;
      - each intermediate activation [B, S, F]: exact GELU (erf polynomial, ~30 ops) and its derivative, bias: -> 120;
      - each hidden activation [B, S, D] per layer: 2 LayerNorms (~10 ops each way), 2 residual adds, 4 biases, and
        with dropout 2 masks (threefry: ~40 integer ops per random word) -> 250;
      - each attention probability [B, N, S, S] per layer: scale, mask, softmax (~5 each way), and with dropout a
        mask (~45) -> 100;
      - each MLM logit [B, P, V]: bias, softmax cross-entropy and argmax each way: -> 40;
      - each embedding output [B, S, D]: 3 lookups summed, LayerNorm, dropout, scatter-add of gradients: -> 150.
    Measured on the lowered step of several shapes: ~25 per parameter, ~78 per intermediate, ~52 (+45 per dropout)
    per hidden, ~14 (+47 with dropout) per probability, ~16 per logit, so each constant holds with margin."""
    d, f, n, layers, v = (config.hidden_size, config.intermediate_size, config.num_attention_heads,
                          config.num_hidden_layers, config.vocab_size)
    tokens = batch * seq_len
    return (40 * count_parameters(config)
            + tokens * layers * (120 * f + 250 * d + 100 * n * seq_len)
            + 40 * batch * max_predictions * v
            + 150 * tokens * d)


_DOT = re.compile(
    r"stablehlo\.dot_general[^\n]*?contracting_dims = \[([\d, ]*)\] x[^\n]*?"
    r": \(tensor<([^>]*)>, tensor<[^>]*>\) -> tensor<([^>]*)>"
)


def matmul_flops(stablehlo_text: str) -> int:
    """2 x output elements x contracted size, summed over the dot_generals written in a StableHLO module.

    Each dot is counted once as written: one inside a loop body or a function called several times would be
    under-counted, and the equality test below would fail rather than pass wrongly (today the step has neither:
    layers are unrolled, threefry's loop holds no matmul, and accumulation scans only when grad_accum_steps > 1)."""
    assert "stablehlo.dot " not in stablehlo_text  # jax lowers every matmul to dot_general
    total = 0
    for contracting, lhs, out in _DOT.findall(stablehlo_text):
        lhs_dims = [int(x) for x in lhs.split("x")[:-1]]
        out_dims = [int(x) for x in out.split("x")[:-1]]
        contracted = math.prod(lhs_dims[int(c)] for c in contracting.split(",") if c.strip())
        total += 2 * math.prod(out_dims) * contracted
    return total


PRETRAINING = objectives.create("mlm_nsp")


def flops_per_token(config: BertConfig, seq_len: int, max_predictions: int) -> float:
    """The pre-training objective's count, as the trainer and the benchmark take it."""
    return flops.flops_per_token(PRETRAINING, config, BatchShape(1, seq_len, max_predictions))


def lowered_step(config: BertConfig, batch: int, seq_len: int, max_predictions: int):
    mesh = sharding.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, jax.devices()[:1])
    schedule = optim.learning_rate_schedule(OPT, 10)
    optimizer = optim.make_optimizer(OPT, schedule)
    make_model = models.constructor(config, PRETRAINING.heads)
    graphdef, state, shardings = state_lib.init_sharded_state(make_model, optimizer, mesh, seed=0)
    step_fn = steps.jit_train_step(graphdef=graphdef, objective=PRETRAINING, optimizer=optimizer,
                                   schedule=schedule, seed=0, grad_accum_steps=1,
                                   state_shardings=shardings, mesh=mesh)
    host_batch = synthetic_batch(batch, seq_len, max_predictions, config.vocab_size, seed=0)
    return step_fn.lower(state, sharding.global_batch(host_batch, mesh))


@pytest.fixture(scope="module")
def cli_result():
    """The CLI as a user runs it, on one CPU device (the emulated 16-device flag of conftest is removed)."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count=16", "").strip()
    completed = subprocess.run([sys.executable, "-m", "bert_jax.benchmark", *CLI_ARGS], cwd=REPO, env=env,
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout)


def test_cli_json_fields_are_consistent(cli_result):
    r = cli_result
    assert (r["batch_size"], r["seq_len"], r["max_predictions"]) == (8, 64, 10)
    assert r["num_devices"] == 1 and r["steps"] == 2
    assert r["step_s_min"] <= r["step_s"] <= r["step_s_max"]
    assert r["tokens_per_s"] == pytest.approx(8 * 64 / r["step_s"], rel=1e-12)
    assert r["real_token_fraction"] == 1.0 and r["real_tokens_per_s"] == r["tokens_per_s"]  # synthetic: no padding
    assert r["mfu"] == pytest.approx(r["flops_per_token"] * r["tokens_per_s"] / r["peak_flops"], rel=1e-12)
    assert r["model_flops_per_s"] == pytest.approx(r["flops_per_token"] * r["tokens_per_s"], rel=1e-12)
    config = model_config(load_config("configs/base_cased.py:tiny"))
    assert r["flops_per_token"] == flops_per_token(config, 64, 10)
    assert r["parameters"] == count_parameters(config)
    assert math.isfinite(r["loss"]) and r["loss"] > 0
    assert 0 < r["peak_flops"] < 1e16 and 0 < r["mfu"] < 1
    assert len(r["peak_flops_bursts"]) == 3 and r["peak_flops"] == max(r["peak_flops_bursts"])
    assert r["compile_s"] > 0
    assert r["peak_flops_published"] is None and r["mfu_measured_peak"] == r["mfu"]  # CPU: the measured peak
    assert r["memory"]["host_peak_rss_bytes"] > 0
    # XLA's plan holds at least the train state (params + 2 Adam moments, f32) as arguments.
    assert r["memory"]["xla_argument_size"] >= 3 * 4 * r["parameters"]


def test_cli_xla_flops_within_derived_bound(cli_result):
    """Tiny config with dropout: formula <= XLA's count of the compiled step <= formula + elementwise bound."""
    config = model_config(load_config("configs/base_cased.py:tiny"))
    tokens = CLI_SHAPE["batch"] * CLI_SHAPE["seq_len"]
    formula = cli_result["flops_per_token"] * tokens
    xla = cli_result["xla_flops_per_token"] * tokens
    bound = non_matmul_flops_bound(config, CLI_SHAPE["batch"], CLI_SHAPE["seq_len"], CLI_SHAPE["max_predictions"])
    assert formula <= xla <= formula + bound, (xla / formula, bound / formula)


@pytest.fixture(scope="module")
def second_lowered():
    return lowered_step(SECOND, SECOND_SHAPE["batch"], SECOND_SHAPE["seq_len"], SECOND_SHAPE["max_predictions"])


@pytest.mark.parametrize("name", ["tiny", "second"])
def test_formula_equals_matmul_flops_of_the_step(name, request):
    """Every matmul the step runs (forward, backward, all heads) is in the formula, and nothing else is."""
    if name == "tiny":
        config, shape = model_config(load_config("configs/base_cased.py:tiny")), CLI_SHAPE
        lowered = lowered_step(config, shape["batch"], shape["seq_len"], shape["max_predictions"])
    else:
        config, shape = SECOND, SECOND_SHAPE
        lowered = request.getfixturevalue("second_lowered")
    expected = flops_per_token(config, shape["seq_len"], shape["max_predictions"]) * shape["batch"] * shape["seq_len"]
    # Beyond the model's matmuls the step runs one more: the MLM bias gradient as a vector-matrix product
    # (model.tied_decoder), 2 x (B*P) x V, which is a sum, not model work, and stays out of the formula.
    bias_gradient = 2 * shape["batch"] * shape["max_predictions"] * config.vocab_size
    assert matmul_flops(lowered.as_text()) == pytest.approx(expected + bias_gradient, rel=1e-12)


def test_second_config_xla_flops_within_derived_bound(second_lowered):
    shape = SECOND_SHAPE
    compiled = second_lowered.compile()
    xla = benchmark._xla_flops(compiled)
    formula = flops_per_token(SECOND, shape["seq_len"], shape["max_predictions"]) * shape["batch"] * shape["seq_len"]
    bound = non_matmul_flops_bound(SECOND, shape["batch"], shape["seq_len"], shape["max_predictions"])
    assert formula <= xla <= formula + bound, (xla / formula, bound / formula)


def test_formula_terms_scale_as_documented():
    """Doubling the sequence (and the predictions with it) adds the attention term of 64 more keys and halves the
    per-token share of the once-per-sequence pooler and NSP head."""
    config = BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=256)
    short, long = flops_per_token(config, 64, 10), flops_per_token(config, 128, 20)
    pooler_and_nsp = 6 * (64 * 64 + 2 * 64)
    assert long - short == pytest.approx(12 * 2 * 64 * 64 + pooler_and_nsp / 128 - pooler_and_nsp / 64, rel=1e-12)
    without_head = flops_per_token(config, 64, 0)
    per_prediction = (short - without_head) / 10
    assert per_prediction == pytest.approx(6 * (64 * 64 + 64 * 1000) / 64, rel=1e-12)
    with pytest.raises(ValueError, match="seq_len"):
        flops_per_token(config, 0, 1)


@pytest.mark.parametrize("platform,kind,per_device", [
    ("tpu", "TPU v4", 275e12),  # one megacore device per chip
    ("tpu", "TPU v5 lite", 197e12),
    ("tpu", "TPU v5", 459e12),  # v5p
    ("tpu", "TPU v6 lite", 918e12),
    ("tpu", "TPU v3", 61.5e12),  # 123 TFLOP/s per chip, two devices (cores) per chip
    ("gpu", "NVIDIA H100 80GB HBM3", 989.4e12),
    ("gpu", "NVIDIA H100 PCIe", 756e12),
    ("gpu", "NVIDIA A100-SXM4-40GB", 312e12),
    ("gpu", "NVIDIA L4", 121e12),
])
def test_published_peaks_of_tpu_and_gpu_chips(platform, kind, per_device):
    from bert_jax.training import chip_peaks

    peak, source = chip_peaks.published_peak_flops(platform, kind)
    assert peak == pytest.approx(per_device, rel=1e-12) and "peak" in source


def test_cpus_and_unknown_chips_have_no_published_peak():
    from bert_jax.training import chip_peaks

    assert chip_peaks.published_peak_flops("cpu", "cpu") is None
    assert chip_peaks.published_peak_flops("gpu", "Some Future GPU") is None
    assert chip_peaks.published_peak_flops("tpu", "TPU v9 experimental") is None


def test_peak_flops_rejects_unknown_dtype():
    with pytest.raises(ValueError, match="float8"):
        flops.measure_peak_flops("float8")


def test_peak_flops_is_the_matmul_rate():
    peak = flops.measure_peak_flops("float32", jax.devices()[0], size=128, repeats=3)
    assert np.isfinite(peak) and peak > 2 * 128**3  # at least one 128^3 matmul per second on any CPU


@pytest.mark.parametrize(
    "args,message",
    [
        (["--config.model.hiden_size=64"], "unknown config field 'model.hiden_size'; did you mean model.hidden_size"),
        (["--phase", "5"], "--phase 5 is out of range: the config has 2 phase(s)"),
        (["--max_seq_length", "4"], "--max_seq_length 4 must be in [8"),
        (["--config", "configs/nope.py"], "config file configs/nope.py not found"),
        (["--config.mesh.data=3"], "needs 3 devices but 16 are available"),
    ],
)
def test_cli_errors_name_the_problem(args, message, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    assert benchmark.main(["--config", "configs/base_cased.py:tiny", *args]) == 2
    assert message in capsys.readouterr().err


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main(["--help"])
    assert exit_info.value.code == 0
    assert "--config.FIELD=VALUE" in capsys.readouterr().out


# ------------------------------------------------------------------------------ performance levers in model.py


def nnx_rngs(seed):
    from flax import nnx

    return nnx.Rngs(dropout=jax.random.key(seed))


def test_dropout_rate_scale_and_independence():
    """16-bit masks: drop rate, mean preservation, and independence of the elements that share a threefry block
    (same word, other word) and of neighbouring blocks, each within 5 sigma of the binomial spread for this sample."""
    from bert_jax.models.speed_levers import Threefry16Dropout as Dropout

    shape = (32, 128, 257)  # odd last axis: the last block's unused halves are cut off
    n = math.prod(shape)
    out = np.asarray(Dropout(0.1)(jax.numpy.ones(shape), deterministic=False, rngs=nnx_rngs(0)))
    p = round(0.1 * 2**16) / 2**16
    dropped = out == 0
    assert set(np.unique(out)) == {0.0, np.float32(1 / (1 - p))}
    assert abs(dropped.mean() - p) <= 5 * math.sqrt(p * (1 - p) / n)
    assert abs(out.mean() - 1.0) <= 5 * math.sqrt(p / (1 - p) / n)
    first = dropped[..., 0:256:4]
    for other in (dropped[..., 1:256:4], dropped[..., 2:256:4], dropped[..., 4:257:4]):
        both = (first[..., : other.shape[-1]] & other).mean()
        assert abs(both - p * p) <= 5 * math.sqrt(p * p * (1 - p * p) / other.size)


def test_dropout_hash_is_jax_threefry():
    import jax.extend.random

    from bert_jax.models.speed_levers import threefry2x32

    key = jax.numpy.array([0x12345678, 0x9ABCDEF0], jax.numpy.uint32)
    counts = jax.random.bits(jax.random.key(1), (2, 512), jax.numpy.uint32)
    hi, lo = threefry2x32(key[0], key[1], counts[0], counts[1])
    expected = jax.extend.random.threefry_2x32(key, counts.reshape(-1))
    np.testing.assert_array_equal(np.concatenate([hi, lo]), np.asarray(expected))


def test_dropout_is_deterministic_per_key_and_off_when_asked():
    from bert_jax.models.speed_levers import Threefry16Dropout as Dropout

    x = jax.numpy.arange(1.0, 4097.0).reshape(4, 1024)
    layer = Dropout(0.1)
    first, again = layer(x, deterministic=False, rngs=nnx_rngs(3)), layer(x, deterministic=False, rngs=nnx_rngs(3))
    other = layer(x, deterministic=False, rngs=nnx_rngs(4))
    np.testing.assert_array_equal(first, again)
    assert 0.1 < np.mean(np.asarray(first != other)) < 0.3  # 2p(1-p) = 0.18 of elements differ
    np.testing.assert_array_equal(layer(x, deterministic=True, rngs=None), x)
    np.testing.assert_array_equal(Dropout(1.0)(x, deterministic=False, rngs=nnx_rngs(0)), np.zeros_like(x))


def test_dropout_mask_does_not_depend_on_the_mesh():
    from jax.sharding import NamedSharding, PartitionSpec

    from bert_jax.models.speed_levers import dropout_keep_mask

    shape, threshold, key = (8, 4, 16, 16), 6554, jax.random.key(7)
    single = jax.jit(lambda k: dropout_keep_mask(k, shape, threshold))(key)
    mesh = sharding.make_mesh({"data": 2, "fsdp": 1, "tensor": 2}, jax.devices()[:4])
    for spec in (PartitionSpec("data", "tensor"), PartitionSpec(None, None, None, ("data", "tensor"))):
        sharded = jax.jit(lambda k: dropout_keep_mask(k, shape, threshold),
                          out_shardings=NamedSharding(mesh, spec))(key)
        np.testing.assert_array_equal(np.asarray(sharded), np.asarray(single))


def test_tied_decoder_gradients_equal_autodiff():
    from bert_jax.models.speed_levers import matmul_bias_grad_decoder as tied_decoder

    keys = jax.random.split(jax.random.key(0), 4)
    h = jax.random.normal(keys[0], (3, 5, 16))
    embedding = jax.random.normal(keys[1], (40, 16))
    bias = jax.random.normal(keys[2], (40,))
    weights = jax.random.normal(keys[3], (3, 5, 40))

    def objective(decoder):
        return lambda h, e, b: jax.numpy.sum(jax.numpy.sin(decoder(h, e, b)) * weights)

    plain = lambda h, e, b: jax.numpy.einsum("bpd,vd->bpv", h, e) + b  # noqa: E731
    np.testing.assert_allclose(tied_decoder(h, embedding, bias), plain(h, embedding, bias), rtol=1e-6, atol=1e-6)
    ours = jax.jit(jax.grad(objective(tied_decoder), argnums=(0, 1, 2)))(h, embedding, bias)
    reference = jax.jit(jax.grad(objective(plain), argnums=(0, 1, 2)))(h, embedding, bias)
    for got, want in zip(ours, reference):
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_matmul_probe_peak_is_the_fastest_burst():
    probe = flops.MatmulProbe("float32", jax.devices()[0], size=128)
    rates = [probe.burst(2) for _ in range(3)]
    assert probe.bursts == rates
    assert probe.peak().flops_per_s == max(rate.flops_per_s for rate in rates)
    assert all(np.isfinite(rate.flops_per_cpu_s) and rate.flops_per_cpu_s > 0 for rate in rates)
    with pytest.raises(ValueError, match="burst"):
        flops.MatmulProbe("float32", jax.devices()[0], size=8).peak()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_peer_script_trains_the_same_model_on_the_same_labels(dtype):
    """scripts/bench_peers.py end to end (tiny config, one round): both sides report finite steps, the ratio is
    the ratio of the reported rates, and both start at the loss of an untrained model on the same labels: about
    ln(vocab) for MLM plus ln(2) for NSP (BERT's 0.02 init gives near-uniform logits), so the peer really trains our
    model's size, vocabulary and labels (bf16 through torch.autocast)."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count=16", "").strip()
    completed = subprocess.run(
        [sys.executable, "scripts/bench_peers.py", "--config", "configs/base_cased.py:tiny", "--config.batch_size=8",
         f"--config.model.dtype={dtype}", "--rounds", "1", "--steps", "1", "--peak_size", "256", "--json"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    r = json.loads(completed.stdout)
    assert r["speedup"] == pytest.approx(r["bert_jax"]["tokens_per_s"] / r["transformers"]["tokens_per_s"], rel=1e-12)
    untrained = math.log(4096) + math.log(2)
    for side in ("bert_jax", "transformers"):
        assert r[side]["step_s"] > 0 and r[side]["steps"] == 1
        assert abs(r["losses"][side] - untrained) < 0.1 * untrained, (side, r["losses"])
    # Positive and finite; no upper bound: the peak here is a 256-wide matmul (fast to time, far below the CPU's real
    # peak), which the tiny step can outrun (seen: 1.15).
    assert 0 < r["bert_jax"]["mfu"] and math.isfinite(r["bert_jax"]["mfu"])


def test_peer_script_rejects_an_unsupported_dtype():
    completed = subprocess.run(
        [sys.executable, "scripts/bench_peers.py", "--config", "configs/base_cased.py:tiny",
         "--config.model.dtype=float16"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2
    assert "model.dtype" in completed.stderr and "bfloat16" in completed.stderr
