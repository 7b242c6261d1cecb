"""Our train step against Hugging Face transformers' PyTorch `BertForPreTraining` train step, in one run.

    python scripts/bench_peers.py --config configs/base_cased.py:small,uncased --rounds 4 --steps 3

Both sides train the same model (our config, converted field by field to `transformers.BertConfig`, dropout included)
on the same batches (synthetic, of the batch contract; transformers gets MLM labels at the masked positions and -100
elsewhere, and the NSP labels), with AdamW (no decay on LayerNorm and biases), global-norm clipping at 1.0, in f32,
or with `--config.model.dtype=bfloat16` in bf16 (ours: bf16 compute on f32 master weights; transformers: the same
under `torch.autocast`). On a GPU transformers runs on CUDA (`--torch_device`), synchronised at the end of each step.
Ours is the trainer's jitted step (`bert_jax.benchmark.compile_step`); transformers' is eager PyTorch with its default
attention implementation (SDPA), as users run it. Rounds alternate ours and theirs (A B A B ...) so a shared machine's
load hits both alike; every step ends synchronised (`block_until_ready`; PyTorch CPU is synchronous, CUDA is
synchronised). Both use every core: torch.set_num_threads(nproc) and XLA's CPU thread pool. Reported: median wall time per step, tokens/s, process
CPU seconds per step and tokens per CPU-second (steadier on a shared machine), the ratios, and our MFU against
the fastest of the matmul bursts timed after every round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bert_jax import benchmark  # noqa: E402
from bert_jax.configuration import load_config, split_config_overrides  # noqa: E402
from bert_jax.data.synthetic import synthetic_batch  # noqa: E402
from bert_jax.errors import ConfigError  # noqa: E402
from bert_jax.training import flops  # noqa: E402

# Pause when switching frameworks: the other side's idle worker threads stop spinning before timing starts.
SWITCH_PAUSE_S = 0.3


def torch_labels(batch: dict[str, np.ndarray]) -> np.ndarray:
    """MLM labels as transformers wants them: the original id at every masked position, -100 elsewhere."""
    labels = np.full(batch["input_ids"].shape, -100, np.int64)
    rows, slots = np.nonzero(batch["masked_lm_weights"] > 0)
    labels[rows, batch["masked_lm_positions"][rows, slots]] = batch["masked_lm_ids"][rows, slots]
    return labels


class TorchStep:
    """transformers' BertForPreTraining train step: forward with labels, backward, clip, AdamW."""

    def __init__(self, bert_config, optimizer_config, host_batches, threads: int, device: str, dtype: str):
        import torch
        import transformers

        torch.set_num_threads(threads)
        torch.manual_seed(0)
        self.torch = torch
        self.device = torch.device(device)
        # bf16 as transformers users run it: f32 weights and optimizer, the forward under autocast (like our f32
        # master weights with bf16 compute).
        self.autocast_dtype = {"float32": None, "bfloat16": torch.bfloat16}[dtype]
        hf_config = transformers.BertConfig(**bert_config.to_hf_dict())
        self.model = transformers.BertForPreTraining(hf_config).to(self.device).train()
        self.attention = self.model.config._attn_implementation
        no_decay = [p for n, p in self.model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
        decay = [p for n, p in self.model.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n)]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": optimizer_config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=optimizer_config.learning_rate, betas=(optimizer_config.b1, optimizer_config.b2), eps=optimizer_config.eps,
        )
        self.clip = optimizer_config.grad_clip_norm
        self.batches = [
            dict(
                input_ids=torch.tensor(b["input_ids"], dtype=torch.long),
                attention_mask=torch.tensor(b["input_mask"], dtype=torch.long),
                token_type_ids=torch.tensor(b["segment_ids"], dtype=torch.long),
                labels=torch.tensor(torch_labels(b)),
                next_sentence_label=torch.tensor(b["next_sentence_labels"], dtype=torch.long),
            )
            for b in host_batches
        ]
        self.batches = [{name: x.to(self.device) for name, x in batch.items()} for batch in self.batches]
        self.last_loss = float("nan")

    def step(self, batch) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with self.torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            loss = self.model(**batch).loss
        loss.backward()
        if self.clip > 0:
            self.torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)  # the step ends when the GPU is done, as ours ends
        self.last_loss = float(loss.detach())

    def run(self, num_steps: int, offset: int = 0) -> tuple[list[float], list[float]]:
        walls, cpus = [], []
        for i in range(num_steps):
            start, cpu_start = time.perf_counter(), time.process_time()
            self.step(self.batches[(offset + i) % len(self.batches)])
            walls.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu_start)
        return walls, cpus


