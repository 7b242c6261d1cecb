"""Every config file loads and validates; bad overrides and inconsistent values name the field."""

from pathlib import Path

import pytest

from bert_jax.configuration import load_config, model_config
from bert_jax.errors import ConfigError
from bert_jax.models.bert import count_parameters
from bert_jax.models.roberta import RobertaForMaskedLM

REPO = Path(__file__).resolve().parents[1]
CONFIG_FILES = sorted(path for path in (REPO / "configs").glob("*.py") if not path.name.startswith("_"))


def _variant_args(path) -> list[str]:
    """No variant, each of the file's variants, and small,uncased where the file has both."""
    from bert_jax.configuration import load_module

    variants = load_module(path).VARIANTS
    return ["", *variants] + (["small,uncased"] if {"small", "uncased"} <= set(variants) else [])


SPECS = [f"{path}:{arg}" if arg else str(path) for path in CONFIG_FILES for arg in _variant_args(path)]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: Path(s.split(":")[0]).name + (":" + s.split(":")[1] if ":" in s else ""))
def test_every_config_loads_and_validates(spec):
    config = load_config(spec)
    model_config(config)  # a valid BertConfig
    assert abs(sum(p.fraction for p in config.phases) - 1) < 1e-9
    for name in ("batch_size", "train_steps", "seed", "log_every", "eval_every", "checkpoint_every"):
        assert name in config


def test_base_cased_is_the_original_recipe():
    c = load_config(str(REPO / "configs/base_cased.py"))
    m = c.model
    assert (m.num_hidden_layers, m.hidden_size, m.num_attention_heads, m.intermediate_size) == (12, 768, 12, 3072)
    assert (m.max_position_embeddings, m.type_vocab_size, m.hidden_act) == (512, 2, "gelu")
    assert 28_000 <= m.vocab_size <= 31_000 and not c.data.lowercase
    assert (m.hidden_dropout_prob, m.attention_probs_dropout_prob) == (0.1, 0.1)
    assert c.batch_size == 256 and c.train_steps == 1_000_000
    assert [(p.max_seq_length, p.fraction, p.max_predictions) for p in c.phases] == [(128, 0.9, 20), (512, 0.1, 80)]
    o = c.optimizer
    assert (o.learning_rate, o.b1, o.b2, o.eps, o.weight_decay) == (1e-4, 0.9, 0.999, 1e-6, 0.01)
    assert (o.warmup_steps, o.end_learning_rate) == (10_000, 0.0)
    # bf16 compute with f32 master weights on the target hardware; the data axis takes every device.
    assert (c.model.dtype, c.model.param_dtype) == ("bfloat16", "float32")
    assert (c.mesh.data, c.mesh.fsdp, c.mesh.tensor) == (-1, 1, 1)


def test_large_overrides_base_to_340m():
    c = load_config(str(REPO / "configs/large_cased.py"))
    assert (c.model.num_hidden_layers, c.model.hidden_size, c.model.num_attention_heads, c.model.intermediate_size) == (
        24, 1024, 16, 4096)
    assert 330e6 < count_parameters(model_config(c)) < 345e6
    assert c.optimizer.learning_rate == 1e-4  # everything else from base


def test_uncased_variant():
    c = load_config(str(REPO / "configs/base_cased.py") + ":uncased")
    assert c.data.lowercase and c.model.vocab_size == 30522


def test_overrides_are_typed():
    c = load_config(str(REPO / "configs/base_cased.py:tiny"),
                    ["model.hidden_size=64", "optimizer.learning_rate=3e-4", "data.whole_word_masking=true",
                     "model.dtype=bfloat16", "config.train_steps=700"])
    assert c.model.hidden_size == 64 and c.optimizer.learning_rate == 3e-4
    assert c.data.whole_word_masking is True and c.model.dtype == "bfloat16" and c.train_steps == 700


