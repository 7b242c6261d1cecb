"""Token classification (NER, chunking, POS) on CoNLL-2003-style data: the `conll` task.

Two layouts in `--data DIR`:

- CoNLL text files as shipped (`train.txt` or `eng.train`; dev `dev.txt`, `valid.txt`, `eng.testa` ...):
  whitespace-separated columns, the token first and the tag in `config.finetune.tag_column` (default -1, the last),
  a blank line between sentences, `-DOCSTART-` lines skipped. Every token line of a file has the same number of
  columns.
- The Hugging Face `datasets` export (`train.jsonl`/`.parquet`, dev `validation`/`dev`/`valid`): rows with a `tokens`
  list and a `ner_tags` list, of tag names or of ids (then `config.finetune.labels` gives the names in id order,
  as the dataset's `features["ner_tags"].feature.names`).

The label set is `config.finetune.labels`, else the sorted distinct tags of the train split; a dev tag outside it
is an error naming the file and line. Examples are words with tag indices; `token_encoding.py` aligns them to
sub-tokens.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterator

from bert_jax.data.tasks import tables
from bert_jax.data.tasks.base import Task, check_not_empty, label_index
from bert_jax.data.tasks.split_files import find_split, setting
from bert_jax.errors import InputError

DOCSTART = "-DOCSTART-"
TOKENS, TAGS = "tokens", "ner_tags"  # the columns of the datasets export
STEMS = {"train": ("train", "eng.train"),
         "dev": ("dev", "valid", "validation", "eng.testa", "testa")}
TEXT_EXTENSIONS = (".txt", ".conll", "")  # "": CoNLL-2003's own names (eng.train)
TABLE_EXTENSIONS = (".jsonl", ".parquet")


@dataclasses.dataclass(frozen=True)
class TaggedSentence:
    words: tuple[str, ...]
    tags: tuple[int, ...]  # label indices, one per word


def split_path(root: Path, split: str) -> Path:
    return find_split(root, STEMS[split], TEXT_EXTENSIONS + TABLE_EXTENSIONS, "conll")


def text_sentences(path: Path, tag_column: int) -> Iterator[tuple[list[str], list[str], list[str]]]:
    """(where, words, tag names) of each sentence of a CoNLL text file; `where` names each word's file and line."""
    width, wheres, words, tags = None, [], [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields or fields[0] == DOCSTART:
                if words:
                    yield wheres, words, tags
                wheres, words, tags = [], [], []
                continue
            if width is None:
                width = len(fields)
                if not -width <= tag_column < width or tag_column in (0, -width):
                    raise InputError(f"{path}:{number}: {width} columns, so config.finetune.tag_column={tag_column} "
                                     f"is not a tag column (the token is column 0); choose one of 1..{width - 1} "
                                     f"or -1..-{width - 1}")
            elif len(fields) != width:
                raise InputError(f"{path}:{number}: {len(fields)} whitespace-separated columns where the file's "
                                 f"first token line has {width}: a token holds a space or a column is missing; fix "
                                 "the line")
            wheres.append(f"{path}:{number}")
            words.append(fields[0])
            tags.append(fields[tag_column])
    if words:
        yield wheres, words, tags


def table_sentences(path: Path, names_given: bool) -> Iterator[tuple[list[str], list[str], list]]:
    """(where, words, tags) of each row of a datasets export; tags as stored: names, or ids, which need the names in
    `config.finetune.labels` (`names_given`)."""
    for where, row in tables.rows(path):
        missing = [c for c in (TOKENS, TAGS) if c not in row]
        if missing:
            raise InputError(f"{where}: no column(s) {missing}; a datasets export of a token-classification task "
                             f"has {TOKENS!r} and {TAGS!r} (the row has {sorted(row)})")
        words, tags = list(row[TOKENS]), list(row[TAGS])
        if len(words) != len(tags):
            raise InputError(f"{where}: {len(words)} tokens but {len(tags)} tags; every token needs one tag")
        if any(isinstance(tag, int) for tag in tags) and not names_given:
            raise InputError(f"{where}: the tags are ids: give their names in id order with "
                             "--config.finetune.labels=[...] (the dataset's features['ner_tags'].feature.names)")
        if words:
            yield [where] * len(words), [str(w) for w in words], tags


def sentences(path: Path, settings: Any) -> Iterator[tuple[list[str], list[str], list]]:
    """(where, words, tags) of each sentence of a split file of either layout; `where` names each word's line."""
    if path.suffix in TABLE_EXTENSIONS:
        return table_sentences(path, bool(setting(settings, "labels", [])))
    return text_sentences(path, int(setting(settings, "tag_column", -1)))


def tag_index(tag, labels: tuple[str, ...], where: str) -> int:
    if isinstance(tag, int):
        if not 0 <= tag < len(labels):
            raise InputError(f"{where}: tag id {tag} is outside config.finetune.labels ({len(labels)} names)")
        return tag
    return label_index(str(tag), labels, where)


class TokenTask(Task):
    def label_names(self, root: Path, settings: Any) -> tuple[str, ...]:
        given = tuple(str(name) for name in setting(settings, "labels", []))
        if given:
            return given
        seen = set()
        for _, _, tags in sentences(split_path(root, "train"), settings):
            seen.update(str(tag) for tag in tags)
        return tuple(sorted(seen))

    def read_split(self, root: Path, split: str, labels: tuple[str, ...], settings: Any) -> list[TaggedSentence]:
        path = split_path(root, split)
        examples = [TaggedSentence(tuple(words), tuple(tag_index(t, labels, where) for t, where in zip(tags, wheres)))
                    for wheres, words, tags in sentences(path, settings)]
        return check_not_empty(examples, path)


# Entity-level precision, recall and F1 as seqeval (HF run_ner's metrics), and the accuracy over labelled tokens.
CONLL = TokenTask("conll", (), "", ("precision", "recall", "f1", "accuracy"), "f1", objective="token_classification")
