"""Distillation end to end on the sample corpus: a tiny BERT teacher trained by the trainer, a DistilBERT student
distilled from it with the trainer's features (checkpoints without the teacher, exact resume, a changed teacher
refused, export), the student initialised from the teacher's layers, and each bad input one clear error."""

from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest
import transformers

from bert_jax import distill, errors
from bert_jax.configuration import load_config
from bert_jax.data import build
from bert_jax.training import checkpointing, loop as trainer, setup
from tests.conftest import SAMPLE
from tests.run_helpers import ONE_PHASE, losses, overrides, records

STEPS = 12
SMALL_STUDENT = {"model.dim": 32, "model.n_heads": 2, "model.hidden_dim": 64, "model.n_layers": 1,
                 "model.max_position_embeddings": 64}


@pytest.fixture(scope="module")
def packed_wordpiece(tmp_path_factory):
    """The sample corpus packed into full sentences with the WordPiece sample vocab: data a BERT teacher and a
    DistilBERT student (one token type) both read."""
    output = tmp_path_factory.mktemp("distil_data") / "built"
    build.build(build.BuildConfig(inputs=(str(SAMPLE / "corpus-00.txt"),),
                                  vocab=str(SAMPLE / "vocab/vocab.txt"), lowercase=False,
                                  max_seq_lengths=(32,), eval_fraction=0.05, example_kind="full_sentences"),
                str(output), workers=1)
    return output


@pytest.fixture(scope="module")
def teacher(packed_wordpiece, tmp_path_factory):
    """A 2-layer BERT (hidden 32) trained on that data with masked LM alone."""
    workdir = tmp_path_factory.mktemp("teacher") / "run"
    config = load_config("configs/base_cased.py:tiny", overrides(packed_wordpiece, objective="mlm", phases=ONE_PHASE,
                                                                 train_steps=STEPS, **{"model.num_hidden_layers": 2}))
    assert trainer.run(config, str(workdir)).status == "finished"
    return workdir


def student_config(data, teacher_source, **fields):
    values = {**SMALL_STUDENT, "data.dir": str(data), "data.build_from": "", "data.worker_count": 0,
              "distillation.teacher": str(teacher_source), "distillation.teacher_train": "", "batch_size": 16,
              "phases": ONE_PHASE, "train_steps": STEPS, "optimizer.warmup_steps": 2, "optimizer.learning_rate": 3e-3,
              "log_every": 1, "eval_every": 6, "eval_steps": 2, "checkpoint_every": 6, "peak_flops_per_device": 1e10,
              "export_at_end": True}
    values.update(fields)
    return load_config("configs/distilbert_base_cased.py:tiny", [f"{k}={v}" for k, v in values.items()])


