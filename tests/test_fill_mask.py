"""fill_mask equals transformers' fill-mask pipeline on the same directory; bad input gets clear errors."""

import json

import pytest
import transformers

from bert_jax import fill_mask
from bert_jax.interop import hf
from tests.hf_reference import random_hf_pretraining_model, tiny_hf_config

TEXTS = [
    "the capital of france is [MASK].",
    "She went to the [MASK] to buy some bread, didn't she?",
    "[MASK] and [MASK] are two words.",
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, minilm_dir):
    """A BertForPreTraining with random weights and the real bert-base-uncased vocab, written by transformers."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    config = tiny_hf_config(vocab_size=tokenizer.vocab_size, max_position_embeddings=128)
    model = random_hf_pretraining_model(config, seed=11)
    out = tmp_path_factory.mktemp("fill_mask_model")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_matches_transformers_pipeline(model_dir):
    pipe = transformers.pipeline("fill-mask", model=str(model_dir), tokenizer=str(model_dir), device="cpu")
    ours = fill_mask.FillMask(model_dir)(TEXTS, top_k=5)
    for text, got in zip(TEXTS, ours):
        expected = pipe(text, top_k=5)
        if isinstance(expected[0], dict):
            expected, got = [expected], [got]
        assert len(got) == len(expected)
        for got_row, expected_row in zip(got, expected):
            assert [p["token"] for p in got_row] == [p["token"] for p in expected_row]
            assert [p["token_str"] for p in got_row] == [p["token_str"] for p in expected_row]
            assert [p["sequence"] for p in got_row] == [p["sequence"] for p in expected_row]
            for a, b in zip(got_row, expected_row):
                assert abs(a["score"] - b["score"]) <= 1e-4


def test_cli_prints_one_json_list_per_text(model_dir, capsys):
    assert fill_mask.main(["--json", "--model", str(model_dir), "--top_k", "3", *TEXTS[:2]]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        predictions = json.loads(line)
        assert len(predictions) == 3
        assert set(predictions[0]) == {"score", "token", "token_str", "sequence"}
        assert predictions[0]["score"] >= predictions[1]["score"] >= predictions[2]["score"]


def test_cli_prints_a_table_of_the_json_guesses_by_default(model_dir, capsys):
    texts = [TEXTS[0], "[MASK] is the [MASK] of France."]
    assert fill_mask.main(["--json", "--model", str(model_dir), "--top_k", "2", *texts]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert fill_mask.main(["--model", str(model_dir), "--top_k", "2", *texts]) == 0
    table = capsys.readouterr().out
    assert table == "\n".join(fill_mask.format_table(t, r) for t, r in zip(texts, results)) + "\n"
    lines = table.splitlines()
    assert lines[0] == texts[0]
    first = results[0][0]
    assert lines[1].split()[:3] == ["1.", first["token_str"], f"{first['score']:.3f}"]
    assert lines[1].endswith(first["sequence"])
    assert "  mask 2:" in lines and lines[-1].split()[1] == results[1][1][1]["token_str"]  # two masks, two lists


def test_text_without_mask_is_a_clear_error(model_dir, capsys):
    assert fill_mask.main(["--model", str(model_dir), "no mask here"]) == 2
    assert "contains no [MASK]" in capsys.readouterr().err


def test_model_without_mlm_head_is_refused(minilm_dir, capsys):
    assert fill_mask.main(["--model", str(minilm_dir), "a [MASK]"]) == 2
    assert "no masked-LM head" in capsys.readouterr().err


def test_export_cli_random_model_runs_fill_mask(tmp_path, capsys):
    from bert_jax import export

    out = tmp_path / "random_tiny"
    assert export.main(["--config", "configs/base_cased.py:tiny", "--init", "random", "--output", str(out)]) == 0
    assert export.main(["--config", "configs/base_cased.py:tiny", "--output", str(out)]) == 2  # not empty, no --force
    assert "--force" in capsys.readouterr().err
    capsys.readouterr()
    assert fill_mask.main(["--json", "--model", str(out), "--top_k", "2", "The town lies on the [MASK] ."]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
    loaded = transformers.BertForPreTraining.from_pretrained(out)
    assert loaded.config.hidden_size == 128
    _, report = hf.load_pretrained(out)
    assert not report.missing
