"""CoNLL token classification and SWAG multiple choice: the readers on files written here (both layouts of each),
the word -> sub-token label alignment against transformers' tokenizers (word_ids, run_ner.py's rule), the losses
against transformers' BertForTokenClassification / BertForMultipleChoice (1e-5), seqeval's entity F1 against a
hand-computed value, one-line errors, and `python -m bert_jax.finetune` end to end on a tiny BERT with the eval
metrics equal to transformers' on the exported best/ directory."""

from __future__ import annotations

import csv
import json
import logging

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from bert_jax import finetune
from bert_jax.data import tasks
from bert_jax.data.tasks import tagging_metrics, token_encoding
from bert_jax.data.tasks.conll import TaggedSentence
from bert_jax.data.tokenizers import vocabs
from bert_jax.errors import InputError
from bert_jax.interop import hf, sources
from bert_jax.objectives.multiple_choice import MultipleChoice
from bert_jax.objectives.token_classification import TokenClassification
from tests.conftest import SAMPLE
from tests.test_finetune import WORDS, tiny_model  # noqa: F401  (tiny_model: a module fixture, made here once)
from tests.test_roberta_model import random_weights
from tests.test_task_heads import hf_config

CONLL_TRAIN = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
.  . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O

BRUSSELS NNP B-NP B-LOC
"""


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def write_jsonl(path, rows):
    write(path, "".join(json.dumps(row) + "\n" for row in rows))


def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *rows])


def settings(**fields):
    config = ml_collections.ConfigDict(dict(text_a="", text_b="", label_column="", labels=[], tag_column=-1,
                                            label_all_tokens=False, choice_columns=[]))
    config.update(fields)
    return config


# ------------------------------------------------------------------------------------------------- readers


def test_conll_text_files_read_as_shipped(tmp_path):
    """DOCSTART lines and blank lines split sentences; the tag is the last column (or `tag_column`); the label set
    is the sorted train tags; the dev split is valid.txt."""
    write(tmp_path / "train.txt", CONLL_TRAIN)
    write(tmp_path / "valid.txt", "\nPeter NNP B-NP B-PER\nrejects VBZ B-VP O\n\n\n")
    data = tasks.get("conll").read(str(tmp_path), settings())
    assert data.labels == ("B-LOC", "B-MISC", "B-ORG", "B-PER", "I-PER", "O")
    assert [s.words for s in data.train] == [("EU", "rejects", "German", "call", "."), ("Peter", "Blackburn"),
                                             ("BRUSSELS",)]
    assert [[data.labels[t] for t in s.tags] for s in data.train][:2] == [["B-ORG", "O", "B-MISC", "O", "O"],
                                                                          ["B-PER", "I-PER"]]
    assert data.dev["dev"] == [TaggedSentence(("Peter", "rejects"), (3, 5))]
    assert (data.best_metric, data.num_labels, data.problem_type) == ("f1", 6, "")
    chunks = tasks.get("conll").read(str(tmp_path), settings(tag_column=2))
    assert chunks.labels == ("B-NP", "B-VP", "I-NP", "O")


def test_conll_datasets_export_jsonl_and_parquet(tmp_path):
    """The datasets export: `tokens` and `ner_tags` as names (JSONL) or ids named by `finetune.labels` (Parquet)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    write_jsonl(tmp_path / "train.jsonl", [{"tokens": ["EU", "rejects"], "ner_tags": ["B-ORG", "O"], "id": "0"},
                                           {"tokens": [], "ner_tags": []},
                                           {"tokens": ["Peter"], "ner_tags": ["B-PER"]}])
    pq.write_table(pa.table({"tokens": [["Peter", "Blackburn"]], "ner_tags": [[1, 0]]}), tmp_path / "validation.parquet")
    with pytest.raises(InputError, match=r"validation.parquet: row 1: the tags are ids: give their names"):
        tasks.get("conll").read(str(tmp_path), settings())
    data = tasks.get("conll").read(str(tmp_path), settings(labels=["O", "B-PER", "B-ORG"]))
    assert data.labels == ("O", "B-PER", "B-ORG")
    assert [(s.words, s.tags) for s in data.train] == [(("EU", "rejects"), (2, 0)), (("Peter",), (1,))]
    assert data.dev["dev"] == [TaggedSentence(("Peter", "Blackburn"), (1, 0))]


