"""inspect CLI: stats.json shown, masked statistics agree with the configuration and the data, decoding."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from bert_jax.data.inspect import decode_tokens, main
from bert_jax.data.masking import VocabInfo
from tests.data_helpers import make_vocab_tokens, write_dataset

SEQ_LEN = 64
NUM_TRAIN = 1200


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("inspect_dataset"))
    examples = write_dataset(root, lengths=(SEQ_LEN, 128), num_train=NUM_TRAIN, num_eval=20, train_shards=2)
    return root, examples[SEQ_LEN]["train"]


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_masked_statistics_agree_with_configuration_and_data(dataset, capsys):
    root, examples = dataset
    code, out, _ = run(capsys, root, "--masked", "--num", "100000", "--json", "--max_seq_length", str(SEQ_LEN))
    assert code == 0
    report = json.loads(out)
    with open(os.path.join(root, "stats.json"), encoding="utf-8") as f:
        assert report["stats"] == json.load(f)
    measured = report["masked"]
    # Deterministic quantities: exact against the stored examples (all of them are read: --num > dataset).
    vocab = VocabInfo.from_tokens(make_vocab_tokens())
    max_predictions = math.ceil(0.15 * SEQ_LEN)
    maskable = [int(np.sum((ex.input_ids != vocab.cls_id) & (ex.input_ids != vocab.sep_id))) for ex in examples]
    budget = sum(min(max_predictions, max(1, round(0.15 * m))) for m in maskable)
    assert measured["num_examples"] == NUM_TRAIN
    assert measured["masked_positions"] == budget
    assert measured["masked_fraction"] == pytest.approx(budget / sum(maskable), rel=1e-12)
    assert measured["random_next_fraction"] == pytest.approx(np.mean([ex.next_sentence_label for ex in examples]))
    assert measured["mean_length"] == pytest.approx(np.mean([len(ex.input_ids) for ex in examples]))
    # Random quantities: within 5 binomial sigmas of the configured rates. The text holds no special tokens, so
    # a random replacement equals the original with probability 1/|non-special| and then reads as unchanged.
    hit = 1 / len(vocab.replacement_ids)
    for name, probability in [("mask_token_fraction", 0.8), ("random_token_fraction", 0.1 * (1 - hit)),
                              ("unchanged_fraction", 0.1 + 0.1 * hit)]:
        sigma = math.sqrt(probability * (1 - probability) / budget)
        assert abs(measured[name] - probability) <= 5 * sigma, (name, measured[name], probability)


def test_num_limits_the_sample_and_defaults_to_the_smallest_length(dataset, capsys):
    root, _ = dataset
    code, out, _ = run(capsys, root, "--masked", "--num", "50", "--json", "--seed", "3")
    report = json.loads(out)
    assert code == 0 and report["max_seq_length"] == SEQ_LEN and report["built_lengths"] == [SEQ_LEN, 128]
    assert report["masked"]["num_examples"] == 50 and report["masking_config"]["seed"] == 3


def test_decode_shows_stored_and_masked_examples_as_text(dataset, capsys):
    root, examples = dataset
    tokens = make_vocab_tokens()
    code, out, _ = run(capsys, root, "--decode", "2")
    assert code == 0 and "length  split  examples" in out
    first = " ".join(tokens[i] for i in examples[0].input_ids).replace(" ##", "")
    assert first in out and "##" not in out
    code, out, _ = run(capsys, root, "--masked", "--num", "300", "--decode", "3")
    assert code == 0
    assert out.count("-- example ") == 3 and "<[MASK]=" in out
    for name in ("masked_fraction", "mask_token_fraction", "random_token_fraction", "unchanged_fraction",
                 "random_next_fraction", "mean_length"):
        assert name in out


def test_decode_tokens_merges_pieces_and_marks_masked_positions():
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hel", "##lo", "world"]
    original = np.array([2, 5, 6, 7, 3])
    assert decode_tokens(tokens, original) == "[CLS] hello world [SEP]"
    shown = np.array([2, 5, 4, 7, 3])
    assert decode_tokens(tokens, shown, original, [2, 3]) == "[CLS] hel<[MASK]=##lo> <world=world> [SEP]"


def test_errors_are_one_line_with_the_fix(tmp_path, capsys):
    code, out, err = run(capsys, str(tmp_path / "nope"))
    assert code == 2 and out == "" and "does not exist" in err and "bert_jax.data.build" in err
    code, _, err = run(capsys, str(tmp_path))
    assert code == 2 and "stats.json does not exist" in err and "Traceback" not in err


def test_help_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "bert_jax.data.inspect", "--help"], capture_output=True, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), timeout=120)
    assert result.returncode == 0
    for flag in ("--masked", "--num", "--decode", "--json", "--seed", "--max_seq_length"):
        assert flag in result.stdout
