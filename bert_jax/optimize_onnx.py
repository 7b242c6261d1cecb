"""CLI: the faster variants of an ONNX export, written beside its model.onnx (the onnx extra).

    python -m bert_jax.optimize_onnx --model DIR [--variants optimized,int8]

`optimized` is model_optimized.onnx (ONNX Runtime's transformer fusions), `int8` model_quantized.onnx (dynamic int8
quantisation). Each is printed with its max abs difference from model.onnx at the export's validation shapes.
Serve one with `python -m bert_jax.fill_mask --backend onnxruntime --onnx_file model_quantized.onnx --model DIR`.
"""

from __future__ import annotations

import argparse
import sys

from bert_jax import errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bert_jax.optimize_onnx",
        description="Write optimised (model_optimized.onnx) and int8 (model_quantized.onnx) variants of DIR/model.onnx "
        "and print how far each is from it. See docs/onnx.md for their measured accuracy and speed.",
    )
    parser.add_argument("--model", required=True, help="a directory from python -m bert_jax.export --format onnx")
    parser.add_argument("--variants", default="optimized,int8", help="comma-separated: optimized, int8 (default both)")
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    try:
        from bert_jax.interop import onnx_runtime

        onnx_runtime.require_extra()
        from bert_jax.interop import onnx_variants

        unknown = sorted(set(variants) - set(onnx_variants.MAKERS))
        if unknown or not variants:
            raise errors.InputError(f"--variants {args.variants!r}: choose from {', '.join(onnx_variants.MAKERS)}")
        for variant in variants:
            path = onnx_variants.MAKERS[variant](args.model)
            diffs = ", ".join(f"batch {b} x sequence {s}: {d:.2e}" for (b, s), d in
                              onnx_variants.max_abs_diffs(args.model, variant))
            print(f"wrote {path.name} ({path.stat().st_size / 1e6:.1f} MB); max abs diff from model.onnx: {diffs}")
    except errors.UserError as e:
        return errors.report("python -m bert_jax.optimize_onnx", e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
