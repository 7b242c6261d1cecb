"""CLI and entry point of the offline dataset build: corpus -> tokenized documents -> examples -> ArrayRecord shards.

    python -m bert_jax.data.build --input 'corpus/*.txt' --vocab vocab/vocab.txt --output data/built \\
        --max_seq_length 128,512 --workers 8
    python -m bert_jax.data.build --input 'corpus/*.txt' --vocab bpe/tokenizer.json --output data/roberta \\
        --example_kind full_sentences --max_seq_length 512

The vocab is a WordPiece `vocab.txt` or a byte-level BPE `tokenizer.json` (or either's directory); its kind is read
from the files (`tokenizers/vocabs.py`), and the output carries its files and records it in stats.json (`vocab`).

How it works (design notes with the reasons in docs/data_build.md):

1. `sources.list_input_shards` splits the input into shards (files, TFDS record ranges). Each shard is one task
   for a pool of worker processes (spawn, `build_parts`): it streams the shard's documents, tokenizes each
   document once (through a cache of space-separated chunks, `CachedSentenceEncoder`, exactly equal to the
   tokenizer, WordPiece or byte-level BPE), puts it in the train or eval split by a hash of its text, and hands it
   to the example kind (`BuildConfig.example_kind`, see `bert_jax.data.examples`), which writes the examples of
   every requested length from that one tokenization. The default kind, `nsp_pairs`, builds sentence pairs, every
   dupe copy, drawing random-next partners from a bounded window of neighbouring documents of the same shard and
   split, so a worker's memory does not grow with the corpus. The packed kinds (`full_sentences`, `doc_sentences`)
   pack each shard's sentences into sequences in order (`examples/packed.py`).
2. A task writes its examples to `OUT/.parts/NNNNN/seq_L.SPLIT.array_record` and then, as its completion mark,
   `OUT/.parts/NNNNN.stats.json` (counts per length and split). Every file is written under a temporary name,
   fsynced and renamed, so a killed build leaves either a finished file or nothing usable.
3. The output shards `OUT/seq_L/SPLIT-JJJJJ-of-MMMMM.array_record` are contiguous, equal slices of the examples of
   all parts in shard order, copied from the parts. Then `token_counts.seq_L.npy` (the parts' counts of their train
   tokens, summed: `token_counts.py`) and `stats.json` are written and the part record and count files are deleted
   (the part stats stay, so a later resume knows every count without re-reading anything).

Running the same command again resumes: finished parts are skipped, existing output shards are kept, and a missing
output shard whose part records are gone has exactly those parts rebuilt. Every random draw is a function of
(seed, length, dupe, shard, document), so the result is byte-identical to a clean build with any --workers.

The build touches only files it created: each is recorded in OUT/build_manifest.json before it is written, with
content fingerprints of every input file and of the vocab, so a rerun after an input or the vocab changed is an error
(or, with --rebuild_changed, a rebuild of what changed), never a dataset of two versions (`build_manifest`,
`build_resume`). Its workers die with it, and a killed worker is one error naming the lost shards (`worker_pool`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from typing import Any, Iterable, Sequence

import numpy as np
from array_record.python.array_record_module import ArrayRecordReader, ArrayRecordWriter

from bert_jax import errors, fileio, storage
from bert_jax.data import build_parts, build_resume, examples, sources, token_counts, worker_pool
from bert_jax.data.build_layout import (DEFAULT_EXAMPLE_KIND, PARTS_DIR, SPLITS, STATS, BuildConfig, OutputShard,
                                        output_shard_path, part_records_path, part_stats_path,
                                        part_token_counts_path, token_counts_path)
from bert_jax.data.build_stats import summarize
from bert_jax.data.tokenizers import vocabs, wordpiece
from bert_jax.data.writable import check_output_directory
from bert_jax.errors import InputError

PROG = "python -m bert_jax.data.build"
# Output shards of about this size by default: big enough to keep file counts low, small enough to spread over hosts.
TARGET_SHARD_BYTES = 256 * 2**20
# ...and at most this many records: an ArrayRecord writer (and reader) with group_size:1 keeps ~100 bytes of chunk
# index per record in RAM (measured), so this caps the merge's memory at ~26 MB whatever the corpus size.
MAX_RECORDS_PER_SHARD = 2**18
# Output shards: one record per chunk for fast random access (the layout contract). Uncompressed: the records are
# short token-id strings that zstd does not shrink (measured: files 7% larger with zstd, writes 2.7x slower).
OUTPUT_WRITER_OPTIONS = "group_size:1,uncompressed"


@dataclasses.dataclass
class BuildReport:
    """What a `build` call did (the tests check that a resume redoes only what is missing)."""

    output_dir: str
    parts_built: list[int]
    outputs_written: list[str]
    stats: dict[str, Any]


# ---------------------------------------------------------------------------------------------------------------
# Output shards: planned from the part stats, copied from the part records.


def _plan_outputs(output_dir: str, config: BuildConfig, part_stats: list[dict[str, Any]]) -> list[OutputShard]:
    """Every output shard of the build: per length and split, equal slices of the examples of all parts."""
    outputs = []
    for length in config.max_seq_lengths:
        for split in SPLITS:
            counts = [part["per_length"][str(length)][split].get("examples", 0) for part in part_stats]
            total = sum(counts)
            total_bytes = sum(part["per_length"][str(length)][split].get("record_bytes", 0) for part in part_stats)
            if split == "train" and config.num_output_shards > 0:
                num_shards = config.num_output_shards
            else:
                num_shards = max(1, math.ceil(total_bytes / TARGET_SHARD_BYTES),
                                 math.ceil(total / MAX_RECORDS_PER_SHARD))
            for shard in range(num_shards):
                start, end = total * shard // num_shards, total * (shard + 1) // num_shards
                outputs.append(OutputShard(length, split, shard, num_shards, start, end,
                                           output_shard_path(output_dir, length, split, shard, num_shards)))
    return outputs


def _parts_feeding(output: OutputShard, part_stats: list[dict[str, Any]]) -> list[tuple[int, int, int]]:
    """(part index, first, end) record ranges of the parts that make up `output`."""
    ranges, offset = [], 0
    for index, part in enumerate(part_stats):
        count = part["per_length"][str(output.length)][output.split].get("examples", 0)
        first, end = max(output.start - offset, 0), min(output.end - offset, count)
        if first < end:
            ranges.append((index, first, end))
        offset += count
    return ranges


def _write_output_shard(output_dir: str, output: OutputShard, part_stats: list[dict[str, Any]]) -> None:
    """Copies the examples of `output` from the part records, and commits the file once it is complete."""
    os.makedirs(os.path.dirname(output.path), exist_ok=True)
    temporary_path = fileio.temporary_path(output.path)
    writer = ArrayRecordWriter(temporary_path, OUTPUT_WRITER_OPTIONS)
    for index, first, end in _parts_feeding(output, part_stats):
        reader = ArrayRecordReader(part_records_path(output_dir, index, output.length, output.split))
        for chunk_start in range(first, end, 8192):
            for record in reader.read(chunk_start, min(chunk_start + 8192, end)):
                writer.write(record)
        reader.close()
    writer.close()
    fileio.commit(temporary_path, output.path)


def _write_token_counts(output_dir: str, config: BuildConfig, num_parts: int, outputs: Sequence[OutputShard],
                        vocab_size: int) -> None:
    """Each length's `token_counts.seq_L.npy`: the sum of the parts' counts of their train records.

    A file already there is kept: a resumed build writes the same examples. Where a part's counts are gone (its
    files were deleted by a finished build, or it was built before token counts), the train output shards are
    counted instead, which gives the same array.
    """
    for length in config.max_seq_lengths:
        path = token_counts_path(output_dir, length)
        if os.path.exists(path):
            continue
        part_paths = [part_token_counts_path(output_dir, index, length) for index in range(num_parts)]
        if all(os.path.exists(part_path) for part_path in part_paths):
            counts = np.zeros(vocab_size, dtype=np.int64)
            for part_path in part_paths:
                counts += token_counts.read_counts(part_path, vocab_size)
        else:
            shard_paths = [output.path for output in outputs if output.length == length and output.split == "train"]
            counts = token_counts.count_records(shard_paths, vocab_size, label=f"seq_{length} train")
        token_counts.write_counts(path, counts)


# ---------------------------------------------------------------------------------------------------------------
# The build


def build(config: BuildConfig, output_dir: str, workers: int = 1, *, force: bool = False,
          rebuild_changed: bool = False) -> BuildReport:
    """Builds (or resumes building) the dataset in `output_dir`; see the module docstring. `force`: build into a
    non-empty directory that is not this build (`build_manifest`); `rebuild_changed`: rebuild what a changed input
    or vocab touched instead of refusing (`build_resume`)."""
    kind = examples.example_kind(config.example_kind)
    kind.check(config)
    if not 0 <= config.eval_fraction < 1:
        raise InputError(f"--eval_fraction must be in [0, 1), got {config.eval_fraction}")
    check_output_directory(output_dir)
    vocab = vocabs.load(config.vocab, lowercase=config.lowercase)  # a clear error for a bad vocab, before any work
    notes: list[str] = []
    shards = sources.list_input_shards(
        list(config.inputs), text_field=config.text_field, input_format=config.input_format,
        tfds_data_dir=config.tfds_data_dir, tfds_records_per_shard=config.tfds_records_per_shard,
        exclude=vocab.source_files(), notes=notes)
    for note in notes:
        print(f"build: {note}", file=sys.stderr)
    # The shard list is part of the identity: a glob that now matches other files is another build.
    identity = json.loads(json.dumps({**config.to_json(), "input_shards": [shard.name for shard in shards]}))
    manifest = build_resume.start(output_dir, identity, shards, vocab, force=force, rebuild_changed=rebuild_changed)
    os.makedirs(os.path.join(output_dir, PARTS_DIR), exist_ok=True)

    def load_part(index: int) -> dict[str, Any] | None:
        try:
            with open(part_stats_path(output_dir, index), encoding="utf-8") as f:
                stats = json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return stats if stats.get("shard_name") == shards[index].name else None

    def tasks_for(indices: Iterable[int]) -> list[build_parts.PartTask]:
        return [build_parts.PartTask(index, shards[index], config, output_dir) for index in sorted(indices)]

    part_stats = [load_part(index) for index in range(len(shards))]
    todo = [index for index, stats in enumerate(part_stats) if stats is None]
    parts_built = list(todo)
    if todo:
        print(f"build: {len(todo)} of {len(shards)} input shards to do, {workers} workers", file=sys.stderr)
    for result in build_parts.run_parts(tasks_for(todo), workers):
        part_stats[result["shard_index"]] = result

    outputs = _plan_outputs(output_dir, config, part_stats)
    manifest.claim(output.path for output in outputs)
    missing = [output for output in outputs if not os.path.exists(output.path)]
    # Parts whose records were already deleted after an earlier complete build must be rebuilt to refill a lost
    # output shard; only those feeding a missing shard are.
    needed = {index for output in missing for index, _, _ in _parts_feeding(output, part_stats)}
    lost = sorted(index for index in needed
                  if not all(os.path.exists(part_records_path(output_dir, index, length, split))
                             for length in config.max_seq_lengths for split in SPLITS))
    if lost:
        print(f"build: rebuilding {len(lost)} input shards whose part files are gone, to refill "
              f"{len(missing)} missing output shards", file=sys.stderr)
        for result in build_parts.run_parts(tasks_for(lost), workers):
            part_stats[result["shard_index"]] = result
        parts_built = sorted(set(parts_built) | set(lost))
    build_resume.check_unchanged(manifest, shards, vocab)  # an input or the vocab edited while it was read
    for number, output in enumerate(missing, start=1):
        _write_output_shard(output_dir, output, part_stats)
        print(f"build: wrote {os.path.relpath(output.path, output_dir)} ({output.end - output.start:,} examples, "
              f"{number}/{len(missing)})", file=sys.stderr)

    stats = summarize(config, kind, part_stats, outputs, vocab.summary())
    vocab.write_dir(output_dir)
    _write_token_counts(output_dir, config, len(shards), outputs, vocab.size)
    fileio.write_json(os.path.join(output_dir, STATS), stats, indent=1, sort_keys=True)
    # The examples now live in the output shards; the part stats stay (they are small and make resumes exact).
    manifest.remove_part_records(range(len(shards)))
    for warning in stats["warnings"]:
        print(f"build: WARNING: {warning}", file=sys.stderr)
    return BuildReport(output_dir, parts_built, [o.path for o in missing], stats)


# ---------------------------------------------------------------------------------------------------------------
# CLI


def _parse_lengths(text: str) -> tuple[int, ...]:
    try:
        lengths = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--max_seq_length takes comma-separated integers, got {text!r}") from None
    if not lengths:
        raise argparse.ArgumentTypeError("--max_seq_length needs at least one length, e.g. 128,512")
    return lengths


# The options of the `nsp_pairs` kind: absent when not given (argparse.SUPPRESS), so a packed build can refuse them
# (they would do nothing).
_PAIR_OPTIONS = {"dupe_factor": 5, "short_seq_prob": 0.1, "random_next_window": 1000,
                 "random_next_window_tokens": 8_000_000}



def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Build pre-training examples (unmasked) as ArrayRecord shards, in parallel and resumably: BERT's "
                    "sentence pairs with NSP labels, or RoBERTa's packed sequences of whole sentences. Re-run the "
                    "same command to finish an interrupted build.",
        formatter_class=errors.HelpFormatter)
    parser.add_argument("--input", action="extend", nargs="+", required=True,
                        help="text/JSONL/Parquet files, globs, directories, or tfds:NAME[/CONFIG][:VERSION][split]")
    parser.add_argument("--vocab", required=True,
                        help="WordPiece vocab.txt (a tokenizer_config.json beside it sets casing), or a byte-level "
                             "BPE tokenizer.json or its directory (python -m bert_jax.data.vocab --kind bpe)")
    parser.add_argument("--output", required=True,
                        help="output directory: new or empty, or this build's own (then resumed); the build only "
                             "ever touches the files it created, listed in OUTPUT/build_manifest.json")
    parser.add_argument("--force", action="store_true",
                        help="build into a non-empty directory that is not this build: a build of other arguments "
                             "is replaced (only its own files are deleted), any other directory only gets the "
                             "build's files added")
    parser.add_argument("--rebuild_changed", action="store_true",
                        help="when an input file or the vocab changed since this output directory's build read "
                             "it, rebuild what it touched instead of stopping with an error")
    parser.add_argument("--max_seq_length", type=_parse_lengths, default=(128, 512),
                        help="comma-separated sequence lengths, all built from one tokenization, e.g. 128,512")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes")
    parser.add_argument("--dupe_factor", type=int, default=argparse.SUPPRESS,
                        help="nsp_pairs: copies of each document, with pairings re-drawn per copy (default 5)")
    parser.add_argument("--short_seq_prob", type=float, default=argparse.SUPPRESS,
                        help="nsp_pairs: probability of a random shorter target length per document (default 0.1)")
    parser.add_argument("--seed", type=int, default=12345,
                        help="seed of the example draws (segment lengths, random next segments, shuffling)")
    parser.add_argument("--eval_fraction", type=float, default=0.01,
                        help="fraction of documents held out for eval (by a hash of the document text)")
    casing = parser.add_mutually_exclusive_group()
    casing.add_argument("--lowercase", dest="lowercase", action="store_true", default=None,
                        help="WordPiece: lowercase and strip accents (default: do_lower_case of the vocab's "
                             "tokenizer_config.json, cased if absent); a byte-level BPE vocab is always cased")
    casing.add_argument("--cased", dest="lowercase", action="store_false", help="keep case and accents")
    parser.add_argument("--text_field", default="text", help="text field of JSONL/Parquet/TFDS records")
    parser.add_argument("--input_format", default="auto", help="input format (see bert_jax.data.sources)")
    parser.add_argument("--tfds_data_dir", default=None, help="TFDS data directory")
    parser.add_argument("--tfds_records_per_shard", type=int, default=100_000,
                        help="TFDS records per input shard (unit of parallel work)")
    parser.add_argument("--num_output_shards", type=int, default=0,
                        help="train shards per length; 0 = automatic (about 256 MiB and at most 262,144 "
                             "examples each: a writer holds ~100 bytes of index per example in RAM)")
    parser.add_argument("--random_next_window", type=int, default=argparse.SUPPRESS,
                        help="nsp_pairs: documents around each document (same input shard and split) from which "
                             "random-next segments are drawn; bounds memory (default 1000)")
    parser.add_argument("--random_next_window_tokens", type=int, default=argparse.SUPPRESS,
                        help="nsp_pairs: at most this many tokens in that window (bounds memory with huge "
                             "documents; default 8000000)")
    parser.add_argument("--example_kind", choices=sorted(examples.EXAMPLE_KINDS), default=DEFAULT_EXAMPLE_KIND,
                        help="the examples to build (bert_jax.data.examples): nsp_pairs, BERT's sentence pairs "
                             "with next-sentence labels; full_sentences, RoBERTa's whole sentences packed up to "
                             "--max_seq_length across documents; doc_sentences, the same within each document")
    return parser.parse_args(argv)


def _pair_options(args: argparse.Namespace) -> dict[str, Any]:
    """The nsp_pairs options with their defaults; given with a packed kind, an error (they would do nothing)."""
    given = [name for name in _PAIR_OPTIONS if hasattr(args, name)]
    if given and args.example_kind != DEFAULT_EXAMPLE_KIND:
        raise InputError(f"{', '.join('--' + name for name in given)}: options of --example_kind nsp_pairs, "
                         f"not of {args.example_kind}")
    return {name: getattr(args, name, default)
            for name, default in _PAIR_OPTIONS.items()}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        pair_options = _pair_options(args)
        vocab = storage.local_copy(args.vocab, flag="--vocab")  # a gs:// vocab is read from its local mirror
        lowercase = args.lowercase
        if lowercase is None:  # the vocab's own casing: do_lower_case beside a vocab.txt; a BPE vocab is cased
            kind, vocab_file = vocabs.detect_kind(vocab)
            lowercase = kind == vocabs.WORDPIECE and wordpiece.is_lowercase_vocab(vocab_file)
        config = BuildConfig(
            inputs=tuple(args.input), vocab=vocab, lowercase=lowercase, max_seq_lengths=args.max_seq_length,
            dupe_factor=pair_options["dupe_factor"], short_seq_prob=pair_options["short_seq_prob"], seed=args.seed,
            eval_fraction=args.eval_fraction, text_field=args.text_field, input_format=args.input_format,
            tfds_data_dir=args.tfds_data_dir, tfds_records_per_shard=args.tfds_records_per_shard,
            num_output_shards=args.num_output_shards,
            random_next_window_documents=pair_options["random_next_window"],
            random_next_window_tokens=pair_options["random_next_window_tokens"], example_kind=args.example_kind)
        # gs://: built in the output's local mirror (resumable there), uploaded when the build succeeds
        with storage.staged_output(args.output) as output:
            report = build(config, output, workers=max(1, args.workers), force=args.force,
                           rebuild_changed=args.rebuild_changed)
    except errors.UserError as error:
        return errors.report(PROG, error)
    except worker_pool.WorkerLostError as error:  # not bad input: the run failed (exit 1, as a failed training run)
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    overall = report.stats["overall"]
    print(f"build: done: {overall['documents']:,} documents, {overall['tokens']:,} tokens, "
          f"{overall['examples']:,} examples in {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
