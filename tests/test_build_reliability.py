"""The dataset build's reliability (issue 16): it touches only files it created (build_manifest.json), a changed
input or vocab is never mixed into a resumed build, directory inputs take corpus files only, empty or tiny splits
are reported, its workers die with it and a killed worker is one clear error, and unwritable outputs or read-only
inputs are handled before any work."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bert_jax.data import build, build_parts, fingerprints, vocab
from bert_jax.data.build_layout import MANIFEST
from bert_jax.errors import InputError
from tests.conftest import REPO, SAMPLE
from tests.data_helpers import killed_while_building_part

SAMPLE_TEXT = SAMPLE / "corpus-00.txt"
SAMPLE_VOCAB = SAMPLE / "vocab"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # root ignores permission bits


def sample_documents() -> list[str]:
    return [document for document in SAMPLE_TEXT.read_text(encoding="utf-8").split("\n\n") if document.strip()]


def write_corpus(directory: Path, *, files: int, documents_per_file: int) -> list[str]:
    """BERT-format files made of the sample corpus's documents (cycled); returns their paths."""
    documents = sample_documents()
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(files):
        start = number * documents_per_file
        chosen = [documents[(start + k) % len(documents)] for k in range(documents_per_file)]
        path = directory / f"part-{number:04d}.txt"
        path.write_text("\n\n".join(chosen) + "\n", encoding="utf-8")
        paths.append(str(path))
    return paths


def copy_vocab(directory: Path) -> str:
    shutil.copytree(SAMPLE_VOCAB, directory)
    return str(directory / "vocab.txt")


def config_for(inputs: list[str], vocab_file: str, **overrides) -> build.BuildConfig:
    settings = dict(inputs=tuple(inputs), vocab=vocab_file, lowercase=False, max_seq_lengths=(32,), dupe_factor=1,
                    eval_fraction=0.2, seed=3)
    settings.update(overrides)
    return build.BuildConfig(**settings)


