"""CLI: what a built dataset holds, and what the model will see after masking.

    python -m bert_jax.data.inspect DIR                       # DIR/stats.json as tables and a length histogram
    python -m bert_jax.data.inspect DIR --masked --num 20000  # + masking statistics measured by the real loader
    python -m bert_jax.data.inspect DIR --decode 3            # + three examples as text (masked with --masked)
    python -m bert_jax.data.inspect DIR --masked --json       # one JSON object (stats.json in full under "stats")

The masked statistics come from `pipeline.make_loader` (shuffled, one epoch, host 0 of 1), so they check
the pipeline users train on, not a re-implementation of it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Iterator, Sequence

import numpy as np

from bert_jax import errors
from bert_jax.data import examples as example_kinds, inspect_table
from bert_jax.data.build_layout import stored_example_kind
from bert_jax.data.masking import MaskingConfig, VocabInfo
from bert_jax.data.tokenizers import vocabs
from bert_jax.errors import InputError

PROG = "python -m bert_jax.data.inspect"

_BATCH_SIZE = 256


def built_lengths(data_dir: str) -> list[int]:
    if not os.path.isdir(data_dir):
        raise InputError(
            f"dataset directory {data_dir!r} does not exist: build one with `python -m bert_jax.data.build`"
        )
    return sorted(int(name[4:]) for name in os.listdir(data_dir) if name.startswith("seq_") and name[4:].isdigit())


def default_max_predictions(max_seq_length: int, masked_lm_prob: float = 0.15) -> int:
    """ceil(masked_lm_prob * L): 20 for 128 as the original's recipe (it uses 80 for 512, this gives 77)."""
    return max(1, math.ceil(masked_lm_prob * max_seq_length))


def read_stats(data_dir: str) -> dict:
    path = os.path.join(data_dir, "stats.json")
    if not os.path.isfile(path):
        raise InputError(
            f"{path} does not exist: {data_dir!r} is not a finished build (the builder writes stats.json last); "
            f"run `python -m bert_jax.data.build ... --output {data_dir}` to completion"
        )
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as error:
            raise InputError(f"{path}:{error.lineno}: not valid JSON ({error.msg}); rebuild the dataset") from None


def decode_tokens(
    tokens: Sequence[str], shown_ids: np.ndarray, original_ids: np.ndarray | None = None,
    masked_positions: Sequence[int] = (), kind: str = vocabs.WORDPIECE,
) -> str:
    """WordPiece tokens joined by spaces with `##` pieces merged, or byte-level BPE tokens as the text they encode;
    a masked position as `<shown=original>`."""
    masked = set(int(p) for p in masked_positions)
    original_ids = shown_ids if original_ids is None else original_ids
    if kind == vocabs.BPE:
        return _decode_byte_level(tokens, shown_ids, original_ids, masked)
    pieces: list[str] = []
    for position, (shown, original) in enumerate(zip(shown_ids, original_ids)):
        original_token = tokens[int(original)]
        glue = original_token.startswith("##") and bool(pieces)
        if position in masked:
            text = f"<{tokens[int(shown)]}={original_token}>"
        else:
            text = original_token[2:] if glue else original_token
        if glue:
            pieces[-1] += text
        else:
            pieces.append(text)
    return " ".join(pieces)


def _decode_byte_level(tokens: Sequence[str], shown_ids: np.ndarray, original_ids: np.ndarray,
                       masked: set[int]) -> str:
    """Runs of unmasked tokens decoded together (a character's bytes may span tokens); each side of a masked
    position decoded alone, its leading space (`Ġ`) kept outside the brackets."""
    from tokenizers import decoders

    decoder = decoders.ByteLevel()
    texts: list[str] = []
    run: list[str] = []
    for position, (shown, original) in enumerate(zip(shown_ids, original_ids)):
        if position not in masked:
            run.append(tokens[int(original)])
            continue
        texts.append(decoder.decode(run))
        run = []
        original_text = decoder.decode([tokens[int(original)]])
        space = " " if original_text.startswith(" ") else ""
        texts.append(f"{space}<{decoder.decode([tokens[int(shown)]]).strip()}={original_text.strip()}>")
    texts.append(decoder.decode(run))
    return "".join(texts)


class _Progress:
    """A stderr line at most every two seconds: count, rate, ETA."""

    def __init__(self, total: int, what: str) -> None:
        self._total, self._what = total, what
        self._start = self._last = time.monotonic()

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now - self._last < 2.0:
            return
        self._last = now
        rate = done / max(now - self._start, 1e-9)
        eta = (self._total - done) / max(rate, 1e-9)
        print(f"{self._what}: {done}/{self._total} ({rate:,.0f}/s, ETA {eta:.0f}s)", file=sys.stderr, flush=True)


