"""Fine-tuning end to end on the trainer's core: pair encoding equal to transformers' AutoTokenizer, the
classification objective's loss equal to transformers' for each problem type, and `python -m bert_jax.finetune` on
a tiny BERT and a tiny RTE-layout task: an eval every epoch, the best export, a Hugging Face export whose dev
accuracy under transformers equals the logged one, a bit-exact resume, and one-line errors for bad input."""

from __future__ import annotations

import json
import shutil

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from bert_jax import finetune
from bert_jax.configuration import load_config
from bert_jax.data.tasks import Example, encoding
from bert_jax.data.tokenizers import vocabs
from bert_jax.interop import hf, sources
from bert_jax.models.bert import BertConfig, BertForPreTraining
from bert_jax.objectives.classification import SequenceClassification, prepare_config
from bert_jax.training import loop
from tests.conftest import SAMPLE
from tests.run_helpers import losses, records
from tests.test_finetune_tasks import write_tsv
from tests.test_roberta_model import random_weights
from tests.test_task_heads import hf_config

PAIRS = [Example("The café in Zürich opened in 1999, long before the war ended.", "It opened early.", 0),
         Example("Naïve readers don't see it.", None, 1),
         Example("A very long premise " + "that keeps going and going " * 6 + "until the end.",
                 "And a hypothesis that is also rather long, with more words than fit.", 0)]


def hf_encoding(directory, examples, length):
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    return [tokenizer(e.text_a, e.text_b, truncation=True, max_length=length, padding="max_length")
            for e in examples]


def test_wordpiece_pairs_equal_autotokenizer(minilm_dir):
    """The real bert-base-uncased vocab (lowercased, accents stripped): [CLS] a [SEP] b [SEP], types 0 then 1,
    longest-first truncation to 24 tokens, as transformers' tokenizer of the same directory."""
    source = sources.describe(str(minilm_dir))
    assert source.lowercase and source.vocab_file.endswith("vocab.txt")
    vocab = vocabs.load(source.vocab_file, lowercase=source.lowercase)
    ours = encoding.encode(vocab.tokenizer(), PAIRS, 24, vocab.specials.pad)
    for row, theirs in enumerate(hf_encoding(minilm_dir, PAIRS, 24)):
        assert ours["input_ids"][row].tolist() == theirs["input_ids"]
        assert ours["segment_ids"][row].tolist() == theirs["token_type_ids"]
        assert ours["input_mask"][row].tolist() == theirs["attention_mask"]


def test_bpe_pairs_equal_autotokenizer(tmp_path):
    """A RoBERTa directory with the bundled byte-level BPE: <s> a </s></s> b </s>, as transformers encodes it."""
    from bert_jax import models

    config = models.config_class("roberta")(vocab_size=4096, hidden_size=32, num_hidden_layers=1,
                                            num_attention_heads=2, intermediate_size=37, max_position_embeddings=66)
    model = models.constructor(config, ("sequence_classification",))(nnx.Rngs(0))
    hf.export_pretrained(model, tmp_path / "roberta", vocab_file=SAMPLE / "bpe/tokenizer.json")
    source = sources.describe(str(tmp_path / "roberta"))
    vocab = vocabs.load(source.vocab_file, lowercase=source.lowercase)
    ours = encoding.encode(vocab.tokenizer(), PAIRS, 24, vocab.specials.pad, token_types=False)
    for row, theirs in enumerate(hf_encoding(tmp_path / "roberta", PAIRS, 24)):
        assert ours["input_ids"][row].tolist() == theirs["input_ids"]
        assert ours["input_mask"][row].tolist() == theirs["attention_mask"]
    assert not ours["segment_ids"].any()


@pytest.mark.parametrize("problem_type,num_labels", [("single_label_classification", 3), ("regression", 1),
                                                      ("multi_label_classification", 3)])
