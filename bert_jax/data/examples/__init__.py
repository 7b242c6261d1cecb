"""The kinds of pre-training example the dataset build can write, by the name `BuildConfig.example_kind` stores.

A kind is one module implementing `base.ExampleKind` (what a tokenized document turns into, its record bytes, its
counters and warnings), registered in `EXAMPLE_KINDS` below; the builder does the rest. Kinds: `nsp_pairs`
(BERT's sentence pairs with next-sentence labels).
"""

from bert_jax.data.examples import nsp_pairs
from bert_jax.data.examples.base import ExampleKind
from bert_jax.errors import InputError

EXAMPLE_KINDS: dict[str, ExampleKind] = {kind.name: kind for kind in (nsp_pairs.KIND,)}


def example_kind(name: str) -> ExampleKind:
    """The registered kind called `name`; an `InputError` listing the kinds for any other name."""
    if name not in EXAMPLE_KINDS:
        raise InputError(f"unknown example kind {name!r}; choose one of {sorted(EXAMPLE_KINDS)}")
    return EXAMPLE_KINDS[name]
