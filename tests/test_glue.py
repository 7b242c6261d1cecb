"""The GLUE runner, the learning-rate sweep and the TFDS GLUE reader, on a tiny BERT and tiny task folders written
here in GLUE's layouts: the table's cells equal each task's best dev evaluation, the submission files have GLUE's
header, one row per test example and the predictions transformers makes from the same export; a failing task is
reported while the others complete; a sweep keeps every run's best and copies the winner's, and skips finished runs
when run again; a prepared TFDS glue/* dataset (built here offline by TFDS's own GLUE builder from local files)
reads into the same examples as the TSVs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers

from bert_jax import finetune, glue, glue_submission, glue_table
from bert_jax.data import tasks
from bert_jax.data.tasks import glue_tfds
from bert_jax.errors import InputError
from tests.run_helpers import REPO, environment, records
from tests.test_finetune import WORDS, rte_rows, tiny_model  # noqa: F401 (a fixture)
from tests.test_finetune_tasks import write_tsv

ARGS = ["--config.batch_size=16", "--config.phases=[{'max_seq_length': 32, 'fraction': 1.0, 'max_predictions': 1}]",
        "--config.finetune.epochs=1", "--config.optimizer.learning_rate=1e-3", "--config.log_every=1",
        "--config.peak_flops_per_device=1e10", "--config.export_at_end=false"]
MNLI_HEADER = ["index", "promptID", "sentence1", "sentence2", "gold_label"]
STSB_HEADER = ["index", "genre", "sentence1", "sentence2", "score"]


def mnli_rows(count, seed, labelled=True):
    """entailment: the hypothesis starts the premise; contradiction: random words; neutral: the premise's end."""
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        premise = rng.choice(WORDS, size=8).tolist()
        label = ("entailment", "contradiction", "neutral")[index % 3]
        hypothesis = {"entailment": premise[:3], "neutral": premise[-3:]}.get(label) or rng.choice(WORDS, 3).tolist()
        rows.append([str(index), str(1000 + index), " ".join(premise), " ".join(hypothesis)]
                    + ([label] if labelled else []))
    return rows


def stsb_rows(count, seed, labelled=True):
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        a = rng.choice(WORDS, size=6).tolist()
        shared = index % 6
        b = a[:shared] + rng.choice(WORDS, size=6 - shared).tolist()
        rows.append([str(index), "main-news", " ".join(a), " ".join(b)] + ([f"{5 * shared / 5:.3f}"] if labelled
                                                                             else []))
    return rows


def write_glue_data(root):
    """MNLI and STS-B with test files, GLUE's diagnostic set, and a CoLA whose train file has a bad label."""
    mnli, stsb, cola = root / "MNLI", root / "STS-B", root / "CoLA"
    for folder in (mnli, stsb, cola, root / "diagnostic"):
        folder.mkdir(parents=True)
    write_tsv(mnli / "train.tsv", MNLI_HEADER, mnli_rows(32, 0))
    write_tsv(mnli / "dev_matched.tsv", MNLI_HEADER, mnli_rows(15, 1))
    write_tsv(mnli / "dev_mismatched.tsv", MNLI_HEADER, mnli_rows(12, 2))
    write_tsv(mnli / "test_matched.tsv", MNLI_HEADER[:-1], mnli_rows(10, 3, labelled=False))
    write_tsv(mnli / "test_mismatched.tsv", MNLI_HEADER[:-1], mnli_rows(9, 4, labelled=False))
    write_tsv(root / "diagnostic" / "diagnostic.tsv", ["index", "sentence1", "sentence2"],
              [[r[0], r[2], r[3]] for r in mnli_rows(7, 5, labelled=False)])
    write_tsv(stsb / "train.tsv", STSB_HEADER, stsb_rows(32, 6))
    write_tsv(stsb / "dev.tsv", STSB_HEADER, stsb_rows(14, 7))
    write_tsv(stsb / "test.tsv", STSB_HEADER[:-1], stsb_rows(11, 8, labelled=False))
    write_tsv(cola / "train.tsv", None, [["gj04", "1", "", "Fine."], ["gj04", "maybe", "", "Bad label."]])
    write_tsv(cola / "dev.tsv", None, [["gj04", "1", "", "Fine."]])
    return root


