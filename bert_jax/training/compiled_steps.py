"""The train step compiled ahead of data for each batch shape a run meets, and the work done through it.

A phase's own shape (its sequence length) is compiled when the phase starts, so the log shows compile time and
memory before the first batch. Fine-tuning cuts batches to shorter lengths (`length_buckets.py`); each new length
is compiled when it first arrives (a log line each), at most max_seq_length / finetune.length_bucket of them. The
tokens and FLOPs of every step are counted at the length it ran at, and compile time is kept apart, so throughput
and MFU are the steps' own.
"""

from __future__ import annotations

import logging
import time

from bert_jax.objectives.base import BatchShape
from bert_jax.training.phases import Phase

log = logging.getLogger("bert_jax")


class CompiledSteps:
    def __init__(self, run_setup) -> None:
        self.run_setup = run_setup
        self.phase: Phase | None = None
        self._compiled: dict[tuple[int, int], tuple[object, float]] = {}  # (length, predictions) -> step, FLOPs
        self.tokens = 0  # trained token positions (batch x the length each step ran at)
        self.flops = 0.0  # model FLOPs of those steps
        self.compile_s = 0.0  # spent compiling

    def start_phase(self, phase: Phase) -> None:
        self.phase = phase
        self._get(phase.max_seq_length)

    def __call__(self, state, host_batch):
        """One train step on this host's batch, at the batch's own length."""
        length = int(host_batch["input_ids"].shape[-1])
        compiled, flops = self._get(length)
        self.tokens += self.run_setup.config.batch_size * length
        self.flops += flops
        return compiled(state, self.run_setup.global_batch(host_batch), *self.run_setup.frozen_args)

    def _shape(self, length: int) -> BatchShape:
        return self.run_setup.batch_shape(length, self.phase.max_predictions)

    def _get(self, length: int):
        key = (length, self.phase.max_predictions)
        if key not in self._compiled:
            self._compiled[key] = self._compile(length), flops_per_step(self.run_setup, self._shape(length))
        return self._compiled[key]

    def _compile(self, length: int):
        run_setup = self.run_setup
        batch = run_setup.abstract_batch(self._shape(length))
        start = time.perf_counter()
        compiled = run_setup.train_step.lower(run_setup.abstract_state, batch, *run_setup.frozen_args).compile()
        seconds = time.perf_counter() - start
        self.compile_s += seconds
        memory = compiled.memory_analysis()
        per_device = ""
        if memory is not None:
            total = (memory.argument_size_in_bytes + memory.output_size_in_bytes + memory.temp_size_in_bytes
                     - memory.alias_size_in_bytes)
            per_device = f", {total / 2**20:.1f} MiB per device"
        log.info("compiled the train step for sequence length %d in %.1f s%s", length, seconds, per_device)
        return compiled


def flops_per_step(run_setup, shape: BatchShape) -> float:
    return run_setup.flops_per_token(shape) * shape.batch_size * shape.seq_len
