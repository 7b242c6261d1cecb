"""What a dataset build is and where it lives: its arguments (`BuildConfig`, stored as build_config.json so a resumed
build can be checked against them) and the path of every file it writes in its output directory.

    OUT/build_manifest.json                     what the build owns and what it read (build_manifest.py)
    OUT/build_config.json                       what was asked (BuildConfig + the input shard names)
    OUT/.parts/NNNNN/seq_L.SPLIT.array_record   one input shard's examples (deleted after the merge)
    OUT/.parts/NNNNN/seq_L.train.token_counts.npy  ... and the token counts of its train examples (deleted too)
    OUT/.parts/NNNNN.stats.json                 one input shard's counters: its completion mark (kept)
    OUT/seq_L/SPLIT-JJJJJ-of-MMMMM.array_record the output shards
    OUT/token_counts.seq_L.npy                  how often each id occurs in seq_L's train examples (token_counts.py)
    OUT/stats.json, and the vocab's files (vocab.txt + tokenizer_config.json, or the five of a BPE vocab)
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any

from bert_jax.errors import InputError

SPLITS = ("train", "eval")
BUILD_CONFIG = "build_config.json"
MANIFEST = "build_manifest.json"
STATS = "stats.json"
PARTS_DIR = ".parts"
TOKEN_COUNTS_SUFFIX = ".token_counts.npy"  # of the parts' count files
DEFAULT_EXAMPLE_KIND = "nsp_pairs"


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """What was asked; stored in OUT/build_config.json and compared when a build resumes."""

    inputs: tuple[str, ...]
    vocab: str
    lowercase: bool
    max_seq_lengths: tuple[int, ...]
    dupe_factor: int = 5
    short_seq_prob: float = 0.1
    seed: int = 12345
    eval_fraction: float = 0.01
    text_field: str = "text"
    input_format: str = "auto"
    tfds_data_dir: str | None = None
    tfds_records_per_shard: int = 100_000
    num_output_shards: int = 0  # train shards per length; 0 = about TARGET_SHARD_BYTES each
    random_next_window_documents: int = 1000  # both sides together
    random_next_window_tokens: int = 8_000_000  # both sides together
    example_kind: str = DEFAULT_EXAMPLE_KIND  # a name in bert_jax.data.examples.EXAMPLE_KINDS

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "inputs": list(self.inputs),
                "max_seq_lengths": list(self.max_seq_lengths)}

    @classmethod
    def complete_stored(cls, stored: dict[str, Any]) -> dict[str, Any]:
        """A stored build_config.json with the fields added since it was written set to their defaults, which is
        what that build did (a new field's default keeps the old behaviour, e.g. `example_kind`)."""
        defaults = {field.name: field.default for field in dataclasses.fields(cls)
                    if field.default is not dataclasses.MISSING}
        return {**{name: value for name, value in defaults.items() if name not in stored}, **stored}


@dataclasses.dataclass(frozen=True)
class OutputShard:
    """One output file: examples [start, end) of (length, split), numbered over all parts in input shard order."""

    length: int
    split: str
    shard: int
    num_shards: int
    start: int
    end: int
    path: str


def stored_example_kind(output_dir: str) -> str:
    """The example kind a built directory holds, from its build_config.json; `nsp_pairs` when the file or the field
    is absent (builds from before example kinds)."""
    path = os.path.join(output_dir, BUILD_CONFIG)
    if not os.path.isfile(path):
        return DEFAULT_EXAMPLE_KIND
    try:
        with open(path, encoding="utf-8") as f:
            stored = json.load(f)
    except json.JSONDecodeError as error:
        raise InputError(f"{path}:{error.lineno}: invalid JSON ({error.msg}); rebuild the dataset") from None
    return stored.get("example_kind", DEFAULT_EXAMPLE_KIND)


def part_stats_path(output_dir: str, index: int) -> str:
    return os.path.join(output_dir, PARTS_DIR, f"{index:05d}.stats.json")


def part_records_path(output_dir: str, index: int, length: int, split: str) -> str:
    return os.path.join(output_dir, PARTS_DIR, f"{index:05d}", f"seq_{length}.{split}.array_record")


def output_shard_path(output_dir: str, length: int, split: str, shard: int, num_shards: int) -> str:
    return os.path.join(output_dir, f"seq_{length}", f"{split}-{shard:05d}-of-{num_shards:05d}.array_record")


def token_counts_path(output_dir: str, length: int) -> str:
    # Beside stats.json, not in seq_L/, which holds the shards only (readers glob it).
    return os.path.join(output_dir, f"token_counts.seq_{length}.npy")


def part_token_counts_path(output_dir: str, index: int, length: int) -> str:
    return os.path.join(output_dir, PARTS_DIR, f"{index:05d}", f"seq_{length}.train{TOKEN_COUNTS_SUFFIX}")


# The names the functions above give, relative to the output directory ("/" separated), for telling the build's
# own files from others' (build_manifest.py).
_PART_FILE = re.compile(r"^\.parts/(\d{5,})(?:\.stats\.json|/seq_\d+\.(?:train|eval)\.array_record|"
                        r"/seq_\d+\.train\.token_counts\.npy)$")
_OUTPUT_SHARD = re.compile(r"^seq_\d+/(?:train|eval)-\d{5,}-of-\d{5,}\.array_record$")


def part_index_of(relative_path: str) -> int | None:
    """The input shard index of a part file's relative path (`.parts/00003.stats.json` -> 3), None for others."""
    match = _PART_FILE.match(relative_path)
    return int(match.group(1)) if match else None


def is_output_shard(relative_path: str) -> bool:
    return bool(_OUTPUT_SHARD.match(relative_path))
