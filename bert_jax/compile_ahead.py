"""CLI: compile the sharded train step for a Cloud TPU slice on a machine without TPUs, and report whether it fits.

    python -m bert_jax.compile_ahead --config configs/base_cased.py --topology v5e:4x4 [--config.FIELD=VALUE ...]
        [--phase 0|1|all] [--json]

As MaxText's `train_compile.py` does: libtpu (the `[tpu]` extra) describes the slice's devices without owning any
(`jax.experimental.topologies.get_topology_desc`), the mesh is laid over those devices, the train state and the batch
exist only as `jax.ShapeDtypeStruct`s carrying their shardings, and `train_step.lower(...).compile()`
runs the real TPU compiler. The step is the trainer's: `training.setup.build` over those devices, its "auto" speed
levers decided for TPU (the target), not for the CPU it compiles on. The compiler reports each device's memory (arguments, outputs, temporaries, code) and
the step's FLOPs; a program that does not fit in HBM fails here exactly as it would on the slice.

Topology names: libtpu's `GENERATION:CHIPSHAPE` counts chips (`v4:2x2x4` is 16 v4 chips). Cloud accelerator types
(`v4-32`, `v5p-32`) count TensorCores on v4 and v5p (two per chip: v4-32 is those same 16 chips; v4-16 is 8 chips,
2x2x2) and chips on v5e/v6e (`v5litepod-16` = `v5e:4x4`); both spellings are accepted. v4 and v5p compile in
megacore mode (one JAX device per chip), as they run.

Exit status: 0 when every phase compiled and fits in HBM, 1 when one does not, 2 for bad input (config, topology,
mesh) or a missing libtpu.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
import time
from typing import Any

from bert_jax.errors import ConfigError
from bert_jax.launch import tpu_generations
from bert_jax.launch.tpu_generations import TpuGeneration

GIB = 1024**3


# The generations compile-ahead supports, by libtpu's name (v4, v5e); the facts are in bert_jax/launch/tpu_generations.py.
GENERATIONS: dict[str, TpuGeneration] = {
    name: g for name, g in tpu_generations.GENERATIONS.items() if g.chip_config is not None
}
_ALIASES = {"v5litepod": "v5e", "v5lite": "v5e", "v6lite": "v6e", "v5": "v5p"}

# Slice shapes Cloud TPU offers, by chip count, for accelerator-type names (v4-32 -> 16 chips -> 2x2x4).
_SHAPES_3D = {4: "2x2x1", 8: "2x2x2", 16: "2x2x4", 32: "2x4x4", 64: "4x4x4", 128: "4x4x8", 256: "4x8x8", 512: "8x8x8"}
_SHAPES_2D = {1: "1x1", 4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16", 256: "16x16"}


class TopologyError(ConfigError):
    """A topology name we cannot map to a slice; the message lists the accepted spellings."""


@dataclasses.dataclass(frozen=True)
class Topology:
    generation: TpuGeneration
    shape: tuple[int, ...]  # chips along each torus axis

    @property
    def num_chips(self) -> int:
        return math.prod(self.shape)

    @property
    def name(self) -> str:
        """libtpu's topology name, e.g. v4:2x2x4."""
        return f"{self.generation.name}:{'x'.join(map(str, self.shape))}"

    @property
    def accelerator_type(self) -> str:
        """The Cloud TPU accelerator type of this slice, e.g. v4-32 (16 chips)."""
        return f"{self.generation.accelerator_prefix}-{self.num_chips * self.generation.cores_per_chip}"

    @property
    def wrap(self) -> tuple[bool, ...]:
        # Cloud TPU closes the torus (wrap-around links) along axes of full 4-chip cubes on v4/v5p and of 16 chips on
        # v5e/v6e; smaller slices are open meshes. It changes collective routing, not memory.
        if self.generation.dims == 3:
            return (all(s % 4 == 0 for s in self.shape),) * 3
        return tuple(s == 16 for s in self.shape) + (False,)


