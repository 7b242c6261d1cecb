"""Our Flax RoBERTa is the same function as transformers' RobertaForMaskedLM (PyTorch, f32), imports any HF RoBERTa
safetensors checkpoint and exports a directory transformers loads with no missing or unexpected keys."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from bert_jax import models
from bert_jax.interop import hf
from bert_jax.models.roberta import position_ids
from tests.hf_reference import max_abs_diff

TOLERANCE = 1e-4  # f32 on CPU; observed differences are ~1e-6
PAD = 1


def tiny_roberta_config(**overrides) -> transformers.RobertaConfig:
    values = dict(vocab_size=211, hidden_size=48, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96,
                  max_position_embeddings=40, type_vocab_size=1, pad_token_id=PAD, bos_token_id=0, eos_token_id=2,
                  layer_norm_eps=1e-5)  # as the released checkpoints (transformers' class default is 1e-12)
    values.update(overrides)
    return transformers.RobertaConfig(**values)


def random_weights(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every weight random (LayerNorm and biases too), so no mapping error hides behind an initial value."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            is_scale = name.endswith("LayerNorm.weight") or name.endswith("layer_norm.weight")
            param.copy_(torch.randn_like(param) * (0.2 if is_scale else 0.5) + (1.0 if is_scale else 0.0))
    return model.eval()


def padded_roberta_batch(vocab_size: int, seed: int = 0, batch: int = 3, seq: int = 17):
    """<s> tokens </s> then <pad>, of varied lengths; token types all 0 (RoBERTa has one)."""
    rng = np.random.default_rng(seed)
    input_ids = rng.integers(4, vocab_size, size=(batch, seq)).astype(np.int32)
    input_mask = np.zeros((batch, seq), np.int32)
    for row, length in enumerate([seq, seq - 5, 7][:batch]):
        input_ids[row, 0], input_ids[row, length - 1] = 0, 2
        input_ids[row, length:] = PAD
        input_mask[row, :length] = 1
    return input_ids, input_mask, np.zeros_like(input_ids)


@pytest.fixture(scope="module")
def hf_and_ours(tmp_path_factory):
    torch_model = random_weights(transformers.RobertaForMaskedLM(tiny_roberta_config()))
    model_dir = tmp_path_factory.mktemp("roberta_random")
    torch_model.save_pretrained(model_dir)
    ours, report = hf.load_pretrained(model_dir, heads=("mlm",))
    return torch_model, ours, report, model_dir


def test_position_ids_start_after_the_padding_id():
    ids = jnp.asarray([[0, 7, 8, 2, PAD, PAD], [0, 9, 2, PAD, PAD, PAD]])
    expected = transformers.models.roberta.modeling_roberta.RobertaEmbeddings.create_position_ids_from_input_ids(
        torch.tensor(np.asarray(ids)), PAD)
    np.testing.assert_array_equal(np.asarray(position_ids(ids, PAD)), expected.numpy())
    assert np.asarray(position_ids(ids, PAD))[0].tolist() == [2, 3, 4, 5, 1, 1]


def test_import_loads_every_tensor(hf_and_ours):
    _, ours, report, _ = hf_and_ours
    assert type(ours).__name__ == "RobertaForMaskedLM"
    assert report.missing == [] and report.unused == []
    assert ours.config.max_sequence_length == 40 - PAD - 1


def test_logits_and_every_hidden_state_match_with_padding(hf_and_ours):
    torch_model, ours, _, _ = hf_and_ours
    input_ids, input_mask, segment_ids = padded_roberta_batch(torch_model.config.vocab_size)
    with torch.no_grad():
        ref = torch_model(input_ids=torch.tensor(input_ids, dtype=torch.long),
                          attention_mask=torch.tensor(input_mask, dtype=torch.long), output_hidden_states=True)
    out = ours(jnp.asarray(input_ids), jnp.asarray(input_mask), jnp.asarray(segment_ids), output_hidden_states=True)
    assert len(out["hidden_states"]) == len(ref.hidden_states) == 4
    for layer, (a, b) in enumerate(zip(out["hidden_states"], ref.hidden_states)):
        keep = input_mask.astype(bool)  # padding positions' states are never read; HF computes them differently
        assert max_abs_diff(np.asarray(a)[keep], b.numpy()[keep]) <= TOLERANCE, f"hidden state {layer}"
    logits = np.asarray(out["mlm_logits"])
    assert max_abs_diff(logits[input_mask.astype(bool)], ref.logits.numpy()[input_mask.astype(bool)]) <= TOLERANCE


def test_bare_roberta_model_imports_with_the_head_reported(tmp_path):
    torch_model = random_weights(transformers.RobertaModel(tiny_roberta_config(num_hidden_layers=1),
                                                           add_pooling_layer=True))
    torch_model.save_pretrained(tmp_path)
    ours, report = hf.load_pretrained(tmp_path, heads=("mlm",))
    assert report.missing_heads == ["MLM head"]
    assert [name for name in report.unused if "pooler" in name] == ["roberta.pooler.dense.bias",
                                                                     "roberta.pooler.dense.weight"]
    input_ids, input_mask, segment_ids = padded_roberta_batch(211, seed=1)
    with torch.no_grad():
        ref = torch_model(input_ids=torch.tensor(input_ids, dtype=torch.long),
                          attention_mask=torch.tensor(input_mask, dtype=torch.long))
    out = ours(jnp.asarray(input_ids), jnp.asarray(input_mask), jnp.asarray(segment_ids))
    keep = input_mask.astype(bool)
    assert max_abs_diff(np.asarray(out["sequence_output"])[keep], ref.last_hidden_state.numpy()[keep]) <= TOLERANCE


def test_export_loads_in_transformers_with_roberta_fields(hf_and_ours, tmp_path):
    torch_model, ours, _, _ = hf_and_ours
    out = tmp_path / "export"
    hf.export_pretrained(ours, out)
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["RobertaForMaskedLM"] and config["model_type"] == "roberta"
    assert (config["pad_token_id"], config["bos_token_id"], config["eos_token_id"]) == (1, 0, 2)
    assert (config["type_vocab_size"], config["layer_norm_eps"], config["max_position_embeddings"]) == (1, 1e-5, 40)
    loaded, info = transformers.AutoModelForMaskedLM.from_pretrained(out, output_loading_info=True)
    assert type(loaded).__name__ == "RobertaForMaskedLM"
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    for name, value in torch_model.state_dict().items():
        if name in loaded.state_dict():
            np.testing.assert_array_equal(loaded.state_dict()[name].numpy(), value.numpy(), err_msg=name)


def test_roberta_config_errors_name_the_field():
    with pytest.raises(ValueError, match=r"model.pad_token_id \(300\) must be an id below model.vocab_size"):
        models.model_config({"model_type": "roberta", "pad_token_id": 300, "vocab_size": 211}, prefix="model.")
    with pytest.raises(ValueError, match="must exceed model.pad_token_id"):
        models.model_config({"model_type": "roberta", "max_position_embeddings": 2}, prefix="model.")
