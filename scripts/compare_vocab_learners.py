"""Compares the vocab learners on held-out text: unknown-token rate and tokens per word.

Each corpus is split by document (every 10th document held out); each learner learns a vocab of each size from
the rest, and the held-out text is tokenised with `load_tokenizer` (identical to HF BertTokenizerFast).

Corpora:
- `sample`: the synthetic sample corpus in data/sample (BERT-format text).
- `docs`: real English prose found on this machine — Python's reference topics (pydoc_data), the Markdown and
  reStructuredText files of the installed packages, and the docstrings of the standard library and installed
  packages (one document per module) — read as raw JSONL documents (Wikipedia-style cleanup and sentencex
  splitting), up to --docs_max_mb.

Each vocab is learned twice to check that the learner is deterministic.

Usage:
  python scripts/compare_vocab_learners.py --corpus sample --vocab_sizes 2048,4096
  python scripts/compare_vocab_learners.py --corpus docs --vocab_sizes 8000,16000 --lowercase
Results are recorded in docs/data_vocab.md.
"""

from __future__ import annotations

import argparse
import ast
import glob
import json
import os
import platform
import sys
import sysconfig
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from bert_jax import bundled  # noqa: E402
from bert_jax.data import sources  # noqa: E402
from bert_jax.data.tokenizers import wordpiece  # noqa: E402

LEARNER_VARIANTS = {
    "wordpiece": dict(learner="wordpiece"),
    "sentencepiece-bpe": dict(learner="sentencepiece", sentencepiece_model_type="bpe"),
    "sentencepiece-unigram": dict(learner="sentencepiece", sentencepiece_model_type="unigram"),
}
HELD_OUT_EVERY = 10


def sample_inputs() -> list[str]:
    return sorted(glob.glob(bundled.sample_path("corpus-*.txt")))


def docs_inputs(work_dir: str, max_mb: float) -> list[str]:
    """Writes real prose found locally as JSONL documents; returns the JSONL path."""
    import pydoc_data.topics
    import site

    texts = [text for _, text in sorted(pydoc_data.topics.topics.items())]
    roots = site.getsitepackages()
    paths = sorted(path for root in roots for pattern in ("**/*.md", "**/*.rst")
                   for path in glob.glob(os.path.join(root, pattern), recursive=True))
    budget = int(max_mb * 1e6) - sum(len(text) for text in texts)
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = unwrap_paragraphs(f.read())
        if len(text) <= budget:
            texts.append(text)
            budget -= len(text)
    python_files = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "**", "*.py"), recursive=True))
    python_files += sorted(path for root in roots for path in glob.glob(os.path.join(root, "**", "*.py"),
                                                                         recursive=True))
    for path in python_files:
        if budget <= 0:
            break
        text = module_docstrings(path)[:budget]
        texts.append(text)
        budget -= len(text)
    jsonl_path = os.path.join(work_dir, "docs.jsonl")
    with open(jsonl_path, "w", encoding="utf-8") as f:
        for text in texts:
            f.write(json.dumps({"text": text}) + "\n")
    return [jsonl_path]


def module_docstrings(path: str) -> str:
    """The module, class and function docstrings of a Python file, paragraphs unwrapped."""
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return ""
    docstrings = [ast.get_docstring(node) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
    return "\n".join(unwrap_paragraphs(docstring) for docstring in docstrings if docstring)


def unwrap_paragraphs(text: str) -> str:
    """Joins hard-wrapped prose paragraphs onto one line (paragraphs are lines in raw documents, as in Wikipedia);
    blocks that start like markup (lists, tables, headers, code) are left for the cleanup to judge."""
    blocks = []
    for block in text.split("\n\n"):
        lines = [line.strip() for line in block.strip().splitlines()]
        if lines and lines[0][:1].isalpha():
            blocks.append(" ".join(lines))
        else:
            blocks.append("\n".join(lines))
    return "\n".join(blocks)


def split_documents(inputs: list[str]) -> tuple[list[str], list[str], dict[str, int]]:
    stats = sources.SourceStats()
    train, held_out = [], []
    for index, document in enumerate(sources.iterate_documents(sources.list_input_shards(inputs), stats)):
        (held_out if index % HELD_OUT_EVERY == 0 else train).extend(document)
    return train, held_out, stats.to_dict()


def evaluate(vocab_file: str, sentences: list[str], lowercase: bool) -> dict[str, float]:
    tokenizer = wordpiece.load_tokenizer(vocab_file, lowercase=lowercase)
    unk_id = tokenizer.token_to_id(wordpiece.UNK)
    words = tokens = unknown = 0
    for encoding in tokenizer.encode_batch(sentences, add_special_tokens=False):
        tokens += len(encoding.ids)
        unknown += sum(1 for token_id in encoding.ids if token_id == unk_id)
        words += len({word_id for word_id in encoding.word_ids if word_id is not None})
    return {"unk_per_1k_words": 1000 * unknown / words, "tokens_per_word": tokens / words, "words": words}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--corpus", choices=("sample", "docs"), default="sample")
    parser.add_argument("--vocab_sizes", default="2048,4096", help="comma-separated vocab sizes")
    parser.add_argument("--learners", default=",".join(LEARNER_VARIANTS), help="comma-separated learner variants")
    parser.add_argument("--lowercase", action="store_true", help="uncased vocabs (default cased)")
    parser.add_argument("--docs_max_mb", type=float, default=8.0, help="size cap of the docs corpus")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="compare_vocab_") as work_dir:
        inputs = sample_inputs() if args.corpus == "sample" else docs_inputs(work_dir, args.docs_max_mb)
        train, held_out, read_stats = split_documents(inputs)
        print(f"corpus {args.corpus}: {len(train):,} training and {len(held_out):,} held-out sentences "
              f"({sum(map(len, train)) / 1e6:.2f} MB training text); read stats {read_stats}", flush=True)
        print(f"python {platform.python_version()}, tokenizers {wordpiece.tokenizers.__version__}, sentencepiece "
              f"{__import__('sentencepiece').__version__}, {platform.machine()} {os.cpu_count()} CPUs", flush=True)
        print("| corpus | casing | learner | asked | size | [UNK] per 1k words | tokens/word | learn s | "
              "same vocab on rerun |")
        print("|---|---|---|---|---|---|---|---|---|")
        results = []
        for vocab_size in (int(size) for size in args.vocab_sizes.split(",")):
            for name in args.learners.split(","):
                started = time.monotonic()
                tokens = wordpiece.learn_vocab(iter(train), vocab_size, lowercase=args.lowercase,
                                               **LEARNER_VARIANTS[name])
                seconds = time.monotonic() - started
                rerun = wordpiece.learn_vocab(iter(train), vocab_size, lowercase=args.lowercase,
                                              **LEARNER_VARIANTS[name])
                vocab_file = wordpiece.write_vocab_dir(tokens, os.path.join(work_dir, f"{name}-{vocab_size}"),
                                                       lowercase=args.lowercase)
                metrics = evaluate(vocab_file, held_out, args.lowercase)
                result = dict(corpus=args.corpus, lowercase=args.lowercase, learner=name, asked=vocab_size,
                              size=len(tokens), learn_seconds=seconds, deterministic=rerun == tokens, **metrics)
                results.append(result)
                print(f"| {args.corpus} | {'uncased' if args.lowercase else 'cased'} | {name} | {vocab_size} | "
                      f"{len(tokens)} | {metrics['unk_per_1k_words']:.2f} | {metrics['tokens_per_word']:.3f} | "
                      f"{seconds:.1f} | {'yes' if rerun == tokens else 'no'} |", flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
