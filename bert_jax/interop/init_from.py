"""Continued pre-training: a fresh run (step 0, fresh optimizer) whose parameters start from a trained model,
`config.init_from` — `hf:DIR`, `hf:ORG/NAME` (a Hub id in the local Hugging Face cache), a training workdir (its
latest checkpoint) or a plain path (either kind, detected). `sources.py` reads them.

- The architecture comes from the source: `config.model` takes its fields (model_type, sizes, vocab_size,
  type_vocab_size, ...) and keeps the run's compute fields (dtype, scan_layers, ...); a different value set on the
  command line is an error, except the regularisation fields (dropout, initializer_range), which a run may choose.
  The tokenizer does too (`data.vocab_file`, `data.lowercase`): the export carries the source's.
- Parameters: every tensor of the source the model has is loaded; heads the source lacks (the NSP head of a
  `BertForMaskedLM`, every head of a bare `BertModel`) keep their fresh initialisation from `config.seed` and are
  listed in one log line; a missing encoder tensor is an error.
- The data: its vocab must be the source's, token for token.
"""

from __future__ import annotations

import logging
from typing import Iterable

import ml_collections

from bert_jax.errors import CheckpointError, ConfigError, InputError

log = logging.getLogger("bert_jax")


def _is_regularisation(field: str) -> bool:
    return "dropout" in field or field == "initializer_range"


def overridden_fields(overrides: Iterable[str]) -> set[str]:
    """The field names of `FIELD=VALUE` command-line overrides."""
    return {override.partition("=")[0].strip().removeprefix("config.") for override in overrides}


def prepare_config(config: ml_collections.ConfigDict, explicit: Iterable[str] = ()) -> None:
    """Completes `config` in place with the architecture and tokenizer of `config.init_from`'s source (nothing when
    it is empty); idempotent. `explicit`: the fields set on the command line (`overridden_fields`), whose
    disagreement with the source is an error rather than replaced."""
    from bert_jax.configuration import validate
    from bert_jax.interop import sources
    from bert_jax.models import COMPUTE_FIELDS  # the run's choice, whatever the source

    spec = config.get("init_from", "")
    if not spec:
        return
    source = sources.describe(spec)
    arch = source.model_config
    wanted = {"model_type": arch.model_type, **{name: getattr(arch, name) for name in type(arch).HF_FIELDS}}
    explicit = set(explicit)
    kept = {name: config.model[name] for name in config.model
            if name in COMPUTE_FIELDS or (_is_regularisation(name) and f"model.{name}" in explicit and name in wanted)}
    conflicts = [name for name, value in wanted.items()
                 if f"model.{name}" in explicit and name not in kept and config.model.get(name) != value]
    if conflicts:
        given = ", ".join(f"model.{name}={config.model[name]!r}" for name in conflicts)
        theirs = ", ".join(f"{name}={wanted[name]!r}" for name in conflicts)
        raise ConfigError(f"--config.{given} contradicts init_from {spec} ({theirs}): a run continued from a model "
                          "takes its architecture; drop the override, or train from scratch without init_from")
    model = {**wanted, **kept}
    changed = {name: (config.model.get(name), value) for name, value in model.items() if config.model.get(name) != value}
    dropped = sorted(set(config.model) - set(model))
    tokenizer = {"vocab_file": source.vocab_file, "lowercase": source.lowercase} if source.vocab_file else {}
    tokenizer_changed = {name: value for name, value in tokenizer.items() if config.data.get(name) != value}
    if not (changed or dropped or tokenizer_changed):
        return
    config.unlock()
    config.model = ml_collections.ConfigDict(model)
    config.data.update(tokenizer_changed)
    config.lock()
    validate(config)
    if changed or dropped:
        log.info("init_from %s: the architecture is the source's (%s): %s", spec, arch.model_type,
                 ", ".join([f"model.{name} {old!r} -> {new!r}" for name, (old, new) in changed.items()]
                           + [f"model.{name} dropped" for name in dropped]))
    if tokenizer_changed:
        log.info("init_from %s: tokenizer %s (lowercase %s)", spec, source.vocab_file, source.lowercase)


def initial_params(config: ml_collections.ConfigDict, make_model, seed: int):
    """The run's initial parameters (host arrays, the nnx.State of `make_model`'s nnx.Param): the source's tensors
    wherever the model has them, fresh ones from `seed` for the heads it lacks (logged)."""
    import jax
    from flax import nnx

    from bert_jax.interop import hf, sources

    spec = config.init_from
    source = sources.describe(spec)
    tensors = sources.state_dict(source)
    with jax.default_device(_host_device()):  # the whole model is built once on the host, not on one accelerator
        model = make_model(nnx.Rngs(seed))
        report = hf.from_hf_state_dict(model, tensors, spec)
        params = jax.device_get(nnx.state(model, nnx.Param))
    if report.missing_encoder:
        raise CheckpointError(f"init_from {spec} lacks {len(report.missing_encoder)} encoder tensors of its own "
                              f"config.json ({', '.join(report.missing_encoder[:4])}, ...): the checkpoint is "
                              "incomplete; re-download or re-export it")
    log.info("init_from %s: loaded %d tensors (%s)", spec, len(report.loaded), source.path)
    if report.missing:
        log.info("init_from %s: not in the source, initialised from seed %d: %s (%s)", spec, seed,
                 ", ".join(report.missing_heads), ", ".join(report.missing))
    if report.unused:
        log.info("init_from %s: ignored %d tensors the model has no place for: %s", spec, len(report.unused),
                 ", ".join(report.unused))
    return params


def _host_device():
    import jax

    try:
        return jax.devices("cpu")[0]
    except RuntimeError:  # no CPU backend in this process (JAX_PLATFORMS names only the accelerator)
        return jax.devices()[0]


def check_vocab(config: ml_collections.ConfigDict, data_dir: str) -> None:
    """The built data's vocab is the source's, token for token: else one `InputError` naming both files and the
    rebuild."""
    from bert_jax.data.tokenizers import vocabs
    from bert_jax.interop import sources

    source = sources.describe(config.init_from)
    theirs_file = source.vocab_file
    if not theirs_file:
        log.warning("init_from %s: the source names no vocab file; the data's vocab is not checked", config.init_from)
        return
    ours, theirs = vocabs.from_data_dir(data_dir), vocabs.load(theirs_file, lowercase=False)
    if ours.kind == theirs.kind and ours.tokens == theirs.tokens:
        if ours.kind == vocabs.WORDPIECE and ours.lowercase != source.lowercase:
            cased = {True: "lowercased", False: "cased"}
            raise InputError(f"the data in {data_dir} was built {cased[ours.lowercase]} and init_from's tokenizer "
                             f"{theirs_file} is {cased[source.lowercase]}: rebuild the data "
                             f"with {'--lowercase' if source.lowercase else '--cased'}")
        return
    difference = (f"{ours.kind} vs {theirs.kind}" if ours.kind != theirs.kind else
                  f"{ours.size} vs {theirs.size} tokens" if ours.size != theirs.size else
                  f"token {_first_difference(ours.tokens, theirs.tokens)} differs")
    raise InputError(f"the data in {data_dir} was built with {ours.path}, which is not init_from's vocab {theirs_file} "
                     f"({difference}): rebuild the data with `python -m bert_jax.data.build --vocab {theirs_file} ...` "
                     "(the model's token ids must mean the same tokens)")


def _first_difference(a, b) -> str:
    index = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
    return f"{index} ({a[index]!r} vs {b[index]!r})"