def tree_bytes(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture()
def corpus(tmp_path) -> list[str]:
    return write_corpus(tmp_path / "corpus", files=3, documents_per_file=8)


@pytest.fixture()
def vocab_file(tmp_path) -> str:
    return copy_vocab(tmp_path / "vocab")


# ---------------------------------------------------------------------------------------------------------------
# 1. Only its own files


def test_output_holding_other_files_is_refused_and_force_never_deletes_them(tmp_path, corpus, vocab_file):
    output = tmp_path / "out"
    foreign = {output / ".important.tmp": b"keep me", output / "sub" / "deeper" / ".notes.txt.tmp": b"and me"}
    for path, content in foreign.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    with pytest.raises(InputError, match="not empty and holds no dataset build.*--force"):
        build.build(config_for(corpus, vocab_file), str(output))
    report = build.build(config_for(corpus, vocab_file), str(output), force=True)
    assert report.stats["overall"]["examples"] > 0
    report = build.build(config_for(corpus, vocab_file), str(output))  # a rerun resumes its own build
    assert report.parts_built == [] and report.outputs_written == []
    assert {path: path.read_bytes() for path in foreign} == foreign
    manifest = json.loads((output / MANIFEST).read_text())
    assert not any(".tmp" in name or name.startswith("sub/") for name in manifest["files"])


def test_output_dot_in_a_tree_of_other_files_is_refused_and_sweeps_nothing(tmp_path, corpus, vocab_file, capsys,
                                                                          monkeypatch):
    tree = tmp_path / "home"
    (tree / "project" / "deeper").mkdir(parents=True)
    (tree / "project" / "deeper" / ".draft.txt.tmp").write_text("unsaved work")
    monkeypatch.chdir(tree)
    assert build.main(["--input", *corpus, "--vocab", vocab_file, "--output", "."]) == 2
    assert "error: --output . is not empty and holds no dataset build" in capsys.readouterr().err
    assert [str(p.relative_to(tree)) for p in sorted(tree.rglob("*"))] == [
        "project", "project/deeper", "project/deeper/.draft.txt.tmp"]


def test_a_file_of_the_builds_names_it_did_not_write_is_never_replaced(tmp_path, corpus, vocab_file):
    output = tmp_path / "out"
    output.mkdir()
    (output / "stats.json").write_text("my own stats")
    with pytest.raises(InputError, match=r"stats.json exists and was not written by this build"):
        build.build(config_for(corpus, vocab_file), str(output), force=True)
    assert (output / "stats.json").read_text() == "my own stats"
    assert not (output / ".parts").exists()  # refused before any work


def test_force_replaces_a_build_of_other_arguments_deleting_only_its_own_files(tmp_path, corpus, vocab_file):
    output = tmp_path / "out"
    build.build(config_for(corpus, vocab_file, max_seq_lengths=(64,)), str(output))
    (output / "seq_64" / "my_notes.txt").write_text("mine")
    with pytest.raises(InputError, match="different arguments.*--force"):
        build.build(config_for(corpus, vocab_file), str(output))
    build.build(config_for(corpus, vocab_file), str(output), force=True)
    assert sorted(p.name for p in (output / "seq_64").iterdir()) == ["my_notes.txt"]
    clean = tmp_path / "clean"
    build.build(config_for(corpus, vocab_file), str(clean))
    assert tree_bytes(clean) == {name: data for name, data in tree_bytes(output).items()
                                 if not name.startswith("seq_64")}


def test_a_build_from_before_manifests_is_adopted_and_resumed(tmp_path, corpus, vocab_file):
    output = tmp_path / "out"
    build.build(config_for(corpus, vocab_file), str(output))
    clean = tree_bytes(output)
    (output / MANIFEST).unlink()  # as the builder before manifests left it
    (output / "seq_32" / "eval-00000-of-00001.array_record").unlink()
    report = build.build(config_for(corpus, vocab_file), str(output))
    assert report.outputs_written == [str(output / "seq_32" / "eval-00000-of-00001.array_record")]
    assert set(tree_bytes(output)) == set(clean)
    assert "stats.json" in json.loads((output / MANIFEST).read_text())["files"]


# ---------------------------------------------------------------------------------------------------------------
# 2. Contents, not paths


def test_an_input_appended_to_after_a_finished_build_is_an_error_or_rebuilt(tmp_path, corpus, vocab_file):
    output, config = tmp_path / "out", config_for(corpus, vocab_file)
    build.build(config, str(output))
    with open(corpus[1], "a", encoding="utf-8") as f:
        f.write("\n" + sample_documents()[100] + "\n")
    with pytest.raises(InputError, match=rf"{corpus[1]}: its size changed.*--rebuild_changed"):
        build.build(config, str(output))
    build.build(config, str(output), rebuild_changed=True)
    clean = tmp_path / "clean"
    build.build(config, str(clean))
    assert tree_bytes(output) == tree_bytes(clean)


def test_a_vocab_relearned_between_a_kill_and_a_rerun_is_never_mixed(tmp_path, corpus, vocab_file):
    output, config = tmp_path / "out", config_for(corpus, vocab_file)
    with killed_while_building_part(2), pytest.raises(KeyboardInterrupt):
        build.build(config, str(output))
    tokens = Path(vocab_file).read_text(encoding="utf-8").split("\n")
    tokens[200], tokens[300] = tokens[300], tokens[200]  # same size, other ids: a re-learned vocab
    Path(vocab_file).write_text("\n".join(tokens), encoding="utf-8")
    with pytest.raises(InputError, match="the vocab changed.*mix two vocabularies.*--rebuild_changed"):
        build.build(config, str(output))
    report = build.build(config, str(output), rebuild_changed=True)
    assert report.parts_built == [0, 1, 2]
    clean = tmp_path / "clean"
    build.build(config, str(clean))
    assert tree_bytes(output) == tree_bytes(clean)


def test_an_input_edited_while_the_build_reads_it_stops_it_before_the_merge(tmp_path, corpus, vocab_file,
                                                                           monkeypatch):
    output, config = tmp_path / "out", config_for(corpus, vocab_file)
    original_finish = build_parts._PartBuilder.finish

    def edit_input_0(self):
        if self.task.index == 0:
            with open(corpus[0], "a", encoding="utf-8") as f:
                f.write("\nA sentence written while the build ran.\n")
        return original_finish(self)

    monkeypatch.setattr(build_parts._PartBuilder, "finish", edit_input_0)
    with pytest.raises(InputError, match=rf"{corpus[0]}: its size changed.*changed while this build was reading"):
        build.build(config, str(output))
    assert not (output / "seq_32").exists()  # stopped before the merge
    monkeypatch.setattr(build_parts._PartBuilder, "finish", original_finish)
    build.build(config, str(output), rebuild_changed=True)
    clean = tmp_path / "clean"
    build.build(config, str(clean))
    assert tree_bytes(output) == tree_bytes(clean)


def test_fingerprints_tell_content_changes_from_touches(tmp_path):
    small = tmp_path / "small.txt"
    small.write_bytes(b"a" * 1000)
    before = fingerprints.fingerprint(str(small))
    os.utime(small, ns=(1, 1))  # touched or copied, same content
    assert fingerprints.describe_change(before, fingerprints.fingerprint(str(small))) is None
    small.write_bytes(b"a" * 999 + b"b")
    assert "content changed" in fingerprints.describe_change(before, fingerprints.fingerprint(str(small)))
    large = tmp_path / "large.txt"  # sampled, not hashed whole: an unsampled edit shows in the mtime
    large.write_bytes(bytes(fingerprints.WHOLE_HASH_BYTES + 3 * 2**20))
    before = fingerprints.fingerprint(str(large))
    assert before["hashed"] == "sampled"
    with open(large, "r+b") as f:
        f.seek(fingerprints.EDGE_BYTES + fingerprints.SAMPLED_BLOCK_BYTES + 10)  # between two sampled blocks
        f.write(b"x")
    os.utime(large, ns=(before["mtime_ns"] + 10**9,) * 2)
    assert "modification time changed" in fingerprints.describe_change(before, fingerprints.fingerprint(str(large)))
    large.unlink()
    assert fingerprints.describe_change(before, None) == "it no longer exists"


# ---------------------------------------------------------------------------------------------------------------
# 3. Directory inputs take corpus files only; 4. empty and tiny splits are reported


def test_a_directory_input_takes_corpus_files_only_and_says_so(tmp_path, corpus, capsys):
    directory = Path(corpus[0]).parent
    vocab_in_corpus = copy_vocab(directory / "vocab")  # vocab.txt + tokenizer_config.json beside the text
    (directory / "README.md").write_text("About this corpus.")
    argv = ["--input", str(directory), "--vocab", vocab_in_corpus, "--output", str(tmp_path / "out"),
            "--max_seq_length", "32", "--dupe_factor", "1", "--workers", "1"]
    assert build.main(argv) == 0
    err = capsys.readouterr().err
    assert f"took 3 corpus files ({', '.join(corpus)})" in err
    assert "README.md (not a corpus file extension" in err
    assert f"{vocab_in_corpus} (the vocab (--vocab))" in err and "tokenizer_config.json (a vocab, tokenizer" in err
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert json.loads((tmp_path / "out" / "build_config.json").read_text())["input_shards"] == corpus
    assert stats["overall"]["documents"] == 24


def test_an_empty_or_tiny_split_is_warned_about_and_recorded(tmp_path, vocab_file, capsys):
    one_document = write_corpus(tmp_path / "corpus", files=1, documents_per_file=1)
    argv = ["--input", *one_document, "--vocab", vocab_file, "--output", str(tmp_path / "out"),
            "--max_seq_length", "32", "--dupe_factor", "1", "--workers", "1", "--eval_fraction", "0"]
    assert build.main(argv) == 0
    err = capsys.readouterr().err
    assert "WARNING: seq_32/eval is empty" in err and "larger --eval_fraction (it is 0)" in err
    assert "WARNING: seq_32/train is tiny" in err
    overall = json.loads((tmp_path / "out" / "stats.json").read_text())["overall"]
    assert overall["empty_splits"] == ["seq_32/eval"] and overall["tiny_splits"] == ["seq_32/train"]


# ---------------------------------------------------------------------------------------------------------------
# 11. The worker pool: killed with its parent; a killed worker is one clear error


@pytest.fixture(scope="module")
def many_shards(tmp_path_factory) -> Path:
    """300 small input shards: a 2-worker build runs for seconds after its first part, long enough to be killed
    mid-way (a test kills it within 50 ms of that part)."""
    directory = tmp_path_factory.mktemp("many") / "corpus"
    write_corpus(directory, files=300, documents_per_file=10)
    return directory


def start_build(corpus: Path, output: Path, log: Path) -> subprocess.Popen:
    """The build command with 2 workers, its stderr to `log` (a file: a pipe would stay open while any process
    started by the build lives)."""
    argv = [sys.executable, "-m", "bert_jax.data.build", "--input", str(corpus), "--vocab",
            str(SAMPLE_VOCAB / "vocab.txt"), "--output", str(output), "--max_seq_length", "32", "--dupe_factor", "1",
            "--workers", "2"]
    with open(log, "w") as stderr:
        # Its own process group (session), so every process it starts can be found after it is gone.
        return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)


