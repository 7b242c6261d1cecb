"""Our Flax BERT is the same function as transformers' BertForPreTraining (PyTorch, f32)."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from bert_jax.interop import hf
from bert_jax.models.bert import BertConfig, BertForPreTraining, count_parameters
from tests.hf_reference import max_abs_diff, torch_forward, padded_batch, random_hf_pretraining_model, tiny_hf_config

TOLERANCE = 1e-4  # f32 on CPU; observed differences are ~1e-6


@pytest.fixture(scope="module")
def hf_and_ours(tmp_path_factory):
    config = tiny_hf_config()
    torch_model = random_hf_pretraining_model(config)
    model_dir = tmp_path_factory.mktemp("hf_random")
    torch_model.save_pretrained(model_dir)
    ours, report = hf.load_pretrained(model_dir)
    return torch_model, ours, report


def test_import_loads_every_tensor(hf_and_ours):
    _, _, report = hf_and_ours
    assert report.missing == [] and report.unused == []


def test_logits_and_every_hidden_state_match(hf_and_ours):
    torch_model, ours, _ = hf_and_ours
    input_ids, input_mask, segment_ids = padded_batch(torch_model.config.vocab_size)
    ref = torch_forward(torch_model, input_ids, input_mask, segment_ids, output_hidden_states=True)
    out = ours(jnp.asarray(input_ids), jnp.asarray(input_mask), jnp.asarray(segment_ids), output_hidden_states=True)
    assert len(out["hidden_states"]) == len(ref.hidden_states) == torch_model.config.num_hidden_layers + 1
    for layer, (a, b) in enumerate(zip(out["hidden_states"], ref.hidden_states)):
        assert max_abs_diff(a, b.numpy()) <= TOLERANCE, f"hidden state {layer}"
    assert max_abs_diff(out["mlm_logits"], ref.prediction_logits.numpy()) <= TOLERANCE
    assert max_abs_diff(out["nsp_logits"], ref.seq_relationship_logits.numpy()) <= TOLERANCE


def test_scanned_encoder_matches_transformers(hf_and_ours):
    """`scan_layers=True` runs the same weights (same parameter tree) through one scanned layer body."""
    torch_model, ours, _ = hf_and_ours
    scanned = BertForPreTraining(dataclasses.replace(ours.config, scan_layers=True), rngs=nnx.Rngs(1))
    nnx.update(scanned, nnx.state(ours))
    input_ids, input_mask, segment_ids = padded_batch(torch_model.config.vocab_size, seed=2)
    ref = torch_forward(torch_model, input_ids, input_mask, segment_ids)
    out = scanned(jnp.asarray(input_ids), jnp.asarray(input_mask), jnp.asarray(segment_ids))
    assert max_abs_diff(out["mlm_logits"], ref.prediction_logits.numpy()) <= TOLERANCE
    assert max_abs_diff(out["nsp_logits"], ref.seq_relationship_logits.numpy()) <= TOLERANCE


def test_gathered_positions_equal_full_logits(hf_and_ours):
    _, ours, _ = hf_and_ours
    input_ids, input_mask, segment_ids = padded_batch(ours.config.vocab_size, seed=1)
    positions = np.array([[1, 4, 9], [0, 2, 3], [5, 6, 0]], np.int32)
    full = ours(jnp.asarray(input_ids), jnp.asarray(input_mask), jnp.asarray(segment_ids))["mlm_logits"]
    gathered = ours(jnp.asarray(input_ids), jnp.asarray(input_mask), jnp.asarray(segment_ids), jnp.asarray(positions))
    expected = np.take_along_axis(np.asarray(full), positions[..., None], axis=1)
    assert max_abs_diff(gathered["mlm_logits"], expected) <= 1e-5


@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_new", "relu"])
def test_activations_match(tmp_path, hidden_act):
    torch_model = random_hf_pretraining_model(tiny_hf_config(hidden_act=hidden_act, num_hidden_layers=1), seed=3)
    torch_model.save_pretrained(tmp_path)
    ours, _ = hf.load_pretrained(tmp_path)
    input_ids, input_mask, segment_ids = padded_batch(torch_model.config.vocab_size, seed=2)
    ref = torch_forward(torch_model, input_ids, input_mask, segment_ids)
    out = ours(jnp.asarray(input_ids), jnp.asarray(input_mask), jnp.asarray(segment_ids))
    assert max_abs_diff(out["mlm_logits"], ref.prediction_logits.numpy()) <= TOLERANCE


REAL_SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "BERT was pre-trained on Wikipedia and the BookCorpus.",
    "Paris is the capital and most populous city of France.",
    "She sells sea shells by the sea shore.",
    "JAX compiles NumPy programs for CPUs, GPUs and TPUs.",
    "A journey of a thousand miles begins with a single step.",
    "The mitochondria is the powerhouse of the cell.",
    "Rain is expected tomorrow afternoon, with clearing skies by evening.",
    "Short one.",
]


def test_real_minilm_weights_match_transformers(minilm_dir):
    """The real pretrained MiniLM-L6 encoder, imported, against transformers' BertModel on real sentences."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    encoded = tokenizer(REAL_SENTENCES, padding=True, return_tensors="np")
    reference = transformers.BertModel.from_pretrained(minilm_dir).eval()
    with torch.no_grad():
        ref = reference(**{k: torch.tensor(v) for k, v in encoded.items()}).last_hidden_state.numpy()
    ours, report = hf.load_pretrained(minilm_dir)
    assert set(report.missing_heads) == {"MLM head", "NSP head"}
    assert not [name for name in report.missing if name.startswith("bert.")]
    out = ours.bert(
        jnp.asarray(encoded["input_ids"]), jnp.asarray(encoded["attention_mask"]), jnp.asarray(encoded["token_type_ids"])
    )
    mask = encoded["attention_mask"].astype(bool)
    # Padded positions are compared too: their hidden states are also defined by HF (they attend to real tokens).
    assert max_abs_diff(out["sequence_output"], ref) <= TOLERANCE
    assert max_abs_diff(np.asarray(out["sequence_output"])[mask], ref[mask]) <= TOLERANCE


