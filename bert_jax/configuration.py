"""Loading, overriding and validating ml_collections config files (`configs/NAME.py[:ARG]`, or a bundled config by
name: `NAME[:ARG]`).

A config file defines `get_config(arg=None)`; `arg` is a comma-separated list of variants (`tiny`, `uncased`, ...).
Overrides are `FIELD=VALUE` strings (as `--config.FIELD=VALUE` on the command line) and may only name existing
fields: a typo is an error that names the field and suggests the closest ones, never a silently ignored setting.
Loading and validating a config imports no JAX and no model code (the model and objective registries are pure).
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Iterable, Sequence

import ml_collections

from bert_jax import bundled, models, objectives
from bert_jax.errors import ConfigError
from bert_jax.training import rules


def parse_variants(arg: str | None, known: Iterable[str]) -> set[str]:
    """`"tiny,uncased"` -> {"tiny", "uncased"}; an unknown variant is an error listing the known ones."""
    variants = {v.strip() for v in (arg or "").split(",") if v.strip()}
    unknown = variants - set(known)
    if unknown:
        raise ConfigError(f"unknown config variant(s) {sorted(unknown)}; choose from {sorted(known)}")
    return variants


def resolve_config_file(path_or_name: str | os.PathLike) -> Path:
    """An existing file path first, else a bundled config by name (`base_cased` or `base_cased.py`, wherever bert_jax
    is installed); anything else is one error listing the bundled configs."""
    path = Path(path_or_name)
    if path.is_file():
        return path
    bundled_file = bundled.config_file(str(path_or_name))
    if bundled_file is not None:
        return bundled_file
    raise ConfigError(f"config file {path} not found, and it names no bundled config; give a config file path or one "
                      f"of the bundled configs {', '.join(bundled.config_names())} (e.g. --config base_cased:tiny)")


def load_module(path: str | os.PathLike, name: str | None = None):
    """Imports a config file by path or bundled name (config files are imported by path, not as package modules)."""
    path = resolve_config_file(path)
    module_name = name or f"bert_jax_config_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def load_sibling(config_file: str, name: str):
    """For a config file that builds on another in the same directory (`large_cased.py` on `base_cased.py`)."""
    return load_module(Path(config_file).parent / f"{name}.py")


def split_spec(spec: str) -> tuple[str, str | None]:
    """`configs/base_cased.py:tiny` -> ("configs/base_cased.py", "tiny"); `base_cased:tiny` -> ("base_cased", "tiny")."""
    path, sep, arg = str(spec).partition(":")
    return path, (arg if sep else None)


def split_config_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """`--config.FIELD=VALUE` or `--config.FIELD VALUE` (ml_collections `config_flags` style) apart from the other
    arguments; the overrides come back as FIELD=VALUE."""
    rest, overrides = [], []
    argv = list(argv)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            field = arg[len("--config.") :]
            if "=" not in field:
                if i + 1 >= len(argv):
                    raise ConfigError(f"{arg} needs a value: {arg}=VALUE")
                field, i = f"{field}={argv[i + 1]}", i + 1
            overrides.append(field)
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def load_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """Loads `path[:arg]`, applies `FIELD=VALUE` overrides, validates, and locks the config."""
    path, arg = split_spec(spec)
    module = load_module(path)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path} defines no get_config(arg=None)")
    config = module.get_config(arg) if arg is not None else module.get_config()
    return finish_config(config, overrides)


def finish_config(config: ml_collections.ConfigDict, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """Applies `FIELD=VALUE` overrides to a config (in place), validates, and locks it."""
    if isinstance(overrides, str):  # a lone "a=b" would otherwise be read character by character
        overrides = [overrides]
    for override in overrides:
        field, sep, value = override.partition("=")
        if not sep:
            raise ConfigError(f"override {override!r} must look like FIELD=VALUE (e.g. model.hidden_size=256)")
        set_field(config, field.strip().removeprefix("config."), value)
    validate(config)
    config.lock()
    return config


def _field_names(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    names = []
    for key, value in config.items():
        names.append(prefix + key)
        if isinstance(value, ml_collections.ConfigDict):
            names += _field_names(value, prefix + key + ".")
    return names


def _unknown_field(config, field: str) -> ConfigError:
    suggestions = difflib.get_close_matches(field, _field_names(config), n=3)
    hint = f"; did you mean {' or '.join(suggestions)}?" if suggestions else ""
    return ConfigError(f"unknown config field '{field}'{hint}")


def _parse_value(text: str, current, field: str):
    if isinstance(current, bool):
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ConfigError(f"config field '{field}' is a bool; got {text!r} (use true or false)")
    if isinstance(current, str) or current is None:
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ConfigError(f"config field '{field}' expects {type(current).__name__}; got {text!r}") from None
    if isinstance(current, float) and isinstance(value, int):
        value = float(value)
    if isinstance(current, (list, tuple)) and isinstance(value, (list, tuple)):
        # Lists of groups (phases) take a list of dicts.
        value = [ml_collections.ConfigDict(v) if isinstance(v, dict) else v for v in value]
        return type(current)(value)
    if not isinstance(value, type(current)):
        raise ConfigError(f"config field '{field}' expects {type(current).__name__}; got {text!r}")
    return value


def set_field(config: ml_collections.ConfigDict, field: str, text: str) -> None:
    """Sets `a.b.c` from its command-line text, parsed to the field's current type."""
    *parents, leaf = field.split(".")
    node = config
    for part in parents:
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            raise _unknown_field(config, field)
        node = node[part]
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
        raise _unknown_field(config, field)
    if isinstance(node[leaf], ml_collections.ConfigDict):
        raise ConfigError(f"config field '{field}' is a group; set one of its fields, e.g. {field}.{next(iter(node[leaf]))}")
    node[leaf] = _parse_value(text, node[leaf], field)


