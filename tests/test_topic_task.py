"""The topic task built from the sample corpus (scripts/make_topic_task.py), the target of the pre-training ->
fine-tuning evidence in docs/finetune.md: every document gets its kind, dev and train share no article, nothing is
dropped without being counted."""

import collections
import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

from tests.conftest import SAMPLE

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts/make_topic_task.py"
spec = importlib.util.spec_from_file_location("make_topic_task", SCRIPT)
make_topic_task = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_topic_task)
CORPUS = sorted(str(p) for p in SAMPLE.glob("corpus-*.txt"))


def test_every_sample_document_gets_its_kind_in_the_corpus_proportions():
    """data/README.md: 220 towns, 70 rivers, 45 mountains, 260 people, 150 animals, 73 festivals."""
    kinds = collections.Counter(make_topic_task.kind_of(doc[0]) for doc in make_topic_task.documents(CORPUS))
    assert kinds == {"town": 220, "river": 70, "mountain": 45, "person": 260, "animal": 150, "festival": 73}


def test_dev_and_train_share_no_article_and_unknown_documents_are_counted(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Ladilton is a town in Telvany on the north bank of the river Oremea.\nIt trades timber.\n\n"
                      "Olga Paalier (1688 to 1757) was an astronomer from Ladilton.\nPaalier studied astronomy.\n\n"
                      "Something else entirely.\nWith a second line.\n")
    splits, unrecognised = make_topic_task.build([str(corpus)], dev_fraction=0.0, train_examples=0, seed=0)
    assert unrecognised == 1 and splits["dev"] == []
    assert sorted(splits["train"]) == [("It trades timber.", "town"), ("Paalier studied astronomy.", "person")]

    splits, _ = make_topic_task.build(CORPUS, dev_fraction=0.3, train_examples=0, seed=0)
    docs = make_topic_task.documents(CORPUS)
    owners = collections.defaultdict(set)  # sentence -> the articles holding it (a few generic ones repeat)
    for doc in docs:
        for sentence in doc[1:]:
            owners[sentence].add(doc[0])
    train, dev = {s for s, _ in splits["train"]}, {s for s, _ in splits["dev"]}
    own = {s: next(iter(o)) for s, o in owners.items() if len(o) == 1}
    assert len(own) > 0.9 * len(owners)
    for sentence, article in own.items():  # an article's own sentences all land in its document's split
        assert (sentence in dev, sentence in train) == ((True, False) if make_topic_task.is_dev(article, 0.3)
                                                        else (False, True))
    dev_docs = sum(make_topic_task.is_dev(doc[0], 0.3) for doc in make_topic_task.documents(CORPUS))
    assert 0.25 * 818 < dev_docs < 0.35 * 818  # 818 documents, binomial sd ~13


def test_the_command_writes_the_table_task_layout(tmp_path):
    out = tmp_path / "topics"
    completed = subprocess.run([sys.executable, str(SCRIPT), "--output", str(out), "--train_examples", "50"],
                               capture_output=True, text=True, timeout=120, check=True)
    assert "dev majority class town" in completed.stdout
    with open(out / "train.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(rows) == 50 and set(rows[0]) == {"sentence", "label"}
    from bert_jax.configuration import load_config
    from bert_jax.data import tasks

    settings = load_config(str(REPO / "configs/finetune.py"),
                           ["finetune.text_a=sentence", "finetune.label_column=label"]).finetune
    data = tasks.get("table").read(str(out), settings)
    assert len(data.train) == 50 and set(data.labels) <= {kind for kind, _ in make_topic_task.KINDS}
    assert [e.text_a for e in data.train] == [row["sentence"] for row in rows]