def wait_for_a_finished_part(output: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not list((output / ".parts").glob("*.stats.json")):
        assert process.poll() is None, "the build ended before a part was finished"
        assert time.monotonic() < deadline, "no part finished in 120 s"
        time.sleep(0.05)


def processes(where) -> list[int]:
    """Pids of the live (not zombie) processes whose /proc/PID/stat fields satisfy `where(ppid, pgrp)`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if fields[0] != "Z" and where(int(fields[1]), int(fields[2])):
                found.append(int(entry))
    return found


def workers_of(pid: int) -> list[int]:
    children = processes(lambda ppid, _: ppid == pid)
    return [child for child in children if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killing_the_build_kills_its_workers(many_shards, tmp_path):
    process = start_build(many_shards, tmp_path / "out", tmp_path / "log")
    try:
        wait_for_a_finished_part(tmp_path / "out", process)
        assert len(workers_of(process.pid)) == 2
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        deadline = time.monotonic() + 15
        while (left := processes(lambda _, pgrp: pgrp == process.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left, f"processes of the killed build still running: {left}"
    finally:
        for pid in processes(lambda _, pgrp: pgrp == process.pid):  # only what this test started
            os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_worker_is_one_clear_error_and_a_rerun_resumes(many_shards, tmp_path):
    output = tmp_path / "out"
    process = start_build(many_shards, output, tmp_path / "log")
    try:
        wait_for_a_finished_part(output, process)
        os.kill(workers_of(process.pid)[0], signal.SIGKILL)  # as the OOM killer does
        process.wait(timeout=120)
    finally:
        for pid in processes(lambda _, pgrp: pgrp == process.pid):  # only what this test started
            os.kill(pid, signal.SIGKILL)
    err = (tmp_path / "log").read_text()
    assert process.returncode == 1
    assert "Traceback" not in err
    [error] = [line for line in err.splitlines() if "error:" in line]
    assert error.startswith("python -m bert_jax.data.build: error: a build worker process was killed")
    assert "Rerun the same command to resume" in error and "out-of-memory killer" in error
    lost = [name for name in os.listdir(many_shards) if str(many_shards / name) in error]
    # The parts in flight are named; one may have written its files just before the kill (the rerun keeps it), the
    # killed worker's own part has not.
    assert lost and any(not (output / ".parts" / f"{int(name[5:9]):05d}.stats.json").exists() for name in lost)
    assert start_build(many_shards, output, tmp_path / "log").wait(timeout=300) == 0
    err = (tmp_path / "log").read_text()
    [to_do] = re.findall(r"build: (\d+) of 300 input shards to do", err)
    assert 0 < int(to_do) < 300 and "build: done: 3,000 documents" in err


# ---------------------------------------------------------------------------------------------------------------
# 12. Bad vocab arguments and unwritable outputs: clear errors before any work; read-only inputs work


def test_a_non_positive_max_alphabet_is_an_error_naming_a_valid_value(tmp_path, corpus, capsys):
    assert vocab.main(["--input", *corpus, "--output", str(tmp_path / "v"), "--max_alphabet", "0"]) == 2
    assert "error: --max_alphabet must be a positive number of characters to keep, got 0; e.g. 1000" in \
        capsys.readouterr().err
    assert not (tmp_path / "v").exists()


def test_an_output_that_cannot_be_created_is_an_error_before_any_work(tmp_path, corpus, vocab_file, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    assert vocab.main(["--input", *corpus, "--output", str(blocker / "vocab"), "--vocab_size", "200"]) == 2
    err = capsys.readouterr().err
    assert f"--output {blocker / 'vocab'} cannot be created: {blocker} is a file" in err
    assert "read " not in err  # nothing was learned
    assert build.main(["--input", *corpus, "--vocab", vocab_file, "--output", str(blocker / "out")]) == 2
    assert f"cannot be created: {blocker} is a file" in capsys.readouterr().err


@pytest.mark.skipif(IS_ROOT, reason="root ignores permission bits")
def test_read_only_directories(tmp_path, corpus, vocab_file, capsys):
    read_only = Path(corpus[0]).parent
    for path in [*corpus, read_only]:
        os.chmod(path, 0o555)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        before = sorted(os.listdir(read_only))
        report = build.build(config_for([str(read_only)], vocab_file), str(tmp_path / "out"))
        assert report.stats["overall"]["documents"] == 24 and sorted(os.listdir(read_only)) == before
        assert build.main(["--input", str(read_only), "--vocab", vocab_file, "--output", str(locked / "out")]) == 2
        assert f"--output {locked / 'out'} is not writable: {locked} is read-only" in capsys.readouterr().err
        assert vocab.main(["--input", str(read_only), "--output", str(locked)]) == 2
        assert f"--output {locked} is not writable" in capsys.readouterr().err
    finally:
        for path in [read_only, locked]:
            os.chmod(path, 0o755)


def test_a_read_only_filesystem(tmp_path, corpus, vocab_file, capsys):
    """The same cases on a filesystem mounted read-only, which binds root too (CI runs as root)."""
    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root): test_read_only_directories covers it")
    try:
        for path in corpus:
            shutil.copy(path, mount)
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        before = sorted(os.listdir(mount))
        report = build.build(config_for([str(mount)], vocab_file), str(tmp_path / "out"))
        assert report.stats["overall"]["documents"] == 24 and sorted(os.listdir(mount)) == before
        assert build.main(["--input", str(mount), "--vocab", vocab_file, "--output", str(mount / "out")]) == 2
        assert f"--output {mount / 'out'} is not writable: {mount} is read-only" in capsys.readouterr().err
        assert vocab.main(["--input", str(mount), "--output", str(mount / "vocab")]) == 2
        assert f"--output {mount / 'vocab'} is not writable" in capsys.readouterr().err
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
