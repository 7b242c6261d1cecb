"""Compile-ahead: the abstract sharded state equals the real one; TPU topology names; and, where libtpu is installed
(the [tpu] extra), a real TPU compile whose per-device argument memory is exactly what the shardings imply."""

import importlib.util

import jax
import ml_collections
import numpy as np
import pytest

from bert_jax import compile_ahead, models, objectives
from bert_jax.objectives.base import BatchShape
from bert_jax.training import optim, setup, sharding, state as state_lib
from bert_jax.configuration import load_config, model_config
from bert_jax.data.synthetic import synthetic_batch
from bert_jax.models.bert_config import BertConfig

MODEL = BertConfig(vocab_size=256, hidden_size=64, num_hidden_layers=1, num_attention_heads=4, intermediate_size=128,
                   max_position_embeddings=64)
OPT = ml_collections.ConfigDict(dict(name="adamw", learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-6, weight_decay=0.01,
                                     warmup_steps=2, end_learning_rate=0.0, grad_clip_norm=1.0))
HAS_LIBTPU = importlib.util.find_spec("libtpu") is not None
PRETRAINING = objectives.create("mlm_nsp")
MAKE_MODEL = models.constructor(MODEL, PRETRAINING.heads)


def make_optimizer():
    return optim.make_optimizer(OPT, optim.learning_rate_schedule(OPT, 10))


def test_abstract_state_equals_sharded_init():
    # Every mesh axis in use, so replicated, fsdp-split and tensor-split leaves all occur.
    mesh = sharding.make_mesh({"data": 2, "fsdp": 4, "tensor": 2}, jax.devices()[:16])
    optimizer = make_optimizer()
    _, real_state, real_shardings = state_lib.init_sharded_state(MAKE_MODEL, optimizer, mesh, seed=0)
    _, abstract_state, abstract_shardings = state_lib.abstract_sharded_state(MAKE_MODEL, optimizer, mesh, seed=0)

    assert jax.tree.structure(abstract_state) == jax.tree.structure(real_state)
    for abstract, real, declared in zip(jax.tree.leaves(abstract_state), jax.tree.leaves(real_state),
                                        jax.tree.leaves(abstract_shardings)):
        assert isinstance(abstract, jax.ShapeDtypeStruct)
        assert (abstract.shape, abstract.dtype) == (real.shape, real.dtype)
        assert abstract.sharding == real.sharding == declared
    assert jax.tree.leaves(abstract_shardings) == jax.tree.leaves(real_shardings)
    # The per-device byte count from the shardings is what device 0 really holds.
    held = sum(next(s.data.nbytes for s in leaf.addressable_shards if s.device == jax.devices()[0])
               for leaf in jax.tree.leaves(real_state))
    assert compile_ahead.bytes_per_device(abstract_state) == held