@pytest.mark.parametrize(
    "name,config",
    [
        ("base", dict()),
        ("large", dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)),
    ],
)
def test_parameter_counts_equal_transformers(name, config):
    vocab = dict(vocab_size=28996)  # the cased vocab of the base_cased recipe
    with torch.device("meta"):
        reference = transformers.BertForPreTraining(transformers.BertConfig(**vocab, **config))
    expected = sum(p.numel() for p in reference.parameters())
    assert count_parameters(BertConfig(**vocab, **config)) == expected


def test_bf16_compute_close_to_f32(hf_and_ours, tmp_path):
    torch_model, ours, _ = hf_and_ours
    ours_bf16, _ = hf.load_pretrained(_saved(torch_model, tmp_path), dtype="bfloat16")
    input_ids, input_mask, segment_ids = padded_batch(ours.config.vocab_size, seed=4)
    args = (jnp.asarray(input_ids), jnp.asarray(input_mask), jnp.asarray(segment_ids))
    f32, bf16 = ours(*args), ours_bf16(*args)
    assert bf16["mlm_logits"].dtype == jnp.bfloat16
    # Parameters stay f32; bf16 activations carry ~3 significant digits. Relative to the logit scale:
    scale = float(jnp.max(jnp.abs(f32["mlm_logits"])))
    assert max_abs_diff(bf16["mlm_logits"], f32["mlm_logits"]) <= 0.05 * scale
    agree = np.mean(np.argmax(np.asarray(bf16["mlm_logits"], np.float32), -1) == np.argmax(np.asarray(f32["mlm_logits"]), -1))
    assert agree >= 0.9
    assert all(leaf.dtype == jnp.float32 for leaf in __import__("jax").tree.leaves(__import__("flax").nnx.state(ours_bf16)))


def _saved(torch_model, path):
    torch_model.save_pretrained(path)
    return path
