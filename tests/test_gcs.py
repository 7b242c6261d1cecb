"""Every command on gs:// paths, against a real GCS emulator (gcp-storage-emulator, in memory, started here):
vocab -> build -> inspect -> train (data and workdir in the bucket) -> export -> fill-mask and import, each compared
with the same command on local paths, and never a local `./gs:` directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from etils import epath
from safetensors.numpy import load_file

from tests.gcs_emulator import GcsEmulator
from tests.run_helpers import REPO, overrides

BUCKET = "bert-jax-test"
ROOT = f"gs://{BUCKET}"
VOCAB_SIZE = 300
CORPUS_LINES = 1200  # of the sample corpus, per file: two small files keep the build to seconds


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """The emulator with one bucket, a fresh mirror cache, and the working directory in a scratch directory (where a
    wrongly local write would land as ./gs:)."""
    emulator = GcsEmulator((BUCKET,)).start()
    saved_cache, saved_cwd = os.environ.get("BERT_JAX_CACHE"), os.getcwd()
    os.environ["BERT_JAX_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    scratch = tmp_path_factory.mktemp("cwd")
    os.chdir(scratch)
    lines = (REPO / "data/sample/corpus-00.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    local_corpus = tmp_path_factory.mktemp("corpus")
    for index in range(2):
        text = "".join(lines[index * CORPUS_LINES:(index + 1) * CORPUS_LINES])
        (epath.Path(ROOT) / "corpus" / f"part-{index}.txt").write_text(text)
        (local_corpus / f"part-{index}.txt").write_text(text)
    try:
        yield {"scratch": scratch, "corpus": local_corpus}
    finally:
        os.chdir(saved_cwd)
        if saved_cache is None:
            os.environ.pop("BERT_JAX_CACHE", None)
        else:
            os.environ["BERT_JAX_CACHE"] = saved_cache
        from bert_jax import storage

        storage._synced.clear()
        emulator.stop()
    assert not (scratch / "gs:").exists()


def _objects(url: str) -> list[str]:
    """Every object under `url`, listed by gcsfs itself (not through the code under test)."""
    import fsspec

    prefix = url.removeprefix("gs://")
    return [name[len(prefix) + 1:] for name in fsspec.filesystem("gs").find(prefix)]


def _files(url: str) -> dict[str, bytes]:
    return {name: (epath.Path(url) / name).read_bytes() for name in _objects(url)}


def _local_files(directory) -> dict[str, bytes]:
    return {str(path.relative_to(directory)): path.read_bytes() for path in directory.rglob("*") if path.is_file()}


@pytest.fixture(scope="module")
def built(gcs, tmp_path_factory):
    """A vocab learned and examples built from gs:// into gs://, and the same commands on local paths."""
    from bert_jax.data import build, vocab

    local = tmp_path_factory.mktemp("local")
    vocab_args = ["--vocab_size", str(VOCAB_SIZE), "--max_sentences", "2000"]
    assert vocab.main(["--input", f"{ROOT}/corpus/*.txt", "--output", f"{ROOT}/vocab", *vocab_args]) == 0
    assert vocab.main(["--input", str(gcs["corpus"]), "--output", str(local / "vocab"), *vocab_args]) == 0
    build_args = ["--max_seq_length", "32", "--dupe_factor", "1", "--workers", "1", "--eval_fraction", "0.1"]
    assert build.main(["--input", f"{ROOT}/corpus", "--vocab", f"{ROOT}/vocab/vocab.txt", "--output",
                       f"{ROOT}/data", *build_args]) == 0
    assert build.main(["--input", str(gcs["corpus"]), "--vocab", str(local / "vocab/vocab.txt"), "--output",
                       str(local / "data"), *build_args]) == 0
    return local


def test_vocab_and_build_write_to_the_bucket_what_they_write_locally(gcs, built):
    assert _files(f"{ROOT}/vocab") == _local_files(built / "vocab")
    remote, local = _files(f"{ROOT}/data"), _local_files(built / "data")
    shards = sorted(name for name in local if name.endswith(".array_record"))
    assert shards and all(remote[name] == local[name] for name in shards)  # the examples, byte for byte
    assert json.loads(remote["stats.json"]) == json.loads(local["stats.json"])
    assert not (gcs["scratch"] / "gs:").exists()


def test_rebuilding_into_the_bucket_finds_it_built_and_resends_no_shard(gcs, built, capsys):
    from bert_jax.data import build

    before = {name: (epath.Path(f"{ROOT}/data") / name).stat().mtime for name in _objects(f"{ROOT}/data")}
    capsys.readouterr()
    assert build.main(["--input", f"{ROOT}/corpus", "--vocab", f"{ROOT}/vocab/vocab.txt", "--output",
                       f"{ROOT}/data", "--max_seq_length", "32", "--dupe_factor", "1", "--workers", "1",
                       "--eval_fraction", "0.1"]) == 0
    after = {name: (epath.Path(f"{ROOT}/data") / name).stat().mtime for name in _objects(f"{ROOT}/data")}
    assert sorted(after) == sorted(before)
    shards = [name for name in before if name.endswith(".array_record")]
    assert shards and all(after[name] == before[name] for name in shards)  # nothing rebuilt, nothing re-sent


def test_inspect_reads_the_bucket(gcs, built, capsys):
    from bert_jax.data import inspect

    capsys.readouterr()
    assert inspect.main([f"{ROOT}/data", "--json", "--decode", "2"]) == 0
    remote = json.loads(capsys.readouterr().out)
    assert inspect.main([str(built / "data"), "--json", "--decode", "2"]) == 0
    local = json.loads(capsys.readouterr().out)
    assert remote["data_dir"] == f"{ROOT}/data"
    assert remote["stats"] == local["stats"] and remote["examples"] == local["examples"]