def model_config(config: ml_collections.ConfigDict):
    """The architecture's config object (e.g. `BertConfig`) from `config.model`."""
    return models.model_config(config.model.to_dict())


_PHASE_FIELDS = {"max_seq_length": (int,), "fraction": (int, float), "max_predictions": (int,)}


def _check_phase_fields(phases) -> None:
    """Each phase is a group of exactly the three fields, of their types (a typo or a string is named, not a
    traceback from deep inside the trainer)."""
    for i, phase in enumerate(phases):
        if not isinstance(phase, (dict, ml_collections.ConfigDict)):
            raise ConfigError(f"phases[{i}] is {phase!r}; each phase is a dict of {sorted(_PHASE_FIELDS)}")
        keys = set(phase.keys())
        if keys != set(_PHASE_FIELDS):
            missing, unknown = sorted(set(_PHASE_FIELDS) - keys), sorted(keys - set(_PHASE_FIELDS))
            raise ConfigError(f"phases[{i}] " + (f"lacks {missing}" if missing else "")
                              + (" and " if missing and unknown else "") + (f"has unknown {unknown}" if unknown else "")
                              + f"; each phase has exactly {sorted(_PHASE_FIELDS)}")
        for name, types in _PHASE_FIELDS.items():
            value = phase[name]
            if isinstance(value, bool) or not isinstance(value, types):
                raise ConfigError(f"phases[{i}].{name} must be {' or '.join(t.__name__ for t in types)}; "
                                  f"got {value!r}")


def _check_distillation(distill) -> None:
    if not distill.temperature > 0:
        raise ConfigError(f"distillation.temperature must be positive; got {distill.temperature}")
    for name in ("alpha_ce", "alpha_mlm", "alpha_cos", "alpha_mse"):
        if distill[name] < 0:
            raise ConfigError(f"distillation.{name} must not be negative; got {distill[name]}")
    if distill.student_init not in ("teacher", "random"):
        raise ConfigError(f"distillation.student_init {distill.student_init!r}: use 'teacher' or 'random'")
    if distill.teacher_dtype not in ("float32", "bfloat16", "float16"):
        raise ConfigError(f"distillation.teacher_dtype {distill.teacher_dtype!r}: use float32 or bfloat16")


