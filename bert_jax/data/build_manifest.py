"""What a dataset build owns in its output directory and what it was built from: OUT/build_manifest.json.

The builder used to delete every hidden `*.tmp` file anywhere under --output and overwrite vocab.txt,
tokenizer_config.json and stats.json whoever wrote them; and a resumed build compared only file names, so a corpus
file or vocab changed between two runs gave a dataset mixing two versions. Now:

- **Ownership.** Before it writes a file the builder records ("claims") its path in the manifest (an atomic rewrite,
  so a killed build has claimed everything it left). It never writes, replaces or deletes a path it has not claimed,
  and never claims a path that already exists, with or without --force. The part files of input shards
  0..part_shards-1 (`build_layout`'s names under .parts/) are claimed as one block. A left-over temporary file
  (`.NAME.PID.tmp`) is removed only where NAME is claimed.
- **Which directory may be used** (`open_output`): a missing or empty one; one holding a manifest of the same build
  (resumed); a build from before manifests whose build_config.json asks the same (adopted: the files at the
  layout's names are claimed, since only the builder writes those names next to that build_config.json). Any other
  non-empty directory, and a build of other arguments or inputs, is refused unless --force; with --force a build of
  ours is replaced (only its claimed files are deleted), and into a directory that is not a build the builder only
  adds files. A pre-manifest build of other arguments is refused even with --force: nothing records its files.
- **Contents.** The fingerprints (`fingerprints.py`) of every input file and of the vocab's files are recorded before
  any part is built; a rerun compares them (`changes`). The builder turns a change into an error naming the file,
  or with --rebuild_changed rebuilds what depends on it (`build_resume.py`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterable

from bert_jax import fileio
from bert_jax.data.fingerprints import describe_change
from bert_jax.data.build_layout import (BUILD_CONFIG, MANIFEST, PARTS_DIR, STATS, BuildConfig, is_output_shard,
                                        part_index_of, part_stats_path, token_counts_path)
from bert_jax.errors import InputError

WRITTEN_BY = "bert_jax.data.build"
FORMAT = 1


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 200 else text[:200] + "..."


def config_differences(path: str, current: dict[str, Any]) -> str:
    """How the build_config.json at `path` differs from `current` ("" when it asks the same)."""
    with open(path, encoding="utf-8") as f:
        previous = BuildConfig.complete_stored(json.load(f))
    keys = sorted(key for key in set(previous) | set(current) if previous.get(key) != current.get(key))
    return "; ".join(f"{key}: {_show(previous.get(key))} there, {_show(current.get(key))} now" for key in keys)


@dataclasses.dataclass
class Manifest:
    output_dir: str
    files: set[str] = dataclasses.field(default_factory=set)  # claimed paths, relative, "/"-separated
    part_shards: int = 0  # the part files of input shards below this are claimed
    inputs: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # shard name -> fingerprint
    vocab: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # vocab file -> fingerprint
    # A build from before manifests, adopted by this run: it has no fingerprints to compare with.
    adopted: bool = False

    @property
    def path(self) -> str:
        return os.path.join(self.output_dir, MANIFEST)

    def relative(self, path: str) -> str:
        return os.path.relpath(path, self.output_dir).replace(os.sep, "/")

    def owns(self, relative: str) -> bool:
        if relative == MANIFEST or relative in self.files:
            return True
        index = part_index_of(relative)
        return index is not None and index < self.part_shards

    def save(self) -> None:
        fileio.write_json(self.path, {"written_by": WRITTEN_BY, "format": FORMAT, "files": sorted(self.files),
                                      "part_shards": self.part_shards, "inputs": self.inputs, "vocab": self.vocab},
                          indent=1, sort_keys=True)

    def _refuse_foreign(self, path: str) -> None:
        raise InputError(f"{path} exists and was not written by this build (it is not in {self.path}); the build "
                         f"never replaces a file it did not create: move that file away or choose another --output")

    def claim(self, paths: Iterable[str]) -> None:
        """Records `paths` as the build's before they are written; an existing file it does not own is refused."""
        claimed = []
        for path in paths:
            relative = self.relative(path)
            if not self.owns(relative):
                if os.path.lexists(path):
                    self._refuse_foreign(path)
                claimed.append(relative)
        if claimed:
            self.files.update(claimed)
            self.save()

    def claim_parts(self, count: int) -> None:
        """Claims the part files of input shards 0..count-1 (none of the new ones may exist already)."""
        if count > self.part_shards:
            for path in self._part_files():
                index = part_index_of(self.relative(path))
                if self.part_shards <= index < count:
                    self._refuse_foreign(path)
            self.part_shards = count
        self.save()

    def _part_directories(self) -> list[str]:
        """.parts/ and its per-shard directories (the only places part files are)."""
        parts_dir = os.path.join(self.output_dir, PARTS_DIR)
        return [parts_dir] + [os.path.join(parts_dir, name) for name in _listdir(parts_dir)
                              if name.isdigit() and os.path.isdir(os.path.join(parts_dir, name))
                              and not os.path.islink(os.path.join(parts_dir, name))]

    def _part_files(self) -> list[str]:
        """The files at the names of part files, claimed or not."""
        return [os.path.join(directory, name) for directory in self._part_directories()
                for name in _listdir(directory)
                if part_index_of(self.relative(os.path.join(directory, name))) is not None]

    # -------------------------------------------------------------------------------------------------------------
    # Removal: of claimed files only.

    def remove(self, relatives: Iterable[str]) -> None:
        """Deletes the claimed files among `relatives` and releases them (their directories go once empty)."""
        released = False
        for relative in sorted(relatives):
            if relative != MANIFEST and self.owns(relative):
                path = os.path.join(self.output_dir, relative)
                if os.path.lexists(path):
                    os.remove(path)
                released |= relative in self.files
                self.files.discard(relative)
                _remove_empty_directories(os.path.dirname(path), self.output_dir)
        if released:  # a path no longer ours must not stay claimed (someone may put a file there)
            self.save()

    def remove_parts(self, indices: Iterable[int]) -> None:
        """Deletes the part files (records, counts, completion mark) of these input shards."""
        wanted = set(indices)
        self.remove(self.relative(path) for path in self._part_files()
                    if part_index_of(self.relative(path)) in wanted)

    def remove_part_records(self, indices: Iterable[int]) -> None:
        """Deletes the part records and token counts of these input shards, keeping their stats (completion marks)."""
        wanted = set(indices)
        stats = {self.relative(part_stats_path(self.output_dir, index)) for index in wanted}
        self.remove(relative for relative in map(self.relative, self._part_files())
                    if part_index_of(relative) in wanted and relative not in stats)

    def remove_outputs(self) -> None:
        """Deletes what the merge makes from the parts: output shards, token counts, stats.json."""
        self.remove(relative for relative in list(self.files)
                    if is_output_shard(relative) or relative == STATS or relative.startswith("token_counts.seq_"))

    def remove_all(self) -> None:
        """Deletes every file the build claimed (the manifest stays, claiming nothing)."""
        self.remove_parts(range(self.part_shards))
        self.remove(list(self.files))
        self.part_shards = 0
        self.inputs, self.vocab = {}, {}
        self.save()

    def remove_temporaries(self) -> None:
        """Removes what an interrupted build left half-written: `.NAME.PID.tmp` files whose NAME is claimed, in the
        directories of claimed files (never a walk of the whole tree: --output may be any directory)."""
        directories = {os.path.join(self.output_dir, os.path.dirname(relative)) for relative in self.files}
        directories |= {self.output_dir, *self._part_directories()}
        for directory in sorted(directories):
            for name in _listdir(directory):
                target = _temporary_target(name)
                if target is not None and self.owns(self.relative(os.path.join(directory, target))):
                    os.remove(os.path.join(directory, name))

    # -------------------------------------------------------------------------------------------------------------
    # Contents.

    def changes(self, inputs: dict[str, dict[str, Any]],
                vocab: dict[str, dict[str, Any]]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(changed inputs, changed vocab files) since the recorded fingerprints, each (name, what changed)."""
        def changed(recorded: dict[str, dict[str, Any]], current: dict[str, dict[str, Any]]):
            return [(name, why) for name, fingerprint in sorted(recorded.items())
                    if (why := describe_change(fingerprint, current.get(name)))]

        return changed(self.inputs, inputs), changed(self.vocab, vocab)


def _temporary_target(name: str) -> str | None:
    """NAME of a temporary file `.NAME.PID.tmp` (`fileio.temporary_path`'s names); None for any other name."""
    if not fileio.is_temporary(name):
        return None
    target, _, pid = name[1:-len(fileio.TEMPORARY_SUFFIX)].rpartition(".")
    return target if target and pid.isdigit() else None


def _listdir(directory: str) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _remove_empty_directories(directory: str, stop: str) -> None:
    """Removes `directory` and its parents up to `stop` (excluded) while they are empty."""
    stop = os.path.abspath(stop)
    directory = os.path.abspath(directory)
    while directory != stop and directory.startswith(stop + os.sep):
        try:
            os.rmdir(directory)
        except OSError:  # not empty (holds someone's files, or ours still), or gone
            return
        directory = os.path.dirname(directory)


def _load(output_dir: str) -> Manifest | None:
    path = os.path.join(output_dir, MANIFEST)
    if not os.path.lexists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            stored = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        stored, problem = None, str(error)
    else:
        if not isinstance(stored, dict) or stored.get("written_by") != WRITTEN_BY:
            problem = f"it was not written by {WRITTEN_BY}"
        elif stored.get("format") != FORMAT:
            problem = f"format {_show(stored.get('format'))}, this builder reads {FORMAT}"
        else:
            problem = ""
    if problem:
        raise InputError(f"{path} is not a build manifest this builder can read ({problem}); choose another --output")
    return Manifest(output_dir, set(stored["files"]), int(stored["part_shards"]), dict(stored["inputs"]),
                    dict(stored["vocab"]))


def _adopt(output_dir: str, config: dict[str, Any], vocab_names: Iterable[str]) -> Manifest:
    """A manifest for a build from before manifests: the files at the layout's names are its own."""
    manifest = Manifest(output_dir, part_shards=len(config["input_shards"]), adopted=True)
    lengths = config["max_seq_lengths"]
    names = [BUILD_CONFIG, STATS, *vocab_names,
             *(os.path.basename(token_counts_path(output_dir, length)) for length in lengths)]
    manifest.files.update(name for name in names if os.path.isfile(os.path.join(output_dir, name)))
    for length in lengths:
        directory = f"seq_{length}"
        manifest.files.update(f"{directory}/{name}" for name in _listdir(os.path.join(output_dir, directory))
                              if is_output_shard(f"{directory}/{name}"))
    return manifest


def open_output(output_dir: str, config: dict[str, Any], vocab_names: Iterable[str], *, force: bool) -> Manifest:
    """The manifest of the build `config` (build_config.json's content) in `output_dir`, deciding whether this
    directory may be used (see the module docstring); the directory exists afterwards."""
    config_path = os.path.join(output_dir, BUILD_CONFIG)
    if not os.path.isdir(output_dir) or not os.listdir(output_dir):
        os.makedirs(output_dir, exist_ok=True)
        return Manifest(output_dir)
    manifest = _load(output_dir)
    has_config = os.path.isfile(config_path)
    differences = config_differences(config_path, config) if has_config else ""
    if manifest is None and not has_config:
        if not force:
            raise InputError(f"--output {output_dir} is not empty and holds no dataset build (no {MANIFEST}); "
                             f"choose an empty or new directory, or pass --force to build into it anyway (the "
                             f"build then only adds its own files, and never deletes or replaces others')")
        return Manifest(output_dir)
    if differences:
        described = (f"{config_path}: this output directory holds a build with different arguments or input files "
                     f"({differences}). Re-run with the same arguments and inputs to resume it")
        if manifest is None:
            raise InputError(f"{described}, or choose another --output (that build predates {MANIFEST}, so "
                             f"which files are its own is not recorded and --force cannot replace it safely)")
        if not force:
            raise InputError(f"{described}, choose another --output, or pass --force to replace that build (only "
                             f"the files it created, listed in its {MANIFEST}, are deleted)")
        manifest.remove_all()
        return manifest
    return manifest if manifest is not None else _adopt(output_dir, config, vocab_names)
