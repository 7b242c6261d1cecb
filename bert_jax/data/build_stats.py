"""A finished build's stats.json: the parts' counters summed (documents, drops, reader problems, examples and
output shards per length and split), with the example kind's own entries and warnings, and the vocab it used."""

from __future__ import annotations

from typing import Any, Sequence

from bert_jax.data.build_layout import SPLITS, BuildConfig, OutputShard
from bert_jax.data.examples.base import ExampleKind, sum_counters

# Located notes per problem kind kept in stats.json.
MAX_NOTES = 5
# A split of fewer documents than this is "tiny": its loss measures a document or two, not the corpus.
TINY_SPLIT_DOCUMENTS = 2


def _small_splits(config: BuildConfig, documents: dict[str, dict[str, Any]], per_length: dict[str, Any],
                  warnings: list[str]) -> tuple[list[str], list[str]]:
    """(empty, tiny) splits as `seq_L/SPLIT`, each with a warning: a trainer stops at its first evaluation on an
    empty eval split, and a one-document corpus has one (or an empty train split, with --eval_fraction near 1)."""
    empty, tiny = [], []
    total = sum(documents[split].get("documents", 0) for split in SPLITS)
    for split in SPLITS:
        count = documents[split].get("documents", 0)
        fix = ("more documents" if split == "train" else
               "more documents or a larger --eval_fraction" + (" (it is 0)" if config.eval_fraction == 0 else ""))
        for length in config.max_seq_lengths:
            examples = per_length[str(length)][split].get("examples", 0)
            name = f"seq_{length}/{split}"
            if not examples:
                empty.append(name)
                warnings.append(f"{name} is empty: {count:,} of the corpus's {total:,} documents fell in the "
                                f"{split} split, giving no examples; a trainer cannot use it: rebuild with {fix}")
            elif count < TINY_SPLIT_DOCUMENTS:
                tiny.append(name)
                warnings.append(f"{name} is tiny: {examples:,} examples from {count:,} document of the corpus's "
                                f"{total:,}; its loss measures that one document: rebuild with {fix}")
    return empty, tiny


def summarize(config: BuildConfig, kind: ExampleKind, part_stats: Sequence[dict[str, Any]],
              outputs: Sequence[OutputShard], vocab: dict[str, Any]) -> dict[str, Any]:
    """The dataset's stats.json: sums over parts plus rates, fractions and warnings; `vocab` is recorded as given
    (`Vocab.summary()`: kind, size, special ids), so a reader of the dataset knows what it was tokenized with."""
    maxima = ("longest_document_tokens", "longest_sentence_tokens")
    documents = {split: sum_counters((p["documents"][split] for p in part_stats), maxima) for split in SPLITS}
    all_documents = sum_counters(documents.values(), maxima)
    dropped = sum_counters(p["dropped"] for p in part_stats)
    source = sum_counters(p["source"] for p in part_stats)
    source_notes: dict[str, list[str]] = {}
    for part in part_stats:  # where the first few problems of each kind are (file:line: why)
        for name, notes in part.get("source_notes", {}).items():
            source_notes.setdefault(name, []).extend(notes[:MAX_NOTES - len(source_notes.get(name, []))])
    per_length, warnings = kind.summarize(config, part_stats, documents)
    total_examples = 0
    for length in config.max_seq_lengths:
        entry = per_length[str(length)]
        for split in SPLITS:
            examples = entry[split].get("examples", 0)
            entry[split]["shards"] = sum(1 for o in outputs if o.length == length and o.split == split)
            entry[f"{split}_examples"] = examples
            total_examples += examples
    single_document_shards = sum(1 for p in part_stats for split in SPLITS
                                 if p["documents"][split].get("documents", 0) == 1)
    tokens = all_documents.get("tokens", 0)
    overall = {
        "input_shards": len(part_stats),
        "documents": all_documents.get("documents", 0),
        "sentences": all_documents.get("sentences", 0),
        "tokens": tokens,
        "unk_tokens": all_documents.get("unk_tokens", 0),
        "unknown_token_rate": all_documents.get("unk_tokens", 0) / tokens if tokens else 0.0,
        "one_sentence_documents": all_documents.get("one_sentence_documents", 0),
        "single_document_shard_splits": single_document_shards,
        "examples": total_examples,
    }
    if not overall["documents"]:
        warnings.append("no document with at least one token was found: the dataset is empty")
    else:
        overall["empty_splits"], overall["tiny_splits"] = _small_splits(config, documents, per_length, warnings)
    return {"overall": overall, "documents": documents, "dropped": dropped, "source": source,
            "source_notes": source_notes, "per_length": per_length, "warnings": warnings, "vocab": vocab,
            "example_kind": config.example_kind}
