"""Continued pre-training (`config.init_from`): a fresh run starts from a trained model's weights.

The reference is transformers: a tiny random `BertForPreTraining` it saved, with the sample vocab the test data was
built with. Our step-0 eval loss (MLM + NSP) equals the loss transformers computes on exactly the same eval batch
(the trainer's own eval loader: same masked positions and labels). Also: a bare `BertModel` source (its heads
reported as initialised), a workdir source, a Hub id resolved from a cache in huggingface_hub's real layout, and the
one-line errors (an id not in the cache, another vocab, an override the source contradicts).
"""

from __future__ import annotations

import json
import logging
import shutil

import jax
import numpy as np
import pytest
import torch
import transformers

from bert_jax import train
from bert_jax.configuration import load_config
from bert_jax.errors import CheckpointError, ConfigError, InputError
from bert_jax.interop import init_from, sources
from bert_jax.training import checkpointing, inputs, loop, setup
from bert_jax.training.phases import phase_plan
from tests.hf_reference import max_abs_diff, random_hf_pretraining_model
from tests.run_helpers import ONE_PHASE, REPO, overrides, records
from tests.test_roberta_model import random_weights, tiny_roberta_config

VOCAB = REPO / "data/sample/vocab/vocab.txt"
TOLERANCE = 1e-4  # max abs difference of a loss, float32 on both sides
TINY = dict(vocab_size=4096, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=64)


def run_config(dataset, source, spec="configs/base_cased.py:tiny", **fields):
    """A one-step run on the sample data from `source`; its own model fields (1 layer) are replaced by the source's."""
    base = dict(phases=ONE_PHASE, train_steps=1, eval_steps=1, **{"optimizer.warmup_steps": 0})
    return load_config(spec, overrides(dataset, **{**base, **fields}) + [f"init_from={source}"])


def save_with_vocab(model, directory, vocab=VOCAB):
    model.save_pretrained(directory)
    shutil.copy(vocab, directory / vocab.name)
    return directory


@pytest.fixture(scope="module")
def hf_bert(tmp_path_factory):
    """A random BertForPreTraining (every weight random) with the sample vocab, as transformers saves it."""
    model = random_hf_pretraining_model(transformers.BertConfig(**TINY), seed=3)
    with torch.no_grad():  # smaller weights: losses of a few nats, where 1e-4 is a tight tolerance
        for param in model.parameters():
            param.mul_(0.3)
    return save_with_vocab(model, tmp_path_factory.mktemp("hf_bert") / "model")


@pytest.fixture(scope="module")
def continued(hf_bert, sample_dataset, tmp_path_factory):
    """One step of a run continued from `hf_bert`: its workdir and config (completed by the run)."""
    workdir = tmp_path_factory.mktemp("continued") / "run"
    config = run_config(sample_dataset, f"hf:{hf_bert}", export_at_end=True)
    assert loop.run(config, str(workdir)).status == "finished"
    return workdir, config


def test_step0_eval_loss_equals_transformers_on_the_same_batch(continued, hf_bert):
    workdir, config = continued
    assert config.model.num_hidden_layers == 2 and config.model.intermediate_size == 64  # the source's
    ours = records(workdir, "eval")[0]
    batch = next(iter(inputs.eval_loader(config, phase_plan(config)[0])))
    real = batch["example_weights"] > 0 if "example_weights" in batch else np.ones(len(batch["input_ids"]), bool)
    labels = np.full(batch["input_ids"].shape, -100, np.int64)  # transformers' "not predicted"
    for row, positions in enumerate(batch["masked_lm_positions"]):
        for slot, position in enumerate(positions):
            if batch["masked_lm_weights"][row, slot] > 0:
                labels[row, position] = batch["masked_lm_ids"][row, slot]
    model = transformers.BertForPreTraining.from_pretrained(hf_bert).eval()
    with torch.no_grad():
        out = model(input_ids=torch.tensor(batch["input_ids"][real], dtype=torch.long),
                    attention_mask=torch.tensor(batch["input_mask"][real], dtype=torch.long),
                    token_type_ids=torch.tensor(batch["segment_ids"][real], dtype=torch.long))
    mlm = torch.nn.functional.cross_entropy(out.prediction_logits.reshape(-1, TINY["vocab_size"]),
                                            torch.tensor(labels[real]).reshape(-1)).item()
    nsp = torch.nn.functional.cross_entropy(out.seq_relationship_logits,
                                            torch.tensor(batch["next_sentence_labels"][real].reshape(-1),
                                                         dtype=torch.long)).item()
    assert ours["examples"] == real.sum() == config.batch_size
    assert max_abs_diff(ours["mlm_loss"], mlm) <= TOLERANCE and max_abs_diff(ours["nsp_loss"], nsp) <= TOLERANCE
    assert max_abs_diff(ours["loss"], mlm + nsp) <= TOLERANCE
    assert records(workdir, "eval")[1]["loss"] != ours["loss"]  # the step trained from there
    exported = json.loads((workdir / "export" / "config.json").read_text())
    assert exported["num_hidden_layers"] == 2 and exported["intermediate_size"] == 64  # the source's architecture
    assert (workdir / "export" / "vocab.txt").read_bytes() == (hf_bert / "vocab.txt").read_bytes()  # and tokenizer