SWAG_HEADER = ["video-id", "fold-ind", "startphrase", "sent1", "sent2", "gold-source", "ending0", "ending1", "ending2",
               "ending3", "label"]


def swag_row(index, sent1, sent2, endings, label):
    return [f"anetv_{index}", str(index), f"{sent1} {sent2}", sent1, sent2, "gold", *endings, str(label)]


def test_swag_csv_and_column_arguments(tmp_path):
    """SWAG's train.csv / val.csv: context sent1, choice i = sent2 + " " + ending_i (run_swag.py), labels 0..3; and
    a JSONL table of other columns read through the column arguments."""
    write_csv(tmp_path / "train.csv", SWAG_HEADER, [
        swag_row(0, "Members of the procession walk down the street.", "A drum line",
                 ["passes by.", "has heard approaching them.", "arrives, a man, with a drum.", "plays, and then"], 0),
        swag_row(1, "She smiles.", "She", ["waves.", "runs, quickly.", "sits.", "\"quotes\" it."], 3)])
    write_csv(tmp_path / "val.csv", SWAG_HEADER, [swag_row(2, "He sits.", "He", ["a", "b", "c", "d"], 2)])
    data = tasks.get("swag").read(str(tmp_path), settings())
    assert (data.labels, data.num_labels, data.best_metric) == (("0", "1", "2", "3"), 4, "accuracy")
    first = data.train[0]
    assert first.context == "Members of the procession walk down the street."
    assert first.choices[2] == "A drum line arrives, a man, with a drum." and first.label == 0
    assert data.train[1].choices[3] == "She \"quotes\" it." and data.train[1].label == 3
    assert [(e.context, e.choices, e.label) for e in data.dev["dev"]] == [("He sits.", ("He a", "He b", "He c",
                                                                                        "He d"), 2)]
    generic = tmp_path / "generic"
    generic.mkdir()
    rows = [{"q": "Pick one.", "lead": "It is", "A": "red.", "B": "blue.", "C": "green.", "answer": 1}]
    write_jsonl(generic / "train.jsonl", rows)
    write_jsonl(generic / "dev.jsonl", rows)
    data = tasks.get("swag").read(str(generic), settings(text_a="q", text_b="lead", label_column="answer",
                                                         choice_columns=["A", "B", "C"]))
    assert data.labels == ("0", "1", "2")
    assert (data.dev["dev"][0].choices, data.dev["dev"][0].label) == (("It is red.", "It is blue.", "It is green."), 1)


# ------------------------------------------------------------------------------------------------- alignment

SENTENCES = [["EU", "rejects", "Germän", "call", "to", "boycott", "British", "lamb", "."],
             ["Naïveté", "unbelievably", "(", "1999", ")", "Zürich-based", "antidisestablishmentarianism"],
             ["Peter", "Blackburn"]]
LABELS = ("B-LOC", "B-PER", "I-LOC", "I-PER", "O")


def tagged(sentences):
    return [TaggedSentence(tuple(words), tuple((3 * i + j) % len(LABELS) for j in range(len(words))))
            for i, words in enumerate(sentences)]


def run_ner_labels(word_ids, tags, label_all_tokens):
    """transformers' run_ner.py `tokenize_and_align_labels`, as the reference."""
    b_to_i = [LABELS.index(name.replace("B-", "I-")) if name.startswith("B-") and name.replace("B-", "I-") in LABELS
              else index for index, name in enumerate(LABELS)]
    out, previous = [], None
    for word in word_ids:
        if word is None:
            out.append(-100)
        elif word != previous:
            out.append(tags[word])
        else:
            out.append(b_to_i[tags[word]] if label_all_tokens else -100)
        previous = word
    return out