@pytest.fixture(scope="module")
def glue_data(tmp_path_factory):
    return write_glue_data(tmp_path_factory.mktemp("glue_data") / "glue_data")


@pytest.fixture(scope="module")
def glue_run(tiny_model, glue_data, tmp_path_factory):  # noqa: F811 (the imported fixture)
    """`python -m bert_jax.glue` with a sweep of two rates, on one device (a fresh process: compiling for the 16
    emulated devices of this one would cost several times more): MNLI completes, CoLA fails."""
    data = glue_data
    workdir = tmp_path_factory.mktemp("glue_run") / "run"
    command = [sys.executable, "-m", "bert_jax.glue", "--model", str(tiny_model), "--data", str(data), "--workdir",
               str(workdir), "--tasks", "MNLI,CoLA", "--sweep_learning_rates", "1e-3,3e-4", *ARGS]
    result = subprocess.run(command, cwd=REPO, env=environment(1), capture_output=True, text=True, timeout=900)
    return result, data, workdir


def test_a_failing_task_is_reported_while_the_others_complete(glue_run):
    result, _, workdir = glue_run
    assert result.returncode == 1, result.stderr[-3000:]
    results = json.loads((workdir / "results.json").read_text())
    assert results["tasks"]["mnli"]["status"] == "finished" and results["tasks"]["cola"]["status"] == "failed"
    assert "CoLA/train.tsv:2: label 'maybe' is not one of the task's labels" in results["tasks"]["cola"]["error"]
    table = (workdir / "results.md").read_text()
    assert table in result.stdout  # printed and saved
    assert table.startswith("| Task | MNLI-(m/mm) | QQP | QNLI | SST-2 | CoLA | STS-B | MRPC | RTE | Average |\n")
    assert "Dev-set numbers" in table and "- CoLA: " in table


def test_the_table_is_the_sweep_winners_best_dev_evaluation(glue_run):
    """Every sweep run's row equals its best.json; the winner's best/ is MNLI's best; the MNLI cell is its matched
    and mismatched accuracy x100 as the run logged them."""
    result, _, workdir = glue_run
    sweep = json.loads((workdir / "MNLI" / "sweep.json").read_text())
    assert [row["run"] for row in sweep["runs"]] == ["lr1e-3-seed42", "lr3e-4-seed42"]
    for row in sweep["runs"]:
        run = workdir / "MNLI" / row["run"]
        best = json.loads((run / "best" / "best.json").read_text())
        assert (row["metric"], row["value"], row["step"]) == ("accuracy", best["value"], best["step"])
        assert row["epoch"] == best["step"] / 2 == 1  # 32 examples at batch 16: 2 steps, one epoch
        assert max(r["learning_rate"] for r in records(run).values()) == pytest.approx(row["learning_rate"])
    winner = max(sweep["runs"], key=lambda row: row["value"])
    assert sweep["winner"] == winner["run"]
    best_dir = workdir / "MNLI" / "best"
    assert (best_dir / "model.safetensors").read_bytes() == (
        workdir / "MNLI" / winner["run"] / "best" / "model.safetensors").read_bytes()
    best = json.loads((best_dir / "best.json").read_text())
    assert best["run"] == winner["run"]
    logged = records(workdir / "MNLI" / winner["run"], "eval")[best["step"]]
    assert {**best["eval"], "step": best["step"]} == logged
    results = json.loads((workdir / "results.json").read_text())
    cells = {title: column["cell"] for title, column in results["table"]["columns"].items()}
    assert cells["MNLI-(m/mm)"] == f"{100 * logged['accuracy']:.1f}/{100 * logged['dev_mismatched_accuracy']:.1f}"
    assert results["table"]["average"] == pytest.approx(50 * (logged["accuracy"] + logged["dev_mismatched_accuracy"]))
    assert cells["CoLA"] == "failed" and cells["QQP"] == "-" and "WNLI" not in cells
    assert "| learning rate | seed | best dev accuracy |" in result.stdout


