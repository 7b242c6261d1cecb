"""Token counts of a built dataset (`token_counts.seq_L.npy`): whichever way it is made (the builder's parts summed,
the output shards counted on a resume, counted on demand by the loader for an older build, the CLI), it equals a
direct count of the train examples' tokens; the loader masks with it; clear errors when it cannot be made."""

from __future__ import annotations

import gc
import shutil
import subprocess
import sys
from pathlib import Path

import grain
import numpy as np
import pytest

from bert_jax import fileio
from bert_jax.data import build, count_tokens, records, token_counts
from bert_jax.data.build_layout import token_counts_path
from bert_jax.data.masking import MaskingConfig, VocabInfo, mask_batch
from bert_jax.data.pipeline import make_loader
from bert_jax.errors import InputError
from tests.conftest import REPO, SAMPLE
from tests.data_helpers import write_dataset
from tests.test_build import tree_bytes

CORPUS = (str(SAMPLE / "corpus-00.txt"), str(SAMPLE / "corpus-01.txt"))
SMOOTHED = MaskingConfig(max_predictions=5, frequency_smoothing=0.7)


def direct_counts(output: Path, length: int, split: str = "train", decode=records.decode) -> np.ndarray:
    source = grain.sources.ArrayRecordDataSource(sorted(str(p) for p in (output / f"seq_{length}").glob(
        f"{split}-*.array_record")))
    ids = np.concatenate([decode(source[i]).input_ids for i in range(len(source))])
    return np.bincount(ids, minlength=VocabInfo.from_data_dir(str(output)).vocab_size)


def stored_counts(output: Path, length: int) -> np.ndarray:
    return np.load(token_counts_path(str(output), length))