def check_alignment(directory, max_len, label_all_tokens, token_types=True, **tokenizer_args):
    source = sources.describe(str(directory))
    vocab = vocabs.load(source.vocab_file, lowercase=source.lowercase)
    sentences = tagged(SENTENCES)
    ours = token_encoding.encode_words(vocab.tokenizer(), sentences, max_len, vocab.specials.pad, token_types,
                                       label_all_tokens, LABELS)
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory, **tokenizer_args)
    for row, sentence in enumerate(sentences):
        theirs = tokenizer(list(sentence.words), is_split_into_words=True, truncation=True, max_length=max_len,
                           padding="max_length")
        assert ours["input_ids"][row].tolist() == theirs["input_ids"]
        assert ours["input_mask"][row].tolist() == theirs["attention_mask"]
        assert ours["labels"][row].tolist() == run_ner_labels(theirs.word_ids(), sentence.tags, label_all_tokens)
        if token_types:
            assert ours["segment_ids"][row].tolist() == theirs["token_type_ids"]
    return ours


@pytest.mark.parametrize("label_all_tokens", [False, True])
def test_wordpiece_alignment_equals_run_ner(minilm_dir, label_all_tokens, caplog):
    """The real bert-base-uncased vocab: words split into several pieces (accents, hyphens, long words) get their
    tag on the first piece (or every piece, B- as I-), specials -100; 12 tokens cut 2 words of sentence 2 and it is logged."""
    with caplog.at_level(logging.WARNING, logger="bert_jax"):
        ours = check_alignment(minilm_dir, 12, label_all_tokens)
    assert (ours["labels"] != -100).sum() > 0
    assert "2 words in 1 of 3 sentences have no token within max_seq_length=12" in caplog.text


def test_bpe_alignment_equals_run_ner(tmp_path):
    """A RoBERTa directory with the bundled byte-level BPE: each word with its leading space, as transformers'
    tokenizer with add_prefix_space=True (which run_ner.py requires for RoBERTa)."""
    from bert_jax import models

    config = models.config_class("roberta")(vocab_size=4096, hidden_size=32, num_hidden_layers=1,
                                            num_attention_heads=2, intermediate_size=37, max_position_embeddings=66)
    model = models.constructor(config, ("token_classification",))(nnx.Rngs(0))
    hf.export_pretrained(model, tmp_path / "roberta", vocab_file=SAMPLE / "bpe/tokenizer.json")
    check_alignment(tmp_path / "roberta", 40, False, token_types=False, add_prefix_space=True)


# ---------------------------------------------------------------------------------------------------- losses


def objective_config(num_labels, task):
    return ml_collections.ConfigDict(dict(model=dict(problem_type="", num_labels=num_labels),
                                          finetune=dict(task=task)))


def both_models(torch_class, head, directory, **config):
    """A random transformers model of `torch_class` and ours of `head` loaded from its save."""
    torch_model = random_weights(torch_class(hf_config("bert", **config)))
    torch_model.save_pretrained(directory)
    return torch_model, hf.load_pretrained(directory, heads=(head,))[0]


def our_loss(objective, model, batch):
    @nnx.jit  # one compilation of the whole loss: cheaper than op-by-op dispatch
    def loss(model, batch):
        sums = objective.sums(objective.forward(model, batch, deterministic=True, rngs=None), batch)
        return objective.loss(sums, objective.denominators(batch))

    return float(loss(model, {name: jnp.asarray(value) for name, value in batch.items()}))


