"""Our Flax DistilBERT is the same function as transformers' DistilBertForMaskedLM (PyTorch, f32), imports any HF
DistilBERT safetensors checkpoint, exports a directory transformers loads with no missing or unexpected keys, and
fill-mask on it equals transformers' pipeline."""

from __future__ import annotations

import copy
import dataclasses
import json

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from bert_jax import fill_mask, models
from bert_jax.interop import hf
from bert_jax.models.distilbert import DistilBertForMaskedLM, sinusoidal_positions
from bert_jax.models.distilbert_config import DistilBertConfig
from tests.hf_reference import max_abs_diff, padded_batch
from tests.test_roberta_model import random_weights

TOLERANCE = 1e-4  # f32 on CPU; observed differences are ~1e-5 (torch's own f32 error against f64 is of that order)


def tiny_distilbert_config(**overrides) -> transformers.DistilBertConfig:
    values = dict(vocab_size=211, dim=48, n_layers=3, n_heads=4, hidden_dim=96, max_position_embeddings=40)
    values.update(overrides)
    return transformers.DistilBertConfig(**values)


def torch_logits(model, input_ids, input_mask, **kwargs):
    """DistilBERT takes no token types: ids and mask only."""
    with torch.no_grad():
        return model(input_ids=torch.tensor(input_ids, dtype=torch.long),
                     attention_mask=torch.tensor(input_mask, dtype=torch.long), **kwargs)


@pytest.fixture(scope="module")
def hf_and_ours(tmp_path_factory):
    torch_model = random_weights(transformers.DistilBertForMaskedLM(tiny_distilbert_config()))
    model_dir = tmp_path_factory.mktemp("distilbert_random")
    torch_model.save_pretrained(model_dir)
    ours, report = hf.load_pretrained(model_dir)  # BERT's default heads fall back to DistilBERT's one model
    return torch_model, ours, report


def test_import_loads_every_tensor(hf_and_ours):
    _, ours, report = hf_and_ours
    assert type(ours).__name__ == "DistilBertForMaskedLM"
    assert report.missing == [] and report.unused == []
    assert (ours.config.hidden_size, ours.config.num_hidden_layers, ours.config.intermediate_size) == (48, 3, 96)


def test_logits_and_every_hidden_state_match_with_padding(hf_and_ours):
    """Against transformers run in f64, the function itself: on this random model (logits up to ~16) torch's own f32
    result is ~1.1e-4 from its f64 one, ours ~5e-5, so f32 against f32 would compare two roundings."""
    torch_model, ours, _ = hf_and_ours
    input_ids, input_mask, segment_ids = padded_batch(torch_model.config.vocab_size)
    reference = copy.deepcopy(torch_model).double()
    ref = torch_logits(reference, input_ids, input_mask, output_hidden_states=True)
    # Segment ids are accepted and ignored, as the objectives pass them.
    out = ours(jnp.asarray(input_ids), jnp.asarray(input_mask), jnp.asarray(segment_ids), output_hidden_states=True)
    keep = input_mask.astype(bool)  # padding positions' states are never read; HF computes them differently
    assert len(out["hidden_states"]) == len(ref.hidden_states) == 4
    for layer, (a, b) in enumerate(zip(out["hidden_states"], ref.hidden_states)):
        assert max_abs_diff(np.asarray(a)[keep], b.numpy()[keep]) <= TOLERANCE, f"hidden state {layer}"
    assert max_abs_diff(np.asarray(out["mlm_logits"])[keep], ref.logits.numpy()[keep]) <= TOLERANCE


def test_scanned_layers_and_gathered_positions_give_the_same_logits(hf_and_ours):
    _, ours, _ = hf_and_ours
    input_ids, input_mask, _ = padded_batch(ours.config.vocab_size, seed=1)
    full = np.asarray(ours(jnp.asarray(input_ids), jnp.asarray(input_mask))["mlm_logits"])
    scanned = DistilBertForMaskedLM(dataclasses.replace(ours.config, scan_layers=True), rngs=nnx.Rngs(1))
    nnx.update(scanned, nnx.state(ours))
    positions = np.array([[1, 4, 9], [0, 2, 3], [5, 6, 0]], np.int32)
    gathered = scanned(jnp.asarray(input_ids), jnp.asarray(input_mask), None, jnp.asarray(positions))["mlm_logits"]
    # One scanned layer body is another XLA program than the unrolled stack: f32 roundings differ (~2e-5 here).
    assert max_abs_diff(gathered, np.take_along_axis(full, positions[..., None], axis=1)) <= TOLERANCE


