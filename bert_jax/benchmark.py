"""CLI: time the real jitted train step and report tokens/s, model FLOPs, MFU, compile time and memory.

    python -m bert_jax.benchmark --config configs/base_cased.py:small,uncased --steps 20 --json
    python -m bert_jax.benchmark --config configs/base_cased.py --phase 1          # bf16 compute (the default)
    python -m bert_jax.benchmark --config configs/base_cased.py:tiny --data built      # batches from config.data.dir

The mesh, the objective, the sharded state and the step come from the trainer's own setup path
(`training.setup.build`), so the number is the trainer's step, not a lookalike. Batches follow the objective's batch
contract (synthetic by default, `data/synthetic.py`) and are placed on the mesh before timing, so the timing is the
step alone. Each timed step ends with `jax.block_until_ready`. MFU divides the objective's model FLOPs (formula in
docs/bench_train_step.md) by the chip's published bf16 peak on TPU and GPU (`training/chip_peaks.py`, as MaxText)
and by the matmul peak measured on the same device in the same run on CPU (reported on accelerators too).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import resource
import statistics
import sys
import time
from typing import Any, Sequence

import jax
import numpy as np

from bert_jax import errors
from bert_jax.configuration import load_config, split_config_overrides
from bert_jax.data.synthetic import synthetic_batch
from bert_jax.errors import ConfigError
from bert_jax.training import chip_peaks, flops, setup as setup_lib

# Distinct synthetic batches cycled through the timed steps (the step must not see one batch over and over, in case
# anything were cached on its values; 4 is enough and cheap to hold on the device).
NUM_SYNTHETIC_BATCHES = 4


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m bert_jax.benchmark",
        description="Time the trainer's jitted train step (same mesh, sharded state and jit as the trainer) and "
        "report median step time, tokens/s, model FLOPs per token, MFU against a matmul peak measured in the same "
        "run, compile time and peak memory. Extra --config.FIELD=VALUE arguments override config fields.",
    )
    parser.add_argument("--config", default="base_cased:small,uncased",
                        help="config file or bundled config name[:variants] (default %(default)s: the CPU target's "
                             "shape, vocab 30522)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps after warm-up (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after compilation (default %(default)s)")
    parser.add_argument("--phase", type=int, default=0,
                        help="index into config.phases whose sequence length and max predictions to use "
                        "(default %(default)s: the first phase)")
    parser.add_argument("--seq_len", type=int, default=None,
                        help="sequence length (default: the phase's max_seq_length)")
    parser.add_argument("--max_predictions", type=int, default=None,
                        help="masked positions per sequence (default: the phase's, or 15%% of --seq_len when that "
                        "differs from the phase's length)")
    parser.add_argument("--data", choices=("synthetic", "built"), default="synthetic",
                        help="synthetic batches of the batch contract, or batches from the built dataset in "
                        "config.data.dir through the training loader (default %(default)s)")
    parser.add_argument("--peak_size", type=int, default=None,
                        help="side of the square matmul that measures the peak (default: 2048 on CPU, 8192 on "
                        "accelerators)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a report")
    rest, overrides = split_config_overrides(argv)
    args = parser.parse_args(rest)
    for name in ("steps", "warmup"):
        minimum = 1 if name == "steps" else 0
        if getattr(args, name) < minimum:
            parser.error(f"--{name} must be >= {minimum}; got {getattr(args, name)}")
    return args, overrides


def _shape(config, args) -> tuple[int, int]:
    """(sequence length, max predictions) of the benchmarked phase."""
    if not 0 <= args.phase < len(config.phases):
        raise ConfigError(f"--phase {args.phase} is out of range: the config has {len(config.phases)} phase(s)")
    phase = config.phases[args.phase]
    seq_len = args.seq_len or phase.max_seq_length
    if args.max_predictions is not None:
        max_predictions = args.max_predictions
    elif seq_len == phase.max_seq_length:
        max_predictions = phase.max_predictions
    else:
        max_predictions = max(1, math.ceil(0.15 * seq_len))
    if not 8 <= seq_len <= config.model.max_position_embeddings:
        raise ConfigError(
            f"--seq_len {seq_len} must be in [8, model.max_position_embeddings={config.model.max_position_embeddings}]"
        )
    if not 1 <= max_predictions <= seq_len:
        raise ConfigError(f"--max_predictions {max_predictions} must be in [1, seq_len={seq_len}]")
    return seq_len, max_predictions


def _host_batches(config, data: str, seq_len: int, max_predictions: int, count: int) -> list[dict[str, np.ndarray]]:
    per_host = config.batch_size // jax.process_count()
    if data == "synthetic":
        return [
            synthetic_batch(per_host, seq_len, max_predictions, config.model.vocab_size, seed=jax.process_index() * 1000 + i)
            for i in range(count)
        ]
    from bert_jax.training import inputs  # the trainer's own loader and masking settings, not a lookalike
    from bert_jax.training.phases import Phase

    phase = Phase(index=0, start=0, end=config.train_steps, max_seq_length=seq_len, max_predictions=max_predictions)
    iterator = inputs.train_iterator(config, phase)
    return [next(iterator) for _ in range(count)]


def _memory(compiled, devices) -> dict[str, Any]:
    """Peak memory: the device allocator's where it reports one (GPU/TPU), else this process's RSS high-water mark;
    and XLA's static buffer plan of the compiled step (per device)."""
    memory: dict[str, Any] = {}
    stats = devices[0].memory_stats() if hasattr(devices[0], "memory_stats") else None
    if stats and "peak_bytes_in_use" in stats:
        memory["device_peak_bytes"] = int(stats["peak_bytes_in_use"])
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    scale = 1 if sys.platform == "darwin" else 1024
    memory["host_peak_rss_bytes"] = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale
    analysis = compiled.memory_analysis()
    if analysis is not None:
        for field in ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes", "temp_size_in_bytes",
                      "generated_code_size_in_bytes"):
            if hasattr(analysis, field):
                memory["xla_" + field.removesuffix("_in_bytes")] = int(getattr(analysis, field))
    return memory


