"""A built dataset's stats.json as people read it: a summary table (corpus, vocab, examples per length and split) and
a length histogram per sequence length, drawn with text bars. `python -m bert_jax.data.inspect` prints this by
default; `--json` prints stats.json itself."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

HISTOGRAM_BINS = 8  # rows of a length histogram
BAR_WIDTH = 40  # characters of the longest bar
# (stats.json field of a split, its column header); a field the example kind does not count is left blank
SPLIT_COLUMNS = (("examples", "examples"), ("shards", "shards"), ("mean_length", "mean length"),
                 ("truncated_examples", "truncated"), ("random_next_fraction", "random next"))


def _format(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1 else f"{value:,.1f}"
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Columns padded to their widest cell: text left, numbers right."""
    cells = [list(header)] + [[_format(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    numeric = [all(isinstance(row[i], (int, float)) or row[i] is None for row in rows) for i in range(len(header))]

    def line(row):
        return "  ".join(cell.rjust(w) if right else cell.ljust(w) for cell, w, right in zip(row, widths, numeric))

    return [line(cells[0]), "  ".join("-" * w for w in widths)] + [line(row).rstrip() for row in cells[1:]]


def summary_rows(stats: Mapping[str, Any]) -> list[tuple[str, Any]]:
    overall, vocab = stats.get("overall", {}), stats.get("vocab", {})
    rows = [(name.replace("_", " "), overall[name]) for name in
            ("input_shards", "documents", "sentences", "tokens", "unknown_token_rate", "examples") if name in overall]
    if isinstance(vocab, Mapping) and vocab:
        rows.append(("vocab", f"{vocab.get('kind', '')} {_format(vocab.get('size', ''))}".strip()))
    rows.append(("example kind", stats.get("example_kind", "")))
    return rows


def split_rows(stats: Mapping[str, Any]) -> list[list[Any]]:
    rows = []
    for length, entry in sorted(stats.get("per_length", {}).items(), key=lambda item: int(item[0])):
        for split in ("train", "eval"):
            counters = entry.get(split, {})
            rows.append([int(length), split, *(counters.get(field) for field, _ in SPLIT_COLUMNS)])
    return rows


def histogram(counts: Sequence[int], bins: int = HISTOGRAM_BINS) -> list[str]:
    """`counts[i]` = examples of length i, grouped into `bins` ranges of lengths, each a bar scaled to the largest."""
    counts = list(counts)
    if not counts or not sum(counts):
        return ["(no examples)"]
    first = next(i for i, c in enumerate(counts) if c)
    width = max(1, math.ceil((len(counts) - first) / bins))
    groups = [(start, min(start + width, len(counts)) - 1, sum(counts[start:start + width]))
              for start in range(first, len(counts), width)]
    largest = max(total for _, _, total in groups)
    label_width = len(f"{groups[-1][0]}-{groups[-1][1]}")
    return [f"{f'{low}-{high}' if high > low else str(low):>{label_width}} | "
            f"{'#' * max(round(BAR_WIDTH * total / largest), 1 if total else 0):<{BAR_WIDTH}} {total:,}"
            for low, high, total in groups]


def format_stats(path: str, stats: Mapping[str, Any]) -> str:
    """The summary table, the per-length table, each train split's length histogram and the build's warnings."""
    lines = [f"== {path} ==", *table(("", "value"), summary_rows(stats)), ""]
    lines += table(("length", "split", *(header for _, header in SPLIT_COLUMNS)), split_rows(stats))
    for length, entry in sorted(stats.get("per_length", {}).items(), key=lambda item: int(item[0])):
        counts = entry.get("train", {}).get("length_histogram")
        if counts is not None:
            lines += ["", f"-- seq_{length} train: example lengths (tokens) --", *histogram(counts)]
    for warning in stats.get("warnings", []):
        lines.append(f"warning: {warning}")
    return "\n".join(lines)
