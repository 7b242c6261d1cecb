"""Content fingerprints of the files a build reads (corpus files, the vocab), so a resumed or repeated build can
tell that a file changed since it was read instead of mixing examples of two versions.

A fingerprint is the size, the modification time (ns) and a BLAKE2b hash. Files up to `WHOLE_HASH_BYTES` are hashed
whole: then the hash alone decides, and a file that was touched or copied without changing is unchanged. A larger
file is hashed from its size, its first and last MiB and `SAMPLED_BLOCKS` blocks spread evenly between them (about
3 MiB read, whatever the size: a rerun of a build over terabytes checks every file in seconds, while the build itself
reads everything). Appending or truncating changes the size; an edit near either end or at a sampled block changes
the hash; any other edit changes the modification time, which for a sampled file therefore also counts as a change
(as rsync's and make's quick checks do) — a large file that was only copied is then rebuilt, never silently mixed.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
from typing import Any, Iterable

# Up to this size a file is hashed whole (the sampled reads below would cost about as much).
WHOLE_HASH_BYTES = 4 * 2**20
EDGE_BYTES = 2**20
SAMPLED_BLOCKS = 16
SAMPLED_BLOCK_BYTES = 64 * 2**10
_READ_BYTES = 2**20
# Hashing is I/O bound and hashlib releases the GIL on large buffers: a few threads hide the disk's latency.
_HASH_THREADS = 8


def _sampled_ranges(size: int) -> list[tuple[int, int]]:
    """(offset, length) of the parts of a large file that are hashed: the first and last MiB and evenly spread
    blocks between them."""
    middle_start, middle_end = EDGE_BYTES, size - EDGE_BYTES
    step = (middle_end - middle_start - SAMPLED_BLOCK_BYTES) / (SAMPLED_BLOCKS - 1)
    blocks = [(middle_start + round(step * i), SAMPLED_BLOCK_BYTES) for i in range(SAMPLED_BLOCKS)]
    return [(0, EDGE_BYTES)] + blocks + [(middle_end, EDGE_BYTES)]


def fingerprint(path: str, *, whole: bool = False) -> dict[str, Any]:
    """The fingerprint of `path` (see the module docstring); `whole` hashes any size whole (vocab files)."""
    with open(path, "rb") as f:
        status = os.fstat(f.fileno())
        size = status.st_size
        digest = hashlib.blake2b(str(size).encode(), digest_size=16, person=b"bert_jax_input")
        is_whole = whole or size <= WHOLE_HASH_BYTES
        ranges = [(0, size)] if is_whole else _sampled_ranges(size)
        for offset, length in ranges:
            f.seek(offset)
            while length > 0:
                data = f.read(min(length, _READ_BYTES))
                if not data:
                    break
                digest.update(data)
                length -= len(data)
    return {"size": size, "mtime_ns": status.st_mtime_ns, "hash": digest.hexdigest(),
            "hashed": "whole" if is_whole else "sampled"}


def fingerprints(paths: Iterable[str], *, whole: bool = False) -> dict[str, dict[str, Any]]:
    """Fingerprints of several files, keyed by path, hashed in a few threads."""
    paths = list(paths)
    with concurrent.futures.ThreadPoolExecutor(min(_HASH_THREADS, max(1, len(paths)))) as pool:
        return dict(zip(paths, pool.map(lambda path: fingerprint(path, whole=whole), paths)))


def describe_change(recorded: dict[str, Any], current: dict[str, Any] | None) -> str | None:
    """What changed between two fingerprints of a file, in words; None when it is unchanged."""
    if current is None:
        return "it no longer exists"
    if recorded["size"] != current["size"]:
        return f"its size changed from {recorded['size']:,} to {current['size']:,} bytes"
    if recorded["hash"] != current["hash"]:
        return "its content changed (same size, different hash)"
    if recorded["hashed"] == "sampled" and recorded["mtime_ns"] != current["mtime_ns"]:
        return (f"its modification time changed; only {_sampled_megabytes()} MiB of this {current['size']:,}-byte "
                f"file are hashed, so an edit elsewhere cannot be ruled out")
    return None


def _sampled_megabytes() -> int:
    return round((2 * EDGE_BYTES + SAMPLED_BLOCKS * SAMPLED_BLOCK_BYTES) / 2**20)
