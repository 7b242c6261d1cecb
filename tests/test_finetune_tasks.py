"""The fine-tuning task readers on tiny files written here in each GLUE task's distributed layout (header quirks
included) and as tables; their errors name the file and line; the metrics equal hand-computed values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bert_jax.data import tasks
from bert_jax.data.tasks import metrics
from bert_jax.errors import InputError

# Each task's header (None: CoLA has none) and two rows, in GLUE's column order, with the expected (a, b, label).
GLUE_FILES = {
    "cola": (None, [["gj04", "1", "", "Our friends won't buy this analysis."], ["gj04", "0", "*", "They drank the pub."]],
             [("Our friends won't buy this analysis.", None, 1), ("They drank the pub.", None, 0)]),
    "sst2": (["sentence", "label"], [["a charming journey . ", "1"], ["bleak and desperate ", "0"]],
             [("a charming journey . ", None, 1), ("bleak and desperate ", None, 0)]),
    "mrpc": (["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"], [["1", "7", "8", "He said.", "He says."],
                                                                      ["0", "9", "10", "Yes.", "No."]],
             [("He said.", "He says.", 1), ("Yes.", "No.", 0)]),
    "qqp": (["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
            [["1", "2", "3", "Why?", "How?", "0"], ["4", "5", "6", "Who?", "Who is?", "1"]],
            [("Why?", "How?", 0), ("Who?", "Who is?", 1)]),
    "stsb": (["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2",
              "score"], [["0", "g", "f", "y", "0", "s", "s", "A man.", "A person.", "4.2"],
                         ["1", "g", "f", "y", "1", "s", "s", "Cats.", "Rain.", "0.000"]],
             [("A man.", "A person.", 4.2), ("Cats.", "Rain.", 0.0)]),
    "mnli": (["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
              "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label"],
             [["0", "1", "1e", "g", "(", "(", "(", "(", "It rains.", "It is wet.", "entailment", "entailment"],
              ["1", "2", "2n", "g", "(", "(", "(", "(", "A cat.", "A dog.", "neutral", "contradiction"]],
             [("It rains.", "It is wet.", 1), ("A cat.", "A dog.", 0)]),
    "qnli": (["index", "question", "sentence", "label"], [["0", "Who?", "Ann did.", "entailment"],
                                                          ["1", "When?", "Blue.", "not_entailment"]],
             [("Who?", "Ann did.", 0), ("When?", "Blue.", 1)]),
    "rte": (["index", "sentence1", "sentence2", "label"], [["0", "A b c.", "A b.", "entailment"],
                                                           ["1", "X.", "Y.", "not_entailment"]],
            [("A b c.", "A b.", 0), ("X.", "Y.", 1)]),
    "wnli": (["index", "sentence1", "sentence2", "label"], [["0", "He ran.", "Tom ran.", "1"],
                                                            ["1", "It fell.", "The cup fell.", "0"]],
             [("He ran.", "Tom ran.", 1), ("It fell.", "The cup fell.", 0)]),
}


def write_tsv(path, header, rows):
    lines = ([header] if header else []) + rows
    path.write_text("".join("\t".join(row) + "\n" for row in lines), encoding="utf-8")


def write_glue(root, name, rows=None):
    header, default_rows, _ = GLUE_FILES[name]
    root.mkdir(parents=True, exist_ok=True)
    for split in ("train", *tasks.get(name).dev_splits):
        write_tsv(root / f"{split}.tsv", header, default_rows if rows is None else rows)
    return root


@pytest.mark.parametrize("name", sorted(GLUE_FILES))
def test_every_glue_task_reads_its_layout(name, tmp_path):
    data = tasks.get(name).read(str(write_glue(tmp_path / name, name)))
    expected = GLUE_FILES[name][2]
    for split in (data.train, *data.dev.values()):
        assert [(e.text_a, e.text_b, e.label) for e in split] == expected
    assert data.num_labels == (1 if name == "stsb" else 3 if name == "mnli" else 2)
    assert list(data.dev) == (["dev_matched", "dev_mismatched"] if name == "mnli" else ["dev"])


def test_task_names_are_forgiving_and_unknown_ones_listed():
    assert tasks.get("SST-2").name == "sst2" and tasks.get("MNLI").name == "mnli"
    with pytest.raises(InputError, match="task 'glu' does not exist; the tasks are cola, mnli, mrpc, qnli, qqp, "
                                         "rte, squad, squad_v2, sst2, stsb, table, wnli"):
        tasks.get("glu")


def test_wrong_columns_are_an_error_naming_file_and_line(tmp_path):
    root = write_glue(tmp_path / "RTE", "rte")
    write_tsv(root / "train.tsv", ["index", "premise", "hypothesis", "label"], [["0", "a", "b", "entailment"]])
    with pytest.raises(InputError, match=r"RTE/train.tsv:1: the header lacks the column\(s\) \['sentence1', "
                                         r"'sentence2'\] of RTE's layout"):
        tasks.get("rte").read(str(root))
    write_tsv(root / "train.tsv", GLUE_FILES["rte"][0], [["0", "a", "b", "entailment"], ["1", "a\tb", "c", "x"]])
    with pytest.raises(InputError, match=r"RTE/train.tsv:3: 5 tab-separated fields where RTE's layout has 4"):
        tasks.get("rte").read(str(root))


def test_label_outside_the_task_and_empty_split_are_errors(tmp_path):
    root = write_glue(tmp_path / "SST-2", "sst2")
    write_tsv(root / "dev.tsv", ["sentence", "label"], [["fine", "1"], ["odd", "positive"]])
    with pytest.raises(InputError, match=r"SST-2/dev.tsv:3: label 'positive' is not one of the task's labels "
                                         r"\['0', '1'\]"):
        tasks.get("sst2").read(str(root))
    write_tsv(root / "dev.tsv", ["sentence", "label"], [])
    with pytest.raises(InputError, match=r"SST-2/dev.tsv holds no examples"):
        tasks.get("sst2").read(str(root))
    (root / "dev.tsv").write_text("")
    with pytest.raises(InputError, match=r"SST-2/dev.tsv is empty"):
        tasks.get("sst2").read(str(root))
    with pytest.raises(InputError, match=r"nowhere does not exist"):
        tasks.get("sst2").read(str(tmp_path / "nowhere"))


class Settings(dict):
    """config.finetune as the table task reads it (attributes)."""

    __getattr__ = dict.__getitem__


def table_settings(**fields):
    values = dict(text_a="q", text_b="", label_column="y", labels=[], problem_type="single_label_classification")
    values.update(fields)
    return Settings(values)


def test_table_task_reads_csv_jsonl_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "train.csv").write_text('q,p,y\n"Hello, world",x,spam\nBye,z,ham\n')
    with open(tmp_path / "dev.jsonl", "w") as f:
        f.write(json.dumps({"q": "Hi", "p": "a", "y": "ham"}) + "\n")
    data = tasks.get("table").read(str(tmp_path), table_settings(text_b="p"))
    assert data.labels == ("ham", "spam")  # sorted distinct train labels
    assert [(e.text_a, e.text_b, e.label) for e in data.train] == [("Hello, world", "x", 1), ("Bye", "z", 0)]
    assert [(e.text_a, e.label) for e in data.dev["dev"]] == [("Hi", 0)]

    multi = tmp_path / "multi"
    multi.mkdir()
    table = pa.table({"q": ["a", "b"], "y": [["x", "z"], ["y"]]})
    pq.write_table(table, multi / "train.parquet")
    pq.write_table(table, multi / "dev.parquet")
    data = tasks.get("table").read(str(multi), table_settings(problem_type="multi_label_classification"))
    assert data.labels == ("x", "y", "z") and [e.label for e in data.train] == [(0, 2), (1,)]
    assert data.best_metric == "f1"

    (tmp_path / "dev.jsonl").write_text(json.dumps({"q": "Hi", "y": "eggs"}) + "\n")
    with pytest.raises(InputError, match=r"dev.jsonl:1: label 'eggs' is not one of the task's labels"):
        tasks.get("table").read(str(tmp_path), table_settings())
    with pytest.raises(InputError, match=r"train.csv:2: no column 'text' \(config.finetune.text_a/text_b\)"):
        tasks.get("table").read(str(tmp_path), table_settings(text_a="text"))


def test_metrics_equal_hand_computed_values():
    labels = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    predicted = np.array([1, 1, 0, 0, 0, 1, 1, 1])
    # TP 3, FN 1, FP 2, TN 2: accuracy 5/8; F1 = 2TP / (2TP + FP + FN) = 6/9;
    # MCC = (TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (6 - 2) / sqrt(5 * 4 * 4 * 3) = 4 / sqrt(240).
    got = metrics.compute(("accuracy", "f1", "matthews_corrcoef"), predicted, labels, "single_label_classification")
    assert got["accuracy"] == pytest.approx(5 / 8)
    assert got["f1"] == pytest.approx(6 / 9)
    assert got["matthews_corrcoef"] == pytest.approx(4 / math.sqrt(240))

    scores = np.array([1.0, 2.0, 3.0, 4.0])
    gold = np.array([2.0, 1.0, 4.0, 3.0])
    # Pearson: deviations (-1.5, -0.5, 0.5, 1.5) against (-0.5, -1.5, 1.5, 0.5): products sum to 3, squares to 5
    # each: 3 / 5 = 0.6. Spearman: the ranks are the values themselves, so also 0.6.
    got = metrics.compute(("pearson", "spearmanr"), scores, gold, "regression")
    assert got == pytest.approx({"pearson": 0.6, "spearmanr": 0.6})
    gold_ties = np.array([1.0, 1.0, 2.0, 3.0])  # tied ranks 1.5, 1.5, 3, 4 against 1..4: 4.5 / sqrt(5 * 4.5)
    assert metrics.compute(("spearmanr",), scores, gold_ties, "regression")["spearmanr"] == pytest.approx(
        4.5 / math.sqrt(5 * 4.5))

    logits = np.array([[0.1, 2.0], [3.0, -1.0], [0.0, 0.5]])
    assert metrics.predicted(logits, "single_label_classification").tolist() == [1, 0, 1]
    multi = metrics.predicted(np.array([[1.0, -1.0, 0.5], [-0.1, 2.0, -3.0]]), "multi_label_classification")
    truth = np.array([[1, 0, 1], [1, 1, 0]])
    # Exact match: row 1 only (1/2). Micro F1: TP 3, FP 0, FN 1 -> 6 / 7.
    got = metrics.compute(("accuracy", "f1"), multi, truth, "multi_label_classification")
    assert got == pytest.approx({"accuracy": 0.5, "f1": 6 / 7})
