"""The RoBERTa recipe end to end on the bundled sample corpus: packed BPE data, masked LM alone, a RoBERTa model that
learns, exports to a directory transformers loads, and fill-mask equal to transformers' pipeline on it; data of the
wrong vocabulary kind is refused before any step."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import transformers

from bert_jax import errors, fill_mask
from bert_jax.configuration import load_config
from bert_jax.training import loop as trainer
from tests.conftest import SAMPLE
from tests.run_helpers import ONE_PHASE, losses, overrides, records

STEPS = 16
TEXTS = ["Paris is the <mask> of France.", "Hello I'm a <mask> model.", "The man worked as a <mask>.",
         "<mask> and <mask> are two words."]


def _config(dataset, **fields):
    base = dict(phases=ONE_PHASE, train_steps=STEPS, checkpoint_every=8, eval_every=8, export_at_end=True,
                **{"data.vocab_file": str(SAMPLE / "bpe/tokenizer.json")})
    return load_config("configs/roberta_base.py:tiny", overrides(dataset, **{**base, **fields}))


@pytest.fixture(scope="module")
def roberta_run(sample_packed_dataset, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("roberta") / "run"
    result = trainer.run(_config(sample_packed_dataset), str(workdir))
    assert result.status == "finished" and result.step == STEPS
    return workdir


def test_roberta_tiny_starts_at_uniform_loss_and_learns(roberta_run):
    train = losses(roberta_run)
    assert abs(train[1] - math.log(4096)) < 0.1, train[1]
    first, last = np.mean([train[s] for s in range(1, 5)]), np.mean([train[s] for s in range(13, 17)])
    assert last < first - 0.3, (first, last)
    assert not [key for record in records(roberta_run).values() for key in record if "nsp" in key]


def test_roberta_export_loads_in_transformers_with_its_tokenizer(roberta_run):
    export = roberta_run / "export"
    config = json.loads((export / "config.json").read_text())
    assert config["architectures"] == ["RobertaForMaskedLM"]
    assert (config["pad_token_id"], config["bos_token_id"], config["eos_token_id"]) == (1, 0, 2)
    model, info = transformers.AutoModelForMaskedLM.from_pretrained(export, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    tokenizer = transformers.AutoTokenizer.from_pretrained(export)
    assert tokenizer.mask_token == "<mask>" and tokenizer.mask_token_id == 4095 and tokenizer.pad_token_id == 1


@pytest.fixture(scope="module")
def transformers_directory(tmp_path_factory):
    """A RobertaForMaskedLM with random weights and the bundled BPE tokenizer, both written by transformers."""
    from tests.test_roberta_model import random_weights, tiny_roberta_config

    out = tmp_path_factory.mktemp("hf_roberta")
    model = random_weights(transformers.RobertaForMaskedLM(tiny_roberta_config(vocab_size=4096,
                                                                               max_position_embeddings=130)), seed=5)
    model.save_pretrained(out)
    transformers.AutoTokenizer.from_pretrained(SAMPLE / "bpe").save_pretrained(out)
    return out


@pytest.mark.parametrize("written_by", ["bert_jax", "transformers"])
def test_fill_mask_equals_the_transformers_pipeline_on_a_roberta_directory(written_by, roberta_run, request):
    export = str(roberta_run / "export" if written_by == "bert_jax" else request.getfixturevalue("transformers_directory"))
    pipe = transformers.pipeline("fill-mask", model=export, tokenizer=export, device="cpu")
    ours = fill_mask.FillMask(export)(TEXTS, top_k=5)
    for text, got in zip(TEXTS, ours):
        expected = pipe(text, top_k=5)
        if isinstance(expected[0], dict):
            expected, got = [expected], [got]
        for got_row, expected_row in zip(got, expected):
            assert [p["token"] for p in got_row] == [p["token"] for p in expected_row], text
            assert [p["token_str"] for p in got_row] == [p["token_str"] for p in expected_row], text
            assert [p["sequence"] for p in got_row] == [p["sequence"] for p in expected_row], text
            for a, b in zip(got_row, expected_row):
                assert abs(a["score"] - b["score"]) <= 1e-4, text


def test_fill_mask_without_the_mask_token_is_the_same_clear_error(roberta_run, capsys):
    assert fill_mask.main(["--model", str(roberta_run / "export"), "no mask here"]) == 2
    assert "contains no <mask>" in capsys.readouterr().err


def test_a_vocab_of_the_other_kind_is_refused_naming_both(sample_dataset, sample_packed_dataset, tmp_path):
    with pytest.raises(errors.InputError, match="built with a wordpiece vocab .* 'roberta' reads a bpe one"):
        trainer.run(_config(sample_dataset), str(tmp_path / "roberta_on_wordpiece"))
    bert = load_config("configs/base_cased.py:tiny", overrides(sample_packed_dataset, objective="mlm",
                                                                phases=ONE_PHASE))
    with pytest.raises(errors.InputError, match="built with a bpe vocab .* 'bert' reads a wordpiece one"):
        trainer.run(bert, str(tmp_path / "bert_on_bpe"))


def test_next_sentence_objective_on_packed_data_is_refused(tmp_path):
    from bert_jax.data import build

    packed = tmp_path / "packed_wordpiece"  # BERT's vocab, packed: masked LM can read it, next-sentence cannot
    build.build(build.BuildConfig(inputs=(str(SAMPLE / "corpus-03.txt"),),
                                  vocab=str(SAMPLE / "vocab/vocab.txt"), lowercase=False,
                                  max_seq_lengths=(32,), example_kind="full_sentences"), str(packed))
    bert = load_config("configs/base_cased.py:tiny", overrides(packed, phases=ONE_PHASE))
    with pytest.raises(errors.InputError, match=r"reads \['next_sentence_labels'\], which the full_sentences"):
        trainer.run(bert, str(tmp_path / "nsp_on_packed"))