def test_no_dropout_after_the_attention_output_projection(hf_and_ours):
    """DistilBERT's layer drops after the embeddings and the feed-forward block, not after the attention's output
    projection as BERT's does (transformers' `TransformerBlock`); the parameters are the same."""
    _, ours, _ = hf_and_ours
    model = DistilBertForMaskedLM(ours.config, rngs=nnx.Rngs(0))
    assert ours.config.dropout == 0.1
    assert model.distilbert.embeddings.dropout.rate == pytest.approx(0.1)
    for layer in model.distilbert.layers:
        assert layer.attention.output_dropout.rate == 0.0
        assert layer.output_dropout.rate == pytest.approx(0.1)


def test_bare_distilbert_model_imports_with_the_head_reported(tmp_path):
    torch_model = random_weights(transformers.DistilBertModel(tiny_distilbert_config(n_layers=1)))
    torch_model.save_pretrained(tmp_path)  # keys "embeddings.*" and "transformer.*", no prefix
    ours, report = hf.load_pretrained(tmp_path, heads=("mlm",))
    assert report.missing_heads == ["MLM head"] and report.unused == []
    assert len(report.loaded) == 4 + 16
    input_ids, input_mask, segment_ids = padded_batch(211, seed=2)
    ref = torch_logits(torch_model, input_ids, input_mask)
    out = ours(jnp.asarray(input_ids), jnp.asarray(input_mask), jnp.asarray(segment_ids))
    keep = input_mask.astype(bool)
    assert max_abs_diff(np.asarray(out["sequence_output"])[keep], ref.last_hidden_state.numpy()[keep]) <= TOLERANCE