def test_running_the_sweep_again_skips_finished_runs(glue_run, tiny_model, capsys):  # noqa: F811
    """The same finetune command on MNLI's sweep directory trains nothing (no new metrics, same sweep.json)."""
    _, data, workdir = glue_run
    root = workdir / "MNLI"
    stamps = {run: os.stat(root / run / "metrics.jsonl").st_mtime_ns for run in ("lr1e-3-seed42", "lr3e-4-seed42")}
    sweep = (root / "sweep.json").read_text()
    argv = ["--model", str(tiny_model), "--task", "mnli", "--data", str(data / "MNLI"), "--workdir", str(root),
            "--sweep_learning_rates", "1e-3,3e-4", *ARGS]
    assert finetune.main(argv) == 0
    assert stamps == {run: os.stat(root / run / "metrics.jsonl").st_mtime_ns for run in stamps}
    assert (root / "sweep.json").read_text() == sweep


def read_submission(path):
    lines = path.read_text().splitlines()
    assert lines[0] == "index\tprediction"
    return [line.split("\t") for line in lines[1:]]


def hf_logits(model_dir, pairs):
    model = transformers.AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    inputs = tokenizer([a for a, _ in pairs], [b for _, b in pairs], truncation=True, max_length=32,
                       padding="max_length", return_tensors="pt")
    with torch.no_grad():
        return model(**inputs).logits.numpy(), model.config.id2label


def test_submission_files_are_glues_layout_with_transformers_predictions(glue_run):
    """MNLI-m, MNLI-mm and AX (the diagnostic set, MNLI's model): GLUE's header, every test index in order, the
    label names of transformers' argmax on the best export (the logits themselves: the regression test below)."""
    _, _, workdir = glue_run
    submission = workdir / "submission"
    assert sorted(p.name for p in submission.iterdir()) == ["AX.tsv", "MNLI-m.tsv", "MNLI-mm.tsv"]
    for name, rows in (("MNLI-m", mnli_rows(10, 3, False)), ("MNLI-mm", mnli_rows(9, 4, False)),
                       ("AX", mnli_rows(7, 5, False))):
        written = read_submission(submission / f"{name}.tsv")
        assert [index for index, _ in written] == [r[0] for r in rows]
        pairs = [(r[2], r[3]) for r in rows]
        logits, id2label = hf_logits(workdir / "MNLI" / "best", pairs)
        assert [label for _, label in written] == [id2label[int(i)] for i in logits.argmax(-1)]
    assert set(id2label.values()) == {"contradiction", "entailment", "neutral"}


def test_regression_predictions_are_clipped_similarities(tiny_model, tmp_path):  # noqa: F811
    """STS-B's file from a regression export: transformers' output on the same directory clipped to [0, 5] (our
    jitted forward equals it: 3 decimals written), 70 rows (more than one batch, the last padded)."""
    from flax import nnx

    from bert_jax import models
    from bert_jax.interop import hf

    config = hf.config_from_hf(tiny_model, num_labels=1, problem_type="regression")
    model = models.constructor(config, ("sequence_classification",))(nnx.Rngs(3))
    hf.export_pretrained(model, tmp_path / "stsb", vocab_file=tiny_model / "vocab.txt", labels=["LABEL_0"])
    rows = stsb_rows(70, 8, labelled=False)
    folder = tmp_path / "STS-B"
    folder.mkdir()
    write_tsv(folder / "test.tsv", STSB_HEADER[:-1], rows)
    task = tasks.get("stsb")
    test_splits = task.read_test(str(folder))
    predictor = glue_submission.Predictor(tmp_path / "stsb", 32)
    written = glue_submission.write_task(task, test_splits, predictor, tmp_path / "submission")
    assert [p.name for p in written] == ["STS-B.tsv"]
    lines = read_submission(written[0])
    assert [index for index, _ in lines] == [r[0] for r in rows]
    logits, _ = hf_logits(tmp_path / "stsb", [(r[2], r[3]) for r in rows])
    assert np.abs(predictor.logits(test_splits["test"].examples) - logits).max() <= 1e-4  # before clipping
    ours = np.array([float(value) for _, value in lines])
    assert np.abs(ours - np.clip(logits[:, 0], 0, 5)).max() <= 5e-4  # written with 3 decimals
    assert all(len(value.split(".")[1]) == 3 for _, value in lines)