def test_loss_equals_transformers(problem_type, num_labels, tmp_path):
    """transformers' BertForSequenceClassification loss (labels=...) for each problem type, from our objective."""
    torch_model = random_weights(transformers.BertForSequenceClassification(
        hf_config("bert", num_labels=num_labels, problem_type=problem_type)))
    torch_model.save_pretrained(tmp_path)
    ours, _ = hf.load_pretrained(tmp_path, heads=("sequence_classification",))
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 99, size=(4, 11)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 7:] = 0
    if problem_type == "regression":
        labels = rng.normal(size=4).astype(np.float32)
    elif problem_type == "multi_label_classification":
        labels = (rng.random((4, num_labels)) > 0.5).astype(np.float32)
    else:
        labels = np.array([0, 2, 1, 2], np.int32)
    config = ml_collections.ConfigDict(dict(model=dict(problem_type=problem_type, num_labels=num_labels),
                                            finetune=dict(task="table")))
    objective = SequenceClassification(config)
    batch = {"input_ids": jnp.asarray(ids), "input_mask": jnp.asarray(mask), "segment_ids": jnp.zeros_like(ids),
             "labels": jnp.asarray(labels)}
    loss = objective.loss(objective.sums(objective.forward(ours, batch, deterministic=True, rngs=None), batch),
                          objective.denominators(batch))
    with torch.no_grad():
        theirs = torch_model(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask),
                             labels=torch.tensor(labels, dtype=torch.long if labels.dtype == np.int32 else None)
                             ).loss.item()
    assert abs(float(loss) - theirs) <= 1e-5


# --------------------------------------------------------------------------------------------- the command

VOCAB = SAMPLE / "vocab/vocab.txt"
WORDS = [line.strip() for line in VOCAB.read_text().splitlines()[200:260]]


def rte_rows(count, seed):
    """RTE-layout rows over the sample vocab's words: entailment when the hypothesis is the premise's start."""
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        premise = rng.choice(WORDS, size=8).tolist()
        entails = index % 2 == 0
        hypothesis = premise[:3] if entails else rng.choice(WORDS, size=3).tolist()
        rows.append([str(index), " ".join(premise), " ".join(hypothesis),
                     "entailment" if entails else "not_entailment"])
    return rows


def export_tiny_bert(out, **fields):
    """A tiny pre-trained-layout BERT (BertForPreTraining) with the sample vocab, as a Hugging Face directory."""
    config = BertConfig(vocab_size=4096, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=64, **fields)
    hf.export_pretrained(BertForPreTraining(config, rngs=nnx.Rngs(0)), out, vocab_file=VOCAB)
    return out


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return export_tiny_bert(tmp_path_factory.mktemp("tiny_bert") / "model")


def write_rte(root, train_rows, dev_rows):
    """GLUE's RTE layout (train.tsv, dev.tsv) in `root`."""
    root.mkdir()
    header = ["index", "sentence1", "sentence2", "label"]
    write_tsv(root / "train.tsv", header, train_rows)
    write_tsv(root / "dev.tsv", header, dev_rows)
    return root


@pytest.fixture(scope="module")
def rte_dir(tmp_path_factory):
    return write_rte(tmp_path_factory.mktemp("glue") / "RTE", rte_rows(40, 0), rte_rows(20, 1))


ARGS = ["--config.batch_size=16", "--config.phases=[{'max_seq_length': 32, 'fraction': 1.0, 'max_predictions': 1}]",
        "--config.finetune.epochs=2", "--config.optimizer.learning_rate=1e-3", "--config.keep_checkpoints=3",
        "--config.log_every=1", "--config.peak_flops_per_device=1e10"]


def run_config(model, data, *extra):
    overrides = [a.removeprefix("--config.") for a in (*ARGS, *extra)]
    overrides += [f"finetune.model={model}", "finetune.task=rte", f"finetune.data={data}"]
    return prepare_config(load_config("configs/finetune.py", overrides))