def test_token_classification_loss_equals_transformers(tmp_path):
    """BertForTokenClassification(labels=...) with -100 at specials, later pieces and padding: the mean over the
    labelled tokens."""
    torch_model, ours = both_models(transformers.BertForTokenClassification, "token_classification", tmp_path,
                                    num_labels=5)
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 99, size=(3, 12)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 8:] = 0
    labels = rng.integers(0, 5, size=ids.shape).astype(np.int32)
    labels[:, 0] = labels[1, 8:] = labels[2, 3:6] = -100
    loss = our_loss(TokenClassification(objective_config(5, "conll")), ours,
                    {"input_ids": ids, "input_mask": mask, "segment_ids": np.zeros_like(ids), "labels": labels})
    with torch.no_grad():
        theirs = torch_model(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask),
                             labels=torch.tensor(labels, dtype=torch.long)).loss.item()
    assert abs(loss - theirs) <= 1e-5


def test_multiple_choice_loss_equals_transformers(tmp_path):
    torch_model, ours = both_models(transformers.BertForMultipleChoice, "multiple_choice", tmp_path)
    rng = np.random.default_rng(1)
    ids = rng.integers(5, 99, size=(3, 4, 10)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[:, 2, 6:] = 0
    types = np.zeros_like(ids)
    types[..., 5:] = 1
    labels = np.array([3, 0, 2], np.int32)
    loss = our_loss(MultipleChoice(objective_config(4, "swag")), ours,
                    {"input_ids": ids, "input_mask": mask, "segment_ids": types, "labels": labels})
    with torch.no_grad():
        theirs = torch_model(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask),
                             token_type_ids=torch.tensor(types, dtype=torch.long),
                             labels=torch.tensor(labels, dtype=torch.long)).loss.item()
    assert abs(loss - theirs) <= 1e-5


def test_entity_f1_by_hand_and_seqeval():
    """Entities: true PER(0-1), LOC(3); ORG; MISC (an I- tag opens a chunk in seqeval's default mode). Predicted
    PER(0-1); ORG; MISC: 3 of 3 predicted are right, 3 of 4 true found: P 1, R 3/4, F1 6/7; tags 6 of 8 right.
    Positions labelled -100 (later pieces, padding) are skipped."""
    from seqeval.metrics import f1_score

    names = ("B-LOC", "B-MISC", "B-ORG", "B-PER", "I-LOC", "I-MISC", "I-PER", "O")
    ids = {name: i for i, name in enumerate(names)}
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"], ["I-MISC", "O"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "O"], ["B-MISC", "O"]]
    labels = np.full((3, 6), -100)
    predicted = np.full((3, 6), ids["B-LOC"])  # wrong everywhere the labels are -100: must not count
    for row, (t, p) in enumerate(zip(true, pred)):
        positions = [1, 3, 4, 5][:len(t)]
        labels[row, positions] = [ids[x] for x in t]
        predicted[row, positions] = [ids[x] for x in p]
    got_true, got_pred = tagging_metrics.tag_sequences(predicted, labels, names)
    assert (got_true, got_pred) == (true, pred)
    scores = tagging_metrics.entity_scores(got_true, got_pred)
    assert scores == pytest.approx({"precision": 1.0, "recall": 0.75, "f1": 6 / 7, "accuracy": 6 / 8})
    assert scores["f1"] == pytest.approx(f1_score(true, pred))