def test_the_table_averages_as_the_paper():
    """BERT-base's row of the paper's Table 1 averages to its 79.6 (MNLI's m and mm counted separately); WNLI is
    shown but not averaged."""
    paper = {"mnli": {"accuracy": .846, "dev_mismatched_accuracy": .834}, "qqp": {"f1": .712},
             "qnli": {"accuracy": .905}, "sst2": {"accuracy": .935}, "cola": {"matthews_corrcoef": .521},
             "stsb": {"spearmanr": .858}, "mrpc": {"f1": .889}, "rte": {"accuracy": .664},
             "wnli": {"accuracy": .651}}
    summary = glue_table.summarize({task: {"eval": record} for task, record in paper.items()})
    assert f"{summary['average']:.1f}" == "79.6"
    assert summary["columns"]["MNLI-(m/mm)"]["cell"] == "84.6/83.4" and summary["columns"]["WNLI"]["cell"] == "65.1"


def test_runner_errors_are_one_line(tiny_model, tmp_path, capsys):  # noqa: F811
    def error(*argv):
        assert glue.main(["--model", str(tiny_model), "--workdir", str(tmp_path / "w"), *argv]) == 2
        return capsys.readouterr().err.strip().splitlines()[-1]

    assert "no GLUE task found in --data" in error("--data", str(tmp_path))
    (tmp_path / "RTE").mkdir()
    assert "--tasks: ['QQP'] not found in" in error("--data", str(tmp_path), "--tasks", "QQP")
    assert "--tasks: ['table'] are not GLUE tasks" in error("--data", str(tmp_path), "--tasks", "rte,table")
    assert "--sweep_learning_rates 'fast': expected comma-separated numbers" in error(
        "--data", str(tmp_path), "--sweep_learning_rates", "fast")


def test_test_splits_of_every_layout(tmp_path):
    """GLUE's test.tsv layouts: an index column (QQP's `id`), the texts, no label; CoLA's has a header."""
    layouts = {"cola": (["index", "sentence"], ["0", "It rains."], ("It rains.", None)),
               "qqp": (["id", "question1", "question2"], ["7", "Why?", "How?"], ("Why?", "How?")),
               "mrpc": (["index", "#1 ID", "#2 ID", "#1 String", "#2 String"], ["3", "1", "2", "A.", "B."],
                        ("A.", "B.")),
               "qnli": (["index", "question", "sentence"], ["5", "Who?", "Ann."], ("Who?", "Ann."))}
    for name, (header, row, texts) in layouts.items():
        folder = tmp_path / name
        folder.mkdir()
        write_tsv(folder / "test.tsv", header, [row])
        split = tasks.get(name).read_test(str(folder))["test"]
        assert split.indices == [row[0]] and (split.examples[0].text_a, split.examples[0].text_b) == texts
    write_tsv(tmp_path / "qnli" / "test.tsv", ["index", "question"], [["0", "Who?"]])
    with pytest.raises(InputError, match=r"test.tsv:1: the header lacks the column\(s\) \['sentence'\]"):
        tasks.get("qnli").read_test(str(tmp_path / "qnli"))
    (tmp_path / "RTE").mkdir()
    assert tasks.get("rte").read_test(str(tmp_path / "RTE")) == {}  # a folder without test.tsv has no test split


