"""The fine-tuning heads of every architecture are the same functions as transformers' (PyTorch, f32): a random
Hugging Face model of each head, saved and imported, gives the same logits; our exports load into transformers'
`AutoModelFor*` with no missing keys, their labels and problem type; an encoder without a head imports with the
head freshly initialised and reported."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from bert_jax import models
from bert_jax.interop import hf
from bert_jax.models import heads
from tests.hf_reference import max_abs_diff, padded_batch
from tests.test_roberta_model import padded_roberta_batch, random_weights

TOLERANCE = 1e-4  # f32 on CPU; observed differences are ~1e-6
SMALL = dict(vocab_size=99, max_position_embeddings=40, num_labels=3)


def hf_config(arch: str, **overrides):
    if arch == "distilbert":
        values = dict(SMALL, dim=32, n_layers=2, n_heads=2, hidden_dim=37)
        values.update(overrides)
        return transformers.DistilBertConfig(**values)
    values = dict(SMALL, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
    if arch == "roberta":
        values.update(type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5)
    values.update(overrides)
    return (transformers.RobertaConfig if arch == "roberta" else transformers.BertConfig)(**values)


PREFIX = {"bert": "Bert", "roberta": "Roberta", "distilbert": "DistilBert"}
SUFFIX = {heads.SEQUENCE_CLASSIFICATION: "SequenceClassification", heads.TOKEN_CLASSIFICATION: "TokenClassification",
          heads.QUESTION_ANSWERING: "QuestionAnswering", heads.MULTIPLE_CHOICE: "MultipleChoice"}
CHOICES = 2


def inputs(arch: str, head: str):
    """A padded batch of 3 (RoBERTa's with its <pad> id 1; DistilBERT reads no token types); for multiple choice,
    [3, 2, S]: each example's two choices are the batch's rows shifted."""
    if arch == "roberta":
        ids, mask, types = padded_roberta_batch(SMALL["vocab_size"], seed=3)
    else:
        ids, mask, types = padded_batch(SMALL["vocab_size"], seed=3)
    if head == heads.MULTIPLE_CHOICE:
        ids, mask, types = (np.stack([x, np.roll(x, 1, axis=0)], axis=1) for x in (ids, mask, types))
    return ids, mask, types


def torch_outputs(model, arch, ids, mask, types):
    kwargs = dict(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask, dtype=torch.long))
    if arch != "distilbert":
        kwargs["token_type_ids"] = torch.tensor(types, dtype=torch.long)
    with torch.no_grad():
        return model(**kwargs)


def our_outputs(model, ids, mask, types):
    return model(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(types))


def compare(ours, theirs, head):
    names = ("start_logits", "end_logits") if head == heads.QUESTION_ANSWERING else ("logits",)
    for name in names:
        assert ours[name].shape == tuple(getattr(theirs, name).shape)
        assert max_abs_diff(ours[name], getattr(theirs, name).numpy()) <= TOLERANCE, name


@pytest.mark.parametrize("arch", ["bert", "roberta", "distilbert"])
@pytest.mark.parametrize("head", list(SUFFIX))
def test_head_matches_transformers(arch, head, tmp_path):
    """Save a random transformers model with the head, import it: every tensor is used, none is missing, and the
    logits agree to 1e-4."""
    labels = 2 if head == heads.QUESTION_ANSWERING else 3  # QA: start and end, as transformers requires
    torch_model = random_weights(getattr(transformers, PREFIX[arch] + "For" + SUFFIX[head])(
        hf_config(arch, num_labels=labels)))
    torch_model.save_pretrained(tmp_path)
    ours, report = hf.load_pretrained(tmp_path, heads=(head,))
    assert type(ours).__name__ == type(torch_model).__name__
    assert not report.missing and not report.unused, report.summary()
    batch = inputs(arch, head)
    compare(our_outputs(ours, *batch), torch_outputs(torch_model, arch, *batch), head)


def test_single_output_head_is_regression(tmp_path):
    """num_labels 1 (STS-B): one output per example, and problem_type survives the round trip."""
    torch_model = random_weights(transformers.BertForSequenceClassification(
        hf_config("bert", num_labels=1, problem_type="regression")))
    torch_model.save_pretrained(tmp_path)
    ours, _ = hf.load_pretrained(tmp_path, heads=(heads.SEQUENCE_CLASSIFICATION,))
    assert (ours.config.num_labels, ours.config.problem_type) == (1, "regression")
    batch = inputs("bert", heads.SEQUENCE_CLASSIFICATION)
    compare(our_outputs(ours, *batch), torch_outputs(torch_model, "bert", *batch), heads.SEQUENCE_CLASSIFICATION)


AUTO = {heads.SEQUENCE_CLASSIFICATION: transformers.AutoModelForSequenceClassification,
        heads.TOKEN_CLASSIFICATION: transformers.AutoModelForTokenClassification,
        heads.QUESTION_ANSWERING: transformers.AutoModelForQuestionAnswering,
        heads.MULTIPLE_CHOICE: transformers.AutoModelForMultipleChoice}


def write_wordpiece_vocab(directory, size):
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(size - 5)]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("".join(t + "\n" for t in tokens))
    return directory / "vocab.txt"


@pytest.mark.parametrize("arch,head", [("bert", heads.SEQUENCE_CLASSIFICATION),
                                       ("distilbert", heads.SEQUENCE_CLASSIFICATION),
                                       ("bert", heads.QUESTION_ANSWERING),
                                       ("distilbert", heads.MULTIPLE_CHOICE)])
def test_export_loads_in_transformers_auto_classes(arch, head, tmp_path):
    """Our model with a head, exported with label names: the Auto class and AutoTokenizer load it with no missing
    or unexpected keys, the same logits, our labels and problem type."""
    config_class = models.config_class(arch)
    labels = ["start", "end"] if head == heads.QUESTION_ANSWERING else ["contradiction", "entailment", "neutral"]
    fields = dict(vocab_size=SMALL["vocab_size"], max_position_embeddings=40, num_labels=len(labels),
                  problem_type="single_label_classification")
    fields.update(dict(dim=32, n_layers=2, n_heads=2, hidden_dim=37) if arch == "distilbert" else
                  dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37))
    ours = models.constructor(config_class(**fields), (head,))(nnx.Rngs(3))
    out = tmp_path / "export"
    hf.export_pretrained(ours, out, vocab_file=write_wordpiece_vocab(tmp_path / "vocab", SMALL["vocab_size"]),
                         lowercase=True, labels=labels)
    loaded, info = AUTO[head].from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert loaded.config.id2label == dict(enumerate(labels)) and loaded.config.label2id[labels[1]] == 1
    assert loaded.config.problem_type == "single_label_classification"
    assert transformers.AutoTokenizer.from_pretrained(out)("w0 w1")["input_ids"] == [2, 5, 6, 3]
    batch = inputs(arch, head)
    compare(our_outputs(ours, *batch), torch_outputs(loaded.eval(), arch, *batch), head)
    assert hf.label_names(out) == labels


def test_encoder_imports_with_a_fresh_reported_head(tmp_path):
    """A pre-trained encoder (BertForPreTraining) into a classifier: the encoder and pooler are loaded, the
    classifier is freshly initialised and reported as a missing classification head, the MLM and NSP heads unused."""
    torch.manual_seed(0)
    transformers.BertForPreTraining(hf_config("bert")).save_pretrained(tmp_path)
    model, report = hf.load_pretrained(tmp_path, heads=(heads.SEQUENCE_CLASSIFICATION,), num_labels=5)
    assert report.missing == ["classifier.weight", "classifier.bias"]
    assert report.missing_heads == ["classification head"]
    assert "freshly initialised 2 tensors (missing heads: classification head)" in report.summary()
    assert {name.split(".")[0] for name in report.unused} == {"cls"}
    assert model.classifier.kernel.shape == (32, 5)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["BertForPreTraining"]