@pytest.fixture(scope="module")
def finetuned(tiny_model, rte_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("finetuned") / "run"
    config = run_config(tiny_model, rte_dir)
    assert (config.train_steps, config.eval_every, config.optimizer.warmup_steps) == (6, 3, 1)  # 40 / 16 -> 3 a epoch
    assert loop.run(config, str(workdir)).status == "finished"
    return workdir


def test_finetune_evaluates_every_epoch_and_keeps_the_best(finetuned):
    evals = records(finetuned, "eval")
    assert sorted(evals) == [3, 6] and all(r["examples"] == 20 for r in evals.values())
    best = json.loads((finetuned / "best" / "best.json").read_text())
    assert best["metric"] == "accuracy"
    assert best["value"] == max(r["accuracy"] for r in evals.values())
    assert best["step"] == min(s for s, r in evals.items() if r["accuracy"] == best["value"])
    assert sorted(losses(finetuned)) == list(range(1, 7))


def test_export_loads_in_transformers_with_the_logged_accuracy(finetuned, rte_dir):
    """The last parameters' export: AutoModelForSequenceClassification and AutoTokenizer load it with no missing
    keys and RTE's labels; transformers' dev accuracy and loss equal the eval at the last step."""
    export = finetuned / "export"
    model, info = transformers.AutoModelForSequenceClassification.from_pretrained(export, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert model.config.id2label == {0: "entailment", 1: "not_entailment"}
    assert model.config.problem_type == "single_label_classification"
    tokenizer = transformers.AutoTokenizer.from_pretrained(export)
    rows = rte_rows(20, 1)
    inputs = tokenizer([r[1] for r in rows], [r[2] for r in rows], truncation=True, max_length=32,
                       padding="max_length", return_tensors="pt")
    labels = torch.tensor([model.config.label2id[r[3]] for r in rows])
    with torch.no_grad():
        out = model.eval()(**inputs, labels=labels)
    last = records(finetuned, "eval")[6]
    assert (out.logits.argmax(-1) == labels).float().mean().item() == pytest.approx(last["accuracy"])
    assert out.loss.item() == pytest.approx(last["loss"], abs=1e-5)


def test_resume_is_bit_for_bit(finetuned, tiny_model, rte_dir, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(finetuned, partial)
    shutil.rmtree(partial / "checkpoints" / "6")
    shutil.rmtree(partial / "export")
    assert loop.run(run_config(tiny_model, rte_dir), str(partial)).status == "finished"
    assert losses(partial) == losses(finetuned) and losses(partial, "eval") == losses(finetuned, "eval")
    assert (partial / "export" / "model.safetensors").read_bytes() == (
        finetuned / "export" / "model.safetensors").read_bytes()


def test_bad_input_is_one_line_naming_the_problem(tiny_model, rte_dir, tmp_path, capsys):
    def error(*argv):
        assert finetune.main(["--workdir", str(tmp_path / "w"), *argv]) == 2
        message = capsys.readouterr().err.strip().splitlines()[-1]
        assert message.startswith("python -m bert_jax.finetune: error: ")
        return message

    assert "task 'rtee' does not exist; the tasks are cola, " in error(
        "--model", str(tiny_model), "--task", "rtee", "--data", str(rte_dir))
    assert "the header lacks the column(s) ['sentence'] of SST-2's layout" in error(
        "--model", str(tiny_model), "--task", "sst2", "--data", str(rte_dir))
    no_encoder = tmp_path / "no_encoder"
    shutil.copytree(tiny_model, no_encoder)
    from safetensors.numpy import save_file

    save_file({"classifier.weight": np.zeros((2, 32), np.float32)}, str(no_encoder / "model.safetensors"))
    assert "holds no bert encoder weights" in error("--model", str(no_encoder), "--task", "rte", "--data",
                                                    str(rte_dir))
    assert "is neither a Hugging Face model directory" in error("--model", str(tmp_path), "--task", "rte",
                                                                "--data", str(rte_dir))


def test_a_training_workdir_is_a_source(sample_dataset, tmp_path):
    """One of our pre-training runs (a checkpoint of BertForPreTraining) starts a classifier: its config and
    vocab are the run's, the encoder and pooler are copied exactly, the classifier is reported fresh and the
    pre-training heads ignored."""
    import grain
    import jax

    from bert_jax.training import checkpointing, setup
    from bert_jax.training.phases import phase_plan
    from tests.run_helpers import ONE_PHASE, overrides

    config = load_config("configs/base_cased.py:tiny", overrides(sample_dataset, phases=ONE_PHASE))
    run = setup.build(config)
    state = run.init_state()
    manager = checkpointing.make_manager(str(tmp_path / "run"), keep=1)
    iterator = iter(grain.MapDataset.range(4).batch(2).to_iter_dataset())
    checkpointing.save(manager, 1, state, iterator, checkpointing.run_metadata(config, run.mesh, phase_plan(config)[0]))
    manager.wait_until_finished()
    manager.close()

    source = sources.describe(str(tmp_path / "run"))
    assert source.kind == sources.WORKDIR and source.vocab_file == config.data.vocab_file
    assert source.model_config.hidden_size == 32 and not source.lowercase
    model = classifier_of(source.model_config)
    report = sources.load_encoder(source, model)
    assert "freshly initialised 2 parameters (the new head): classifier/bias, classifier/kernel" in report
    assert "ignored" in report and "nsp/kernel" in report and "mlm_bias" in report
    ours = jax.device_get(state.params["bert"]["pooler"]["kernel"][...])
    np.testing.assert_array_equal(np.asarray(model.bert.pooler.kernel[...]), ours)


def classifier_of(config):
    from bert_jax import models

    return models.constructor(config, ("sequence_classification",))(nnx.Rngs(0))


def test_random_init_keeps_the_architecture_and_drops_the_weights(tiny_model, rte_dir):
    """finetune.init=random (the baseline of docs/finetune.md's pre-training evidence): the source's architecture and
    vocab, the seed's fresh weights; pretrained copies the source's encoder."""
    import jax

    from bert_jax import models
    from bert_jax.objectives.classification import SequenceClassification

    source_state = hf.read_safetensors(tiny_model)
    source_embedding = source_state["bert.embeddings.word_embeddings.weight"]
    params = {}
    for init in ("pretrained", "random"):
        config = run_config(tiny_model, rte_dir, f"--config.finetune.init={init}")
        assert config.model.hidden_size == 32 and config.data.vocab_file == str(tiny_model / "vocab.txt")
        make_model = models.constructor(models.model_config(config.model), ("sequence_classification",))
        params[init] = SequenceClassification(config).initial_params(make_model, seed=7)
    embedding = {init: np.asarray(jax.tree.leaves(p["bert"]["embeddings"]["word_embeddings"])[0])
                 for init, p in params.items()}
    np.testing.assert_array_equal(embedding["pretrained"], np.asarray(source_embedding, dtype=np.float32))
    assert np.abs(embedding["random"] - embedding["pretrained"]).max() > 1e-3
    fresh = make_model(nnx.Rngs(7))
    np.testing.assert_array_equal(embedding["random"], np.asarray(fresh.bert.embeddings.word_embeddings.embedding[...]))
    with pytest.raises(Exception, match="finetune.init must be 'pretrained' or 'random'"):
        run_config(tiny_model, rte_dir, "--config.finetune.init=scratch")


def test_exports_carry_the_tasks_model_card_and_the_report_plots_its_metrics(finetuned):
    from huggingface_hub import ModelCard

    from bert_jax import report

    best = json.loads((finetuned / "best" / "best.json").read_text())
    card = ModelCard.load(finetuned / "best" / "README.md")
    assert card.data.pipeline_tag == "text-classification" and card.data.license == "apache-2.0"
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results["accuracy"] == best["value"] and results["loss"] == best["eval"]["loss"]
    assert f"step {best['step']}" in card.text and "Fine-tuned on task `rte`" in card.text
    last = ModelCard.load(finetuned / "export" / "README.md")
    assert ({r.metric_type: r.metric_value for r in last.data.eval_results}["accuracy"]
            == records(finetuned, "eval")[6]["accuracy"])
    titles = [axes.get_title() for axes in report.build_figure(report.read_metrics(str(finetuned))).axes]
    assert titles[0] == "loss" and "accuracy" in titles and titles[-1] == "learning_rate"
