"""The shared atomic writer: nothing half-written under a final name, no write through planted links."""

import os

import pytest

from bert_jax import fileio


def test_failed_write_leaves_neither_file_nor_temporary(tmp_path):
    target = tmp_path / "out.json"

    def failing(path):
        with open(path, "w") as f:
            f.write("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        fileio.write_atomic(target, failing)
    assert list(tmp_path.iterdir()) == []


def test_replaces_existing_file_whole(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    fileio.write_text(target, "new")
    assert target.read_text() == "new" and len(list(tmp_path.iterdir())) == 1


def test_link_planted_at_the_temporary_name_is_not_followed(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    planted = out / f".config.json.{os.getpid()}{fileio.TEMPORARY_SUFFIX}"
    os.symlink(outside, planted)
    fileio.write_json(out / "config.json", {"a": 1})
    assert outside.read_text() == "precious"
    assert (out / "config.json").read_text() == '{"a": 1}\n'
    assert not os.path.lexists(planted)


def test_temporary_names_are_recognised_for_cleanup(tmp_path):
    temporary = fileio.temporary_path(tmp_path / "shard.array_record")
    assert fileio.is_temporary(os.path.basename(temporary)) and os.path.isfile(temporary)
    assert not fileio.is_temporary("shard.array_record")
