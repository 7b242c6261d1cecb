"""Object storage (gs://, or any URL etils.epath opens) for the commands' files, through local mirrors.

The libraries underneath read and write local files: array_record opens shards by file descriptor (array_record
0.8.6 given a gs:// path hangs, measured), the builder's workers, locks and atomic renames need a filesystem, and
tokenizers and safetensors take local paths. So a remote directory is used through a mirror of it in the local cache,
`$BERT_JAX_CACHE/remote/<scheme>/<bucket>/<path>` (default `~/.cache/bert_jax`):

- reading (`local_copy`): the files that differ from the mirror's record of the remote (size, modification time) are
  downloaded, the others are not, so the second run on a machine starts at once; files gone from the remote are
  removed from the mirror;
- writing (`staged_output`): the mirror is brought up to date first (so a build resumes from the bucket and an
  export's "directory not empty" check sees it), the command writes into the mirror, and when it succeeds the files
  it added or changed are uploaded and the ones it removed are deleted from the remote. Remote files the mirror never
  recorded are never deleted.

Every transfer reports its progress on stderr. Checkpoints (orbax, through tensorstore) and metrics.jsonl go to the
remote workdir directly, not through a mirror. Local paths pass through every function unchanged.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import posixpath
import re
import sys
import time
from typing import Iterator

from etils import epath

from bert_jax import fileio
from bert_jax.errors import InputError, UserError

_PROGRESS_EVERY_S = 5.0
_GLOB_CHARS = re.compile(r"[*?[]")
_synced: dict[str, str] = {}  # URL -> mirror, synced once per process: later calls trust it


def is_remote(path: str | os.PathLike) -> bool:
    return "://" in os.fspath(path)


def cache_root() -> str:
    default = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "bert_jax")
    return os.environ.get("BERT_JAX_CACHE") or default


def mirror_dir(url: str) -> str:
    """The local mirror of `url`: its scheme, bucket and path under the cache."""
    scheme, rest = url.split("://", 1)
    parts = [part for part in rest.split("/") if part not in ("", ".", "..")]
    return os.path.join(cache_root(), "remote", scheme, *parts)


def remote_path(url: str, flag: str) -> epath.Path:
    """`url` as an epath.Path, or an error saying which package its scheme needs."""
    path = epath.Path(url)
    try:
        path.exists()
    except (ImportError, NotImplementedError) as error:
        raise InputError(f"{flag} {url}: cannot open {url.split('://')[0]}:// paths ({error}); for gs:// install "
                         f"the gcs extra (pip install 'bert_jax[gcs]')") from None
    return path


def local_copy(path: str | os.PathLike, *, flag: str = "--input") -> str:
    """A local path holding what `path` holds: `path` itself when local, else its mirror brought up to date (a file
    or a directory). A remote `path` that does not exist is an error naming `flag`."""
    path = os.fspath(path)
    if not is_remote(path):
        return path
    if path in _synced:
        return _synced[path]
    remote = remote_path(path, flag)
    if remote.is_dir():
        local = _sync_down(remote, mirror_dir(path))
    elif remote.exists():  # one file: the mirror of its directory, holding that file only
        directory = _sync_down(remote.parent, mirror_dir(str(remote.parent)), only=[remote.name])
        local = os.path.join(directory, remote.name)
    else:
        raise InputError(f"{flag} {path} does not exist; check the bucket and path (gsutil ls {path})")
    _synced[path] = local
    return local


def local_inputs(pattern: str, *, flag: str = "--input") -> list[str]:
    """Local paths for an input that may be remote: a remote glob (`gs://b/corpus/*.txt`) gives the mirrors of the
    files it matches; anything else `[local_copy(pattern)]`."""
    if not is_remote(pattern) or not _GLOB_CHARS.search(pattern):
        return [local_copy(pattern, flag=flag)]
    parts = pattern.split("/")
    fixed = next(i for i, part in enumerate(parts) if _GLOB_CHARS.search(part))
    base = "/".join(parts[:fixed])
    matched = sorted(str(path) for path in remote_path(base, flag).glob("/".join(parts[fixed:])))
    names = [name[len(base) + 1:] for name in matched if epath.Path(name).is_file()]
    if not names:
        raise InputError(f"{flag} {pattern} matches no objects; check the bucket and path (gsutil ls {pattern})")
    local = _sync_down(epath.Path(base), mirror_dir(base), only=names)
    return [os.path.join(local, name) for name in names]


@contextlib.contextmanager
def staged_output(path: str | os.PathLike, *, flag: str = "--output") -> Iterator[str]:
    """Yields a local directory to write `path`'s files into: `path` itself when local; for a URL its mirror, synced
    down first and uploaded (changes only) when the block succeeds. A failed block uploads nothing: re-running the
    command resumes from the mirror."""
    path = os.fspath(path)
    if not is_remote(path):
        yield path
        return
    remote = remote_path(path, flag)
    if remote.exists() and not remote.is_dir():
        raise InputError(f"{flag} {path} is an object, not a directory; choose a directory URL")
    local = _sync_down(remote, mirror_dir(path))
    _synced.pop(path, None)
    try:
        yield local
    except UserError as error:  # the command's message names the directory the user gave, not the mirror
        raise type(error)(str(error).replace(local, path)) from None
    _sync_up(local, remote)
    _synced[path] = local


def upload_file(local: str, url: str) -> None:
    """Copies one local file to `url` (an object store writes it whole: readers never see a partial object)."""
    _stream(open(local, "rb"), epath.Path(url).open("wb"))


# ---------------------------------------------------------------------------------------------------------------
# The mirror: a record of each file's remote and local (size, mtime) when it was last transferred.


def _record_path(local: str) -> str:
    """The mirror's record, outside the mirror (whose contents are exactly the remote's) and outside any other."""
    digest = hashlib.sha256(os.path.abspath(local).encode()).hexdigest()[:32]
    os.makedirs(os.path.join(cache_root(), "records"), exist_ok=True)
    return os.path.join(cache_root(), "records", f"{digest}.json")


@contextlib.contextmanager
def _locked(local: str) -> Iterator[None]:
    """Two processes of one machine syncing one mirror take turns."""
    with open(_record_path(local) + ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _load_record(local: str) -> dict:
    try:
        with open(_record_path(local), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"files": {}}


def _save_record(local: str, record: dict) -> None:
    fileio.write_json(_record_path(local), record, sort_keys=True)


def _local_signature(path: str) -> list[int]:
    stat = os.stat(path)
    return [stat.st_size, stat.st_mtime_ns]


def _remote_files(remote: epath.Path) -> dict[str, list[int]]:
    """Relative name -> [size, mtime] of every object under `remote`."""
    files = {}
    root = str(remote).split("://", 1)[-1]
    for directory, _, names in remote.walk():  # fsspec's walk names directories without their scheme
        relative = os.path.relpath(str(directory).split("://", 1)[-1], root)
        for name in names:
            name = posixpath.normpath(posixpath.join(relative, name))
            files[name] = _remote_files_one(remote / name)
    return files


def _local_files(local: str) -> dict[str, str]:
    """Relative name -> path of every file in the mirror except temporaries."""
    files = {}
    for directory, _, names in os.walk(local):
        for name in names:
            if fileio.is_temporary(name):
                continue
            path = os.path.join(directory, name)
            files[os.path.relpath(path, local).replace(os.sep, "/")] = path
    return files


class _Progress:
    def __init__(self, verb: str, source: str, target: str, sizes: list[int]) -> None:
        self.verb, self.source, self.target = verb, source, target
        self.total_files, self.total_bytes = len(sizes), sum(sizes)
        self.files = self.bytes = 0
        self.started = self.reported = time.monotonic()
        if sizes:
            print(f"storage: {verb} {source} -> {target}: {len(sizes)} files, {_mib(self.total_bytes)}",
                  file=sys.stderr)

    def advance(self, size: int) -> None:
        self.files, self.bytes = self.files + 1, self.bytes + size
        if time.monotonic() - self.reported >= _PROGRESS_EVERY_S:
            self.reported = time.monotonic()
            print(f"storage: {self.verb} {self.files}/{self.total_files} files, {_mib(self.bytes)} of "
                  f"{_mib(self.total_bytes)}", file=sys.stderr)

    def done(self) -> None:
        if self.total_files:
            seconds = time.monotonic() - self.started
            print(f"storage: {self.verb} {self.total_files} files, {_mib(self.total_bytes)} in {seconds:.1f}s "
                  f"({_mib(self.total_bytes / max(seconds, 1e-3))}/s)", file=sys.stderr)


def _mib(size: float) -> str:
    return f"{size / 2**20:.1f} MiB"


def _sync_down(remote: epath.Path, local: str, only: list[str] | None = None) -> str:
    """Brings the mirror `local` up to date with `remote` (with `only`, those relative names alone)."""
    os.makedirs(local, exist_ok=True)
    with _locked(local):
        record = _load_record(local)
        known = record["files"]
        if only is not None:
            remote_files = {name: _remote_files_one(remote / name) for name in only}
        else:
            remote_files = _remote_files(remote) if remote.exists() else {}
        present = _local_files(local)
        stale = [name for name, signature in remote_files.items()
                 if name not in present or known.get(name, {}).get("remote") != signature
                 or known[name].get("local") != _local_signature(present[name])]
        progress = _Progress("downloading", str(remote), local, [remote_files[name][0] for name in stale])
        for name in stale:
            target = os.path.join(local, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            fileio.write_atomic(target, lambda temporary, name=name: _stream((remote / name).open("rb"), open(temporary, "wb")))
            known[name] = {"remote": remote_files[name], "local": _local_signature(target)}
            progress.advance(remote_files[name][0])
        if only is None:
            for name in set(present) - set(remote_files):  # deleted remotely, or never uploaded: not the remote's
                os.unlink(present[name])
                known.pop(name, None)
        _save_record(local, record)
        progress.done()
    return local


def _remote_files_one(path: epath.Path) -> list[int]:
    stat = path.stat()
    return [int(stat.length), int(stat.mtime)]


def _stream(reader, writer) -> None:
    with reader, writer:
        while chunk := reader.read(16 * 2**20):
            writer.write(chunk)


def _sync_up(local: str, remote: epath.Path) -> None:
    with _locked(local):
        record = _load_record(local)
        known = record["files"]
        present = _local_files(local)
        changed = [name for name, path in present.items()
                   if known.get(name, {}).get("local") != _local_signature(path)]
        progress = _Progress("uploading", local, str(remote), [os.path.getsize(present[n]) for n in changed])
        for name in changed:
            upload_file(present[name], str(remote / name))
            known[name] = {"remote": _remote_files_one(remote / name), "local": _local_signature(present[name])}
            progress.advance(known[name]["remote"][0])
        for name in sorted(set(known) - set(present)):  # the command removed its own file: so does the remote
            target = remote / name
            if target.exists():
                target.unlink()
            known.pop(name)
        _save_record(local, record)
        progress.done()