def parse_topology(text: str) -> Topology:
    """`v5e:4x4`, `v4:2x2x4`, `v5p:2x2x4` (chips per axis) or an accelerator type (`v4-32`, `v5litepod-16`)."""
    text = text.strip().lower()
    accepted = ("use GENERATION:CHIPSHAPE (v4:2x2x4, v5e:4x4, v5p:4x4x4, v6e:4x4) or an accelerator type "
                f"(v4-32, v5litepod-16, v5p-128); generations: {', '.join(GENERATIONS)}")
    if match := re.fullmatch(r"([a-z0-9]+):(\d+(?:x\d+)+)", text):
        prefix, shape_text = match.groups()
        generation = GENERATIONS.get(_ALIASES.get(prefix, prefix))
        if generation is None:
            raise TopologyError(f"unknown TPU generation {prefix!r} in topology {text!r}; {accepted}")
        shape = tuple(int(s) for s in shape_text.split("x"))
        if len(shape) != generation.dims or 0 in shape:
            raise TopologyError(f"topology {text!r}: {generation.name} slices have {generation.dims} axes "
                                f"({'2x2x4' if generation.dims == 3 else '4x4'}); {accepted}")
        return Topology(generation, shape)
    if match := re.fullmatch(r"([a-z0-9]+)-(\d+)", text):
        prefix, count = match.group(1), int(match.group(2))
        generation = GENERATIONS.get(_ALIASES.get(prefix, prefix))
        if generation is None:
            raise TopologyError(f"unknown TPU generation {prefix!r} in accelerator type {text!r}; {accepted}")
        chips, rest = divmod(count, generation.cores_per_chip)
        shapes = _SHAPES_3D if generation.dims == 3 else _SHAPES_2D
        if rest or chips not in shapes:
            raise TopologyError(f"accelerator type {text!r} is not a standard {generation.name} slice "
                                f"(known: {', '.join(f'{prefix}-{c * generation.cores_per_chip}' for c in shapes)}); "
                                "pass the chip shape instead, e.g. v4:4x4x8")
        return Topology(generation, tuple(int(s) for s in shapes[chips].split("x")))
    raise TopologyError(f"cannot read topology {text!r}; {accepted}")


def topology_devices(topology: Topology) -> list:
    """The slice's devices as libtpu describes them (compile-only: they hold no memory and run nothing)."""
    try:
        from jax.experimental import topologies
    except ImportError as e:  # pragma: no cover - jax without the experimental module
        raise RuntimeError(f"this jax has no jax.experimental.topologies ({e}); upgrade jax") from None
    # libtpu takes /tmp/libtpu_lockfile so two processes never drive the same chips; describing a topology drives
    # none, so concurrent compile-ahead runs (or tests) may share the library.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    try:
        description = topologies.get_topology_desc(
            topology_name=topology.name,
            platform="tpu",
            chip_config_name=topology.generation.chip_config,
            chips_per_host_bounds=(2, 2, 1),  # four chips per TPU VM host on every generation here
            num_slices=1,
            wrap=topology.wrap,
        )
    except RuntimeError as e:
        if "TPU support not installed" in str(e):
            raise RuntimeError(
                "libtpu is not installed, so the TPU compiler is unavailable; install the [tpu] extra into a "
                "separate environment: pip install -c constraints.txt -e '.[tpu]' (libtpu matching jaxlib)"
            ) from None
        raise
    return list(description.devices)


def bytes_per_device(abstract_tree) -> int:
    """Bytes of one device's shard of every leaf, as the leaves' shardings imply (the largest shard when uneven)."""
    import jax
    import numpy as np

    return sum(
        math.prod(leaf.sharding.shard_shape(leaf.shape)) * np.dtype(leaf.dtype).itemsize
        for leaf in jax.tree.leaves(abstract_tree)
    )