@pytest.fixture(scope="module")
def student(packed_wordpiece, teacher, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("student") / "run"
    assert trainer.run(student_config(packed_wordpiece, teacher), str(workdir)).status == "finished"
    return workdir


def test_student_starts_as_the_teachers_layer_and_embeddings(packed_wordpiece, teacher):
    run = setup.build(student_config(packed_wordpiece, teacher))
    params, teacher_params = run.init_state().params, run.frozen_params
    for ours, theirs in ((params["distilbert"]["layers"][0], teacher_params["bert"]["layers"][0]),
                         (params["distilbert"]["embeddings"]["word_embeddings"],
                          teacher_params["bert"]["embeddings"]["word_embeddings"]),
                         (params["mlm_transform"], teacher_params["mlm_transform"])):
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    bf16 = setup.build(student_config(packed_wordpiece, teacher, **{"distillation.teacher_dtype": "bfloat16"}))
    assert {np.asarray(leaf).dtype.name for leaf in jax.tree.leaves(bf16.frozen_params)} == {"bfloat16"}
    assert {leaf.dtype.name for leaf in jax.tree.leaves(bf16.init_state().params)} == {"float32"}  # master weights
    random = setup.build(student_config(packed_wordpiece, teacher, **{"distillation.student_init": "random"}))
    layer = random.init_state().params["distilbert"]["layers"][0]["intermediate"]["kernel"].get_value()
    assert not np.array_equal(np.asarray(layer), np.asarray(
        teacher_params["bert"]["layers"][0]["intermediate"]["kernel"].get_value()))


def test_distillation_logs_every_term_and_learns(student):
    train, evals = records(student), records(student, "eval")
    assert sorted(train) == list(range(1, STEPS + 1))
    for name in ("kd_loss", "cos_loss", "mlm_loss", "mlm_accuracy", "teacher_mlm_accuracy"):
        assert all(np.isfinite(r[name]) for r in train.values()) and name in evals[STEPS], name
    assert np.mean([train[s]["loss"] for s in (10, 11, 12)]) < np.mean([train[s]["loss"] for s in (1, 2, 3)])


def test_checkpoints_hold_the_student_only_and_record_the_teacher(student, teacher, packed_wordpiece):
    manager = checkpointing.make_manager(str(student), keep=3, read_only=True)
    saved = checkpointing.read_metadata(manager, STEPS)
    run = setup.build(student_config(packed_wordpiece, teacher))
    assert saved["frozen_fingerprint"] == run.frozen.fingerprint != ""
    restored, _ = checkpointing.restore(manager, STEPS, run.abstract_state, run.shardings)  # the student's tree
    assert set(restored.params) == {"distilbert", "mlm_transform", "mlm_layer_norm", "mlm_bias"}
    # Every array orbax wrote is one of the student's state: the teacher's parameters are in none of them.
    saved_arrays = json.loads((student / "checkpoints" / str(STEPS) / "state" / "_METADATA").read_text())
    arrays = [path for path, entry in saved_arrays["tree_metadata"].items()
              if entry["value_metadata"].get("value_type") == "jax.Array"]
    assert len(arrays) == len(jax.tree.leaves(run.abstract_state))  # the student's state, leaf for leaf
    assert not [path for path in arrays if "'bert'" in path]


def test_resume_is_bit_for_bit_and_a_changed_teacher_is_refused(student, teacher, packed_wordpiece, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(student, partial)
    shutil.rmtree(partial / "checkpoints" / str(STEPS))
    shutil.rmtree(partial / "export")
    assert trainer.run(student_config(packed_wordpiece, teacher), str(partial)).status == "finished"
    assert losses(partial) == losses(student) and losses(partial, "eval") == losses(student, "eval")

    other_teacher = tmp_path / "other_teacher"
    shutil.copytree(teacher, other_teacher)
    more = load_config("configs/base_cased.py:tiny", overrides(packed_wordpiece, objective="mlm", phases=ONE_PHASE,
                                                               train_steps=STEPS + 2, **{"model.num_hidden_layers": 2}))
    trainer.run(more, str(other_teacher))  # two more steps: other weights
    shutil.rmtree(partial / "checkpoints" / str(STEPS))
    with pytest.raises(errors.CheckpointError, match="another frozen model"):
        trainer.run(student_config(packed_wordpiece, other_teacher), str(partial))


def test_student_exports_as_distilbert(student):
    export = student / "export"
    assert json.loads((export / "config.json").read_text())["architectures"] == ["DistilBertForMaskedLM"]
    model, info = transformers.AutoModelForMaskedLM.from_pretrained(export, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and model.config.n_layers == 1


def test_bad_teachers_are_clear_errors(packed_wordpiece, teacher, minilm_dir, tmp_path):
    with pytest.raises(errors.CheckpointError, match="no masked-LM head"):  # a bare BertModel
        setup.build(student_config(packed_wordpiece, minilm_dir, **{"model.vocab_size": 30522, "model.dim": 384,
                                                                     "model.n_heads": 12, "model.hidden_dim": 1536}))
    with pytest.raises(errors.ConfigError, match="out of range"):
        setup.build(student_config(packed_wordpiece, teacher, **{"distillation.student_layers": [5]})).init_state()
    pickle_dir = tmp_path / "pickle_teacher"
    pickle_dir.mkdir()
    shutil.copy(minilm_dir / "config.json", pickle_dir / "config.json")
    (pickle_dir / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(errors.CheckpointError, match="safetensors only"):
        setup.build(student_config(packed_wordpiece, pickle_dir, **{"model.vocab_size": 30522, "model.dim": 384,
                                                                     "model.n_heads": 12, "model.hidden_dim": 1536}))


def test_a_teacher_of_another_vocabulary_is_refused_before_training(packed_wordpiece, tmp_path):
    config = transformers.BertConfig(vocab_size=5000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=64)
    transformers.BertForMaskedLM(config).save_pretrained(tmp_path / "hf_teacher")
    with pytest.raises(errors.InputError, match="vocabulary of 5000 tokens and the data .* one of 4096"):
        trainer.run(student_config(packed_wordpiece, tmp_path / "hf_teacher", **{"model.vocab_size": 5000}),
                    str(tmp_path / "run"))


def test_distill_cli_reports_a_config_without_the_objective(capsys, tmp_path):
    assert distill.main(["--config", "configs/base_cased.py:tiny", "--workdir", str(tmp_path / "w")]) == 2
    assert "distill needs a config with objective 'distillation'" in capsys.readouterr().err


def test_the_report_plots_every_distillation_term_and_the_card_says_fill_mask(student):
    from huggingface_hub import ModelCard

    from bert_jax import report

    figure = report.build_figure(report.read_metrics(str(student)))
    titles = [axes.get_title() for axes in figure.axes]
    assert titles[0] == "loss" and {"mlm_accuracy", "teacher_mlm_accuracy", "learning_rate"} <= set(titles)
    drawn = {line.get_label() for line in figure.axes[0].get_lines()}
    assert {"train kd_loss", "train cos_loss", "eval kd_loss"} <= drawn
    card = ModelCard.load(student / "export" / "README.md")
    assert card.data.pipeline_tag == "fill-mask" and "`DistilBertForMaskedLM`" in card.text
    assert {r.metric_type: r.metric_value for r in card.data.eval_results}["kd_loss"] == records(
        student, "eval")[STEPS]["kd_loss"]
