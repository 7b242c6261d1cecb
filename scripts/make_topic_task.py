"""Builds a topic-classification task from a corpus in BERT format (one sentence per line, a blank line between
documents) such as the bundled sample corpus: which kind of article (town, river, mountain, person, animal,
festival) a sentence comes from, read from the sentence alone.

The label of a document comes from its first sentence ("X is a town in ...", "X (1688 to 1757) was an astronomer
from ...", "The ... otter is an otter found in ..."); the examples are the other sentences, which repeat the
article's facts in other words ("Music is played in the square of Tovulbury", "Paalier studied astronomy with ..."),
so the task needs what a sentence is about, not the template of the first line. Documents, not sentences, are split
between train and dev (by a hash of the first sentence), so no dev sentence shares an article with a train one.
Documents whose first sentence matches no kind are counted and reported, never dropped silently.

    python scripts/make_topic_task.py --output /tmp/topics --train_examples 320
    python -m bert_jax.finetune --model runs/tiny/export --task table --data /tmp/topics \\
        --config.finetune.text_a=sentence --config.finetune.label_column=label

Writes OUTPUT/train.tsv and OUTPUT/dev.tsv (columns sentence, label) and prints the class counts and the
majority-class rate of dev.
"""

from __future__ import annotations

import argparse
import collections
import csv
import glob
import hashlib
import random
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

KINDS = (  # (label, pattern of the first sentence)
    ("town", re.compile(r" is a town in ")),
    ("river", re.compile(r" is a river in ")),
    ("mountain", re.compile(r" is a mountain in ")),
    ("person", re.compile(r"\(\d+ to \d+\) was an? ")),
    ("animal", re.compile(r" is an? [\w-]+ found in ")),
    ("festival", re.compile(r" is a yearly celebration in ")),
)


def documents(paths: list[str]) -> list[list[str]]:
    docs, current = [], []
    for path in paths:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.strip():
                current.append(line.strip())
            elif current:
                docs.append(current)
                current = []
        if current:
            docs.append(current)
            current = []
    return docs


def kind_of(first_sentence: str) -> str | None:
    for label, pattern in KINDS:
        if pattern.search(first_sentence):
            return label
    return None


def is_dev(first_sentence: str, dev_fraction: float) -> bool:
    digest = hashlib.sha256(first_sentence.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < dev_fraction * 2.0**64


def build(paths: list[str], dev_fraction: float, train_examples: int, seed: int):
    splits: dict[str, list[tuple[str, str]]] = {"train": [], "dev": []}
    unrecognised = 0
    for doc in documents(paths):
        label = kind_of(doc[0])
        if label is None:
            unrecognised += 1
            continue
        split = "dev" if is_dev(doc[0], dev_fraction) else "train"
        splits[split].extend((sentence, label) for sentence in doc[1:])
    rng = random.Random(seed)
    rng.shuffle(splits["train"])
    if train_examples:
        splits["train"] = splits["train"][:train_examples]
    return splits, unrecognised


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--inputs", default=str(REPO / "data/sample/corpus-*.txt"), help="corpus files (a glob)")
    parser.add_argument("--output", required=True, help="directory for train.tsv and dev.tsv")
    parser.add_argument("--dev_fraction", type=float, default=0.3, help="share of documents held out for dev")
    parser.add_argument("--train_examples", type=int, default=0,
                        help="keep this many train sentences, drawn at random (0 = all): a low-resource task")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train draw")
    args = parser.parse_args(argv)
    paths = sorted(glob.glob(args.inputs))
    if not paths:
        print(f"make_topic_task: error: --inputs {args.inputs} matches no file", file=sys.stderr)
        return 2
    splits, unrecognised = build(paths, args.dev_fraction, args.train_examples, args.seed)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        with open(output / f"{split}.tsv", "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\", lineterminator="\n")
            writer.writerow(["sentence", "label"])
            writer.writerows(rows)
        counts = collections.Counter(label for _, label in rows)
        print(f"{split}: {len(rows)} sentences, " + ", ".join(f"{k} {counts[k]}" for k, _ in KINDS))
    dev_counts = collections.Counter(label for _, label in splits["dev"])
    print(f"dev majority class {dev_counts.most_common(1)[0][0]}: "
          f"{dev_counts.most_common(1)[0][1] / len(splits['dev']):.3f} of dev")
    if unrecognised:
        print(f"skipped {unrecognised} documents whose first sentence names no known kind")
    print(f"wrote {output}/train.tsv and dev.tsv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
