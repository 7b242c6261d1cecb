"""The kinds of pre-training example the dataset build can write, by the name `BuildConfig.example_kind` stores.

A kind is one module implementing `base.ExampleKind` (what a tokenized document turns into, its record bytes, its
counters and warnings, its record decoder and eval padding row), registered in `EXAMPLE_KINDS` below; the builder
and the loader do the rest. Kinds: `nsp_pairs` (BERT's sentence pairs with next-sentence labels), `full_sentences`
and `doc_sentences` (RoBERTa's packed sequences of whole sentences, across documents or within one; `packed`).
"""

from bert_jax.data.examples import nsp_pairs, packed
from bert_jax.data.examples.base import ExampleKind
from bert_jax.errors import InputError

EXAMPLE_KINDS: dict[str, ExampleKind] = {
    kind.name: kind for kind in (nsp_pairs.KIND, packed.FULL_SENTENCES, packed.DOC_SENTENCES)}


def example_kind(name: str) -> ExampleKind:
    """The registered kind called `name`; an `InputError` listing the kinds for any other name."""
    if name not in EXAMPLE_KINDS:
        raise InputError(f"unknown example kind {name!r}; choose one of {sorted(EXAMPLE_KINDS)}")
    return EXAMPLE_KINDS[name]
