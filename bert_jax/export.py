"""CLI: write a Hugging Face BERT directory (model.safetensors, config.json, vocab, tokenizer config).

    python -m bert_jax.export --config configs/base_cased.py:tiny --init random --output DIR
    python -m bert_jax.export --init hf:SOME_HF_DIR --output DIR      # re-export / convert an HF checkpoint
    python -m bert_jax.export --workdir RUN [--step N] --output DIR   # a training run's latest (or given) checkpoint
    python -m bert_jax.export --model HF_DIR --format onnx --task fill-mask --output DIR   # model.onnx (onnx extra)
    python -m bert_jax.export --model WORKDIR/best --format onnx --task text-classification --output DIR

The output loads with `transformers.BertForPreTraining.from_pretrained(DIR)` and `AutoTokenizer.from_pretrained(DIR)`.
Export writes only its own files inside DIR and refuses a non-empty DIR unless --force.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from flax import nnx

from bert_jax import errors, models, objectives
from bert_jax.configuration import load_config, model_config, split_config_overrides
from bert_jax.errors import CheckpointError
from bert_jax.interop import hf, model_card
from bert_jax.training import checkpointing
from bert_jax.training.metrics import METRICS_FILE


def load_from_workdir(workdir: str, step: int | None = None):
    """The model of a run's checkpoint (parameters only) -> (model, vocab file or None, lowercase, step)."""
    model, vocab, lowercase, step, _ = load_run(workdir, step)
    return model, vocab, lowercase, step


def load_run(workdir: str, step: int | None = None):
    """`load_from_workdir`'s values and the run's `model_card.RunInfo` (its config, the step, the last eval of its
    metrics.jsonl at or before the step)."""
    model, config, step = checkpointing.load_run_model(workdir, step)
    data_dir = config.data.get("dir", "")
    candidates = (Path(config.data.vocab_file), Path(data_dir) / "vocab.txt",
                  Path(data_dir) / "tokenizer.json")  # the run's vocab, else the one its data was built with
    vocab = next((str(p) for p in candidates if p.is_file()), None)
    run = model_card.RunInfo(config, step, model_card.final_eval(Path(workdir) / METRICS_FILE, step))
    return model, vocab, bool(config.data.lowercase), step, run


def _onnx_exporter(task: str):
    from bert_jax.interop import onnx_runtime

    onnx_runtime.require_extra()
    from bert_jax.interop import onnx_export, onnx_tasks

    onnx_tasks.task(task)
    return onnx_export


def main(argv: list[str] | None = None) -> int:
    try:
        return _run(list(sys.argv[1:] if argv is None else argv))
    except errors.UserError as e:
        return errors.report("python -m bert_jax.export", e)