# ------------------------------------------------------------------------------------------------------ TFDS

def build_tfds_glue(data_dir, config, folder):
    """TFDS's own GLUE builder (its features, label classes and TSV parsing) preparing glue/<config> in ArrayRecord
    form from a local GLUE folder instead of downloading it: only where the files come from is replaced."""
    from tensorflow_datasets.text import glue as tfds_glue

    files = {theirs: folder / f"{ours}.tsv" for ours, theirs in glue_tfds.SPLITS.items()}

    class LocalGlue(tfds_glue.Glue, skip_registration=True):
        name = "glue"

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(str(path), "test" if split.startswith("test") else split)
                    for split, path in files.items() if path.is_file()}

    LocalGlue(config=config, data_dir=str(data_dir), file_format="array_record").download_and_prepare()


@pytest.fixture(scope="module")
def tfds_glue(glue_data, tmp_path_factory):
    """glue/mnli from the runner's MNLI folder and glue/rte from an RTE folder, prepared by TFDS."""
    data = glue_data
    rte = data / "RTE"
    rte.mkdir(exist_ok=True)
    header = ["index", "sentence1", "sentence2", "label"]
    write_tsv(rte / "train.tsv", header, rte_rows(32, 0))
    write_tsv(rte / "dev.tsv", header, rte_rows(16, 1))
    write_tsv(rte / "test.tsv", header[:-1], [r[:-1] for r in rte_rows(5, 2)])
    data_dir = tmp_path_factory.mktemp("tfds")
    build_tfds_glue(data_dir, "mnli", data / "MNLI")
    build_tfds_glue(data_dir, "rte", rte)
    return data_dir, data


def test_tfds_glue_reads_the_same_examples_as_the_tsvs(tfds_glue):
    """TFDS's feature names (premise, hypothesis, idx) and label classes (MNLI's in another order than ours) map
    to the same examples, labels and test indices as GLUE's files; TensorFlow is never imported."""
    data_dir, data = tfds_glue
    for name, folder in (("mnli", "MNLI"), ("rte", "RTE")):
        task = tasks.get(name)
        ours, theirs = task.read(str(data / folder)), task.read(f"tfds:glue/{name}@{data_dir}")
        assert sorted(theirs.train, key=repr) == sorted(ours.train, key=repr)  # TFDS stores them shuffled
        assert {k: sorted(v, key=repr) for k, v in theirs.dev.items()} == {k: sorted(v, key=repr)
                                                                            for k, v in ours.dev.items()}
        assert task.read_test(f"tfds:glue@{data_dir}") == task.read_test(str(data / folder))
    assert "tensorflow" not in sys.modules
    selected = glue.select_tasks(f"tfds:glue@{data_dir}", "")  # the runner finds the prepared configs
    assert [glue.task_data(f"tfds:glue@{data_dir}", task) for task in selected] == [
        f"tfds:glue/mnli@{data_dir}", f"tfds:glue/rte@{data_dir}"]


def test_tfds_errors_say_how_to_prepare(tmp_path, tfds_glue):
    data_dir, _ = tfds_glue
    with pytest.raises(InputError, match=r"'glue/sst2' is not prepared in .*`tfds build glue/sst2 --data_dir DIR "
                                         r"--file_format=array_record` \(downloads it\) and pass --data "
                                         r"tfds:glue/sst2@DIR"):
        tasks.get("sst2").read(f"tfds:glue/sst2@{tmp_path}")
    with pytest.raises(InputError, match="is TFDS's glue/rte, not the task mnli"):
        tasks.get("mnli").read(f"tfds:glue/rte@{data_dir}")
