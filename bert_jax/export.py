"""CLI: write a Hugging Face BERT directory (model.safetensors, config.json, vocab, tokenizer config).

    python -m bert_jax.export --config configs/base_cased.py:tiny --init random --output DIR
    python -m bert_jax.export --init hf:SOME_HF_DIR --output DIR      # re-export / convert an HF checkpoint

The output loads with `transformers.BertForPreTraining.from_pretrained(DIR)` and `AutoTokenizer.from_pretrained(DIR)`.
Export writes only its own files inside DIR and refuses a non-empty DIR unless --force.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flax import nnx

from bert_jax import hf
from bert_jax.configuration import ConfigError, load_config, model_config
from bert_jax.data.sources import InputError
from bert_jax.model import BertForPreTraining


def _split_config_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """`--config.FIELD=VALUE` arguments (ml_collections style) apart from the rest."""
    rest, overrides = [], []
    for arg in argv:
        if arg.startswith("--config."):
            overrides.append(arg[len("--config.") :])
        else:
            rest.append(arg)
    return rest, overrides


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, overrides = _split_config_overrides(argv)
    parser = argparse.ArgumentParser(
        prog="python -m bert_jax.export",
        description="Export BERT weights to a Hugging Face directory. Extra --config.FIELD=VALUE arguments "
        "override config fields.",
    )
    parser.add_argument("--output", required=True, help="output directory (created; must be empty unless --force)")
    parser.add_argument("--config", default="configs/base_cased.py:tiny", help="config file[:variants] (default %(default)s)")
    parser.add_argument(
        "--init",
        default="random",
        help="'random' (a freshly initialised model of --config, seeded by config.seed) or 'hf:DIR' "
        "(an HF safetensors checkpoint); default %(default)s",
    )
    parser.add_argument("--vocab", default=None, help="vocab.txt to ship with the model (default: config.data.vocab_file)")
    parser.add_argument("--force", action="store_true", help="overwrite the export files in a non-empty --output")
    args = parser.parse_args(argv)
    try:
        if args.init == "random":
            config = load_config(args.config, overrides)
            model = BertForPreTraining(model_config(config), rngs=nnx.Rngs(config.seed))
            vocab = args.vocab or config.data.vocab_file
        elif args.init.startswith("hf:"):
            source = Path(args.init[3:])
            model, report = hf.load_pretrained(source)
            print(report.summary(), file=sys.stderr)
            vocab = args.vocab or (source / "vocab.txt" if (source / "vocab.txt").is_file() else None)
        else:
            parser.error(f"--init must be 'random' or 'hf:DIR', got {args.init!r}")
        if vocab is not None and not Path(vocab).is_file():
            raise hf.CheckpointError(f"vocab file {vocab} not found; pass --vocab PATH/vocab.txt")
        written = hf.export_pretrained(model, args.output, vocab_file=vocab, force=args.force)
    except (ConfigError, hf.CheckpointError, InputError) as e:
        print(f"export: error: {e}", file=sys.stderr)
        return 2
    print(f"exported {', '.join(p.name for p in written)} to {Path(args.output).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
