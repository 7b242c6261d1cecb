"""Incomplete, inconsistent or hostile Hugging Face model directories are clear errors in import, fill-mask and
export (issue 16, item 8), never confident predictions, NaN, a traceback, a file read outside the directory or an
allocation that kills the machine; and export writes every file with the umask's permissions (item 10)."""

import json
import os

import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file, save_file

from bert_jax import export, fill_mask
from bert_jax.errors import CheckpointError
from bert_jax.interop import hf, hf_files
from bert_jax.models.bert import BertConfig, BertForPreTraining
from bert_jax.models.distilbert_config import DistilBertConfig

TINY = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  max_position_embeddings=64)
TEXT = "w3 w4 [MASK] w5"


def write_vocab(directory, size):
    directory.mkdir(parents=True, exist_ok=True)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(size - 5)]
    (directory / "vocab.txt").write_text("".join(t + "\n" for t in tokens))
    return directory / "vocab.txt"


@pytest.fixture()
def model_dir(tmp_path):
    """A tiny exported BertForPreTraining with its vocab."""
    out = tmp_path / "model"
    hf.export_pretrained(BertForPreTraining(TINY, rngs=nnx.Rngs(3)), out, vocab_file=write_vocab(tmp_path / "v", 120))
    return out


def edit_tensors(directory, edit):
    path = directory / "model.safetensors"
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def run_fill_mask(capsys, *args):
    code = fill_mask.main(["--json", *args])
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------------------- incomplete weights


def drop_layers(tensors):
    for name in [n for n in tensors if ".encoder.layer." in n]:
        del tensors[name]


def test_missing_encoder_layers_are_an_error_unless_allowed(model_dir, tmp_path, capsys):
    edit_tensors(model_dir, drop_layers)
    with pytest.raises(CheckpointError, match=r"lacks 32 encoder tensors .*bert\.encoder\.layer\.0\..*--allow_missing"):
        hf.load_pretrained(model_dir)
    code, out, err = run_fill_mask(capsys, "--model", str(model_dir), TEXT)
    assert code == 2 and out == "" and "encoder tensors" in err and len(err.strip().splitlines()) == 1
    code, out, _ = run_fill_mask(capsys, "--model", str(model_dir), "--allow_missing", TEXT)
    assert code == 0 and len(json.loads(out)) == 5
    assert export.main(["--init", f"hf:{model_dir}", "--output", str(tmp_path / "o1")]) == 2
    assert "encoder tensors" in capsys.readouterr().err
    assert export.main(["--init", f"hf:{model_dir}", "--allow_missing", "--output", str(tmp_path / "o2")]) == 0
    model, report = hf.load_pretrained(model_dir, allow_missing=True)
    assert len(report.missing_encoder) == 32 and "freshly initialised 32" in report.summary()


def test_missing_embeddings_are_an_error_missing_heads_only_reported(model_dir):
    full = load_file(model_dir / "model.safetensors")
    edit_tensors(model_dir, lambda t: t.pop("bert.embeddings.token_type_embeddings.weight"))
    with pytest.raises(CheckpointError, match="lacks 1 encoder tensors .*token_type_embeddings"):
        hf.load_pretrained(model_dir)
    save_file({n: v for n, v in full.items() if not n.startswith("cls.seq_relationship.")},
              model_dir / "model.safetensors")
    _, report = hf.load_pretrained(model_dir)  # a missing head is reported, as before
    assert report.missing_heads == ["NSP head"] and not report.missing_encoder


def test_fill_mask_refuses_a_missing_mlm_head_even_with_allow_missing(model_dir, capsys):
    edit_tensors(model_dir, lambda t: [t.pop(n) for n in list(t) if n.startswith("cls.predictions.")])
    code, out, err = run_fill_mask(capsys, "--model", str(model_dir), "--allow_missing", TEXT)
    assert code == 2 and out == "" and "no masked-LM head" in err


# ------------------------------------------------------------------------------------ vocab and finite values