def _summary(walls, cpus, tokens_per_step):
    step_s, cpu_s = statistics.median(walls), statistics.median(cpus)
    return {"step_s": step_s, "tokens_per_s": tokens_per_step / step_s, "cpu_s": cpu_s,
            "tokens_per_cpu_s": tokens_per_step / cpu_s, "steps": len(walls)}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest, overrides = split_config_overrides(argv)
    parser = argparse.ArgumentParser(
        prog="python scripts/bench_peers.py",
        description="Time our jitted train step and transformers' PyTorch BertForPreTraining train step on the same "
        "machine, alternating rounds; print both and the ratio. Extra --config.FIELD=VALUE arguments override "
        "config fields (both sides use the resulting model config).",
    )
    parser.add_argument("--config", default="configs/base_cased.py:small,uncased",
                        help="config file[:variants] (default %(default)s: 4 layers, hidden 256, vocab 30522)")
    parser.add_argument("--phase", type=int, default=0, help="phase whose sequence length to use (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds (default %(default)s)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per side per round (default %(default)s)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="torch.set_num_threads (default nproc = %(default)s; XLA uses every core)")
    parser.add_argument("--torch_device", default=None,
                        help="where transformers runs: cuda when torch sees a GPU, else cpu (ours runs on JAX's "
                        "default backend)")
    parser.add_argument("--peak_size", type=int, default=None, help="matmul side for the peak (default: 2048 on CPU)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(rest)
    if args.rounds < 1 or args.steps < 1:
        parser.error("--rounds and --steps must be >= 1")
    try:
        config = load_config(args.config, overrides)
        if config.model.dtype not in ("float32", "bfloat16"):
            raise ConfigError(f"model.dtype {config.model.dtype!r}: the peer comparison supports float32 and "
                              "bfloat16 (autocast on the transformers side)")
        if config.objective != "mlm_nsp":
            raise ConfigError(f"objective {config.objective!r}: the peer is transformers' BertForPreTraining, whose "
                              "loss is mlm_nsp's; use --config.objective=mlm_nsp")
        phase = config.phases[args.phase]
    except (ConfigError, IndexError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    seq_len, max_predictions = phase.max_seq_length, phase.max_predictions
    log = (lambda message: None) if args.json else (lambda message: print(message, file=sys.stderr, flush=True))

    ours = benchmark.compile_step(config, seq_len=seq_len, max_predictions=max_predictions, log=log)
    host_batches = [
        synthetic_batch(config.batch_size, seq_len, max_predictions, config.model.vocab_size, seed=i)
        for i in range(benchmark.NUM_SYNTHETIC_BATCHES)
    ]
    import torch

    torch_device = args.torch_device or ("cuda" if torch.cuda.is_available() else "cpu")
    theirs = TorchStep(ours.setup.model_config, config.optimizer, host_batches, args.threads, torch_device,
                       config.model.dtype)
    log(f"warming up both (transformers on {torch_device}, attention: {theirs.attention}, "
        f"{config.model.dtype}, torch threads {args.threads})")
    ours.run(1)
    theirs.run(1)

    walls = {"bert_jax": [], "transformers": []}
    cpus = {"bert_jax": [], "transformers": []}
    load_before = os.getloadavg()
    device = list(ours.mesh.devices.flat)[0]
    probe = flops.MatmulProbe(config.model.dtype, device, args.peak_size)
    for round_index in range(args.rounds):
        time.sleep(SWITCH_PAUSE_S)
        walls["bert_jax"] += ours.run(args.steps, offset=round_index * args.steps)
        cpus["bert_jax"] += ours.cpu_times
        time.sleep(SWITCH_PAUSE_S)
        wall, cpu = theirs.run(args.steps, offset=round_index * args.steps)
        walls["transformers"] += wall
        cpus["transformers"] += cpu
        # A matmul burst every round; MFU's denominator is the fastest of them (see flops.MatmulProbe).
        probe.burst(3)
        log(f"round {round_index + 1}/{args.rounds}: bert_jax {statistics.median(walls['bert_jax']):.3f} s/step, "
            f"transformers {statistics.median(walls['transformers']):.3f} s/step (medians so far)")
    load_after = os.getloadavg()
    peak, peak_per_cpu_s = probe.peak().flops_per_s, probe.peak().flops_per_cpu_s

    import transformers

    tokens_per_step = config.batch_size * seq_len
    flops_per_token = ours.setup.flops_per_token(ours.shape)
    result = {
        "config": args.config, "overrides": overrides, "batch_size": config.batch_size, "seq_len": seq_len,
        "max_predictions": max_predictions, "rounds": args.rounds, "steps_per_round": args.steps,
        "threads": args.threads, "load_average_before": load_before, "load_average_after": load_after,
        "bert_jax": _summary(walls["bert_jax"], cpus["bert_jax"], tokens_per_step),
        "transformers": _summary(walls["transformers"], cpus["transformers"], tokens_per_step),
        "transformers_attention": theirs.attention,
        "losses": {"bert_jax": float(ours.last_metrics["loss"]), "transformers": theirs.last_loss},
        "flops_per_token": flops_per_token, "peak_flops": peak, "peak_flops_per_cpu_s": peak_per_cpu_s,
        "versions": {**benchmark._versions(), "torch": torch.__version__, "transformers": transformers.__version__},
    }
    result["bert_jax"]["mfu"] = flops_per_token * result["bert_jax"]["tokens_per_s"] / peak
    result["bert_jax"]["mfu_cpu_time"] = flops_per_token * result["bert_jax"]["tokens_per_cpu_s"] / peak_per_cpu_s
    result["speedup"] = result["bert_jax"]["tokens_per_s"] / result["transformers"]["tokens_per_s"]
    result["speedup_per_cpu_s"] = result["bert_jax"]["tokens_per_cpu_s"] / result["transformers"]["tokens_per_cpu_s"]
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.config} {' '.join(overrides)}: batch {config.batch_size} x seq {seq_len}, {config.model.dtype}, "
          f"{args.rounds} rounds x {args.steps} steps, load average {load_before[0]:.1f} -> {load_after[0]:.1f}")
    print(f"{'':14s} {'s/step':>8s} {'tokens/s':>9s} {'CPU-s/step':>10s} {'tokens/CPU-s':>12s}")
    for name in ("bert_jax", "transformers"):
        r = result[name]
        print(f"{name:14s} {r['step_s']:8.3f} {r['tokens_per_s']:9,.0f} {r['cpu_s']:10.3f} {r['tokens_per_cpu_s']:12,.0f}")
    print(f"speed-up: {result['speedup']:.2f}x tokens/s, {result['speedup_per_cpu_s']:.2f}x tokens per CPU-second; "
          f"bert_jax MFU {result['bert_jax']['mfu']:.1%} of a {peak / 1e9:.1f} GFLOP/s matmul peak "
          f"({result['bert_jax']['mfu_cpu_time']:.1%} per CPU-second)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