def test_resume_does_not_read_the_source_again(continued, sample_dataset, hf_bert, tmp_path, caplog):
    """A finished run's workdir is left as it is: no second step-0 eval, no loading."""
    workdir, _ = continued
    copy = tmp_path / "run"
    shutil.copytree(workdir, copy)
    with caplog.at_level(logging.INFO, logger="bert_jax"):
        assert loop.run(run_config(sample_dataset, f"hf:{hf_bert}"), str(copy)).step == 1
    assert "is not read again" in caplog.text and "loaded" not in caplog.text
    assert sorted(records(copy, "eval")) == [0, 1]


def test_a_bare_encoder_gets_fresh_heads_reported(sample_dataset, tmp_path, caplog):
    """A BertModel (MiniLM-like: the encoder and pooler, no heads) loads them; the MLM and NSP heads are initialised
    and listed in one line."""
    torch.manual_seed(0)
    bare = save_with_vocab(transformers.BertModel(transformers.BertConfig(**TINY)), tmp_path / "bare")
    with caplog.at_level(logging.INFO, logger="bert_jax"):
        state = setup.build(run_config(sample_dataset, str(bare))).init_state()
    line = next(message for message in caplog.messages if "not in the source, initialised" in message)
    assert "MLM head" in line and "NSP head" in line and "cls.seq_relationship.weight" in line
    assert "pooler" not in line.split("(")[0]  # BertModel has a pooler: loaded
    theirs = sources.state_dict(sources.describe(str(bare)))
    np.testing.assert_array_equal(jax.device_get(state.params["bert"]["embeddings"]["word_embeddings"]["embedding"][...]),
                                  theirs["embeddings.word_embeddings.weight"])


def test_a_workdir_is_a_source(continued, sample_dataset):
    """Our run's latest checkpoint starts another run: every parameter as saved."""
    workdir, _ = continued
    run = setup.build(run_config(sample_dataset, str(workdir)))
    state = run.init_state()
    saved, _, step = checkpointing.load_run_model(str(workdir))
    assert step == 1 and int(state.step) == 0  # a fresh run: step 0, fresh optimizer
    from flax import nnx

    for ours, theirs in zip(jax.tree.leaves(jax.device_get(state.params)),
                            jax.tree.leaves(jax.device_get(nnx.state(saved, nnx.Param)))):
        np.testing.assert_array_equal(ours, theirs)


def test_a_hub_id_is_found_in_the_local_cache(hf_bert, sample_dataset, tmp_path, monkeypatch):
    """huggingface_hub's cache layout: models--ORG--NAME/{blobs,snapshots/REV,refs/main}."""
    repo = tmp_path / "hub" / "models--tiny-org--tiny-bert"
    revision = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for index, file in enumerate(sorted(hf_bert.iterdir())):
        blob = repo / "blobs" / f"{index:040x}"
        shutil.copy(file, blob)
        (snapshot / file.name).symlink_to(f"../../blobs/{blob.name}")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    config = run_config(sample_dataset, "hf:tiny-org/tiny-bert")
    init_from.prepare_config(config)
    assert sources.resolve("hf:tiny-org/tiny-bert") == str(snapshot)
    assert config.model.num_hidden_layers == 2 and config.data.vocab_file == str(snapshot / "vocab.txt")
    with pytest.raises(CheckpointError, match="^runs/tny is no directory .* and as a Hub id: hf:runs/tny is not in "
                                              "the local Hugging Face cache"):
        sources.resolve("runs/tny")  # a mistyped workdir is named as such first


