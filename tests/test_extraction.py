"""A student's parameters taken from its teacher's (models/extraction.py), as HF's extract_distilbert.py: bit-for-bit
copies of the chosen layers and the embeddings, inside jax.jit on sharded arrays, with clear errors."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import transformers
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from bert_jax.errors import ConfigError
from bert_jax.interop import hf
from bert_jax.models.bert import BertForPreTraining
from bert_jax.models.bert_config import BertConfig
from bert_jax.models.distilbert import DistilBertForMaskedLM
from bert_jax.models.distilbert_config import DistilBertConfig
from bert_jax.models.extraction import default_layers, extract_student
from bert_jax.models.roberta import RobertaForMaskedLM
from bert_jax.models.roberta_config import RobertaConfig
from tests.hf_reference import max_abs_diff


def flat(state) -> dict[tuple, np.ndarray]:
    return {tuple(path): np.asarray(leaf.get_value()) for path, leaf in nnx.to_flat_state(state)}


def minilm_student_config(**overrides) -> DistilBertConfig:
    values = dict(vocab_size=30522, dim=384, n_heads=12, hidden_dim=1536, n_layers=3, max_position_embeddings=512)
    values.update(overrides)
    return DistilBertConfig(**values)


@pytest.fixture(scope="module")
def minilm_teacher(minilm_dir):
    """The real MiniLM-L6 (a BertModel: its MLM head here is a fresh init) as a BertForMaskedLM."""
    teacher, report = hf.load_pretrained(minilm_dir, heads=("mlm",))
    assert report.missing_heads == ["MLM head"]
    return teacher


def test_default_layers_spread_evenly_and_match_extract_distilbert():
    assert default_layers(12, 6) == (0, 2, 4, 7, 9, 11)  # extract_distilbert.py's list
    assert default_layers(24, 12)[0] == 0 and default_layers(24, 12)[-1] == 23
    assert default_layers(6, 3) == (0, 3, 5)  # 2.5 rounds half up
    assert default_layers(6, 6) == tuple(range(6))
    assert default_layers(4, 1) == (0,)
    with pytest.raises(ConfigError, match="a 7-layer student cannot take distinct layers of a 6-layer teacher"):
        default_layers(6, 7)


def test_minilm_layers_and_embeddings_copied_bit_for_bit_on_sharded_arrays(minilm_teacher):
    """In one jitted call, as the trainer's sharded init: the teacher's arrays are split over two devices."""
    student_config = minilm_student_config()
    student = DistilBertForMaskedLM(student_config, rngs=nnx.Rngs(7))
    mesh = jax.make_mesh((2,), ("x",), devices=jax.devices()[:2])

    def shard(leaf):
        spec = PartitionSpec("x") if leaf.ndim and leaf.shape[0] % 2 == 0 else PartitionSpec()
        return jax.device_put(leaf, NamedSharding(mesh, spec))

    teacher_params = jax.tree.map(shard, nnx.state(minilm_teacher, nnx.Param))
    assert len(teacher_params["bert"]["embeddings"]["word_embeddings"]["embedding"].sharding.device_set) == 2
    extract = jax.jit(functools.partial(extract_student, student_config=student_config,
                                        teacher_config=minilm_teacher.config))
    extracted = extract(nnx.state(student, nnx.Param), teacher_params)

    got, fresh, teacher = flat(extracted), flat(nnx.state(student, nnx.Param)), flat(nnx.state(minilm_teacher))
    assert set(got) == set(fresh)  # the student's tree, unchanged in shape
    layers = default_layers(6, 3)
    assert layers == (0, 3, 5)
    for path, value in got.items():
        if path[:2] == ("distilbert", "layers"):
            source = ("bert", "layers", layers[path[2]], *path[3:])
        elif path[0] == "distilbert":
            source = ("bert", *path[1:])
        else:
            source = path  # the MLM head (MiniLM's is fresh, copied all the same)
        np.testing.assert_array_equal(value, teacher[source], err_msg=str(path))
    assert not any("token_type_embeddings" in path for path in got)
    # Metadata survives: the trainer's shardings come from the logical axes.
    word = extracted["distilbert"]["embeddings"]["word_embeddings"]["embedding"]
    assert word.get_metadata()["logical_axes"] == ("vocab", "embed")


def test_all_layers_with_folded_token_type_reproduce_the_teacher(minilm_teacher, minilm_dir):
    """Every teacher layer, and the type-0 row added to the positions: the student is the teacher's function on
    single-segment input (the real MiniLM weights)."""
    student_config = minilm_student_config(n_layers=6)
    student = DistilBertForMaskedLM(student_config, rngs=nnx.Rngs(0))
    nnx.update(student, extract_student(nnx.state(student, nnx.Param), nnx.state(minilm_teacher, nnx.Param),
                                        student_config=student_config, teacher_config=minilm_teacher.config,
                                        fold_token_type=True))
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    encoded = tokenizer(["The capital of France is Paris.", "A short one."], padding=True, return_tensors="np")
    ids, mask = jnp.asarray(encoded["input_ids"]), jnp.asarray(encoded["attention_mask"])
    expected = minilm_teacher(ids, mask, jnp.zeros_like(ids))
    got = student(ids, mask)
    keep = np.asarray(mask).astype(bool)
    assert max_abs_diff(np.asarray(got["sequence_output"])[keep], np.asarray(expected["sequence_output"])[keep]) <= 1e-5
    assert max_abs_diff(np.asarray(got["mlm_logits"])[keep], np.asarray(expected["mlm_logits"])[keep]) <= 1e-4
    # Without the fold (extract_distilbert.py's choice) the embeddings lack the type-0 row.
    plain = extract_student(nnx.state(student, nnx.Param), nnx.state(minilm_teacher, nnx.Param),
                            student_config=student_config, teacher_config=minilm_teacher.config)
    np.testing.assert_array_equal(plain["distilbert"]["embeddings"]["position_embeddings"]["embedding"][...],
                                  minilm_teacher.bert.embeddings.position_embeddings.embedding[...])


def tiny_bert_config(**overrides) -> BertConfig:
    values = dict(vocab_size=97, hidden_size=32, num_attention_heads=4, intermediate_size=64, num_hidden_layers=4,
                  max_position_embeddings=32)
    values.update(overrides)
    return BertConfig(**values)


def tiny_student_config(**overrides) -> DistilBertConfig:
    values = dict(vocab_size=97, dim=32, n_heads=4, hidden_dim=64, n_layers=2, max_position_embeddings=32)
    values.update(overrides)
    return DistilBertConfig(**values)


@pytest.fixture(scope="module")
def pretraining_teacher():
    return BertForPreTraining(tiny_bert_config(), rngs=nnx.Rngs(3))


def extract(teacher, student_config, **kwargs):
    student = DistilBertForMaskedLM(student_config, rngs=nnx.Rngs(1))
    fresh = nnx.state(student, nnx.Param)
    return fresh, extract_student(fresh, nnx.state(teacher, nnx.Param), student_config=student_config,
                                  teacher_config=teacher.config, **kwargs)


def test_pretraining_teacher_drops_pooler_and_nsp_and_keeps_the_mlm_transform_on_request(pretraining_teacher):
    fresh, extracted = extract(pretraining_teacher, tiny_student_config(), layers=[3, 1],
                               copy_mlm_transform=False)
    got, before, teacher = flat(extracted), flat(fresh), flat(nnx.state(pretraining_teacher))
    assert set(got) == set(before)
    np.testing.assert_array_equal(got[("distilbert", "layers", 0, "output", "kernel")],
                                  teacher[("bert", "layers", 3, "output", "kernel")])
    np.testing.assert_array_equal(got[("distilbert", "layers", 1, "attention", "query", "kernel")],
                                  teacher[("bert", "layers", 1, "attention", "query", "kernel")])
    np.testing.assert_array_equal(got[("mlm_bias",)], teacher[("mlm_bias",)])  # the tied decoder's bias: copied
    for path in [("mlm_transform", "kernel"), ("mlm_layer_norm", "scale")]:  # as extract_distilbert.py by default
        np.testing.assert_array_equal(got[path], before[path])


def test_roberta_student_from_roberta_teacher_keeps_its_token_types():
    teacher_config = RobertaConfig(vocab_size=97, hidden_size=32, num_attention_heads=4, intermediate_size=64,
                                   num_hidden_layers=4, max_position_embeddings=34)
    student_config = RobertaConfig(**{**teacher_config.to_hf_dict(), "num_hidden_layers": 2})
    teacher = RobertaForMaskedLM(teacher_config, rngs=nnx.Rngs(0))
    student = RobertaForMaskedLM(student_config, rngs=nnx.Rngs(1))
    got = flat(extract_student(nnx.state(student, nnx.Param), nnx.state(teacher, nnx.Param),
                               student_config=student_config, teacher_config=teacher_config))
    teacher_flat = flat(nnx.state(teacher))
    path = ("roberta", "embeddings", "token_type_embeddings", "embedding")
    np.testing.assert_array_equal(got[path], teacher_flat[path])
    np.testing.assert_array_equal(got[("roberta", "layers", 1, "layer_norm", "bias")],
                                  teacher_flat[("roberta", "layers", 3, "layer_norm", "bias")])


@pytest.mark.parametrize("student_overrides, message", [
    (dict(dim=48, n_heads=4), r"the student's dim \(48\) differs from the teacher's hidden_size \(32\)"),
    (dict(n_heads=8), r"the student's n_heads \(8\) differs from the teacher's num_attention_heads \(4\)"),
    (dict(hidden_dim=128), r"the student's hidden_dim \(128\) differs from the teacher's intermediate_size \(64\)"),
    (dict(vocab_size=98), r"the student's vocab_size \(98\) differs from the teacher's vocab_size \(97\)"),
    (dict(activation="relu"), r"the student's activation \(relu\) differs from the teacher's hidden_act \(gelu\)"),
])
def test_a_student_of_another_width_or_vocab_is_refused(pretraining_teacher, student_overrides, message):
    with pytest.raises(ConfigError, match=message):
        extract(pretraining_teacher, tiny_student_config(**student_overrides))


def test_layer_list_errors(pretraining_teacher):
    with pytest.raises(ConfigError, match=r"teacher layer 4 in \[0, 4\] is out of range: the teacher has 4 layers"):
        extract(pretraining_teacher, tiny_student_config(), layers=[0, 4])
    with pytest.raises(ConfigError, match=r"teacher layer -1 in \[-1, 2\] is out of range"):
        extract(pretraining_teacher, tiny_student_config(), layers=[-1, 2])
    with pytest.raises(ConfigError, match=r"the layer list \[0, 1, 2\] has 3 entries but the student has 2 layers"):
        extract(pretraining_teacher, tiny_student_config(), layers=[0, 1, 2])


def test_unsupported_pairs_are_refused(pretraining_teacher):
    roberta = RobertaForMaskedLM(RobertaConfig(vocab_size=97, hidden_size=32, num_attention_heads=4,
                                               intermediate_size=64, num_hidden_layers=2,
                                               max_position_embeddings=34), rngs=nnx.Rngs(0))
    with pytest.raises(ConfigError, match="a distilbert student cannot be initialised from a roberta teacher"):
        extract(roberta, tiny_student_config())
    bert_student_config = tiny_bert_config(num_hidden_layers=2)
    bert_student = BertForPreTraining(bert_student_config, rngs=nnx.Rngs(0))
    with pytest.raises(ConfigError, match="fold_token_type is for a student without token-type embeddings"):
        extract_student(nnx.state(bert_student, nnx.Param), nnx.state(pretraining_teacher, nnx.Param),
                        student_config=bert_student_config, teacher_config=pretraining_teacher.config,
                        fold_token_type=True)
