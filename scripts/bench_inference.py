"""Inference throughput of a student against its teacher: the encoder's forward pass (what fine-tuned and served
models run), jitted, on random weights of each config's model, rounds alternated so a shared machine's load hits both.

    python scripts/bench_inference.py --configs configs/base_cased.py configs/distilbert_base_cased.py \\
        --batch 8 --seq_len 128 --rounds 5 --steps 5

Reports sequences per second (median over rounds) for each config and the speed-up of every config over the first.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from bert_jax import models  # noqa: E402
from bert_jax.configuration import load_config, model_config  # noqa: E402


def encoder_forward(spec: str, batch: int, seq_len: int):
    """A jitted forward of the config's encoder (no head) and its inputs."""
    config = model_config(load_config(spec))
    model = models.constructor(config, models.model_heads(config)[-1])(nnx.Rngs(0))
    encoder = getattr(model, config.model_type)  # bert / roberta / distilbert: the encoder inside the MLM model
    graphdef, state = nnx.split(encoder)
    rng = np.random.default_rng(0)
    inputs = (jnp.asarray(rng.integers(5, config.vocab_size, (batch, seq_len)), jnp.int32),
              jnp.ones((batch, seq_len), jnp.int32), jnp.zeros((batch, seq_len), jnp.int32))

    @jax.jit
    def forward(state, input_ids, input_mask, segment_ids):
        return nnx.merge(graphdef, state)(input_ids, input_mask, segment_ids)["sequence_output"]

    jax.block_until_ready(forward(state, *inputs))  # compile
    return config, lambda: jax.block_until_ready(forward(state, *inputs))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["configs/base_cased.py", "configs/distilbert_base_cased.py"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="forward passes per round")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    runners = {spec: encoder_forward(spec, args.batch, args.seq_len) for spec in args.configs}
    for _, run in runners.values():
        run()  # warm-up
    rates = {spec: [] for spec in args.configs}
    for round_index in range(args.rounds):
        for spec, (_, run) in runners.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                run()
            rates[spec].append(args.steps * args.batch / (time.perf_counter() - start))
        print(f"round {round_index + 1}/{args.rounds}: " + ", ".join(
            f"{Path(spec).stem} {statistics.median(r):.1f} seq/s" for spec, r in rates.items()), file=sys.stderr)
    first = statistics.median(rates[args.configs[0]])
    result = {spec: {"layers": runners[spec][0].num_hidden_layers, "sequences_per_s": statistics.median(r),
                     "speedup_over_first": statistics.median(r) / first} for spec, r in rates.items()}
    result["setup"] = {"batch": args.batch, "seq_len": args.seq_len, "rounds": args.rounds, "steps": args.steps,
                       "device": jax.devices()[0].device_kind, "jax": jax.__version__}
    if args.json:
        print(json.dumps(result))
    else:
        for spec in args.configs:
            r = result[spec]
            print(f"{spec}: {r['layers']} layers, {r['sequences_per_s']:.1f} sequences/s, "
                  f"{r['speedup_over_first']:.2f}x the first")
    return 0


if __name__ == "__main__":
    sys.exit(main())
