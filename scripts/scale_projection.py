"""Time and cost of a full pre-training recipe on a TPU slice, from FLOPs per step, chip peak, an MFU range and list
prices; compared with the original BERT's four days on 16 TPU chips.

    python scripts/scale_projection.py                                  # base_cased recipe, 16 chips, MFU 40-55%
    python scripts/scale_projection.py --compiled /tmp/base_v5e.jsonl   # also use compile_ahead --json FLOPs
    python scripts/scale_projection.py --config configs/large_cased.py --chips 64 --paper-chips 64

FLOPs per step come from the objective's `flops_per_token` (6N + 12LDS + heads at the masked positions) times the
tokens of a step, per phase of the config. XLA's own count from the compiled TPU program (`python -m
bert_jax.compile_ahead ... --json`) is the cross-check: the defaults below were printed by those commands (see
docs/tpu_compile.md) and `--compiled FILE...` replaces them with fresh ones.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bert_jax import objectives  # noqa: E402
from bert_jax.compile_ahead import GENERATIONS  # noqa: E402
from bert_jax.objectives.base import BatchShape  # noqa: E402
from bert_jax.configuration import load_config, model_config  # noqa: E402

# On-demand list prices, USD per chip-hour, us-central regions (Cloud TPU pricing page; they change: check before use).
LIST_PRICE_PER_CHIP_HOUR = {"v4": 3.22, "v5e": 1.20, "v5p": 4.20}

# XLA cost-analysis FLOPs of one base_cased train step (global batch 256, bf16 compute, whole slice), by sequence
# length, from `python -m bert_jax.compile_ahead --config configs/base_cased.py --topology v4:2x2x4
# --config.model.dtype=bfloat16 --json` (docs/tpu_compile.md). Used only when --config is base_cased.
COMPILED_FLOPS_PER_STEP_BASE = {128: 1.8200e13, 512: 7.8932e13}

# The original: BERT-base trained for 1M steps of 256 sequences (90% at 128, 10% at 512) in four days on "4 Cloud
# TPUs in Pod configuration (16 TPU chips total)" (Devlin et al. 2018, section A.2). The generation is not stated;
# peak bf16 per chip: TPU v2 45 TFLOP/s, v3 123 TFLOP/s.
PAPER_DAYS, PAPER_CHIPS = 4.0, 16
PAPER_PEAKS = {"v2": 45e12, "v3": 123e12}


def recipe_flops(config) -> list[dict]:
    """Per phase: steps, tokens per step and model FLOPs per step."""
    model = model_config(config)
    objective = objectives.create(config.objective)
    rows = []
    for phase in config.phases:
        tokens = config.batch_size * phase.max_seq_length
        rows.append(dict(
            seq_len=phase.max_seq_length,
            max_predictions=phase.max_predictions,
            steps=round(phase.fraction * config.train_steps),
            tokens_per_step=tokens,
            model_flops_per_step=objective.flops_per_token(
                model, BatchShape(config.batch_size, phase.max_seq_length, phase.max_predictions)) * tokens,
        ))
    return rows


def read_compiled(paths: list[str]) -> dict[int, float]:
    """seq_len -> XLA FLOPs per step from `compile_ahead --json` output files (one JSON object per line)."""
    found = {}
    for path in paths:
        for line_number, line in enumerate(Path(path).read_text().splitlines(), 1):
            if not line.startswith("{"):
                continue
            try:
                report = json.loads(line)
                if report["compiled"]:
                    found[int(report["seq_len"])] = float(report["flops_per_step"])
            except (json.JSONDecodeError, KeyError) as e:
                sys.exit(f"scale_projection: error: {path}:{line_number} is not compile_ahead --json output ({e})")
    return found


def project(phases: list[dict], chips: int, mfus: tuple[float, float]) -> list[dict]:
    total_flops = sum(p["steps"] * p["model_flops_per_step"] for p in phases)
    rows = []
    for name, price in LIST_PRICE_PER_CHIP_HOUR.items():
        peak = GENERATIONS[name].peak_bf16_flops
        for mfu in mfus:
            hours = total_flops / (chips * peak * mfu) / 3600
            rows.append(dict(generation=name, chips=chips, peak_per_chip=peak, mfu=mfu,
                             step_ms_at_128=phases[0]["model_flops_per_step"] / (chips * peak * mfu) * 1e3,
                             hours=hours, days=hours / 24, chip_hours=hours * chips,
                             cost_usd=hours * chips * price, price_per_chip_hour=price))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/base_cased.py", help="recipe config (default %(default)s)")
    parser.add_argument("--chips", type=int, default=16, help="chips in the slice (default %(default)s)")
    parser.add_argument("--mfu", type=float, nargs=2, default=(0.40, 0.55), metavar=("LOW", "HIGH"),
                        help="assumed model-FLOPs utilisation range (default %(default)s)")
    parser.add_argument("--compiled", nargs="*", default=[],
                        help="compile_ahead --json outputs whose XLA FLOPs per step cross-check the formula")
    parser.add_argument("--paper-chips", type=int, default=PAPER_CHIPS,
                        help="chips of the original's 4-day run to compare with: 16 for BERT-base, 64 for "
                        "BERT-large (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = parser.parse_args(argv)
    if not all(0 < m <= 1 for m in args.mfu) or args.chips <= 0:
        parser.error("--mfu values must be in (0, 1] and --chips positive")

    config = load_config(args.config)
    phases = recipe_flops(config)
    compiled = read_compiled(args.compiled) if args.compiled else (
        {k: v for k, v in COMPILED_FLOPS_PER_STEP_BASE.items() if v} if Path(args.config).stem == "base_cased" else {})
    for phase in phases:
        phase["xla_flops_per_step"] = compiled.get(phase["seq_len"])
    total_flops = sum(p["steps"] * p["model_flops_per_step"] for p in phases)
    rows = project(phases, args.chips, tuple(args.mfu))
    paper_seconds = PAPER_DAYS * 86400
    paper_chips = args.paper_chips
    paper = {f"implied_mfu_{gen}": total_flops / paper_seconds / (paper_chips * peak) for gen, peak in PAPER_PEAKS.items()}
    paper.update(days=PAPER_DAYS, chips=paper_chips, sustained_flops=total_flops / paper_seconds)

    if args.json:
        print(json.dumps(dict(config=args.config, phases=phases, total_model_flops=total_flops, projection=rows,
                              paper=paper)))
        return 0
    print(f"recipe {args.config}: {config.train_steps:,} steps x batch {config.batch_size}")
    print(f"{'seq':>5} {'P':>4} {'steps':>9} {'model FLOPs/step':>17} {'XLA FLOPs/step':>15} {'XLA/model':>9}")
    for p in phases:
        xla = p["xla_flops_per_step"]
        print(f"{p['seq_len']:>5} {p['max_predictions']:>4} {p['steps']:>9,} {p['model_flops_per_step']:>17.4g} "
              f"{xla if xla else float('nan'):>15.4g} {xla / p['model_flops_per_step'] if xla else float('nan'):>9.3f}")
    print(f"total model FLOPs {total_flops:.4g}\n")
    print(f"{'TPU':>4} {'chips':>5} {'peak/chip':>10} {'MFU':>5} {'ms/step@128':>11} {'hours':>7} {'days':>5} "
          f"{'chip-h':>7} {'$/chip-h':>8} {'cost $':>8}")
    for r in rows:
        print(f"{r['generation']:>4} {r['chips']:>5} {r['peak_per_chip'] / 1e12:>8.0f} T {r['mfu']:>5.0%} "
              f"{r['step_ms_at_128']:>11.2f} {r['hours']:>7.1f} {r['days']:>5.2f} {r['chip_hours']:>7.0f} "
              f"{r['price_per_chip_hour']:>8.2f} {r['cost_usd']:>8,.0f}")
    print(f"\noriginal: {PAPER_DAYS:g} days on {paper_chips} TPU chips = {PAPER_DAYS * 24 * paper_chips:,.0f} chip-hours, "
          f"{paper['sustained_flops'] / 1e12:.1f} TFLOP/s sustained for this recipe's model FLOPs: implied MFU "
          + ", ".join(f"{paper[f'implied_mfu_{g}']:.1%} if TPU {g}" for g in PAPER_PEAKS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
