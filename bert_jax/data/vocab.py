"""CLI: learn a vocab from a corpus: BERT's WordPiece (`vocab.txt` + `tokenizer_config.json`, the default) or
RoBERTa's byte-level BPE (`vocab.json`, `merges.txt`, `tokenizer.json`, `tokenizer_config.json`,
`special_tokens_map.json`).

    python -m bert_jax.data.vocab --input 'corpus/*.txt' --output vocab/ --vocab_size 30000 [--lowercase]
    python -m bert_jax.data.vocab --kind bpe --input 'corpus/*.txt' --output bpe/ --vocab_size 50265

It reads the corpus with `sources` (the same readers and cleaning as the dataset build) and learns with
`tokenizers.wordpiece` or `tokenizers.bpe`, where each kind's format, tokenizer and learner are
(docs/data_vocab.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Iterator, Sequence

from bert_jax import errors, storage
from bert_jax.data.sources import InputShard, SourceStats, list_input_shards
from bert_jax.data.tokenizers import bpe, vocabs, wordpiece
from bert_jax.data.writable import check_output_directory
from bert_jax.errors import InputError

PROG = "python -m bert_jax.data.vocab"


class ReadProgress:
    """Counts documents and sentences while input is read; prints count, rate and ETA (by shards) to stderr."""

    def __init__(self, total_shards: int, every_seconds: float = 5.0, stream=None) -> None:
        self.total_shards = total_shards
        self.every_seconds = every_seconds
        self.stream = stream
        self.start = self.last = time.monotonic()
        self.shards_done = self.documents = self.sentences = 0

    def update(self, sentences: int) -> None:
        self.documents += 1
        self.sentences += sentences
        now = time.monotonic()
        if now - self.last >= self.every_seconds:
            self.last = now
            self.report()

    def shard_done(self) -> None:
        self.shards_done += 1

    def report(self, final: bool = False) -> None:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        if final:
            eta = "done"
        elif self.shards_done:
            eta = f"ETA {elapsed * (self.total_shards - self.shards_done) / self.shards_done:.0f}s"
        else:
            eta = "ETA unknown"
        print(f"read {self.documents:,} documents, {self.sentences:,} sentences "
              f"({self.sentences / elapsed:,.0f} sentences/s), shard {self.shards_done}/{self.total_shards}, "
              f"{elapsed:.0f}s, {eta}", file=self.stream or sys.stderr, flush=True)


def iterate_sentences(shards: Sequence[InputShard], stats: SourceStats, *, max_sentences: int = 0,
                      progress: ReadProgress | None = None, join_documents: bool = False) -> Iterator[str]:
    """Cleaned sentences of all shards in order, optionally stopping after `max_sentences` (0 = all).

    `join_documents`: one text per document instead, its sentences joined by single spaces, which is what the build
    tokenizes with a byte-level BPE (`Vocab.sentence_texts`), so the learner counts the words it will see.
    """
    emitted = 0
    for shard in shards:
        for document in shard.documents(stats):
            if progress is not None:
                progress.update(len(document))
            if join_documents:
                kept = document[:max_sentences - emitted] if max_sentences else document
                yield " ".join(kept)
                emitted += len(kept)
                if emitted == max_sentences:
                    return
                continue
            for sentence in document:
                yield sentence
                emitted += 1
                if emitted == max_sentences:
                    return
        if progress is not None:
            progress.shard_done()


# WordPiece-only options: absent when not given (argparse.SUPPRESS), so a BPE run can refuse them (they would do
# nothing).
_WORDPIECE_OPTIONS = {"learner": wordpiece.DEFAULT_LEARNER,
                      "sentencepiece_model_type": wordpiece.DEFAULT_SENTENCEPIECE_MODEL_TYPE,
                      "max_alphabet": wordpiece.DEFAULT_MAX_ALPHABET}



def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Learn a vocab from a corpus. --kind wordpiece (BERT): OUTPUT/vocab.txt ([PAD]=0, [UNK], [CLS], "
                    "[SEP], [MASK] first) and OUTPUT/tokenizer_config.json (Hugging Face BertTokenizer). --kind "
                    "bpe (RoBERTa): a byte-level BPE with <s>=0, <pad>=1, </s>=2, <unk>=3 and <mask> last, as "
                    "vocab.json, merges.txt, tokenizer.json, tokenizer_config.json and special_tokens_map.json "
                    "(Hugging Face RobertaTokenizer).",
        formatter_class=errors.HelpFormatter)
    parser.add_argument("--kind", choices=vocabs.KINDS, default=vocabs.WORDPIECE,
                        help="wordpiece: BERT's WordPiece; bpe: RoBERTa's byte-level BPE (cased, no [UNK] ever)")
    parser.add_argument("--input", nargs="+", required=True,
                        help="files, directories, globs or tfds:NAME[/CONFIG][:VERSION][split]; BERT-format text "
                             "(.txt[.gz|.bz2]), JSONL or Parquet")
    parser.add_argument("--output", required=True, help="directory to write the vocab files to")
    parser.add_argument("--vocab_size", type=int, default=30000,
                        help="number of tokens (ids), special tokens included; RoBERTa's is 50265")
    parser.add_argument("--min_frequency", type=int, default=bpe.DEFAULT_MIN_FREQUENCY,
                        help="bpe: merge only pairs seen at least this often")
    casing = parser.add_mutually_exclusive_group()
    casing.add_argument("--lowercase", dest="lowercase", action="store_true",
                        help="wordpiece: uncased vocab (lowercase and strip accents, as bert-base-uncased)")
    casing.add_argument("--cased", dest="lowercase", action="store_false",
                        help="wordpiece: keep case and accents (the default)")
    parser.add_argument("--learner", choices=wordpiece.LEARNERS, default=argparse.SUPPRESS,
                        help="wordpiece: sentencepiece (default): sentencepiece BPE (or unigram) pieces converted to "
                             "WordPiece form; measured on held-out text it ties wordpiece on tokens per word "
                             "(within about 1%%) with fewer [UNK], and it is deterministic and reaches the exact "
                             "--vocab_size (docs/data_vocab.md). wordpiece: HF tokenizers' WordPieceTrainer, "
                             "whose vocab can differ from run to run (tokenizers issue #1794)")
    parser.add_argument("--sentencepiece_model_type", choices=wordpiece.SENTENCEPIECE_MODEL_TYPES,
                        default=argparse.SUPPRESS,
                        help=f"wordpiece: model type of the sentencepiece learner (default "
                             f"{wordpiece.DEFAULT_SENTENCEPIECE_MODEL_TYPE})")
    parser.add_argument("--max_alphabet", type=int, default=argparse.SUPPRESS,
                        help=f"wordpiece: keep this many most frequent characters; rarer characters become [UNK] "
                             f"(default {wordpiece.DEFAULT_MAX_ALPHABET})")
    parser.add_argument("--max_sentences", type=int, default=0,
                        help="learn from the first N sentences only (0 = all)")
    parser.add_argument("--text_field", default="text", help="JSONL/Parquet field or TFDS feature with the text")
    parser.add_argument("--input_format", default="auto", choices=("auto", "text", "jsonl", "parquet"),
                        help="auto: by file extension (.jsonl/.json/.ndjson, .parquet, else BERT-format text)")
    parser.add_argument("--tfds_data_dir", default=None, help="TFDS data dir for tfds: inputs")
    parser.add_argument("--no_wiki_cleanup", action="store_true",
                        help="keep list, table and header lines of raw (JSONL/Parquet/TFDS) documents")
    return parser.parse_args(argv)


def _wordpiece_options(args: argparse.Namespace) -> dict[str, object]:
    """The WordPiece-only options with their defaults; given with --kind bpe, an error (they would do nothing)."""
    given = [f"--{name}" for name in _WORDPIECE_OPTIONS if hasattr(args, name)]
    given += ["--lowercase"] if args.lowercase else []
    if given and args.kind == vocabs.BPE:
        raise InputError(f"{', '.join(given)}: options of --kind wordpiece, not of --kind bpe (a byte-level BPE "
                         f"vocab is cased and has one learner)")
    options = {name: getattr(args, name, default) for name, default in _WORDPIECE_OPTIONS.items()}
    if options["max_alphabet"] <= 0:
        raise InputError(f"--max_alphabet must be a positive number of characters to keep, got "
                         f"{options['max_alphabet']}; e.g. {wordpiece.DEFAULT_MAX_ALPHABET} (the default)")
    return options


def _learn_and_write(args: argparse.Namespace, options: dict[str, object], output: str):
    """Learns the vocab of `args` and writes its files to `output` (a local directory)."""
    notes: list[str] = []
    shards = list_input_shards(args.input, text_field=args.text_field, input_format=args.input_format,
                               tfds_data_dir=args.tfds_data_dir, wiki_cleanup=not args.no_wiki_cleanup,
                               notes=notes)
    for note in notes:  # what each directory or glob took and skipped
        print(note, file=sys.stderr)
    stats = SourceStats()
    progress = ReadProgress(len(shards))
    sentences = iterate_sentences(shards, stats, max_sentences=args.max_sentences, progress=progress,
                                  join_documents=args.kind == vocabs.BPE)
    started = time.monotonic()
    if args.kind == vocabs.BPE:
        tokenizer = bpe.learn_bpe(sentences, args.vocab_size, min_frequency=args.min_frequency)
        progress.report(final=True)
        vocab_path = bpe.write_vocab_dir(tokenizer, output)
        size, learner = tokenizer.get_vocab_size(with_added_tokens=True), "byte-level BPE"
        described = f"byte-level BPE, <mask> id {tokenizer.token_to_id(bpe.MASK)}"
    else:
        tokens = wordpiece.learn_vocab(sentences, args.vocab_size, lowercase=args.lowercase,
                                       learner=options["learner"], max_alphabet=options["max_alphabet"],
                                       sentencepiece_model_type=options["sentencepiece_model_type"])
        progress.report(final=True)
        vocab_path = wordpiece.write_vocab_dir(tokens, output, lowercase=args.lowercase)
        size, learner = len(tokens), f"the {options['learner']} learner"
        described = f"{options['learner']}, {'uncased' if args.lowercase else 'cased'}"
    return vocab_path, size, learner, described, stats, started


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        options = _wordpiece_options(args)
        if not storage.is_remote(args.output):
            check_output_directory(args.output)  # before the learning, which can take hours, not after
        with storage.staged_output(args.output) as output:  # gs://: written locally, uploaded at the end
            vocab_path, size, learner, described, stats, started = _learn_and_write(args, options, output)
        vocab_path = vocab_path if output == args.output else os.path.join(args.output, os.path.basename(vocab_path))
    except errors.UserError as error:
        return errors.report(PROG, error)
    if size < args.vocab_size:
        print(f"warning: the corpus supports only {size:,} tokens with {learner}, fewer than --vocab_size "
              f"{args.vocab_size:,}; set the model's vocab_size to {size:,}", file=sys.stderr)
    print(f"wrote {vocab_path}: {size:,} tokens ({described}) in {time.monotonic() - started:.1f}s; "
          f"input: {json.dumps(stats.to_dict())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
