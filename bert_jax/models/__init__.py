"""The model family, by `model.model_type`: each architecture's config class (pure Python) and its model classes by
the heads an objective reads. Importing this package imports no JAX: a config is validated without it.

An architecture is two modules found by name: `models/<type>_config.py` defines `MODEL_TYPE` (Hugging Face's
`model_type`, e.g. "bert"), `CONFIG_CLASS` and `MODELS_MODULE`; that module (e.g. `models/bert.py`) defines
`MODELS_BY_HEADS`. Adding one touches no file here.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import pkgutil
from typing import Any, Callable, Mapping


# The fields of config.model a run chooses (how it computes), whatever the architecture's source (a pre-trained
# model for fine-tuning or init_from): every other field is the architecture's.
COMPUTE_FIELDS = ("dtype", "param_dtype", "scan_layers", "dropout_impl", "decoder_impl")


@functools.cache
def architectures() -> dict[str, Any]:
    """model_type -> its `*_config` module, for every `models/*_config.py`."""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.endswith("_config"):
            module = importlib.import_module(f"{__name__}.{info.name}")
            found[module.MODEL_TYPE] = module
    return found


def _architecture(model_type: str):
    if model_type not in architectures():
        raise ValueError(f"model.model_type {model_type!r} is not supported; use one of {sorted(architectures())}")
    return architectures()[model_type]


def config_class(model_type: str) -> type:
    return _architecture(model_type).CONFIG_CLASS


def model_config(values: Mapping[str, Any], prefix: str = ""):
    """The architecture's config object from config fields (a dict or ConfigDict); unknown or bad fields are a
    ValueError naming the field as `{prefix}field`."""
    values = dict(values)
    return config_class(values.get("model_type", "bert")).from_mapping(values, prefix)


def resolve_speed_levers(config, platform: str):
    """The config with its "auto" implementation choices decided for `platform` (the platform the step compiles
    for, which for compile-ahead is not the host's)."""
    from bert_jax.models import speed_levers

    return dataclasses.replace(
        config,
        dropout_impl=speed_levers.resolve(config.dropout_impl, platform, fast="threefry16"),
        decoder_impl=speed_levers.resolve(config.decoder_impl, platform, fast="matmul_bias_grad"),
    )


def model_class(config, heads: tuple[str, ...]) -> type:
    """The model class of `config`'s architecture that has exactly `heads` (e.g. ("mlm", "nsp"))."""
    models = importlib.import_module(_architecture(config.model_type).MODELS_MODULE).MODELS_BY_HEADS
    heads = tuple(heads)
    if heads not in models:
        raise ValueError(f"{config.model_type} has no model with heads {heads}; it has {sorted(models)}")
    return models[heads]


def model_heads(config) -> tuple[tuple[str, ...], ...]:
    """The head sets `config`'s architecture has models for, largest first (e.g. (("mlm", "nsp"), ("mlm",)))."""
    models = importlib.import_module(_architecture(config.model_type).MODELS_MODULE).MODELS_BY_HEADS
    return tuple(sorted(models, key=len, reverse=True))


def constructor(config, heads: tuple[str, ...]) -> Callable[..., Any]:
    """`make(rngs) -> nnx.Module`: the model with `heads`, built from `config` (what state init receives)."""
    cls = model_class(config, heads)

    def make(rngs):
        return cls(config, rngs=rngs)

    return make