def test_a_missing_object_is_one_line_naming_the_flag(gcs, capsys):
    from bert_jax.data import build

    assert build.main(["--input", f"{ROOT}/corpus", "--vocab", f"{ROOT}/nowhere/vocab.txt", "--output",
                       f"{ROOT}/other"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"--vocab {ROOT}/nowhere/vocab.txt does not exist" in err


@pytest.fixture(scope="module")
def trained(gcs, built, tmp_path_factory):
    """A 1-layer model trained 2 steps on the dataset and vocab in the bucket. The workdir is local: orbax's
    checkpoints on gs:// go through tensorstore, whose OCDBT manifest reads fail against the emulator ("Malformed
    StorageGeneration", tensorstore 0.1.86 with gcp-storage-emulator 2026.7.19) though not against GCS; the remote
    workdir's own files (metrics, export) are tested below without orbax."""
    from bert_jax import train

    workdir = tmp_path_factory.mktemp("run")
    fields = overrides(f"{ROOT}/data", **{
        "model.vocab_size": VOCAB_SIZE, "data.vocab_file": f"{ROOT}/vocab/vocab.txt", "train_steps": 2,
        "checkpoint_every": 2, "eval_every": 2, "export_at_end": True, "optimizer.warmup_steps": 1,
        "phases": "[{'max_seq_length': 32, 'fraction': 1.0, 'max_predictions': 5}]"})
    assert train.main(["--config", str(REPO / "configs/base_cased.py:tiny"), "--workdir", str(workdir),
                       *("--config." + field for field in fields)]) == 0
    return workdir


def test_training_reads_its_data_and_vocab_from_the_bucket(gcs, trained):
    lines = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if line["kind"] == "train"] == [1, 2]
    assert any(line["kind"] == "eval" for line in lines)
    assert (trained / "export" / "vocab.txt").read_bytes() == _files(f"{ROOT}/vocab")["vocab.txt"]
    assert not (gcs["scratch"] / "gs:").exists()


def test_export_fill_mask_and_import_through_the_bucket(gcs, trained, tmp_path, capsys):
    from flax import nnx

    from bert_jax import export, fill_mask
    from bert_jax.interop import hf
    from bert_jax.training import checkpointing

    assert export.main(["--workdir", str(trained), "--output", f"{ROOT}/exported"]) == 0
    remote = _files(f"{ROOT}/exported")
    assert remote == _local_files(trained / "export")  # what the run exported locally at its end

    # A run's end-of-training export into a gs:// workdir (WORKDIR/export), as the trainer writes it.
    model, _, _ = checkpointing.load_run_model(str(trained))
    graphdef, params = nnx.split(model)
    hf.export_to(graphdef, params, f"{ROOT}/remote-run", vocab_file=f"{ROOT}/vocab/vocab.txt", lowercase=False)
    written = _files(f"{ROOT}/remote-run/export")
    assert "README.md" in written  # a model card without the run's recipe (no run given here), so compared apart
    assert {k: v for k, v in written.items() if k != "README.md"} == {k: v for k, v in remote.items() if k != "README.md"}

    # Import: an HF directory in the bucket, re-exported to the bucket, gives the same tensors.
    assert export.main(["--model", f"{ROOT}/exported", "--output", f"{ROOT}/reexported"]) == 0
    tensors = load_file(str(storage_mirror(f"{ROOT}/reexported") / "model.safetensors"))
    expected = load_file(str(trained / "export" / "model.safetensors"))
    assert max(float(np.max(np.abs(tensors[k] - expected[k]))) for k in expected) == 0.0

    capsys.readouterr()
    text = "The river [MASK] through the old town."
    assert fill_mask.main(["--json", "--model", f"{ROOT}/exported", "--top_k", "3", text]) == 0
    from_bucket = capsys.readouterr().out
    assert fill_mask.main(["--json", "--model", str(trained / "export"), "--top_k", "3", text]) == 0
    assert from_bucket == capsys.readouterr().out and len(json.loads(from_bucket)) == 3
    assert not (gcs["scratch"] / "gs:").exists()


def storage_mirror(url: str) -> Path:
    from bert_jax import storage

    return Path(storage.local_copy(url))


def test_remote_metrics_are_uploaded_between_checkpoints(gcs, monkeypatch):
    from bert_jax.training import metrics

    now = [1000.0]
    monkeypatch.setattr(metrics.time, "monotonic", lambda: now[0])  # the writer's clock, moved by hand
    workdir = f"{ROOT}/metrics-run"
    writer = metrics.MetricsWriter(workdir, total_steps=10, enabled=True)
    try:
        record = dict(kind="train", loss=1.0, learning_rate=1e-3, grad_norm=1.0, tokens_per_s=1.0, mfu=0.0,
                      eta_s=1.0)
        remote = epath.Path(workdir) / metrics.METRICS_FILE
        writer.write(1, record)
        assert not remote.exists()  # within the interval: not yet
        now[0] += metrics.REMOTE_UPLOAD_EVERY_S
        writer.write(2, record)  # the interval passed: uploaded with this line, no flush or checkpoint needed
        assert [json.loads(line)["step"] for line in remote.read_text().splitlines()] == [1, 2]
        now[0] += 1
        writer.write(3, record)
        assert len(remote.read_text().splitlines()) == 2  # until the next interval (or checkpoint, or the end)
        assert metrics.REMOTE_UPLOAD_EVERY_S <= 30  # so a line is never more than a minute behind
    finally:
        writer.close()
    assert len(remote.read_text().splitlines()) == 3
    events = _objects(f"{workdir}/{metrics.TENSORBOARD_DIR}")
    assert len(events) == 1 and events[0].startswith("events.out.tfevents")