# ---------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("task,files,message", [
    ("conll", {"train.txt": "EU NNP B-ORG\nrejects VBZ\n", "dev.txt": "EU NNP B-ORG\n"},
     r"train.txt:2: 2 whitespace-separated columns where the file's first token line has 3"),
    ("conll", {"train.txt": "EU NNP B-ORG\n", "valid.txt": "EU NNP B-ORG\n\nrejects VBZ B-FOO\n"},
     r"valid.txt:3: label 'B-FOO' is not one of the task's labels \['B-ORG'\]"),
    ("conll", {"train.txt": "EU NNP B-ORG\n", "dev.txt": "-DOCSTART- -X- O\n\n"}, r"dev.txt holds no examples"),
    ("conll", {"train.txt": "EU B-ORG\n"}, r"holds none of the conll split files \['dev.txt'"),
    ("conll", {"train.txt": "EU B-ORG\n", "dev.txt": "EU B-ORG\n", "valid.txt": "EU B-ORG\n"},
     r"holds more than one \(dev.txt, valid.txt\)"),
    ("swag", {"train.csv": [SWAG_HEADER, swag_row(0, "a", "b", "cdef", 0)],
              "val.csv": [SWAG_HEADER, swag_row(0, "a", "b", "cdef", 4)]},
     r"val.csv:2: label '4' is not a choice index 0..3"),
    ("swag", {"train.csv": [SWAG_HEADER, swag_row(0, "a", "b", "cdef", 0)],
              "val.csv": [[c for c in SWAG_HEADER if c != "sent2"], swag_row(0, "a", "cdef", "", 1)[:-2] + ["1"]]},
     r"val.csv:2: no column 'sent2' \(config.finetune.text_b"),
    ("swag", {"train.csv": [SWAG_HEADER, swag_row(0, "a", "b", "cdef", 0)], "val.csv": [SWAG_HEADER, ["x", "1"]]},
     r"val.csv:2: no value in column 'sent2'"),
])
def test_bad_input_is_one_line(task, files, message, tmp_path):
    for name, content in files.items():
        if isinstance(content, str):
            write(tmp_path / name, content)
        else:
            write_csv(tmp_path / name, content[0], content[1:])
    with pytest.raises(InputError, match=message) as error:
        tasks.get(task).read(str(tmp_path), settings())
    assert "\n" not in str(error.value)


# ------------------------------------------------------------------------------------------ the command, end to end

CLI_ARGS = ["--config.batch_size=16", "--config.phases=[{'max_seq_length': 32, 'fraction': 1.0, 'max_predictions': 1}]",
            "--config.finetune.epochs=1", "--config.optimizer.learning_rate=1e-3", "--config.log_every=1",
            "--config.peak_flops_per_device=1e10", "--config.export_at_end=False"]  # 2 steps, one eval: cheap


def run_cli(model, task, data, workdir):
    argv = ["--workdir", str(workdir), "--model", str(model), "--task", task, "--data", str(data), *CLI_ARGS]
    assert finetune.main(argv) == 0
    return json.loads((workdir / "best" / "best.json").read_text())