def validate(config: ml_collections.ConfigDict) -> None:
    """One clear error naming the first inconsistent field."""
    model = config.model
    try:
        architecture = models.model_config(model.to_dict(), prefix="model.")
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None
    if config.objective not in objectives.OBJECTIVES:
        raise ConfigError(f"objective {config.objective!r} is not supported; use one of {sorted(objectives.OBJECTIVES)}")
    for name in ("batch_size", "train_steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints",
                 "max_nonfinite_steps"):
        if config[name] <= 0:
            raise ConfigError(f"{name} must be positive; got {config[name]}")
    if not config.phases:
        raise ConfigError("phases is empty; give at least one (max_seq_length, fraction, max_predictions)")
    _check_phase_fields(config.phases)
    total = 0.0
    for i, phase in enumerate(config.phases):
        if not 0 < phase.fraction <= 1:
            raise ConfigError(f"phases[{i}].fraction must be in (0, 1]; got {phase.fraction}")
        total += phase.fraction
        usable = architecture.max_sequence_length
        if phase.max_seq_length > usable:
            reserved = model.max_position_embeddings - usable
            raise ConfigError(
                f"phases[{i}].max_seq_length ({phase.max_seq_length}) exceeds model.max_position_embeddings "
                f"({model.max_position_embeddings})"
                + (f" minus the {reserved} positions reserved before the first token ({usable} usable)"
                   if reserved else "")
            )
        if phase.max_seq_length < 8:
            raise ConfigError(f"phases[{i}].max_seq_length ({phase.max_seq_length}) is too short for a pair")
        if not 0 < phase.max_predictions <= phase.max_seq_length:
            raise ConfigError(
                f"phases[{i}].max_predictions ({phase.max_predictions}) must be in [1, max_seq_length]"
            )
    if abs(total - 1.0) > 1e-6:
        fractions = [phase.fraction for phase in config.phases]
        raise ConfigError(f"phases fractions {fractions} sum to {total:g}; they must sum to 1")
    opt = config.optimizer
    if opt.warmup_steps > config.train_steps:
        raise ConfigError(f"optimizer.warmup_steps ({opt.warmup_steps}) exceeds train_steps ({config.train_steps})")
    for name in ("b1", "b2"):
        if not 0 <= opt[name] < 1:
            raise ConfigError(f"optimizer.{name} must be in [0, 1); got {opt[name]}")
    if opt.learning_rate <= 0:
        raise ConfigError(f"optimizer.learning_rate must be positive; got {opt.learning_rate}")
    if opt.name not in ("adamw", "lamb"):
        raise ConfigError(f"optimizer.name {opt.name!r} is not supported; use 'adamw' or 'lamb'")
    for name, low in (("grad_accum_steps", 1), ("warmup_steps", 0)):
        if opt[name] < low:
            raise ConfigError(f"optimizer.{name} must be at least {low}; got {opt[name]}")
    for name in ("weight_decay", "grad_clip_norm", "end_learning_rate"):
        if opt[name] < 0:
            raise ConfigError(f"optimizer.{name} must not be negative; got {opt[name]} (0 turns it off)")
    if not opt.eps > 0:
        raise ConfigError(f"optimizer.eps must be positive; got {opt.eps}")
    data = config.data  # a fine-tuning run's data has no masking fields
    if "masked_lm_prob" in data and not 0 < data.masked_lm_prob <= 1:
        raise ConfigError(f"data.masked_lm_prob must be in (0, 1]; got {data.masked_lm_prob} (0.15 is BERT's)")
    if data.get("worker_count", 0) < 0:
        raise ConfigError(f"data.worker_count must be 0 (load in this process) or more; got {data.worker_count}")
    if data.get("mlm_smoothing", 0.0) < 0:
        raise ConfigError(f"data.mlm_smoothing must not be negative; got {data.mlm_smoothing} (0 = uniform)")
    if config.eval_steps < 0:
        raise ConfigError(f"eval_steps must be 0 (the whole eval split) or more; got {config.eval_steps}")
    if "distillation" in config:
        _check_distillation(config.distillation)
    rules.check_mesh_sizes(config.mesh)
    rules.merge_rules(config.mesh.rules)
    if config.mesh.tensor > 0 and architecture.num_attention_heads % config.mesh.tensor:
        raise ConfigError(
            f"mesh.tensor ({config.mesh.tensor}) must divide the model's attention heads "
            f"({architecture.num_attention_heads})"
        )
