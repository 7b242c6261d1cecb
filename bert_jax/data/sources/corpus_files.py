"""Which files an input names: a file, the files a glob matches, or the corpus files of a directory.

A directory holds more than corpus (a vocab learned beside it, a dataset built into it, a README), so a directory
input takes only files with a corpus extension (`CORPUS_SUFFIXES`, optionally `.gz`/`.bz2`) and says on stderr
(through `notes`) what it took and what it skipped and why; a glob takes what it matches. Whatever names them, the
files of a vocab, a tokenizer or a built dataset (`is_reserved`) and the build's own `--vocab` files (`exclude`) are
never corpus: a glob or directory skips them with a note, and naming one as an input is an error. Reading a
`vocab.txt` as text put `[PAD] [UNK] [CLS]` sequences in a dataset; reading a `tokenizer_config.json` as JSONL
failed with an error about a missing text field.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
from typing import Collection

from bert_jax.data.sources.files import COMPRESSED_SUFFIXES
from bert_jax.errors import InputError

CORPUS_SUFFIXES = (".txt", ".jsonl", ".json", ".ndjson", ".parquet", ".pq")
# Vocab and tokenizer files (WordPiece, byte-level BPE, Hugging Face), and what a dataset build or an export writes.
RESERVED_NAMES = ("vocab.txt", "vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer*.json",
                  "config.json", "stats.json", "build_config.json", "build_manifest.json", "*.array_record", "*.npy",
                  "*.safetensors")
# A directory holding either file is a dataset build's output (bert_jax.data.build), never corpus.
BUILD_MARKERS = ("build_config.json", "build_manifest.json")
# Names listed per category in a note; the rest are counted.
MAX_LISTED = 10
_GLOB_CHARS = re.compile(r"[*?\[]")


def is_reserved(path: str) -> bool:
    name = os.path.basename(path)
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in RESERVED_NAMES)


def has_corpus_suffix(path: str) -> bool:
    stem = path.lower()
    for suffix in COMPRESSED_SUFFIXES:
        stem = stem.removesuffix(suffix)
    return stem.endswith(CORPUS_SUFFIXES)


def _never_corpus(path: str, exclude: Collection[str]) -> str | None:
    """Why `path` can never be corpus (the --vocab, a reserved name), or None."""
    if os.path.realpath(path) in exclude:
        return "the vocab (--vocab)"
    if is_reserved(path):
        return "a vocab, tokenizer or dataset file"
    return None


def _listed(paths: list[str]) -> str:
    shown = ", ".join(paths[:MAX_LISTED])
    return shown + (f" and {len(paths) - MAX_LISTED:,} more" if len(paths) > MAX_LISTED else "")


def _skipped_note(skipped: dict[str, list[str]]) -> str:
    return "; ".join(f"{_listed(paths)} ({reason})" for reason, paths in skipped.items())


def _walk_directory(root: str, exclude: Collection[str]) -> tuple[list[str], dict[str, list[str]]]:
    """(corpus files, skipped paths by reason) of a directory tree; hidden files and directories are not looked at."""
    taken: list[str] = []
    skipped: dict[str, list[str]] = {}
    other_suffix = (f"not a corpus file extension ({', '.join(CORPUS_SUFFIXES)}, optionally .gz/.bz2): pass a "
                    f"glob to take them")
    for directory, subdirectories, names in os.walk(root):
        if directory != root and any(os.path.isfile(os.path.join(directory, m)) for m in BUILD_MARKERS):
            skipped.setdefault("a dataset build's output", []).append(directory + os.sep)
            subdirectories[:] = []
            continue
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = os.path.join(directory, name)
            reason = _never_corpus(path, exclude) or (None if has_corpus_suffix(path) else other_suffix)
            if reason:
                skipped.setdefault(reason, []).append(path)
            else:
                taken.append(path)
    return taken, skipped


def expand_input(pattern: str, exclude: Collection[str] = (), notes: list[str] | None = None) -> list[str]:
    """The corpus files an input names (see the module docstring); `exclude` holds real paths never to take,
    `notes` receives one line per directory or glob saying what was taken and skipped."""
    notes = notes if notes is not None else []
    if os.path.isdir(pattern):
        taken, skipped = _walk_directory(pattern, exclude)
        if not taken and not skipped:
            raise InputError(f"input directory {pattern!r} contains no files")
        if not taken:
            raise InputError(f"input directory {pattern!r} holds no corpus files: skipped {_skipped_note(skipped)}. "
                             f"Pass the corpus files or a glob that matches them")
        note = f"input directory {pattern}: took {len(taken):,} corpus files ({_listed(taken)})"
        notes.append(note + (f"; skipped {_skipped_note(skipped)}" if skipped else ""))
        return taken
    if os.path.isfile(pattern):
        reason = _never_corpus(pattern, exclude)
        if reason:
            raise InputError(f"input {pattern!r} is {reason}, not corpus text; pass the corpus files instead")
        return [pattern]
    if _GLOB_CHARS.search(pattern):
        matched = sorted(path for path in glob.glob(pattern, recursive=True) if os.path.isfile(path))
        if not matched:
            raise InputError(f"input pattern {pattern!r} matches no files; check the path and quote the pattern "
                             f"so the shell does not expand it")
        skipped: dict[str, list[str]] = {}
        taken = []
        for path in matched:
            reason = _never_corpus(path, exclude)
            if reason:
                skipped.setdefault(reason, []).append(path)
            else:
                taken.append(path)
        if skipped:
            notes.append(f"input pattern {pattern}: took {len(taken):,} files; skipped {_skipped_note(skipped)}")
        if not taken:
            raise InputError(f"input pattern {pattern!r} matches only files that are not corpus: "
                             f"{_skipped_note(skipped)}")
        return taken
    raise InputError(f"input {pattern!r} does not exist; pass files, directories, globs or tfds:NAME[split]")