def test_errors_are_one_line_naming_the_fix(hf_bert, sample_packed_dataset, sample_dataset, tmp_path, monkeypatch,
                                            capsys):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))

    def error(source, *argv, dataset=sample_dataset):
        fields = overrides(dataset, phases=ONE_PHASE, **{"optimizer.warmup_steps": 0})
        args = ["--workdir", str(tmp_path / "w"), "--config", "configs/base_cased.py:tiny",
                *(f"--config.{o}" for o in fields if not o.startswith("model.")),  # the architecture is the source's
                f"--config.init_from={source}", *argv]
        assert train.main(args) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines[-1].startswith("python -m bert_jax.train: error: ")
        return lines[-1]

    message = error("hf:some-org/not-cached")
    assert "hf:some-org/not-cached is not in the local Hugging Face cache" in message
    assert "`hf download some-org/not-cached` on a machine with network" in message and "hf:DIR" in message
    message = error(f"hf:{hf_bert}", "--config.model.num_hidden_layers=4")
    assert "--config.model.num_hidden_layers=4 contradicts init_from" in message and "num_hidden_layers=2" in message
    message = error(f"hf:{hf_bert}", "--config.model.model_type=roberta")
    assert "contradicts init_from" in message
    # Another vocab of the same size: two tokens swapped.
    other = tmp_path / "other_vocab"
    shutil.copytree(hf_bert, other)
    tokens = VOCAB.read_text(encoding="utf-8").splitlines()
    tokens[1000], tokens[1001] = tokens[1001], tokens[1000]
    (other / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    message = error(f"hf:{other}")
    assert f"was built with {sample_dataset}/vocab.txt, which is not init_from's vocab {other}/vocab.txt" in message
    assert f"token 1000 ({tokens[1001]!r} vs {tokens[1000]!r}) differs" in message
    assert f"rebuild the data with `python -m bert_jax.data.build --vocab {other}/vocab.txt" in message
    # Data of another kind (the packed data's BPE) is named by the trainer's own check.
    assert "was built with a bpe vocab" in error(f"hf:{hf_bert}", dataset=sample_packed_dataset)
    distil = load_config("configs/distilbert_base_cased.py:tiny", [f"init_from={hf_bert}"])
    with pytest.raises(ConfigError, match="init_from=.* does not apply to distillation: the student starts from its "
                                          "teacher"):
        setup.build(distil)


def test_a_roberta_source_equals_transformers(sample_packed_dataset, tmp_path):
    """A RobertaForMaskedLM (byte-level BPE tokenizer.json): the step-0 eval's MLM loss is transformers'."""
    hf_model = random_weights(transformers.RobertaForMaskedLM(tiny_roberta_config(
        vocab_size=4096, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=66)), seed=4)
    with torch.no_grad():
        for param in hf_model.parameters():
            param.mul_(0.3)
    source = save_with_vocab(hf_model, tmp_path / "roberta", REPO / "data/sample/bpe/tokenizer.json")
    config = run_config(sample_packed_dataset, f"hf:{source}", "configs/roberta_base.py:tiny")
    run = setup.build(config)
    phase = phase_plan(config)[0]
    ours = inputs.evaluate(run, phase, run.init_state().params)
    batch = next(iter(inputs.eval_loader(config, phase)))
    labels = np.full(batch["input_ids"].shape, -100, np.int64)
    rows, slots = np.nonzero(batch["masked_lm_weights"] > 0)
    labels[rows, batch["masked_lm_positions"][rows, slots]] = batch["masked_lm_ids"][rows, slots]
    with torch.no_grad():
        theirs = hf_model(input_ids=torch.tensor(batch["input_ids"], dtype=torch.long),
                          attention_mask=torch.tensor(batch["input_mask"], dtype=torch.long),
                          labels=torch.tensor(labels)).loss.item()
    assert config.model.model_type == "roberta" and config.data.vocab_file == str(source / "tokenizer.json")
    assert max_abs_diff(ours["mlm_loss"], theirs) <= TOLERANCE


def test_casing_and_regularisation_overrides(hf_bert, sample_dataset, tmp_path):
    """A lowercased build of the same vocab is refused for a cased source; dropout set on the command line is the
    run's choice (it changes no weight), while the architecture's fields are the source's."""
    lowered = tmp_path / "lowered"
    shutil.copytree(sample_dataset, lowered, ignore=shutil.ignore_patterns("seq_*"))
    settings = lowered / "tokenizer_config.json"
    settings.write_text(settings.read_text().replace('"do_lower_case": false', '"do_lower_case": true'))
    config = run_config(sample_dataset, f"hf:{hf_bert}", **{"model.hidden_dropout_prob": 0.0})
    with pytest.raises(InputError, match=f"^the data in {lowered} was built lowercased and init_from's tokenizer "
                                         f"{hf_bert}/vocab.txt is cased: rebuild the data with --cased$"):
        init_from.check_vocab(config, str(lowered))
    init_from.prepare_config(config, init_from.overridden_fields(["model.hidden_dropout_prob=0.0"]))
    assert config.model.hidden_dropout_prob == 0.0 and config.model.attention_probs_dropout_prob == 0.1
    assert config.model.hidden_size == 32 and config.model.dropout_impl == "auto"  # the source's; the run's compute