def ner_sentences(count, seed):
    """Words of the sample vocab; a word's tag follows from its place in the list (a learnable rule)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        words = rng.choice(len(WORDS), size=7).tolist()
        out.append([(WORDS[w], "B-LOC" if w % 4 == 0 else "B-PER" if w % 4 == 1 else "I-PER" if w % 8 == 2 else "O")
                    for w in words])
    return out


def conll_text(sentences):
    blocks = ["-DOCSTART- -X- O\n"] + ["".join(f"{word} NN {tag}\n" for word, tag in s) for s in sentences]
    return "\n".join(blocks)


def test_conll_end_to_end_matches_transformers_on_the_best_export(tiny_model, tmp_path):  # noqa: F811
    """The command fine-tunes a tiny BERT on a CoNLL-layout task; AutoModelForTokenClassification loads best/ with
    the task's id2label, and its dev loss, entity precision/recall/F1 (seqeval) and accuracy on run_ner's
    alignment equal the eval record best.json keeps."""
    data = tmp_path / "conll"
    data.mkdir()
    write(data / "train.txt", conll_text(ner_sentences(32, 0)))
    dev = ner_sentences(20, 1)
    write(data / "valid.txt", conll_text(dev))
    best = run_cli(tiny_model, "conll", data, tmp_path / "run")
    assert best["metric"] == "f1"
    model, info = transformers.AutoModelForTokenClassification.from_pretrained(tmp_path / "run" / "best",
                                                                               output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"]
    names = tuple(model.config.id2label[i] for i in range(model.config.num_labels))
    assert names == ("B-LOC", "B-PER", "I-PER", "O")
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "run" / "best")
    inputs = tokenizer([[w for w, _ in s] for s in dev], is_split_into_words=True, truncation=True, max_length=32,
                       padding="max_length", return_tensors="pt")
    labels = torch.tensor([run_ner_labels(inputs.word_ids(row), [names.index(t) for _, t in s], False)
                           for row, s in enumerate(dev)])
    with torch.no_grad():
        out = model.eval()(**inputs, labels=labels)
    true, predicted = tagging_metrics.tag_sequences(out.logits.argmax(-1).numpy(), labels.numpy(), names)
    from seqeval import metrics

    record = best["eval"]
    assert record["f1"] == pytest.approx(metrics.f1_score(true, predicted, zero_division=0))
    assert record["precision"] == pytest.approx(metrics.precision_score(true, predicted, zero_division=0))
    assert record["recall"] == pytest.approx(metrics.recall_score(true, predicted, zero_division=0))
    assert record["accuracy"] == pytest.approx(metrics.accuracy_score(true, predicted))
    assert record["loss"] == pytest.approx(out.loss.item(), abs=1e-5)
    assert record["examples"] == 20


def test_swag_end_to_end_matches_transformers_on_the_best_export(tiny_model, tmp_path):  # noqa: F811
    """The command on a SWAG-layout task; AutoModelForMultipleChoice loads best/ and, on run_swag.py's encoding of
    the dev split, its loss and accuracy equal the eval record best.json keeps."""
    rng = np.random.default_rng(2)

    def rows(count):
        out = []
        for index in range(count):
            context = " ".join(rng.choice(WORDS, size=5))
            label = int(rng.integers(4))
            endings = [" ".join(rng.choice(WORDS, size=3)) for _ in range(4)]
            endings[label] = " ".join(context.split()[:3])  # the right ending repeats the context's start
            out.append(swag_row(index, context, str(rng.choice(WORDS)), endings, label))
        return out

    data = tmp_path / "swag"
    data.mkdir()
    write_csv(data / "train.csv", SWAG_HEADER, rows(32))
    dev = rows(20)
    write_csv(data / "val.csv", SWAG_HEADER, dev)
    best = run_cli(tiny_model, "swag", data, tmp_path / "run")
    assert best["metric"] == "accuracy"
    model, info = transformers.AutoModelForMultipleChoice.from_pretrained(tmp_path / "run" / "best",
                                                                          output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "run" / "best")
    first = [row[3] for row in dev for _ in range(4)]
    second = [f"{row[4]} {row[6 + i]}" for row in dev for i in range(4)]
    inputs = tokenizer(first, second, truncation=True, max_length=32, padding="max_length", return_tensors="pt")
    inputs = {name: value.view(len(dev), 4, -1) for name, value in inputs.items()}
    labels = torch.tensor([int(row[-1]) for row in dev])
    with torch.no_grad():
        out = model.eval()(**inputs, labels=labels)
    record = best["eval"]
    assert record["accuracy"] == pytest.approx((out.logits.argmax(-1) == labels).float().mean().item())
    assert record["loss"] == pytest.approx(out.loss.item(), abs=1e-5)
    assert record["examples"] == 20


def test_cli_errors_are_one_line(tiny_model, tmp_path, capsys):  # noqa: F811
    write(tmp_path / "train.txt", "EU NNP B-ORG\nrejects VBZ\n")
    write(tmp_path / "dev.txt", "EU NNP B-ORG\n")
    argv = ["--workdir", str(tmp_path / "w"), "--model", str(tiny_model), "--task", "conll", "--data", str(tmp_path)]
    assert finetune.main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("python -m bert_jax.finetune: error: ") and "train.txt:2: 2 whitespace" in lines[-1]
