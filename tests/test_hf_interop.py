"""Export to and import from Hugging Face directories: transformers loads ours, we load theirs, safely."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from bert_jax.interop import hf
from bert_jax.models.bert import BertConfig, BertForPreTraining
from tests.hf_reference import max_abs_diff, torch_forward, padded_batch, random_hf_pretraining_model, tiny_hf_config

TINY = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  max_position_embeddings=64)


def write_vocab(path, size, lowercase=False):
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(size - 5)]
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("".join(t + "\n" for t in tokens))
    (path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": lowercase}))
    return path / "vocab.txt"


@pytest.fixture()
def exported(tmp_path):
    model = BertForPreTraining(TINY, rngs=nnx.Rngs(7))
    out = tmp_path / "export"
    hf.export_pretrained(model, out, vocab_file=write_vocab(tmp_path / "vocab", TINY.vocab_size, lowercase=True))
    return model, out


def test_transformers_loads_export_with_same_logits(exported):
    model, out = exported
    loaded, info = transformers.BertForPreTraining.from_pretrained(out, output_loading_info=True)
    assert info["missing_keys"] == set() or not info["missing_keys"]
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    loaded.eval()
    input_ids, input_mask, segment_ids = padded_batch(TINY.vocab_size, seed=5)
    ref = torch_forward(loaded, input_ids, input_mask, segment_ids)
    ours = model(jnp.asarray(input_ids), jnp.asarray(input_mask), jnp.asarray(segment_ids))
    assert max_abs_diff(ours["mlm_logits"], ref.prediction_logits.numpy()) <= 1e-4
    assert max_abs_diff(ours["nsp_logits"], ref.seq_relationship_logits.numpy()) <= 1e-4
    # The tied decoder really is the word embedding matrix after loading.
    np.testing.assert_array_equal(
        loaded.cls.predictions.decoder.weight.detach().numpy(), loaded.bert.embeddings.word_embeddings.weight.detach().numpy()
    )


def test_autotokenizer_loads_export(exported):
    _, out = exported
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert tokenizer.convert_tokens_to_ids(["[PAD]", "[MASK]", "w3"]) == [0, 4, 8]
    assert tokenizer("W3 w4")["input_ids"] == [2, 8, 9, 3]  # lowercased, [CLS] ... [SEP]


def test_round_trip_through_export_is_exact(exported, tmp_path):
    model, out = exported
    reloaded, report = hf.load_pretrained(out)
    assert not report.missing and not report.unused
    ours = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    theirs = dict(nnx.to_flat_state(nnx.state(reloaded, nnx.Param)))
    assert ours.keys() == theirs.keys()
    for key in ours:
        np.testing.assert_array_equal(np.asarray(ours[key].get_value()), np.asarray(theirs[key].get_value()), err_msg=str(key))


@pytest.mark.parametrize("cls_name,missing_heads", [
    ("BertModel", {"MLM head", "NSP head"}),
    ("BertForMaskedLM", {"NSP head", "pooler"}),
    ("BertForPreTraining", set()),
])
def test_import_reports_missing_heads(tmp_path, cls_name, missing_heads):
    torch.manual_seed(0)
    config = tiny_hf_config(num_hidden_layers=1)
    getattr(transformers, cls_name)(config).save_pretrained(tmp_path)
    model, report = hf.load_pretrained(tmp_path)
    assert set(report.missing_heads) == missing_heads
    assert all(name.startswith(("cls.", "bert.pooler.")) for name in report.missing)
    assert "freshly initialised" in report.summary() or not missing_heads


def test_masked_lm_import_equals_transformers(tmp_path):
    torch.manual_seed(1)
    reference = transformers.BertForMaskedLM(tiny_hf_config(num_hidden_layers=2)).eval()
    reference.save_pretrained(tmp_path)
    model, _ = hf.load_pretrained(tmp_path)
    input_ids, input_mask, segment_ids = padded_batch(reference.config.vocab_size, seed=6)
    ref = torch_forward(reference, input_ids, input_mask, segment_ids).logits.numpy()
    ours = model(jnp.asarray(input_ids), jnp.asarray(input_mask), jnp.asarray(segment_ids))["mlm_logits"]
    assert max_abs_diff(ours, ref) <= 1e-4


def test_legacy_gamma_beta_and_sharded_checkpoints(tmp_path):
    torch_model = random_hf_pretraining_model(tiny_hf_config(num_hidden_layers=1), seed=2)
    state = {k: v.detach().numpy().copy() for k, v in torch_model.state_dict().items()}
    legacy = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
              for k, v in state.items()}
    from safetensors.numpy import save_file
    names = sorted(legacy)
    half = len(names) // 2
    save_file({k: legacy[k] for k in names[:half]}, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file({k: legacy[k] for k in names[half:]}, str(tmp_path / "model-00002-of-00002.safetensors"))
    weight_map = {k: ("model-00001-of-00002.safetensors" if i < half else "model-00002-of-00002.safetensors")
                  for i, k in enumerate(names)}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    torch_model.config.save_pretrained(tmp_path)
    model, report = hf.load_pretrained(tmp_path)
    assert not report.missing and not report.unused
    ln = model.bert.embeddings.layer_norm.scale.get_value()
    np.testing.assert_array_equal(np.asarray(ln), state["bert.embeddings.LayerNorm.weight"])


def test_pickle_checkpoint_is_refused(tmp_path):
    tiny_hf_config(num_hidden_layers=1).save_pretrained(tmp_path)
    torch.save({"embeddings.word_embeddings.weight": torch.zeros(2, 2)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(hf.CheckpointError, match="safetensors only"):
        hf.load_pretrained(tmp_path)


def test_export_refuses_non_empty_directory_without_force(tmp_path):
    model = BertForPreTraining(TINY, rngs=nnx.Rngs(0))
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(hf.CheckpointError, match="not empty.*--force"):
        hf.export_pretrained(model, out)
    hf.export_pretrained(model, out, force=True)
    assert (out / "notes.txt").read_text() == "keep me"  # --force replaces only export files
    assert (out / "model.safetensors").is_file()


def test_export_never_writes_through_symlinks(tmp_path):
    model = BertForPreTraining(TINY, rngs=nnx.Rngs(0))
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(outside, out / "config.json")
    hf.export_pretrained(model, out, force=True)
    assert outside.read_text() == "precious"
    assert not (out / "config.json").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "outside.txt"]
    assert set(p.name for p in out.iterdir()) <= set(hf.EXPORT_FILES)


def test_export_rejects_vocab_of_wrong_size(tmp_path):
    model = BertForPreTraining(TINY, rngs=nnx.Rngs(0))
    with pytest.raises(hf.CheckpointError, match="vocab_size"):
        hf.export_pretrained(model, tmp_path / "o", vocab_file=write_vocab(tmp_path / "v", 50))


def test_config_json_errors_are_clear(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')  # RoBERTa joined the family; GPT-2 did not
    with pytest.raises(hf.CheckpointError, match="model_type is 'gpt2'"):
        hf.load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"hidden_size": 30, "num_attention_heads": 4}')
    with pytest.raises(hf.CheckpointError, match="divisible"):
        hf.load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"hidden_size": ')
    with pytest.raises(hf.CheckpointError, match="line 1"):
        hf.load_pretrained(tmp_path)


def test_export_cli_reports_a_broken_vocab_config(tmp_path, capsys):
    from bert_jax import export

    vocab = write_vocab(tmp_path / "vocab", 4096)
    (tmp_path / "vocab" / "tokenizer_config.json").write_text("{not json")
    code = export.main(["--config", "configs/base_cased.py:tiny", "--vocab", str(vocab), "--output", str(tmp_path / "o")])
    assert code == 2
    assert "tokenizer_config.json:1: invalid JSON" in capsys.readouterr().err
