"""Benchmark: masked sequences per second of the grain loader (read + decode + mask + batch), per core.

    python scripts/bench_loader.py                      # length 128, batch 256, worker_count 0 and 1
    python scripts/bench_loader.py --whole_word --seconds 20

Needs psutil, the `bench` extra (pip install ".[bench]").

Writes a synthetic dataset in the builder's layout to a temporary directory (BERT-sized vocab, 90% of examples
at the full length, 10% short as with short_seq_prob=0.1), then times the loader after a warm-up. Prints a
Markdown block (command, machine, versions, date, results) for docs/bench_loader.md.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np
import psutil
from array_record.python.array_record_module import ArrayRecordWriter

from bert_jax.data import records
from bert_jax.data.masking import MaskingConfig
from bert_jax.data.pipeline import make_loader


def write_synthetic_dataset(root: str, *, num_examples: int, max_seq_length: int, vocab_size: int, shards: int) -> None:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"[unused{i}]" for i in range(99)]
    words = vocab_size - len(specials)
    tokens = specials + [f"w{i}" for i in range(words * 3 // 4)] + [f"##p{i}" for i in range(words - words * 3 // 4)]
    with open(os.path.join(root, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(tokens) + "\n")
    with open(os.path.join(root, "stats.json"), "w", encoding="utf-8") as f:
        json.dump({"synthetic": True, "examples": num_examples}, f)
    rng = np.random.default_rng(0)
    length_dir = os.path.join(root, f"seq_{max_seq_length}")
    os.makedirs(length_dir)
    bounds = np.linspace(0, num_examples, shards + 1).astype(int)
    for shard in range(shards):
        writer = ArrayRecordWriter(
            os.path.join(length_dir, f"train-{shard:05d}-of-{shards:05d}.array_record"), "group_size:1"
        )
        for _ in range(bounds[shard], bounds[shard + 1]):
            length = max_seq_length if rng.random() > 0.1 else int(rng.integers(8, max_seq_length))
            body = rng.integers(len(specials), vocab_size, size=length - 3)
            len_a = int(rng.integers(1, length - 3))
            ids = np.concatenate([[2], body[:len_a], [3], body[len_a:], [3]]).astype(np.int32)
            writer.write(records.encode(records.PairExample(ids, len_a, int(rng.integers(0, 2)))))
        writer.close()


def time_loader(root: str, args: argparse.Namespace, worker_count: int) -> dict:
    loader = make_loader(
        root, max_seq_length=args.max_seq_length, global_batch_size=args.batch_size,
        max_predictions=args.max_predictions, seed=0, process_index=0, process_count=1, worker_count=worker_count,
        masking=MaskingConfig(max_predictions=args.max_predictions, whole_word=args.whole_word),
    )
    iterator = iter(loader)
    for _ in range(args.warmup_batches):
        next(iterator)
    main_start, workers_start = cpu_seconds()
    start, batches = time.perf_counter(), 0
    while time.perf_counter() - start < args.seconds:
        next(iterator)
        batches += 1
    elapsed = time.perf_counter() - start
    main_end, workers_end = cpu_seconds()
    del iterator
    sequences = batches * args.batch_size
    main_cpu, workers_cpu = main_end - main_start, workers_end - workers_start
    return {
        "worker_count": worker_count,
        "batches": batches,
        "seconds": round(elapsed, 2),
        "sequences_per_second": round(sequences / elapsed),
        # Per core = per CPU-second spent by the main process and its workers: robust to a shared machine.
        "sequences_per_cpu_second": round(sequences / (main_cpu + workers_cpu)),
        "main_cpu_fraction": round(main_cpu / elapsed, 2),
        "workers_cpu_fraction": round(workers_cpu / elapsed, 2),
    }


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds (user + system) of this process and of its live child processes."""
    main = psutil.Process()
    main_times = main.cpu_times()
    children = 0.0
    for child in main.children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        children += times.user + times.system
    return main_times.user + main_times.system, children


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--max_predictions", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=256, help="per-host batch (one process)")
    parser.add_argument("--num_examples", type=int, default=50_000)
    parser.add_argument("--vocab_size", type=int, default=30_522)
    parser.add_argument("--workers", default="0,1", help="comma-separated worker_count values to time")
    parser.add_argument("--seconds", type=float, default=15.0, help="timed seconds per setting")
    parser.add_argument("--warmup_batches", type=int, default=10)
    parser.add_argument("--whole_word", action="store_true")
    args = parser.parse_args()

    results = []
    with tempfile.TemporaryDirectory() as root:
        print(f"writing {args.num_examples} synthetic examples ...", file=sys.stderr, flush=True)
        write_synthetic_dataset(root, num_examples=args.num_examples, max_seq_length=args.max_seq_length,
                                vocab_size=args.vocab_size, shards=16)
        for worker_count in (int(w) for w in args.workers.split(",")):
            results.append(time_loader(root, args, worker_count))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)

    versions = {name: importlib.metadata.version(name) for name in ("grain", "array-record", "numpy", "jax")}
    print(f"### Loader, length {args.max_seq_length}, batch {args.batch_size}, "
          f"{'whole-word' if args.whole_word else 'token'} masking\n")
    print(f"- command: `python {' '.join(sys.argv)}`")
    print(f"- date: {datetime.date.today().isoformat()}")
    print(f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
          f"{platform.system()} {platform.release()}, Python {platform.python_version()}")
    print(f"- versions: {', '.join(f'{k} {v}' for k, v in versions.items())}\n")
    print("| worker_count | sequences/s (wall) | sequences per CPU-second (= per core) | main CPU | workers CPU |")
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r['worker_count']} | {r['sequences_per_second']:,} | {r['sequences_per_cpu_second']:,} | "
              f"{r['main_cpu_fraction']:.0%} | {r['workers_cpu_fraction']:.0%} |")


if __name__ == "__main__":
    main()