def _run(argv: list[str]) -> int:
    argv, overrides = split_config_overrides(argv)
    parser = argparse.ArgumentParser(
        prog="python -m bert_jax.export",
        description="Export a model of the family (BERT, RoBERTa, DistilBERT) to a Hugging Face directory, or to ONNX "
        "with --format onnx. Extra "
        "--config.FIELD=VALUE arguments override config fields.",
    )
    parser.add_argument("--output", required=True, help="output directory (created; must be empty unless --force)")
    parser.add_argument("--config", default="base_cased:tiny",
                        help="config file or bundled config name[:variants] (default %(default)s)")
    parser.add_argument(
        "--init",
        default="random",
        help="'random' (a freshly initialised model of --config, seeded by config.seed) or 'hf:DIR' "
        "(an HF safetensors checkpoint); default %(default)s",
    )
    parser.add_argument("--workdir", default=None,
                        help="export a training run's checkpoint (its saved config is used; --config/--init ignored)")
    parser.add_argument("--step", type=int, default=None, help="with --workdir: the checkpoint step (default latest)")
    parser.add_argument("--vocab", default=None,
                        help="the tokenizer to ship with the model: a WordPiece vocab.txt or a byte-level BPE "
                        "tokenizer.json (default: config.data.vocab_file)")
    parser.add_argument("--model", default=None,
                        help="an HF safetensors directory to export (the same as --init hf:DIR)")
    parser.add_argument("--format", choices=("safetensors", "onnx"), default="safetensors",
                        help="safetensors (default): an HF directory; onnx: model.onnx for --task, validated in ONNX "
                        "Runtime (the onnx extra; see docs/onnx.md)")
    parser.add_argument("--task", default=None, help="with --format onnx: fill-mask (default), feature-extraction, "
                        "or, for a model with its fine-tuning head (e.g. a fine-tuning run's WORKDIR/best), "
                        "text-classification, token-classification, question-answering or multiple-choice")
    parser.add_argument("--license", default=None,
                        help="the model card's license, a Hub license id (default: the run's config.export_license, "
                        f"else {model_card.DEFAULT_LICENSE})")
    parser.add_argument("--force", action="store_true", help="overwrite the export files in a non-empty --output")
    parser.add_argument("--allow_missing", action="store_true",
                        help="with --init hf:DIR (or --model DIR): export even if DIR lacks encoder weights "
                        "(freshly initialised)")
    args = parser.parse_args(argv)
    if args.model is not None:
        args.init = f"hf:{args.model}"
    if args.format == "onnx":
        args.task = args.task or "fill-mask"
        onnx_export = _onnx_exporter(args.task)  # the extra and the task are checked before a model loads
    elif args.task is not None:
        parser.error("--task needs --format onnx")
    missing_heads, labels, run = (), [], None
    logging.getLogger("absl").setLevel(logging.ERROR)  # orbax's notes on read-only checkpoint directories
    if args.allow_missing and (args.workdir is not None or not args.init.startswith("hf:")):
        parser.error("--allow_missing applies to --init hf:DIR only")
    if args.workdir is not None:
        model, vocab, lowercase, step, run = load_run(args.workdir, args.step)
        vocab = args.vocab or vocab
        print(f"exporting step {step} of {args.workdir}", file=sys.stderr)
    elif args.step is not None:
        parser.error("--step needs --workdir")
    elif args.init == "random":
        config = load_config(args.config, overrides)
        objective = objectives.create(config.objective)
        model = models.constructor(model_config(config), objective.heads)(nnx.Rngs(config.seed))
        vocab = args.vocab or config.data.vocab_file
    elif args.init.startswith("hf:"):
        if not args.init[3:]:
            parser.error("--init hf:DIR needs the directory, e.g. --init hf:path/to/model")
        source = Path(args.init[3:])
        if args.format == "onnx":  # the task's model: its fine-tuning head for the fine-tuning tasks
            model, report = onnx_export.load_pretrained(source, args.task, allow_missing=args.allow_missing)
            labels = hf.label_names(source) if (source / "config.json").is_file() else []
        else:
            model, report = hf.load_pretrained(source, allow_missing=args.allow_missing)
        print(report.summary(), file=sys.stderr)
        missing_heads = report.missing_heads
        vocab = args.vocab or next((source / name for name in ("vocab.txt", "tokenizer.json")
                                    if (source / name).is_file()), None)
    else:
        parser.error(f"--init must be 'random' or 'hf:DIR', got {args.init!r}")
    if vocab is not None and not Path(vocab).is_file():
        raise CheckpointError(f"vocab file {vocab} not found; pass --vocab PATH/vocab.txt (or PATH/tokenizer.json)")
    options = {"lowercase": lowercase} if args.workdir is not None else {}
    if args.format == "onnx":
        written, _ = onnx_export.export_onnx(model, args.output, task=args.task, vocab_file=vocab, force=args.force,
                                             missing_heads=missing_heads, labels=labels or None, **options)
    else:
        written = hf.export_pretrained(model, args.output, vocab_file=vocab, force=args.force, run=run,
                                       license=args.license, **options)
    print(f"exported {', '.join(p.name for p in written)} to {Path(args.output).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