def masked_batches(
    data_dir: str, *, max_seq_length: int, split: str, num_examples: int, config: MaskingConfig, seed: int
) -> Iterator[dict[str, np.ndarray]]:
    """Batches of the real loader (one shuffled epoch, host 0 of 1) with padding rows removed, up to N rows."""
    from bert_jax.data.pipeline import make_loader  # grain import only when masking is asked for

    loader = make_loader(
        data_dir, max_seq_length=max_seq_length, split=split, global_batch_size=_BATCH_SIZE,
        max_predictions=config.max_predictions, seed=seed, process_index=0, process_count=1, masking=config,
        num_epochs=1, shuffle=True, drop_remainder=False,
    )
    remaining = num_examples
    for batch in loader:
        real = np.flatnonzero(batch["example_weights"] > 0)[:remaining]
        yield {name: np.asarray(value)[real] for name, value in batch.items()}
        remaining -= len(real)
        if remaining <= 0:
            return


def masked_statistics(batches: Sequence[dict[str, np.ndarray]], vocab: VocabInfo) -> dict[str, float | int]:
    """Measured rates (`random_next_fraction` for sentence pairs only)."""
    num_examples = maskable = masked = mask_tokens = unchanged = random_next = total_length = 0
    with_pairs = all("next_sentence_labels" in batch for batch in batches)
    for batch in batches:
        weights = batch["masked_lm_weights"] > 0
        rows, slots = np.nonzero(weights)
        positions = batch["masked_lm_positions"][rows, slots]
        original_ids = np.array(batch["input_ids"])
        original_ids[rows, positions] = batch["masked_lm_ids"][rows, slots]
        shown = batch["input_ids"][rows, positions]
        in_sequence = batch["input_mask"] > 0
        special = (original_ids == vocab.cls_id) | (original_ids == vocab.sep_id) | (original_ids == vocab.pad_id)
        num_examples += len(weights)
        maskable += int(np.sum(in_sequence & ~special))
        masked += len(rows)
        mask_tokens += int(np.sum(shown == vocab.mask_id))
        unchanged += int(np.sum(shown == batch["masked_lm_ids"][rows, slots]))
        random_next += int(np.sum(batch["next_sentence_labels"])) if with_pairs else 0
        total_length += int(np.sum(in_sequence))
    if num_examples == 0:
        raise InputError("no examples to measure: the split is empty")
    statistics = {
        "num_examples": num_examples,
        "masked_positions": masked,
        "masked_fraction": masked / max(maskable, 1),
        "mask_token_fraction": mask_tokens / max(masked, 1),
        "random_token_fraction": (masked - mask_tokens - unchanged) / max(masked, 1),
        "unchanged_fraction": unchanged / max(masked, 1),
        "random_next_fraction": random_next / num_examples,
        "mean_length": total_length / num_examples,
    }
    if not with_pairs:
        del statistics["random_next_fraction"]
    return statistics


def stored_examples(data_dir: str, *, max_seq_length: int, split: str, count: int) -> list:
    """The first `count` examples in storage order (`records.PairExample`s or `records.PackedExample`s)."""
    import grain

    from bert_jax.data.pipeline import shard_paths

    decode = example_kinds.example_kind(stored_example_kind(data_dir)).decode
    source = grain.sources.ArrayRecordDataSource(shard_paths(data_dir, max_seq_length=max_seq_length, split=split))
    return [decode(source[i]) for i in range(min(count, len(source)))]


def _describe_example(vocab: vocabs.Vocab, shown, original, positions, label: int | None, length: int) -> dict:
    description = {
        "length": int(length),
        "text": decode_tokens(vocab.tokens, np.asarray(shown)[:length], np.asarray(original)[:length], positions,
                              kind=vocab.kind),
    }
    if label is not None:  # sentence pairs only
        description["next_sentence_label"] = int(label)
    return description


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Summarise a built dataset's stats.json (a table and a length histogram; --json for all of it) "
        "and, optionally, statistics measured after online masking.",
    )
    parser.add_argument("data_dir", help="output directory of `python -m bert_jax.data.build`")
    add = parser.add_argument
    add("--max_seq_length", type=int, default=None, help="which seq_L to read (default: the smallest built)")
    add("--split", default="train", choices=("train", "eval"), help="split to read (default: train)")
    add("--masked", action="store_true", help="measure masking rates, NSP fraction and length over --num examples")
    add("--num", type=int, default=10_000, help="examples to measure with --masked (default: 10000)")
    add("--decode", type=int, default=0, metavar="K", help="show K examples as text (masked with --masked)")
    add("--json", action="store_true", help="print one JSON object (the full stats.json and what else was asked) "
        "instead of the tables")
    add("--seed", type=int, default=0, help="shuffle and masking seed (default: 0)")
    add("--max_predictions", type=int, default=None, help="masked positions per sequence (default: ceil(0.15 * L))")
    add("--masked_lm_prob", type=float, default=0.15, help="fraction of maskable tokens to predict (default: 0.15)")
    add("--whole_word", action="store_true", help="whole-word masking")
    return parser