def laid_out_bytes(leaf, layout) -> int:
    """Bytes of one device's shard of `leaf` in the compiler's tiled `layout`: TPU stores arrays in tiles (8x128 for
    f32 matrices, 128 for vectors and scalars), padding the minor dimensions up to whole tiles."""
    import numpy as np

    if layout is None:  # an argument the program never reads: jit prunes it, so it takes no device memory
        return 0
    shard = leaf.sharding.shard_shape(leaf.shape)
    dims = [shard[axis] for axis in layout.major_to_minor]
    if layout.tiling:
        tile = layout.tiling[0]  # later tiles subdivide the first one and add no padding of their own
        dims = [1] * max(0, len(tile) - len(dims)) + dims
        for j in range(1, len(tile) + 1):
            dims[-j] = -(-dims[-j] // tile[-j]) * tile[-j]
    return math.prod(dims) * np.dtype(leaf.dtype).itemsize


def arguments_laid_out_bytes(arguments, compiled) -> int:
    """Per-device bytes of a compiled program's arguments from their shardings and the layouts the compiler chose;
    it equals the compiler's own `argument_size_in_bytes`, so the memory report is explained leaf by leaf."""
    import jax
    from jax.experimental.layout import Format

    formats = jax.tree.leaves(compiled.input_formats[0], is_leaf=lambda x: isinstance(x, Format))
    leaves = jax.tree.leaves(arguments)
    if len(formats) != len(leaves):
        raise ValueError(f"{len(leaves)} argument leaves but {len(formats)} input formats")
    return sum(laid_out_bytes(leaf, fmt.layout) for leaf, fmt in zip(leaves, formats))


@dataclasses.dataclass
class PhaseReport:
    """One phase's compile on one topology; memory figures are per device (one chip), from the TPU compiler."""

    topology: str
    accelerator_type: str
    device_kind: str
    num_devices: int
    mesh: dict[str, int]
    phase: int
    seq_len: int
    max_predictions: int
    global_batch: int
    model_dtype: str
    compiled: bool
    compile_s: float
    error: str = ""
    argument_bytes: int = 0
    output_bytes: int = 0
    alias_bytes: int = 0
    temp_bytes: int = 0
    generated_code_bytes: int = 0
    total_bytes: int = 0  # arguments + outputs - aliased (donated) + temporaries + code: the step's HBM footprint
    state_bytes_by_sharding: int = 0  # the train state's shard per device, from the shardings alone
    batch_bytes_by_sharding: int = 0
    argument_bytes_by_layout: int = 0  # state + batch shards padded to the compiler's tiles (= argument_bytes)
    hbm_bytes: int = 0
    fits: bool = False
    flops_per_device: float = 0.0  # XLA cost analysis of the compiled per-device program
    flops_per_step: float = 0.0  # flops_per_device * num_devices
    model_flops_per_step: float = 0.0  # the objective's formula (6N + 12LDS + heads) x tokens
    scan_layers: bool = False  # model.scan_layers: XLA's cost analysis then counts the scanned layer body once
    cost_analysis: dict = dataclasses.field(default_factory=dict)


def compile_phase(run_setup, topology: Topology, phase_index: int) -> PhaseReport:
    """Lowers and compiles the setup's train step for one phase's shapes on the topology's devices."""
    import jax

    config, model_config_ = run_setup.config, run_setup.model_config
    mesh = run_setup.mesh
    devices = list(mesh.devices.flat)
    phase = config.phases[phase_index]
    shape = run_setup.batch_shape(phase.max_seq_length, phase.max_predictions)
    state, batch = run_setup.abstract_state, run_setup.abstract_batch(shape)
    step_fn = run_setup.train_step
    hbm = int(topology.generation.hbm_gib * GIB)
    report = PhaseReport(
        topology=topology.name, accelerator_type=topology.accelerator_type, device_kind=devices[0].device_kind,
        num_devices=len(devices), mesh=dict(mesh.shape), phase=phase_index, seq_len=phase.max_seq_length,
        max_predictions=phase.max_predictions, global_batch=config.batch_size, model_dtype=model_config_.dtype,
        compiled=False, compile_s=0.0, state_bytes_by_sharding=bytes_per_device(state),
        batch_bytes_by_sharding=bytes_per_device(batch), hbm_bytes=hbm,
        model_flops_per_step=run_setup.flops_per_token(shape) * config.batch_size * phase.max_seq_length,
        scan_layers=model_config_.scan_layers,
    )
    start = time.perf_counter()
    try:
        compiled = step_fn.lower(state, batch, *run_setup.frozen_args).compile()
    except jax.errors.JaxRuntimeError as e:
        # The TPU compiler refuses a program that does not fit in HBM (RESOURCE_EXHAUSTED), as it would on the slice.
        report.compile_s = time.perf_counter() - start
        # The first lines name the memory space and the instruction that overflowed it; the rest is HLO.
        report.error = "\n".join(str(e).strip().splitlines()[:40])[:8000]
        return report
    report.compile_s = time.perf_counter() - start
    report.compiled = True
    memory = compiled.memory_analysis()
    report.argument_bytes = int(memory.argument_size_in_bytes)
    report.argument_bytes_by_layout = arguments_laid_out_bytes((state, batch, *run_setup.frozen_args), compiled)
    report.output_bytes = int(memory.output_size_in_bytes)
    report.alias_bytes = int(memory.alias_size_in_bytes)
    report.temp_bytes = int(memory.temp_size_in_bytes)
    report.generated_code_bytes = int(memory.generated_code_size_in_bytes)
    report.total_bytes = (report.argument_bytes + report.output_bytes - report.alias_bytes + report.temp_bytes
                          + report.generated_code_bytes)
    report.fits = report.total_bytes <= hbm
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost  # older jax returned one dict per program
    report.cost_analysis = {k: float(v) for k, v in (cost or {}).items() if k in ("flops", "bytes accessed",
                                                                                 "transcendentals", "optimal_seconds")}
    report.flops_per_device = report.cost_analysis.get("flops", 0.0)
    report.flops_per_step = report.flops_per_device * report.num_devices
    return report


def _gib(n: int) -> str:
    return f"{n / GIB:.2f} GiB"


def format_report(report: PhaseReport) -> str:
    head = (f"{report.topology} ({report.accelerator_type}, {report.num_devices} x {report.device_kind}), mesh "
            f"{report.mesh}, phase {report.phase}: seq {report.seq_len}, P {report.max_predictions}, global batch "
            f"{report.global_batch}, {report.model_dtype}")
    if not report.compiled:
        return f"{head}\n  compile FAILED after {report.compile_s:.1f} s: {report.error}"
    ratio = report.flops_per_step / report.model_flops_per_step if report.model_flops_per_step else float("nan")
    lines = [
        head,
        f"  compile time            {report.compile_s:8.1f} s",
        "  memory per device (TPU compiler):",
        f"    arguments             {_gib(report.argument_bytes):>12}  (state {_gib(report.state_bytes_by_sharding)}"
        f" + batch {report.batch_bytes_by_sharding / 2**20:.2f} MiB by the shardings; "
        f"{_gib(report.argument_bytes_by_layout)} in TPU tiles)",
        f"    outputs               {_gib(report.output_bytes):>12}",
        f"    aliased (donated)     {_gib(report.alias_bytes):>12}",
        f"    temporaries           {_gib(report.temp_bytes):>12}",
        f"    generated code        {_gib(report.generated_code_bytes):>12}",
        f"    total                 {_gib(report.total_bytes):>12}  of {_gib(report.hbm_bytes)} HBM: "
        f"{'fits' if report.fits else 'DOES NOT FIT'} ({100 * report.total_bytes / report.hbm_bytes:.0f}%)",
        f"  XLA flops per step      {report.flops_per_step:.4g}  ({report.flops_per_device:.4g} per device; "
        f"model formula {report.model_flops_per_step:.4g}, ratio {ratio:.3f})"
        + (": XLA counts the scanned layer body once, not once per layer" if report.scan_layers else ""),
    ]
    if report.cost_analysis.get("optimal_seconds", 0) > 0:  # libtpu 0.0.42 gives negative nonsense for v4
        lines.append(f"  XLA cost-model step     {1e3 * report.cost_analysis['optimal_seconds']:8.2f} ms  (the compiler's "
                     "estimate, not a measurement)")
    return "\n".join(lines)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    from bert_jax.configuration import split_config_overrides

    argv, overrides = split_config_overrides(argv)
    parser = argparse.ArgumentParser(
        prog="python -m bert_jax.compile_ahead",
        description="Compile the sharded train step for a Cloud TPU slice on this machine (no TPU needed; needs "
        "libtpu, the [tpu] extra) and report per-device memory, whether it fits in HBM, FLOPs and compile time. "
        "Any --config.FIELD=VALUE argument overrides a config field (e.g. --config.model.dtype=bfloat16 "
        "--config.mesh.fsdp=4).",
    )
    parser.add_argument("--config", default="base_cased",
                        help="config file or bundled config name[:variants] (default %(default)s)")
    parser.add_argument("--topology", default="v5e:4x4",
                        help="GENERATION:CHIPSHAPE (v4:2x2x4 = 16 chips, v5e:4x4, v5p:4x4x4) or an accelerator "
                        "type (v4-32, v5litepod-16, v5p-128); default %(default)s")
    parser.add_argument("--phase", default="all",
                        help="index of the config.phases entry to compile (0 = seq 128, 1 = seq 512 in base_cased) "
                        "or 'all'; default %(default)s")
    parser.add_argument("--json", action="store_true", help="print one JSON object per phase instead of text")
    return parser.parse_args(argv), overrides


def main(argv: list[str] | None = None) -> int:
    from bert_jax import errors

    try:
        args, overrides = parse_args(list(sys.argv[1:] if argv is None else argv))
    except errors.UserError as e:
        return errors.report("python -m bert_jax.compile_ahead", e)
    import jax

    # The host backend stays the CPU (a TPU VM would otherwise grab its own chips); libtpu is loaded only as the
    # compiler of the described topology.
    jax.config.update("jax_platforms", "cpu")

    from bert_jax.configuration import load_config
    from bert_jax.training import setup as setup_lib

    try:
        topology = parse_topology(args.topology)
        config = load_config(args.config, overrides)
        if args.phase == "all":
            phases = list(range(len(config.phases)))
        elif args.phase.isdigit() and int(args.phase) < len(config.phases):
            phases = [int(args.phase)]
        else:
            raise ConfigError(f"--phase {args.phase!r}: give 'all' or an index below {len(config.phases)} "
                              f"(the config has {len(config.phases)} phase(s))")
        devices = topology_devices(topology)
        run_setup = setup_lib.build(config, devices, load_frozen=False)
        reports = []
        for index in phases:
            phase = config.phases[index]
            print(f"compiling phase {index} (seq {phase.max_seq_length}, batch {config.batch_size}) for "
                  f"{topology.name} ({topology.accelerator_type}) ...", file=sys.stderr, flush=True)
            report = compile_phase(run_setup, topology, index)
            reports.append(report)
            print(json.dumps(dataclasses.asdict(report)) if args.json else format_report(report), flush=True)
    except errors.UserError as e:
        return errors.report("python -m bert_jax.compile_ahead", e)
    except RuntimeError as e:  # libtpu missing: the message says how to install it
        print(f"python -m bert_jax.compile_ahead: error: {e}", file=sys.stderr)
        return 2
    return 0 if all(r.compiled and r.fits for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
