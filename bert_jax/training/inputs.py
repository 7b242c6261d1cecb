"""The run's data: the built dataset made when missing (the demo builds the bundled sample corpus on first use),
each phase's training iterator, and the held-out evaluation."""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import numpy as np
from etils import epath

from bert_jax import storage
from bert_jax.data import build, examples as example_kinds, pipeline, token_counts
from bert_jax.data.build_layout import stored_example_kind
from bert_jax.data.masking import MaskingConfig, VocabInfo
from bert_jax.errors import InputError
from bert_jax.training.phases import Phase
from bert_jax.training.step import EVAL_EXAMPLES

log = logging.getLogger("bert_jax")


def sync(name: str) -> None:
    """Every process waits here for the others (a no-op in a single-process run)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def build_from_config(config, lengths) -> build.BuildConfig:
    """The build of `data.build_from` that a run makes when its data is missing (the demo's)."""
    return build.BuildConfig(inputs=(config.data.build_from,),
                             vocab=storage.local_copy(config.data.vocab_file, flag="data.vocab_file"),
                             lowercase=config.data.lowercase, max_seq_lengths=tuple(lengths),
                             example_kind=config.data.example_kind,
                             eval_fraction=config.data.get("build_eval_fraction", 0.01))


def ensure_data(run_setup, plan: list[Phase]) -> None:
    """Builds the dataset from `data.build_from` when it is missing (the tiny demo; process 0 builds, all wait), then
    checks, before any step, that it fits the run: every length built, its vocab of the model's kind and within its
    embedding table, and its examples carrying every field the objective reads."""
    config = run_setup.config
    lengths = sorted({phase.max_seq_length for phase in plan})
    missing = [n for n in lengths if not (epath.Path(config.data.dir) / f"seq_{n}").is_dir()]
    if missing and config.data.build_from:
        if jax.process_index() == 0:
            log.info("building %s from %s (sequence lengths %s)", config.data.dir, config.data.build_from, lengths)
            build_config = build_from_config(config, lengths)
            with storage.staged_output(config.data.dir, flag="data.dir") as output:  # gs://: built, then uploaded
                report = build.build(build_config, output, workers=os.cpu_count() or 1)
            overall = report.stats["overall"]
            log.info("built %s: %d documents, %d examples", config.data.dir, overall["documents"],
                     overall["examples"])
        sync("data built")
    data_dir = local_data_dir(config)
    vocab = VocabInfo.from_data_dir(data_dir) if os.path.isdir(data_dir) else None
    for phase in plan:  # a missing or incomplete dataset fails here, with the command that builds it
        paths = pipeline.shard_paths(data_dir, max_seq_length=phase.max_seq_length, split="train")
        if _masking(config, phase).frequency_smoothing > 0 and jax.process_index() == 0:
            # Frequency-smoothed masking reads the train split's token counts: one process counts an older build
            # (once, cached in the data dir) instead of every host at once.
            token_counts.load_or_count(data_dir, max_seq_length=phase.max_seq_length, train_paths=paths,
                                       vocab_size=vocab.vocab_size)
    sync("token counts")
    _check_splits(config, plan)
    _check_fits(run_setup, vocab)


def local_data_dir(config) -> str:
    """`data.dir` as a local directory: itself, or for a gs:// dataset its local mirror (array_record reads local
    files only), downloaded on first use with progress and reused by later runs on this machine."""
    if storage.is_remote(config.data.dir) and epath.Path(config.data.dir).exists():
        return storage.local_copy(config.data.dir, flag="--config.data.dir")
    return config.data.dir  # local, or missing: the checks name it and say how to build it


def _check_splits(config, plan: list[Phase]) -> None:
    """Every split the run reads holds examples, checked before the first step: an empty eval split would otherwise
    stop the run at its first evaluation, after up to `eval_every` steps of work and before any checkpoint."""
    for phase in plan:
        for split in ("train", "eval"):
            paths = pipeline.shard_paths(local_data_dir(config), max_seq_length=phase.max_seq_length, split=split)
            count = pipeline.count_records(paths)
            needed = jax.process_count()
            if count < needed:
                raise InputError(
                    f"the {split} split of {config.data.dir}/seq_{phase.max_seq_length} holds {count} examples, "
                    f"fewer than the {needed} process(es) of this run (phase {phase.index} reads it): rebuild with "
                    + ("more documents or a larger --eval_fraction" if split == "eval" else "more documents"))


def _check_fits(run_setup, vocab: VocabInfo) -> None:
    config, model = run_setup.config, run_setup.model_config
    data_dir = local_data_dir(config)
    if vocab.kind != model.VOCAB_KIND:
        raise InputError(
            f"{data_dir} was built with a {vocab.kind} vocab ({vocab.vocab_size} tokens) but model.model_type "
            f"{model.model_type!r} reads a {model.VOCAB_KIND} one: build the data with a {model.VOCAB_KIND} vocab "
            f"(python -m bert_jax.data.vocab --kind {model.VOCAB_KIND}), or use a config of a {vocab.kind} model"
        )
    if vocab.vocab_size > model.vocab_size:
        raise InputError(
            f"{data_dir}'s vocab has {vocab.vocab_size} tokens but model.vocab_size is {model.vocab_size}: "
            f"set --config.model.vocab_size={vocab.vocab_size}"
        )
    if getattr(model, "pad_token_id", vocab.pad_id) != vocab.pad_id:
        raise InputError(f"{data_dir}'s vocab pads with id {vocab.pad_id} but model.pad_token_id is "
                         f"{model.pad_token_id}: set --config.model.pad_token_id={vocab.pad_id}")
    run_setup.objective.check_data(data_dir, vocab.vocab_size)
    fields = pipeline.batch_fields(data_dir)
    missing = sorted(set(run_setup.objective.field_names()) - set(fields))
    if missing:
        raise InputError(
            f"objective {run_setup.objective.name!r} reads {missing}, which the {stored_example_kind(data_dir)} "
            f"examples in {data_dir} do not have: build examples that do, or choose an objective that reads only "
            f"{list(fields)}"
        )
    segments = example_kinds.example_kind(stored_example_kind(data_dir)).segments
    if segments > model.type_vocab_size:
        raise InputError(f"the {stored_example_kind(data_dir)} examples in {data_dir} use {segments} segment ids but "
                         f"the model has {model.type_vocab_size} token type(s): build examples of one segment "
                         "(--example_kind full_sentences)")


class BuiltData:
    """The run's data when it is a built pre-training dataset (`config.data.dir`): the default."""

    def __init__(self, run_setup) -> None:
        self.run_setup = run_setup

    def ensure(self, plan: list[Phase]) -> None:
        ensure_data(self.run_setup, plan)

    def train_iterator(self, phase: Phase):
        return train_iterator(self.run_setup.config, phase)

    def evaluate(self, phase: Phase, params) -> dict[str, Any]:
        return evaluate(self.run_setup, phase, params)


def run_data(run_setup):
    """The run's data: the objective's own examples where it has them (`Objective.task_examples`, fine-tuning),
    else the built dataset. Either has `ensure(plan)`, `train_iterator(phase)` and `evaluate(phase, params)`."""
    examples = run_setup.objective.task_examples()
    if examples is None:
        return BuiltData(run_setup)
    from bert_jax.training.task_inputs import TaskInputs

    return TaskInputs(run_setup, examples)


def seed32(config) -> int:
    return int(config.seed) % 2**32


def _masking(config, phase: Phase) -> MaskingConfig:
    return MaskingConfig.from_data_config(config.data, phase.max_predictions)


def train_iterator(config, phase: Phase):
    """This host's batches of the phase, forever; checkpointable (`get_state`/`set_state`)."""
    loader = pipeline.make_loader(
        local_data_dir(config), max_seq_length=phase.max_seq_length, split="train", global_batch_size=config.batch_size,
        max_predictions=phase.max_predictions, seed=seed32(config), worker_count=config.data.worker_count,
        masking=_masking(config, phase),
    )
    return iter(loader)


def eval_loader(config, phase: Phase):
    """This host's batches of the held-out split, in order, masked the same way every time (one epoch; the last
    batch padded, `example_weights` 0 on the padding)."""
    return pipeline.make_loader(
        local_data_dir(config), max_seq_length=phase.max_seq_length, split="eval", global_batch_size=config.batch_size,
        max_predictions=phase.max_predictions, seed=seed32(config), masking=_masking(config, phase),
        num_epochs=1, shuffle=False, drop_remainder=False,
    )


def evaluate(setup, phase: Phase, params) -> dict[str, Any]:
    """The objective's summaries on the held-out split (the first `eval_steps` batches, the same every time)."""
    config = setup.config
    totals = None
    for index, host_batch in enumerate(eval_loader(config, phase)):
        if 0 < config.eval_steps <= index:
            break
        sums = setup.eval_step(params, setup.global_batch(host_batch), *setup.frozen_args)
        totals = sums if totals is None else jax.tree.map(np.add, totals, sums)
    totals = {name: float(value) for name, value in jax.device_get(totals).items()}
    return dict(kind="eval", max_seq_length=phase.max_seq_length, examples=int(totals[EVAL_EXAMPLES]),
                **setup.objective.summarize(totals))