@pytest.mark.parametrize("overrides,message", [
    (["model.hiden_size=64"], r"unknown config field 'model.hiden_size'; did you mean model.hidden_size"),
    (["batchsize=3"], r"unknown config field 'batchsize'.*batch_size"),
    (["model.hidden_size=129"], r"model.hidden_size \(129\) must be divisible by model.num_attention_heads \(2\)"),
    (["phases=[{'max_seq_length': 128, 'fraction': 0.5, 'max_predictions': 20}]"], r"sum to 0.5"),
    (["model.max_position_embeddings=100"], r"phases\[1\].max_seq_length \(128\) exceeds model.max_position_embeddings \(100\)"),
    (["model.hidden_size=big"], r"model.hidden_size' expects int"),
    (["data.whole_word_masking=maybe"], r"is a bool"),
    (["model.hidden_act=swiglu"], r"hidden_act 'swiglu' is not supported"),
    (["model=3"], r"'model' is a group"),
    (["train_steps"], r"FIELD=VALUE"),
    (["mesh.tensor=3"], r"mesh.tensor \(3\) must divide"),
])
def test_bad_overrides_name_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(str(REPO / "configs/base_cased.py:tiny"), overrides)


def test_unknown_variant_and_missing_file():
    with pytest.raises(ConfigError, match=r"unknown config variant\(s\) \['tiniest'\]"):
        load_config(str(REPO / "configs/base_cased.py:tiniest"))
    with pytest.raises(ConfigError, match="not found"):
        load_config("configs/no_such.py")


def test_loaded_config_is_locked():
    c = load_config(str(REPO / "configs/base_cased.py:tiny"))
    with pytest.raises(AttributeError):
        c.new_field = 1


def test_roberta_large_is_the_model_card():
    c = load_config(str(REPO / "configs/roberta_large.py"))
    m, o = c.model, c.optimizer
    assert c.objective == "mlm" and m.model_type == "roberta" and c.data.example_kind == "full_sentences"
    assert (m.num_hidden_layers, m.hidden_size, m.num_attention_heads, m.intermediate_size) == (24, 1024, 16, 4096)
    assert (m.vocab_size, m.max_position_embeddings, m.type_vocab_size, m.layer_norm_eps) == (50265, 514, 1, 1e-5)
    assert (m.pad_token_id, m.bos_token_id, m.eos_token_id) == (1, 0, 2)
    assert (o.learning_rate, o.b1, o.b2, o.eps, o.weight_decay) == (4e-4, 0.9, 0.98, 1e-6, 0.01)
    assert (o.warmup_steps, o.end_learning_rate, c.train_steps) == (30_000, 0.0, 500_000)
    assert [(p.max_seq_length, p.fraction) for p in c.phases] == [(512, 1.0)]
    # 8K sequences: devices x per-device micro-batch x accumulation (the mesh is a v5p-128 slice's 64 chips).
    assert (c.mesh.data, c.mesh.fsdp) == (-1, 1) and (c.model.dtype, c.model.param_dtype) == ("bfloat16", "float32")
    per_device_micro_batch = c.batch_size // 64 // o.grad_accum_steps
    assert c.batch_size == 8192 == 64 * per_device_micro_batch * o.grad_accum_steps
    assert 330e6 < count_parameters(model_config(c), RobertaForMaskedLM) < 360e6  # 355M as released
    base = load_config(str(REPO / "configs/roberta_base.py"))
    assert (base.optimizer.learning_rate, base.optimizer.warmup_steps, base.model.hidden_size) == (6e-4, 24_000, 768)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: Path(s.split(":")[0]).name + (":" + s.split(":")[1] if ":" in s else ""))
def test_target_hardware_computes_in_bf16_and_cpu_variants_in_f32(spec):
    """Full-size pre-training configs run on TPU/GPU: bf16 compute, f32 master weights, the data axis over every
    device. The CPU variants (small, tiny) and fine-tuning (a CPU-sized default) stay f32."""
    config = load_config(spec)
    variants = set(spec.partition(":")[2].split(","))
    cpu_sized = bool(variants & {"small", "tiny"}) or config.objective == "classification"
    assert config.model.param_dtype == "float32"
    assert config.model.dtype == ("float32" if cpu_sized else "bfloat16"), spec
    assert config.mesh.data == -1, spec