def inspect(args: argparse.Namespace) -> dict:
    """Everything the CLI reports, as one JSON-serialisable dict."""
    lengths = built_lengths(args.data_dir)
    report: dict = {"data_dir": args.data_dir, "stats": read_stats(args.data_dir), "built_lengths": lengths}
    if not (args.masked or args.decode):
        return report
    if not lengths:
        raise InputError(f"{args.data_dir} holds no seq_L directories: the build wrote no examples")
    max_seq_length = args.max_seq_length if args.max_seq_length is not None else lengths[0]
    if args.num <= 0 or args.decode < 0:
        raise InputError(f"--num must be positive and --decode non-negative, got {args.num} and {args.decode}")
    stored_vocab = vocabs.from_data_dir(args.data_dir)
    vocab = VocabInfo.from_vocab(stored_vocab)
    report.update(max_seq_length=max_seq_length, split=args.split)
    if args.masked:
        config = MaskingConfig(
            max_predictions=args.max_predictions or default_max_predictions(max_seq_length, args.masked_lm_prob),
            masked_lm_prob=args.masked_lm_prob, whole_word=args.whole_word,
        )
        progress = _Progress(args.num, "masking")
        batches, done = [], 0
        for batch in masked_batches(
            args.data_dir, max_seq_length=max_seq_length, split=args.split, num_examples=args.num, config=config,
            seed=args.seed,
        ):
            batches.append(batch)
            done += len(batch["input_ids"])
            progress.update(done)
        report["masking_config"] = {
            "max_predictions": config.max_predictions, "masked_lm_prob": config.masked_lm_prob,
            "mask_token_prob": config.mask_token_prob, "random_token_prob": config.random_token_prob,
            "whole_word": config.whole_word, "seed": args.seed,
        }
        report["masked"] = masked_statistics(batches, vocab)
        if args.decode:
            shown_rows = []
            for batch in batches:
                for row in range(len(batch["input_ids"])):
                    weights = batch["masked_lm_weights"][row] > 0
                    positions = batch["masked_lm_positions"][row][weights]
                    original = np.array(batch["input_ids"][row])
                    original[positions] = batch["masked_lm_ids"][row][weights]
                    labels = batch.get("next_sentence_labels")
                    shown_rows.append(_describe_example(
                        stored_vocab, batch["input_ids"][row], original, positions,
                        None if labels is None else labels[row], int(batch["input_mask"][row].sum()),
                    ))
                    if len(shown_rows) == args.decode:
                        break
                if len(shown_rows) == args.decode:
                    break
            report["examples"] = shown_rows
    elif args.decode:
        report["examples"] = [
            _describe_example(stored_vocab, ex.input_ids, ex.input_ids, (), getattr(ex, "next_sentence_label", None),
                              len(ex.input_ids))
            for ex in stored_examples(args.data_dir, max_seq_length=max_seq_length, split=args.split, count=args.decode)
        ]
    return report


def format_text(report: dict) -> str:
    lines = [inspect_table.format_stats(os.path.join(report["data_dir"], "stats.json"), report["stats"])]
    if "masked" in report:
        config = report["masking_config"]
        lines.append(
            f"== after masking: seq_{report['max_seq_length']} {report['split']}, "
            f"{report['masked']['num_examples']} examples, seed {config['seed']} =="
        )
        expected = {
            "masked_fraction": f"configured {config['masked_lm_prob']} of maskable tokens (rounded per sequence)",
            "mask_token_fraction": f"configured {config['mask_token_prob']} of masked positions",
            "random_token_fraction": f"configured {config['random_token_prob']} of masked positions",
            "unchanged_fraction": (
                f"configured {1 - config['mask_token_prob'] - config['random_token_prob']:.2g} of masked positions"
            ),
            "random_next_fraction": "built with 0.5",
            "mean_length": "tokens including [CLS] and [SEP] (<s> and </s>)",
        }
        for name, note in expected.items():
            if name in report["masked"]:  # random_next_fraction: sentence pairs only
                lines.append(f"{name:<24}{report['masked'][name]:>10.4f}   ({note})")
    for number, example in enumerate(report.get("examples", [])):
        label = example.get("next_sentence_label")
        nsp = "" if label is None else ", random next" if label else ", true next"
        lines.append(f"-- example {number}: {example['length']} tokens{nsp} --")
        lines.append(example["text"])
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = inspect(args)
    # ValueError too: the masking settings (--max_predictions, --masked_lm_prob) are checked by MaskingConfig,
    # which raises ValueError, and a bad flag deserves one line, not a traceback.
    except (errors.UserError, ValueError) as error:
        return errors.report(PROG, error)
    print(json.dumps(report) if args.json else format_text(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
