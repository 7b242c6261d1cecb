"""CLI: count a built dataset's train tokens ahead of a run, for frequency-smoothed masking (`token_counts.py`).

    python -m bert_jax.data.count_tokens DATA_DIR [--max_seq_length 128,512] [--output FILE] [--force]

The loader counts them itself when the file is missing; counting ahead does it once for a multi-host job, and
`--output` counts a directory this machine cannot write (copy the file into it afterwards).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from bert_jax import errors
from bert_jax.data import token_counts
from bert_jax.data.build_layout import token_counts_path
from bert_jax.data.inspect import built_lengths
from bert_jax.data.masking import VocabInfo
from bert_jax.data.pipeline import shard_paths
from bert_jax.errors import InputError

PROG = token_counts.COMMAND


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Count the token ids of a built dataset's train examples into "
                               "DATA_DIR/token_counts.seq_L.npy (for frequency-smoothed masking, data.mlm_smoothing).")
    parser.add_argument("data_dir", help="a directory written by python -m bert_jax.data.build")
    parser.add_argument("--max_seq_length", default="",
                        help="comma-separated lengths to count (default: every seq_L in DATA_DIR)")
    parser.add_argument("--output", default=None,
                        help="write here instead of DATA_DIR/token_counts.seq_L.npy (one length only), e.g. when "
                             "DATA_DIR is read-only here: copy the file there afterwards")
    parser.add_argument("--force", action="store_true", help="count again even if the file exists")
    args = parser.parse_args(argv)
    try:
        try:
            lengths = [int(part) for part in args.max_seq_length.split(",") if part.strip()]
        except ValueError:
            raise InputError(f"--max_seq_length takes comma-separated integers, got {args.max_seq_length!r}") from None
        lengths = lengths or built_lengths(args.data_dir)
        if args.output and len(lengths) != 1:
            raise InputError(f"--output takes one length's counts; pass one --max_seq_length (asked for {lengths})")
        vocab_size = VocabInfo.from_data_dir(args.data_dir).vocab_size
        for length in lengths:
            path = args.output or token_counts_path(args.data_dir, length)
            if os.path.exists(path) and not args.force:
                print(f"token counts: {path} exists (--force counts again)", file=sys.stderr)
                continue
            paths = shard_paths(args.data_dir, max_seq_length=length, split="train")
            token_counts.write_counts(path, token_counts.count_records(paths, vocab_size, label=f"seq_{length} train"))
            print(f"token counts: wrote {path}", file=sys.stderr)
    except errors.UserError as error:
        return errors.report(PROG, error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