@pytest.fixture(scope="module")
def pair_build(tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("pairs") / "out"
    config = build.BuildConfig(inputs=CORPUS, vocab=str(SAMPLE / "vocab" / "vocab.txt"), lowercase=True,
                               max_seq_lengths=(32, 64), dupe_factor=2, eval_fraction=0.1)
    build.build(config, str(output), workers=1)
    return output


def test_the_builder_writes_the_counts_of_the_train_examples(pair_build):
    for length in (32, 64):
        counts = stored_counts(pair_build, length)
        assert counts.dtype == np.int64 and counts.shape == (VocabInfo.from_data_dir(str(pair_build)).vocab_size,)
        np.testing.assert_array_equal(counts, direct_counts(pair_build, length))
        assert direct_counts(pair_build, length, "eval").sum() > 0, "eval examples exist, and are not counted"
    assert not list((pair_build / ".parts").rglob("*.npy")), "the parts' counts are deleted with their records"


def test_packed_builds_count_their_records_too(tmp_path):
    config = build.BuildConfig(inputs=CORPUS[:1], vocab=str(SAMPLE / "bpe" / "tokenizer.json"), lowercase=False,
                               max_seq_lengths=(64,), eval_fraction=0.1, example_kind="full_sentences")
    build.build(config, str(tmp_path / "out"), workers=1)
    np.testing.assert_array_equal(stored_counts(tmp_path / "out", 64),
                                  direct_counts(tmp_path / "out", 64, decode=records.decode_packed))


def test_a_resumed_build_recounts_a_lost_counts_file_from_the_shards(pair_build, tmp_path):
    output = tmp_path / "out"
    shutil.copytree(pair_build, output)
    Path(token_counts_path(str(output), 32)).unlink()
    config = build.BuildConfig(inputs=CORPUS, vocab=str(SAMPLE / "vocab" / "vocab.txt"), lowercase=True,
                               max_seq_lengths=(32, 64), dupe_factor=2, eval_fraction=0.1)
    report = build.build(config, str(output), workers=1)
    assert report.parts_built == [] and report.outputs_written == []
    assert tree_bytes(output) == tree_bytes(pair_build), "counted from the output shards: the same file"


def test_the_loader_counts_an_older_build_once_and_masks_with_its_counts(tmp_path, capfd, monkeypatch):
    root = str(tmp_path / "old")
    written = write_dataset(root, lengths=(32,), num_train=120, num_eval=20, train_shards=2)[32]
    counts = np.bincount(np.concatenate([e.input_ids for e in written["train"]]), minlength=100)
    options = dict(max_seq_length=32, global_batch_size=8, max_predictions=5, seed=3, process_index=0,
                   process_count=1, masking=SMOOTHED, num_epochs=1, shuffle=False, drop_remainder=False)
    vocab = VocabInfo.from_data_dir(root)
    config = SMOOTHED.with_token_counts(counts)
    for split in ("train", "eval"):  # eval is masked with the train split's counts
        batches = list(make_loader(root, split=split, **options))
        examples = written[split]
        expected = mask_batch(examples, max_seq_length=32, config=config, vocab=vocab, seed=3, epochs=0,
                              indices=np.arange(len(examples)))
        for name, value in expected.items():
            np.testing.assert_array_equal(np.concatenate([b[name] for b in batches])[: len(examples)], value)
    np.testing.assert_array_equal(stored_counts(Path(root), 32), counts)
    stderr = capfd.readouterr().err
    assert stderr.count("counting the train split once") == 1 and "seq_32 train: 120/120 examples" in stderr

    def no_recount(*args, **kwargs):
        raise AssertionError("counted again although the file exists")

    monkeypatch.setattr(token_counts, "count_records", no_recount)
    in_process = next(iter(make_loader(root, **options)))
    # Worker processes get the weights with the masking config: the same batches.
    from_workers = next(iter(make_loader(root, worker_count=2, **options)))
    for name, value in in_process.items():
        np.testing.assert_array_equal(np.asarray(from_workers[name]), value)
    del from_workers
    gc.collect()  # release worker shared memory before the interpreter exits
    # Uniform masking never needs the counts.
    Path(token_counts_path(root, 32)).unlink()
    next(iter(make_loader(root, **{**options, "masking": MaskingConfig(max_predictions=5)})))


def test_a_directory_that_cannot_be_written_is_a_clear_error(tmp_path, monkeypatch):
    root = str(tmp_path / "read_only")
    written = write_dataset(root, lengths=(32,), num_train=40, num_eval=5, train_shards=1)[32]
    options = dict(max_seq_length=32, global_batch_size=8, max_predictions=5, seed=0, process_index=0,
                   process_count=1, masking=SMOOTHED)

    def refuse(path):
        raise PermissionError(13, "Permission denied", str(path))

    with monkeypatch.context() as patch:
        patch.setattr(fileio, "temporary_path", refuse)
        with pytest.raises(InputError, match=r"cannot write .*token_counts\.seq_32\.npy \(Permission denied\).*"
                                             r"bert_jax\.data\.count_tokens .* --max_seq_length 32.*--output FILE"):
            make_loader(root, **options)
    # The way out the message gives: count elsewhere, copy the file in.
    elsewhere = str(tmp_path / "counts.npy")
    assert count_tokens.main([root, "--max_seq_length", "32", "--output", elsewhere]) == 0
    expected = np.bincount(np.concatenate([e.input_ids for e in written["train"]]), minlength=100)
    np.testing.assert_array_equal(np.load(elsewhere), expected)
    shutil.copy(elsewhere, token_counts_path(root, 32))
    next(iter(make_loader(root, **options)))


def test_cli_and_bad_counts_files(tmp_path, capsys):
    root = str(tmp_path / "data")
    write_dataset(root, lengths=(32, 64), num_train=30, num_eval=5, train_shards=1)
    assert count_tokens.main([root]) == 0
    for length in (32, 64):
        np.testing.assert_array_equal(stored_counts(Path(root), length), direct_counts(Path(root), length))
    assert count_tokens.main([root, "--max_seq_length", "32"]) == 0
    assert "exists (--force counts again)" in capsys.readouterr().err
    assert count_tokens.main([root, "--output", str(tmp_path / "x.npy")]) == 2
    assert "one length" in capsys.readouterr().err
    result = subprocess.run([sys.executable, "-m", "bert_jax.data.count_tokens", str(tmp_path / "missing")], cwd=REPO,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "does not exist" in result.stderr
    np.save(token_counts_path(root, 32), np.zeros(7, dtype=np.int64))
    with pytest.raises(InputError, match="expected 100 non-negative int64 counts.*delete it"):
        make_loader(root, max_seq_length=32, global_batch_size=8, max_predictions=5, seed=0, process_index=0,
                    process_count=1, masking=SMOOTHED)


@pytest.mark.parametrize("large_id", [False, True])
def test_record_token_ids_reads_either_record_format(large_id):
    ids = np.array([2, 17, 3, 70_000 if large_id else 9, 3], dtype=np.int32)
    pair = records.encode(records.PairExample(ids, 1, 1))
    dtype = np.dtype("<u4" if large_id else "<u2")
    packed = records.encode_packed(ids.astype(dtype).tobytes(), dtype)
    for record in (pair, packed):
        np.testing.assert_array_equal(token_counts.record_token_ids(record), ids)
    with pytest.raises(InputError, match="not a bert_jax example record"):
        token_counts.record_token_ids(b"\x07junk record")