def _xla_flops(compiled) -> float | None:
    """FLOPs of one step by XLA's own count (HloCostAnalysis of the compiled program, per device)."""
    try:
        analysis = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - some backends do not implement it; the field is then omitted
        return None
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else None
    return float(analysis["flops"]) if analysis and "flops" in analysis else None


def _versions() -> dict[str, str]:
    import flax
    import jaxlib
    import optax

    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__, "optax": optax.__version__,
            "numpy": np.__version__, "python": sys.version.split()[0]}


def _progress(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


@dataclasses.dataclass
class CompiledStep:
    """The trainer's step compiled for one shape, with its state and device batches: what gets timed."""

    setup: setup_lib.Setup
    compiled: Any
    state: Any
    batches: list
    shape: Any  # objectives.base.BatchShape
    compile_s: float
    real_token_fraction: float  # non-padding share of the batches' tokens (1.0 for synthetic, full-length batches)
    last_metrics: dict | None = None
    cpu_times: list[float] = dataclasses.field(default_factory=list)
    dispatch_times: list[float] = dataclasses.field(default_factory=list)

    @property
    def mesh(self):
        return self.setup.mesh

    def run(self, num_steps: int, *, offset: int = 0, on_step=None) -> list[float]:
        """Runs `num_steps` steps, each ended by `block_until_ready`; returns their wall times in seconds. Keeps
        the process CPU time of each in `cpu_times` (all threads: on a shared machine, work done per CPU-second
        is steadier than per wall-second) and the time the call took to return in `dispatch_times` (the host's
        share: while it is far below the step time, the host keeps ahead of the device)."""
        times, self.cpu_times, self.dispatch_times = [], [], []
        for i in range(num_steps):
            start, cpu_start = time.perf_counter(), time.process_time()
            self.state, metrics = self.compiled(self.state, self.batches[(offset + i) % len(self.batches)],
                                                *self.setup.frozen_args)
            self.dispatch_times.append(time.perf_counter() - start)
            jax.block_until_ready((self.state, metrics))
            times.append(time.perf_counter() - start)
            self.cpu_times.append(time.process_time() - cpu_start)
            self.last_metrics = metrics
            if on_step is not None:
                on_step(i, times)
        return times


def compile_step(config, *, seq_len: int, max_predictions: int, data: str = "synthetic", num_batches: int = 4,
                 log=lambda message: None) -> CompiledStep:
    """The trainer's setup (mesh, objective, sharded state, jitted step), compiled ahead of time for one shape
    (`.lower().compile()`, timed), and `num_batches` device batches of that shape."""
    log(f"objective {config.objective}; building the mesh and the sharded state")
    run_setup = setup_lib.build(config)
    log(f"mesh {dict(run_setup.mesh.shape)} on {run_setup.mesh.devices.size} {jax.devices()[0].platform} device(s)")
    state = run_setup.init_state()
    host_batches = _host_batches(config, data, seq_len, max_predictions, num_batches)
    real_token_fraction = float(np.mean([batch["input_mask"].mean() for batch in host_batches]))
    batches = [run_setup.global_batch(batch) for batch in host_batches]
    log(f"compiling the train step (batch {config.batch_size}, seq {seq_len}, predictions {max_predictions})")
    start = time.perf_counter()
    compiled = run_setup.train_step.lower(state, batches[0], *run_setup.frozen_args).compile()
    compile_s = time.perf_counter() - start
    return CompiledStep(run_setup, compiled, state, batches, run_setup.batch_shape(seq_len, max_predictions),
                        compile_s, real_token_fraction)


def run(config, args) -> dict[str, Any]:
    """Builds the trainer's step for `config`, times it and returns the results (see `format_report`)."""
    quiet = args.json
    seq_len, max_predictions = _shape(config, args)
    bench = compile_step(
        config, seq_len=seq_len, max_predictions=max_predictions, data=args.data,
        num_batches=min(NUM_SYNTHETIC_BATCHES, args.steps + args.warmup), log=lambda m: _progress(m, quiet),
    )
    devices = list(bench.mesh.devices.flat)
    _progress("compiling the matmul that measures the device's peak", quiet)
    probe = flops.MatmulProbe(config.model.dtype, devices[0], args.peak_size)
    bench.run(args.warmup)
    probe.burst()

    def on_step(i, times):
        if i + 1 == args.steps // 2:
            probe.burst()
        if i + 1 == args.steps or (i + 1) % max(1, args.steps // 5) == 0:
            mean = sum(times) / len(times)
            _progress(f"  step {i + 1}/{args.steps}: {times[-1]:.3f} s (ETA {mean * (args.steps - i - 1):.0f} s)", quiet)

    step_times = bench.run(args.steps, offset=args.warmup, on_step=on_step)
    cpu_times, dispatch_times = bench.cpu_times, bench.dispatch_times
    loss = float(bench.last_metrics["loss"])
    if not math.isfinite(loss):
        raise RuntimeError(f"the benchmarked step produced a non-finite loss ({loss}); the timing is meaningless")
    probe.burst()
    ways = flops.peak_ways(bench.mesh.devices.flat)
    peak, peak_per_cpu_s = probe.peak().flops_per_s * ways, probe.peak().flops_per_cpu_s * ways
    published = chip_peaks.published_peak_flops(devices[0].platform, devices[0].device_kind)
    published_peak = published[0] * ways if published is not None else None
    step_s = statistics.median(step_times)
    tokens_per_step = config.batch_size * seq_len
    tokens_per_s = tokens_per_step / step_s
    model_flops_per_token = bench.setup.flops_per_token(bench.shape)
    xla_flops = _xla_flops(bench.compiled)
    if xla_flops is not None:
        xla_flops *= len(devices)  # the compiled SPMD program is one device's share
    return {
        "config": args.config,
        "objective": config.objective,
        "overrides": list(getattr(args, "overrides", [])),
        "platform": devices[0].platform,
        "device_kind": devices[0].device_kind,
        "num_devices": len(devices),
        "mesh": {name: int(size) for name, size in bench.mesh.shape.items()},
        "data": args.data,
        "dtype": config.model.dtype,
        "batch_size": config.batch_size,
        "seq_len": seq_len,
        "max_predictions": max_predictions,
        "grad_accum_steps": config.optimizer.grad_accum_steps,
        "steps": args.steps,
        "warmup": args.warmup,
        "step_s": step_s,
        "step_s_min": min(step_times),
        "step_s_max": max(step_times),
        "tokens_per_s": tokens_per_s,
        # Tokens that are not padding: what the model learns from (packed sequences are nearly all real tokens,
        # sentence pairs often much shorter than the length).
        "real_token_fraction": bench.real_token_fraction,
        "real_tokens_per_s": tokens_per_s * bench.real_token_fraction,
        "flops_per_token": model_flops_per_token,
        "model_flops_per_s": model_flops_per_token * tokens_per_s,
        "peak_flops": peak,
        # every burst's rate (before, between and after the steps): how much the device drifted during the run
        "peak_flops_bursts": [rate.flops_per_s * ways for rate in probe.bursts],
        # On TPU/GPU the chip's published bf16 peak (as MaxText reports MFU); None on CPU.
        "peak_flops_published": published_peak,
        "mfu": model_flops_per_token * tokens_per_s / (published_peak or peak),
        "mfu_measured_peak": model_flops_per_token * tokens_per_s / peak,
        "cpu_s": statistics.median(cpu_times),
        "tokens_per_cpu_s": tokens_per_step / statistics.median(cpu_times),
        "peak_flops_per_cpu_s": peak_per_cpu_s,
        # Model FLOPs per CPU-second of the step over the matmul's FLOPs per CPU-second: MFU with the machine's
        # other tenants taken out (CPU devices only: elsewhere the host's CPU time is not the device's).
        "mfu_cpu_time": (model_flops_per_token * tokens_per_step / statistics.median(cpu_times) / peak_per_cpu_s
                         if devices[0].platform == "cpu" else None),
        "dispatch_s": statistics.median(dispatch_times),
        "xla_flops_per_token": xla_flops / tokens_per_step if xla_flops is not None else None,
        "compile_s": bench.compile_s,
        "loss": loss,
        "parameters": sum(int(np.prod(x.shape)) for x in jax.tree.leaves(bench.state.params)),
        "memory": _memory(bench.compiled, devices),
        "versions": _versions(),
    }


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:,.0f} MiB"


def format_report(result: dict[str, Any]) -> str:
    memory = result["memory"]
    lines = [
        f"{result['config']} {' '.join(result['overrides'])}".rstrip(),
        f"  {result['num_devices']} x {result['device_kind']} ({result['platform']}), mesh {result['mesh']}, "
        f"{result['dtype']}, batch {result['batch_size']} x seq {result['seq_len']} "
        f"({result['max_predictions']} predictions), {result['data']} data",
        f"  step        {result['step_s'] * 1e3:,.1f} ms median of {result['steps']} "
        f"(min {result['step_s_min'] * 1e3:,.1f}, max {result['step_s_max'] * 1e3:,.1f})",
        f"  throughput  {result['tokens_per_s']:,.0f} tokens/s, {result['real_tokens_per_s']:,.0f} of them not padding "
        f"({result['real_token_fraction']:.1%})",
        f"  model FLOPs {result['flops_per_token'] / 1e6:,.2f} MFLOP/token -> "
        f"{result['model_flops_per_s'] / 1e9:,.1f} GFLOP/s"
        + (f" (XLA counts {result['xla_flops_per_token'] / 1e6:,.2f} MFLOP/token)"
           if result["xla_flops_per_token"] else ""),
        f"  peak        {result['peak_flops'] / 1e9:,.1f} GFLOP/s ({result['dtype']} matmul, fastest of "
        f"{len(result['peak_flops_bursts'])} bursts around the steps: "
        f"{', '.join(f'{rate / 1e9:,.0f}' for rate in result['peak_flops_bursts'])})",
        f"  MFU         {result['mfu']:.1%}"
        + (f" of the published peak {result['peak_flops_published'] / 1e12:,.1f} TFLOP/s "
           f"({result['mfu_measured_peak']:.1%} of the measured matmul)"
           if result.get("peak_flops_published") else "")
        + (f" (per CPU-second: {result['mfu_cpu_time']:.1%} of {result['peak_flops_per_cpu_s'] / 1e9:,.1f} "
           f"GFLOP/CPU-s; step {result['cpu_s']:.2f} CPU-s, {result['tokens_per_cpu_s']:,.0f} tokens/CPU-s)"
           if result["mfu_cpu_time"] is not None else ""),
        f"  dispatch    {result['dispatch_s'] * 1e3:,.1f} ms of host time per step before the device runs it",
        f"  compile     {result['compile_s']:.1f} s",
        f"  memory      device peak {_mib(memory.get('device_peak_bytes'))}, host RSS peak "
        f"{_mib(memory.get('host_peak_rss_bytes'))}; XLA plan: arguments {_mib(memory.get('xla_argument_size'))}, "
        f"temporaries {_mib(memory.get('xla_temp_size'))}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args, overrides = parse_args(argv)
        args.overrides = overrides
        config = load_config(args.config, overrides)
        result = run(config, args)
    except errors.UserError as error:
        return errors.report("python -m bert_jax.benchmark", error)
    except RuntimeError as error:  # a non-finite loss: the numbers would be meaningless
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result) if args.json else format_report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