def test_sinusoidal_positions_start_as_transformers_does(tmp_path):
    torch_model = transformers.DistilBertModel(tiny_distilbert_config(sinusoidal_pos_embds=True, n_layers=1))
    expected = torch_model.embeddings.position_embeddings.weight.detach().numpy()
    np.testing.assert_array_equal(sinusoidal_positions(40, 48), expected)
    ours = DistilBertForMaskedLM(DistilBertConfig(vocab_size=211, dim=48, n_layers=1, n_heads=4, hidden_dim=96,
                                                  max_position_embeddings=40, sinusoidal_pos_embds=True),
                                 rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(np.asarray(ours.distilbert.embeddings.position_embeddings.embedding[...]), expected)
    hf.export_pretrained(ours, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["sinusoidal_pos_embds"] is True


@pytest.fixture(scope="module")
def exported_with_vocab(tmp_path_factory, minilm_dir):
    """A random DistilBertForMaskedLM with the real bert-base-uncased vocab: imported from transformers, exported by
    us with the vocab."""
    vocab_size = len((minilm_dir / "vocab.txt").read_text(encoding="utf-8").splitlines())
    torch_model = random_weights(transformers.DistilBertForMaskedLM(
        tiny_distilbert_config(vocab_size=vocab_size, n_layers=2, max_position_embeddings=64)), seed=5)
    source = tmp_path_factory.mktemp("distilbert_source")
    torch_model.save_pretrained(source)
    ours, _ = hf.load_pretrained(source)
    out = tmp_path_factory.mktemp("distilbert_export")
    hf.export_pretrained(ours, out, vocab_file=minilm_dir / "vocab.txt", lowercase=True)
    return torch_model, out


def test_export_loads_in_transformers_with_distilbert_fields(exported_with_vocab):
    torch_model, out = exported_with_vocab
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["DistilBertForMaskedLM"] and config["model_type"] == "distilbert"
    assert {name: config[name] for name in ("dim", "hidden_dim", "n_layers", "n_heads", "sinusoidal_pos_embds",
                                            "activation", "pad_token_id")} == {
        "dim": 48, "hidden_dim": 96, "n_layers": 2, "n_heads": 4, "sinusoidal_pos_embds": False,
        "activation": "gelu", "pad_token_id": 0}
    assert "hidden_size" not in config and "type_vocab_size" not in config
    loaded, info = transformers.AutoModelForMaskedLM.from_pretrained(out, output_loading_info=True)
    assert type(loaded).__name__ == "DistilBertForMaskedLM"
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    for name, value in torch_model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[name].numpy(), value.numpy(), err_msg=name)
    # Its own tokenizer class, so the tokenizer's output is what the model takes: no token_type_ids.
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    encoded = tokenizer("Paris is [MASK] of France.", return_tensors="pt")
    assert set(encoded) == {"input_ids", "attention_mask"}
    assert tokenizer.convert_ids_to_tokens(encoded["input_ids"][0].tolist()) == [
        "[CLS]", "paris", "is", "[MASK]", "of", "france", ".", "[SEP]"]
    with torch.no_grad():
        loaded.eval()(**encoded)


def test_fill_mask_matches_transformers_pipeline(exported_with_vocab):
    _, out = exported_with_vocab
    texts = ["Paris is [MASK] of France.", "Hello I'm a [MASK] model.", "[MASK] and [MASK] are two words."]
    pipe = transformers.pipeline("fill-mask", model=str(out), tokenizer=str(out), device="cpu")
    ours = fill_mask.FillMask(out)(texts, top_k=5)

    def per_mask(result):  # the pipeline's shape: one list for one mask, a list of lists for several
        return [result] if isinstance(result[0], dict) else result

    def fields(result, *keys):
        return [[tuple(p[key] for key in keys) for p in row] for row in per_mask(result)]

    for text, got in zip(texts, ours):
        expected = pipe(text, top_k=5)
        assert fields(got, "token", "token_str", "sequence") == fields(expected, "token", "token_str", "sequence")
        np.testing.assert_allclose(fields(got, "score"), fields(expected, "score"), rtol=0, atol=1e-4)


def test_fill_mask_cli_on_a_distilbert_directory(exported_with_vocab, capsys):
    _, out = exported_with_vocab
    assert fill_mask.main(["--json", "--model", str(out), "--top_k", "2", "Paris is [MASK] of France."]) == 0
    predictions = json.loads(capsys.readouterr().out)
    assert len(predictions) == 2 and predictions[0]["sequence"].startswith("paris is ")


def test_config_names_and_shared_fields():
    config = models.model_config({"model_type": "distilbert", "dim": 64, "n_heads": 4, "hidden_dim": 128,
                                  "n_layers": 2, "activation": "relu", "dropout": 0.2, "attention_dropout": 0.0})
    assert isinstance(config, DistilBertConfig)
    assert (config.hidden_size, config.num_attention_heads, config.head_dim, config.intermediate_size,
            config.num_hidden_layers, config.hidden_act, config.hidden_dropout_prob,
            config.attention_probs_dropout_prob, config.layer_norm_eps) == (64, 4, 16, 128, 2, "relu", 0.2, 0.0, 1e-12)
    assert config.max_sequence_length == 512 and config.VOCAB_KIND == "wordpiece"
    assert config.architecture() == {"model_type": "distilbert", **config.to_hf_dict()}
    assert config.encoder_matmul_params() == 2 * (4 * 64 * 64 + 2 * 64 * 128)
    # Its defaults are transformers'.
    theirs = transformers.DistilBertConfig().to_dict()
    assert {name: theirs[name] for name in DistilBertConfig.HF_FIELDS} == DistilBertConfig().to_hf_dict()


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match=r"model.dim \(50\) must be divisible by model.n_heads \(4\)"):
        models.model_config({"model_type": "distilbert", "dim": 50, "n_heads": 4}, prefix="model.")
    with pytest.raises(ValueError, match="model.activation 'gelu2' is not supported"):
        models.model_config({"model_type": "distilbert", "activation": "gelu2"}, prefix="model.")
    with pytest.raises(ValueError, match=r"model.pad_token_id \(300\) must be an id below model.vocab_size"):
        models.model_config({"model_type": "distilbert", "pad_token_id": 300, "vocab_size": 211}, prefix="model.")
    with pytest.raises(ValueError, match=r"unknown model config field\(s\) \['hidden_size'\]"):
        models.model_config({"model_type": "distilbert", "hidden_size": 64}, prefix="model.")
    with pytest.raises(AttributeError):
        DistilBertConfig().hidden_size = 3  # BERT's names are read-only views
