"""A run you can see and an export the Hub takes: tokenizer.json equal to transformers' own, the model card read back
by huggingface_hub, WORKDIR/config.json and the end summary of the shared reference run, the report's figure and page,
and inspect's tables."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from bert_jax import report
from bert_jax.configuration import load_config
from bert_jax.data import inspect as data_inspect
from bert_jax.interop import hf, hf_tokenizer
from bert_jax.training import phases, run_summary
from tests.conftest import SAMPLE
from tests.run_helpers import overrides, records

SAMPLE_VOCAB = SAMPLE / "vocab/vocab.txt"
TEXTS = [("Héllo, Wörld! The river [MASK] through the old town.", "Ünïcode naïve café 東京 don't"),
         ("  spaces\tand\nnewlines  ", "x" * 120), ("UPPER lower MiXeD 12,345.67", "")]


# ------------------------------------------------------------------------------------------- tokenizer.json


@pytest.mark.parametrize("which", ["bert-base-uncased", "sample-cased"])
def test_tokenizer_json_is_what_transformers_saves_and_encodes_alone(which, minilm_dir, tmp_path):
    from transformers import AutoTokenizer, BertTokenizer

    vocab, lowercase = (minilm_dir / "vocab.txt", True) if which == "bert-base-uncased" else (SAMPLE_VOCAB, False)
    size = len(vocab.read_text(encoding="utf-8").splitlines())
    (tmp_path / "ours").mkdir()
    written = hf_tokenizer.export_tokenizer(vocab, tmp_path / "ours", size, "BertTokenizer", lowercase)
    assert "tokenizer.json" in {p.name for p in written}
    reference = BertTokenizer(vocab=str(vocab), do_lower_case=lowercase)  # from vocab.txt alone
    reference.save_pretrained(tmp_path / "reference")
    ours = json.loads((tmp_path / "ours/tokenizer.json").read_text(encoding="utf-8"))
    assert ours == json.loads((tmp_path / "reference/tokenizer.json").read_text(encoding="utf-8"))

    alone = tmp_path / "alone"  # what a server that reads only tokenizer.json sees
    alone.mkdir()
    shutil.copy(tmp_path / "ours/tokenizer.json", alone)
    loaded = AutoTokenizer.from_pretrained(alone)
    for first, second in TEXTS:
        pair = (first, second) if second else (first,)
        assert dict(loaded(*pair, return_token_type_ids=True)) == dict(reference(*pair)), (which, pair)


# ------------------------------------------------------------------------------------------- the reference run


def _resolved_config(sample_dataset):
    return load_config("configs/base_cased.py:tiny", overrides(sample_dataset, export_at_end=True))


def test_workdir_config_json_is_the_resolved_config(reference_run_result, sample_dataset):
    workdir, log = reference_run_result
    config = _resolved_config(sample_dataset)
    written = json.loads((workdir / "config.json").read_text())
    assert written == run_summary.config_dict(config)
    assert written["phases"][0] == {"max_seq_length": 32, "fraction": 0.5, "max_predictions": 5}  # dicts, not text
    assert "config (resolved, also in config.json): {" in log and '"train_steps": 40' in log
    export_params = sum(t.size for t in hf.read_safetensors(workdir / "export").values())
    logged = int(re.search(r"model: bert, ([\d,]+) trainable parameters", log).group(1).replace(",", ""))
    assert logged == export_params  # BertForPreTraining: every trained tensor is exported


def test_end_summary_numbers_are_the_runs(reference_run_result, sample_dataset):
    workdir, log = reference_run_result
    config = _resolved_config(sample_dataset)
    summary = json.loads((workdir / "summary.json").read_text())
    plan = phases.phase_plan(config)
    expected_tokens = sum((p.end - p.start) * config.batch_size * p.max_seq_length for p in plan)
    assert expected_tokens == 20 * 16 * 32 + 20 * 16 * 64
    assert (summary["steps"], summary["steps_this_run"], summary["tokens"]) == (40, 40, expected_tokens)
    last_eval = records(workdir, "eval")[40]
    assert summary["final_eval"] == last_eval
    assert summary["checkpoints"] == [30, 35, 40] and summary["export"].endswith("export")
    assert summary["tokens_per_s"] > 0 and 0 < summary["mfu"] and summary["wall_s"] > 0
    text = log[log.index("run summary (finished):"):]
    assert f"tokens      {expected_tokens:,} ({expected_tokens:,} in this run)" in text
    assert "steps       40\n" in text and f"final eval  step 40: mlm_loss {last_eval['mlm_loss']:.4f}" in text
    # Accuracies read against uniform guessing: 1 / vocab size for the masked tokens, 1/2 for next-sentence.
    assert summary["chance"] == {"mlm_accuracy": 1 / config.model.vocab_size, "nsp_accuracy": 0.5}
    assert f"mlm_accuracy {last_eval['mlm_accuracy']:.4f} (chance {1 / config.model.vocab_size:.4g})" in text
    assert f"nsp_accuracy {last_eval['nsp_accuracy']:.4f} (chance 0.5)" in text


def test_the_export_is_hub_ready_with_a_model_card_of_the_run(reference_run, sample_dataset):
    from huggingface_hub import ModelCard, ModelCardData

    export = reference_run / "export"
    # Only the files export writes, none of them hidden or temporary: `hf upload REPO DIR` takes the folder as is.
    names = {p.name for p in export.iterdir()}
    assert names == {"model.safetensors", "config.json", "vocab.txt", "tokenizer_config.json",
                     "special_tokens_map.json", "tokenizer.json", "README.md"}
    assert names <= set(hf.EXPORT_FILES) and all(p.is_file() for p in export.iterdir())
    card = ModelCard.load(export / "README.md")
    assert card.data.pipeline_tag == "fill-mask" and card.data.license == "apache-2.0"
    assert card.data.library_name == "transformers"
    ModelCardData(**card.data.to_dict(), ignore_metadata_errors=False)  # the metadata parses strictly
    last_eval = records(reference_run, "eval")[40]
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    expected = {k: v for k, v in last_eval.items() if k not in ("step", "kind", "max_seq_length", "examples")}
    assert results == expected and {r.task_type for r in card.data.eval_results} == {"fill-mask"}
    text = card.text
    for fact in ("`BertForPreTraining`", "| 0 | 0-19 | 32 | 5 |", "| 1 | 20-39 | 64 | 10 |",  # phases
                 "| learning_rate | 0.003 |", "global batch 16 sequences", "40 steps"):
        assert fact in text, fact
    stats = json.loads((sample_dataset / "stats.json").read_text())
    assert f"| tokens | {stats['overall']['tokens']:,} |" in text
    assert f"| documents | {stats['overall']['documents']:,} |" in text


def test_report_draws_every_metric_across_phases(reference_run, tmp_path):
    metrics = report.read_metrics(str(reference_run))
    figure = report.build_figure(metrics)
    titles = [axes.get_title() for axes in figure.axes]
    assert titles == ["loss", "mlm_accuracy", "nsp_accuracy", "learning_rate"]
    loss_axes = figure.axes[0]
    labels = [line.get_label() for line in loss_axes.get_lines() if not line.get_label().startswith("_")]
    assert labels[:2] == ["train loss", "eval loss"]
    eval_line = next(line for line in loss_axes.get_lines() if line.get_label() == "eval loss")
    evals = records(reference_run, "eval")
    assert list(eval_line.get_xdata()) == sorted(evals)
    assert list(eval_line.get_ydata()) == [evals[s]["loss"] for s in sorted(evals)]
    assert report.phase_starts(metrics) == [21]  # the first logged step of phase 1
    assert report.main([str(reference_run), "--output", str(tmp_path / "out")]) == 0
    from PIL import Image

    with Image.open(tmp_path / "out/report.png") as image:
        assert image.format == "PNG" and image.size[0] > 1000
    page = (tmp_path / "out/report.html").read_text()
    assert '<img src="report.png"' in page
    assert f"<td>mlm_accuracy</td><td>eval</td><td>40</td><td>{evals[40]['mlm_accuracy']:.6g}</td>" in page


def test_report_refuses_a_workdir_without_metrics(tmp_path, capsys):
    assert report.main([str(tmp_path)]) == 2
    assert "metrics.jsonl does not exist" in capsys.readouterr().err
    (tmp_path / "metrics.jsonl").write_text("")
    assert report.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is empty" in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------- inspect


def test_inspect_prints_tables_and_a_histogram_and_json_in_full(sample_dataset, capsys):
    assert data_inspect.main([str(sample_dataset)]) == 0
    text = capsys.readouterr().out
    stats = json.loads((sample_dataset / "stats.json").read_text())
    assert f"tokens              {stats['overall']['tokens']:,}" in text
    train_32 = stats["per_length"]["32"]["train"]
    row = re.search(r"^\s+32\s+train\s+([\d,]+)\s+(\d+)\s+([\d.]+)", text, re.MULTILINE)
    assert int(row.group(1).replace(",", "")) == train_32["examples"] and int(row.group(2)) == train_32["shards"]
    assert float(row.group(3)) == pytest.approx(train_32["mean_length"], abs=0.05)
    histogram = text[text.index("-- seq_32 train"):].split("\n\n")[0].splitlines()[1:]
    counts = [int(line.rsplit(" ", 1)[1].replace(",", "")) for line in histogram]
    assert sum(counts) == train_32["examples"] == int(np.sum(train_32["length_histogram"]))
    assert "{" not in text  # no JSON in the default output

    assert data_inspect.main([str(sample_dataset), "--json"]) == 0
    report_json = json.loads(capsys.readouterr().out)
    assert report_json == {"data_dir": str(sample_dataset), "stats": stats, "built_lengths": [32, 64]}


def test_a_workdir_with_its_config_json_is_not_taken_for_a_hugging_face_directory(reference_run, tmp_path):
    from bert_jax.interop import sources
    from bert_jax.training.workdir import is_run_workdir

    assert sources.describe(str(reference_run)).kind == sources.WORKDIR
    assert sources.describe(str(reference_run / "export")).kind == sources.HF
    started = tmp_path / "started"  # a run stopped before its first checkpoint: config.json alone
    started.mkdir()
    shutil.copy(reference_run / "config.json", started)
    assert is_run_workdir(str(started)) and not is_run_workdir(str(reference_run / "export"))