def test_fsdp_shrinks_the_state_per_device():
    optimizer = make_optimizer()
    sizes = {}
    for fsdp in (1, 4):
        mesh = sharding.make_mesh({"data": 16 // fsdp, "fsdp": fsdp, "tensor": 1}, jax.devices()[:16])
        sizes[fsdp] = compile_ahead.bytes_per_device(state_lib.abstract_sharded_state(MAKE_MODEL, optimizer, mesh, 0)[1])
    # Everything but the few leaves no mesh axis divides (scalars, [N, H]-sized heads) is split 4 ways.
    assert sizes[1] / 4 < sizes[4] < sizes[1] / 3.5


def test_abstract_batch_follows_the_batch_contract():
    mesh = sharding.make_mesh({"data": 4, "fsdp": 2, "tensor": 2}, jax.devices()[:16])
    abstract = sharding.abstract_batch(PRETRAINING.batch_contract(BatchShape(32, 128, 20)), mesh)
    host = synthetic_batch(32, 128, 20, vocab_size=MODEL.vocab_size)
    assert abstract.keys() == host.keys()
    for name, value in host.items():
        assert (abstract[name].shape, abstract[name].dtype) == (value.shape, value.dtype), name
        assert abstract[name].sharding == sharding.batch_sharding(mesh, value.ndim), name
        assert set(abstract[name].sharding.spec[0]) == {"data", "fsdp"}, name
    assert compile_ahead.bytes_per_device(abstract) == sum(v.nbytes for v in host.values()) // 8


@pytest.mark.parametrize(
    "text, name, chips, accelerator_type",
    [
        ("v4:2x2x4", "v4:2x2x4", 16, "v4-32"),
        ("v4-32", "v4:2x2x4", 16, "v4-32"),
        ("v4-16", "v4:2x2x2", 8, "v4-16"),  # v4 accelerator types count TensorCores: two per chip
        ("v5e:4x4", "v5e:4x4", 16, "v5litepod-16"),
        ("v5litepod-16", "v5e:4x4", 16, "v5litepod-16"),
        ("V5P-128", "v5p:4x4x4", 64, "v5p-128"),
        ("v6e-256", "v6e:16x16", 256, "v6e-256"),
    ],
)
def test_topology_names(text, name, chips, accelerator_type):
    topology = compile_ahead.parse_topology(text)
    assert (topology.name, topology.num_chips, topology.accelerator_type) == (name, chips, accelerator_type)


def test_torus_wrap_only_on_full_cubes_and_rings():
    assert compile_ahead.parse_topology("v4:2x2x4").wrap == (False, False, False)
    assert compile_ahead.parse_topology("v5p:4x4x8").wrap == (True, True, True)
    assert compile_ahead.parse_topology("v5e:8x16").wrap == (False, True, False)


@pytest.mark.parametrize(
    "text, message",
    [("v4:4x4", "3 axes"), ("v9:2x2", "unknown TPU generation 'v9'"), ("v4-24", "not a standard v4 slice"),
     ("tpu", "cannot read topology")],
)
def test_bad_topology_is_named(text, message):
    with pytest.raises(compile_ahead.TopologyError, match=message):
        compile_ahead.parse_topology(text)


def test_cli_reports_a_bad_topology(capsys):
    assert compile_ahead.main(["--topology", "v9:2x2", "--config", "configs/base_cased.py:tiny"]) == 2
    assert "unknown TPU generation 'v9'" in capsys.readouterr().err


def test_cli_reports_a_bad_phase(capsys):
    assert compile_ahead.main(["--phase", "2", "--config", "configs/base_cased.py:tiny"]) == 2
    assert "--phase '2': give 'all' or an index below 2" in capsys.readouterr().err


@pytest.mark.skipif(HAS_LIBTPU, reason="libtpu is installed: the compile test below covers this environment")
def test_cli_without_libtpu_says_how_to_install_it(capsys):
    assert compile_ahead.main(["--topology", "v5e:2x2", "--config", "configs/base_cased.py:tiny"]) == 2
    assert "libtpu is not installed" in capsys.readouterr().err


# One encoder layer at sequence 16 keeps each TPU compile to seconds; no dropout keeps the RNG out of the program.
MICRO_OVERRIDES = [
    "model.vocab_size=256", "model.hidden_size=64", "model.num_hidden_layers=1", "model.num_attention_heads=2",
    "model.intermediate_size=128", "model.max_position_embeddings=64", "model.hidden_dropout_prob=0.0",
    "model.attention_probs_dropout_prob=0.0", "batch_size=8", "train_steps=10", "optimizer.warmup_steps=1",
    "phases=[{'max_seq_length': 16, 'fraction': 1.0, 'max_predictions': 4}]",
]


def test_tpu_compile_memory_matches_the_sharding():
    pytest.importorskip("libtpu", reason="libtpu (the [tpu] extra) is not installed; see docs/tpu_compile.md")
    topology = compile_ahead.parse_topology("v5e:2x2")
    devices = compile_ahead.topology_devices(topology)
    assert len(devices) == 4 and "TPU v5 lite" in devices[0].device_kind
    reports = {}
    for data, fsdp in ((4, 1), (1, 4)):
        config = load_config("configs/base_cased.py:tiny", MICRO_OVERRIDES + [f"mesh.data={data}", f"mesh.fsdp={fsdp}"])
        report = compile_ahead.compile_phase(setup.build(config, devices), topology, 0)
        assert report.compiled, report.error
        for field in ("argument_bytes", "output_bytes", "alias_bytes", "generated_code_bytes", "flops_per_device"):
            assert getattr(report, field) > 0, field
        assert report.temp_bytes >= 0
        # The compiler's argument memory is exactly our state + batch shards, padded to its TPU tiles.
        assert report.argument_bytes == report.argument_bytes_by_layout
        assert report.argument_bytes >= report.state_bytes_by_sharding + report.batch_bytes_by_sharding
        assert report.fits and report.total_bytes < report.hbm_bytes == 16 * compile_ahead.GIB
        reports[fsdp] = report
    # FSDP splits parameters and both Adam moments over 4 chips; the donated state is what the outputs alias.
    assert reports[4].argument_bytes < reports[1].argument_bytes / 2
    assert reports[1].state_bytes_by_sharding / 4 < reports[4].state_bytes_by_sharding < reports[1].state_bytes_by_sharding / 3
    for report in reports.values():
        assert report.alias_bytes <= report.argument_bytes - report.batch_bytes_by_sharding
    assert np.isclose(reports[1].flops_per_step, reports[4].flops_per_step, rtol=0.25)


@pytest.mark.parametrize("scan_layers", [False, True])
def test_report_says_when_xla_counts_a_scanned_layer_once(scan_layers):
    report = compile_ahead.PhaseReport(
        topology="v5e:4x4", accelerator_type="v5litepod-16", device_kind="TPU v5 lite", num_devices=16,
        mesh={"data": 16, "fsdp": 1, "tensor": 1}, phase=0, seq_len=128, max_predictions=20, global_batch=256,
        model_dtype="bfloat16", compiled=True, compile_s=60.0, hbm_bytes=16 * 2**30, total_bytes=2**30,
        flops_per_step=2.2e12, model_flops_per_step=1.8e13, scan_layers=scan_layers,
    )
    text = compile_ahead.format_report(report)
    assert "ratio 0.122" in text
    assert ("scanned layer body once" in text) == scan_layers
