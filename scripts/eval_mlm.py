"""Held-out masked-LM loss and accuracy of any Hugging Face-format model of the family on a built dataset's eval
split, with the trainer's own loader and masking: the same yardstick for models trained with different objectives
(a teacher, a distilled student, a student trained from scratch).

    python scripts/eval_mlm.py --model RUN/export --data DATA_DIR --max_seq_length 128 [--smoothing 0.7] [--json]

Masking is uniform unless `--smoothing` is given (then frequency-smoothed, from the data's train token counts), with
the same seed, so every model sees the same masked positions. Prints examples, MLM loss and accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from bert_jax import objectives  # noqa: E402
from bert_jax.data import pipeline  # noqa: E402
from bert_jax.data.masking import MaskingConfig  # noqa: E402
from bert_jax.interop import hf  # noqa: E402


def evaluate(model_dir: str, data_dir: str, max_seq_length: int, max_predictions: int, smoothing: float,
             batch_size: int, seed: int) -> dict:
    model, _ = hf.load_pretrained(model_dir, heads=("mlm",))
    objective = objectives.create("mlm")
    graphdef, params = nnx.split(model, nnx.Param)

    @jax.jit
    def sums(params, batch):
        outputs = objective.forward(nnx.merge(graphdef, params), batch, deterministic=True, rngs=None)
        return objective.sums(outputs, batch)

    loader = pipeline.make_loader(
        data_dir, max_seq_length=max_seq_length, split="eval", global_batch_size=batch_size,
        max_predictions=max_predictions, seed=seed, num_epochs=1, shuffle=False, drop_remainder=False,
        masking=MaskingConfig(max_predictions=max_predictions, frequency_smoothing=smoothing), process_index=0,
        process_count=1,
    )
    totals, examples = None, 0
    for batch in loader:
        examples += int(batch["example_weights"].sum())
        step = sums(params, {name: jnp.asarray(batch[name]) for name in objective.field_names()})
        totals = step if totals is None else jax.tree.map(jnp.add, totals, step)
    summary = objective.summarize({name: float(value) for name, value in totals.items()})
    return {"model": model_dir, "examples": examples, **summary}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", required=True, help="Hugging Face directories with an MLM head")
    parser.add_argument("--data", required=True, help="a built dataset directory (its eval split is read)")
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--max_predictions", type=int, default=20)
    parser.add_argument("--smoothing", type=float, default=0.0, help="frequency smoothing of the masking (0 = uniform)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    for model_dir in args.model:
        result = evaluate(model_dir, args.data, args.max_seq_length, args.max_predictions, args.smoothing,
                          args.batch_size, args.seed)
        print(json.dumps(result) if args.json else
              f"{model_dir}: {result['examples']} examples, MLM loss {result['mlm_loss']:.4f}, "
              f"accuracy {result['mlm_accuracy']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