def test_vocab_larger_than_the_embedding_table(model_dir, tmp_path, capsys):
    write_vocab(model_dir, 130)
    code, out, err = run_fill_mask(capsys, "--model", str(model_dir), TEXT)
    assert code == 2 and out == "" and "130 tokens" in err and "120 rows" in err
    assert export.main(["--init", f"hf:{model_dir}", "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "130 tokens" in err and "vocab_size is 120" in err


def test_non_finite_weights_are_an_error_naming_the_directory(model_dir, capsys):
    def poison(tensors):
        tensors["bert.encoder.layer.1.output.dense.weight"][0, 0] = np.nan

    edit_tensors(model_dir, poison)
    code, out, err = run_fill_mask(capsys, "--model", str(model_dir), TEXT)
    assert code == 2 and out == "" and str(model_dir) in err and "layer.1.output.dense.weight" in err


def test_non_finite_scores_are_an_error_never_printed(model_dir, capsys):
    def overflow(tensors):  # finite weights whose logits overflow float32
        tensors["cls.predictions.transform.LayerNorm.weight"][:] = 1e38
        tensors["cls.predictions.bias"][:] = 3.4e38

    edit_tensors(model_dir, overflow)
    code, out, err = run_fill_mask(capsys, "--model", str(model_dir), TEXT)
    assert code == 2 and "NaN" not in out and out == ""
    assert "NaN or infinite scores" in err and str(model_dir) in err


# -------------------------------------------------------------------------------------- files of a directory


def shard_with_index(model_dir, shard_name, names=("bert.embeddings.word_embeddings.weight",)):
    index = {"weight_map": {name: shard_name for name in names}}
    (model_dir / "model.safetensors.index.json").write_text(json.dumps(index))


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_index_cannot_name_files_outside_the_directory(model_dir, tmp_path, how):
    outside = tmp_path / "outside.safetensors"
    os.replace(model_dir / "model.safetensors", outside)  # a loadable checkpoint, but not the directory's
    if how == "symlink":
        os.symlink(outside, model_dir / "model-00001-of-00001.safetensors")
    name = {"dotdot": "../outside.safetensors", "absolute": str(outside),
            "symlink": "model-00001-of-00001.safetensors"}[how]
    shard_with_index(model_dir, name)
    with pytest.raises(CheckpointError, match=r"model.safetensors.index.json names weight file .*outside the model "
                                              r"directory"):
        hf.load_pretrained(model_dir)
    shard_with_index(model_dir, "/etc/passwd")
    with pytest.raises(CheckpointError, match="outside the model directory"):
        hf.load_pretrained(model_dir)


def test_the_hub_cache_layout_still_loads(model_dir, tmp_path):
    repo = tmp_path / "models--org--tiny"
    (repo / "blobs").mkdir(parents=True)
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    for path in model_dir.iterdir():  # as huggingface_hub stores it: snapshot names link to ../../blobs/HASH
        os.replace(path, repo / "blobs" / f"hash-{path.name}")
        os.symlink(f"../../blobs/hash-{path.name}", snapshot / path.name)
    _, report = hf.load_pretrained(snapshot)
    assert not report.missing


def test_unreadable_files_are_one_clear_error_each(model_dir):
    weights = model_dir / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:-100])  # fewer bytes than the header says
    with pytest.raises(CheckpointError, match=r"model.safetensors is not a readable safetensors file .*truncated"):
        hf.load_pretrained(model_dir)
    weights.write_bytes((20).to_bytes(8, "little") + b"{not a json header...")
    with pytest.raises(CheckpointError, match=r"model.safetensors is not a readable safetensors file"):
        hf.load_pretrained(model_dir)
    weights.unlink()
    (model_dir / "model.safetensors.index.json").write_text('{"metadata": {}}')
    with pytest.raises(CheckpointError, match=r"model.safetensors.index.json has no weight_map"):
        hf.load_pretrained(model_dir)
    shard_with_index(model_dir, "model-00001-of-00002.safetensors")
    with pytest.raises(CheckpointError, match=r"model-00001-of-00002.safetensors is not a file"):
        hf.load_pretrained(model_dir)


@pytest.mark.parametrize("fields,message", [
    ({"num_attention_heads": 0}, r"num_attention_heads must be a positive integer, got 0"),
    ({"num_attention_heads": "4"}, r"num_attention_heads must be a positive integer, got '4'"),
    ({"num_hidden_layers": -2}, r"num_hidden_layers must be a positive integer, got -2"),
    ({"hidden_size": -32}, r"hidden_size must be a positive integer, got -32"),
    ({"hidden_size": 1e9}, r"hidden_size must be a positive integer, got 1000000000.0"),
    ({"layer_norm_eps": "small"}, r"layer_norm_eps must be a finite non-negative number"),
])
def test_bad_config_values_are_a_clear_error(model_dir, fields, message):
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, **fields}))
    with pytest.raises(CheckpointError, match=r"config.json: " + message):
        hf.load_pretrained(model_dir)


@pytest.mark.parametrize("fields,named", [
    ({"hidden_size": 2**30, "num_attention_heads": 1}, "hidden_size 1,073,741,824"),
    ({"num_hidden_layers": 10**8}, "num_hidden_layers 100,000,000"),
    ({"vocab_size": 10**12}, "vocab_size 1,000,000,000,000"),
])
def test_a_config_too_large_for_memory_is_refused_before_allocating(model_dir, fields, named):
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, **fields}))
    with pytest.raises(CheckpointError, match=rf"config.json: {named} gives a model of .* GiB of memory is available"):
        hf.load_pretrained(model_dir)


def test_memory_check_names_the_architectures_own_field():
    config = DistilBertConfig(vocab_size=100, dim=32, n_heads=4, hidden_dim=64, n_layers=10**6)
    with pytest.raises(CheckpointError, match=r"n_layers 1,000,000 gives"):
        hf_files.check_memory(config, hf_files.Path("d/config.json"))
    with pytest.raises(CheckpointError, match=r"dim 32 gives .* only 0.0 GiB"):  # the largest gain at this size
        hf_files.check_memory(DistilBertConfig(vocab_size=100, dim=32, n_heads=4, hidden_dim=64),
                              hf_files.Path("d/config.json"), available=1000)


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_init_hf_of_a_missing_directory_or_a_file(tmp_path, capsys, kind):
    source = tmp_path / "source"
    if kind == "file":
        source.write_text("not a directory")
    assert export.main(["--init", f"hf:{source}", "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(source) in err and ("does not exist" if kind == "missing" else "is not a directory") in err
    assert len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------- export file modes


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600)])
def test_export_files_have_the_umask_permissions(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        out = tmp_path / "out"
        written = hf.export_pretrained(BertForPreTraining(TINY, rngs=nnx.Rngs(0)), out,
                                       vocab_file=write_vocab(tmp_path / "v", 120))
    finally:
        os.umask(previous)
    assert "model.safetensors" in {p.name for p in written}
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in out.iterdir()} == {p.name: oct(mode) for p in written}
