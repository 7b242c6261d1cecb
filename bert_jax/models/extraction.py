"""A student's initial parameters taken from its teacher's, as Hugging Face's `scripts/extract_distilbert.py` makes
DistilBERT's starting point from BERT: the embeddings, a subset of the layers and the masked-LM head, copied.

Pure tree manipulation on `nnx.State`s (no host copies, no shapes decided by values), so the trainer calls it inside
its jitted, sharded init: `init_params(params, frozen_params)` is `functools.partial(extract_student,
student_config=..., teacher_config=...)`.

Pairs supported: a BERT teacher and a DistilBERT student (the DistilBERT recipe), and a teacher and a shallower
student of its own architecture (BERT -> BERT, RoBERTa -> RoBERTa, as distilroberta-base was made by HF's
`extract.py`). A RoBERTa teacher cannot seed a DistilBERT: RoBERTa's positions start after the padding id and its
vocabulary is byte-level BPE, DistilBERT's are BERT's.

Against `extract_distilbert.py`, deliberately:
- the same copies: word and position embeddings, the embedding LayerNorm, the chosen layers whole, the MLM output
  bias (its decoder weight is the word embeddings, tied); the token-type embeddings and the pooler are dropped (the
  script drops them too: it does not add the type-0 row anywhere, so the student's embedding output differs from
  the teacher's by that row until training adapts; `fold_token_type=True` adds it to every position row instead,
  which makes the student's embeddings equal the teacher's on single-segment input);
- the MLM transform and its LayerNorm are copied by default (`copy_mlm_transform`); the script copies them only with
  `--vocab_transform` (off by default) and leaves them freshly initialised otherwise;
- the layer list is any list of teacher layers, one per student layer; the default is the script's
  (0, 2, 4, 7, 9, 11) for 12 -> 6 and evenly spaced in general (`default_layers`).
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
from flax import nnx

from bert_jax.errors import CheckpointError, ConfigError

# (teacher model_type, student model_type) pairs whose parameters correspond. Each model keeps its encoder under the
# attribute named by its model_type (`bert`, `roberta`, `distilbert`, as Hugging Face's `base_model_prefix`), and the
# layers, embeddings and heads below it under the same names.
PAIRS = (("bert", "distilbert"), ("bert", "bert"), ("roberta", "roberta"))
# What must be equal for a teacher's weights to mean the same in the student (BERT's names).
SAME_FIELDS = ("vocab_size", "hidden_size", "num_attention_heads", "intermediate_size", "hidden_act",
               "max_position_embeddings")
MLM_TRANSFORM = ("mlm_transform", "mlm_layer_norm")


def default_layers(teacher_layers: int, student_layers: int) -> tuple[int, ...]:
    """Teacher layers evenly spaced from the first to the last: layer k is round(k (T - 1) / (S - 1)), halves up.
    For 12 -> 6 that is extract_distilbert.py's (0, 2, 4, 7, 9, 11); a one-layer student takes layer 0."""
    if not 0 < student_layers <= teacher_layers:
        raise ConfigError(f"a {student_layers}-layer student cannot take distinct layers of a {teacher_layers}-layer "
                          "teacher; give the student at most as many layers as the teacher")
    if student_layers == 1:
        return (0,)
    return tuple((2 * k * (teacher_layers - 1) + student_layers - 1) // (2 * (student_layers - 1))
                 for k in range(student_layers))


def _field(config, bert_name: str) -> str:
    """The config's own name for one of BERT's fields (DistilBERT says `dim` for `hidden_size`)."""
    return getattr(config, "BERT_NAMES", {}).get(bert_name, bert_name)


def check_pair(student_config, teacher_config, layers: Sequence[int] | None) -> tuple[int, ...]:
    """The teacher layer of each student layer; ConfigError when the student cannot be taken from this teacher."""
    pair = (teacher_config.model_type, student_config.model_type)
    if pair not in PAIRS:
        raise ConfigError(f"a {pair[1]} student cannot be initialised from a {pair[0]} teacher; supported (teacher, "
                          f"student) pairs: {list(PAIRS)}")
    for name in SAME_FIELDS:
        ours, theirs = getattr(student_config, name), getattr(teacher_config, name)
        if ours != theirs:
            raise ConfigError(f"the student's {_field(student_config, name)} ({ours}) differs from the teacher's "
                              f"{_field(teacher_config, name)} ({theirs}); a student initialised from the teacher "
                              "needs the same width, heads, vocabulary, activation and positions")
    teacher_layers, student_layers = teacher_config.num_hidden_layers, student_config.num_hidden_layers
    if layers is None or len(layers) == 0:  # a config's [] means the default too
        return default_layers(teacher_layers, student_layers)
    layers = tuple(int(i) for i in layers)
    if len(layers) != student_layers:
        raise ConfigError(f"the layer list {list(layers)} has {len(layers)} entries but the student has "
                          f"{student_layers} layers ({_field(student_config, 'num_hidden_layers')}); give one "
                          "teacher layer per student layer")
    for index in layers:
        if not 0 <= index < teacher_layers:
            raise ConfigError(f"teacher layer {index} in {list(layers)} is out of range: the teacher has "
                              f"{teacher_layers} layers (0 .. {teacher_layers - 1})")
    return layers


def _value(leaf):
    return leaf.get_value() if isinstance(leaf, nnx.Variable) else leaf


def _flat(params) -> list[tuple[tuple, object]]:
    """(path, leaf) pairs of an `nnx.State` or a nested dict of its shape (leaves: Variables or arrays)."""
    state = params if isinstance(params, nnx.State) else nnx.State(params)
    return [(tuple(path), leaf) for path, leaf in nnx.to_flat_state(state)]


def extract_student(student_params: nnx.State, teacher_params: nnx.State, *, student_config, teacher_config,
                    layers: Sequence[int] | None = None, copy_mlm_transform: bool = True,
                    fold_token_type: bool = False) -> nnx.State:
    """`student_params` (a fresh init: `nnx.State` of the student's `nnx.Param`s) with the teacher's values copied in.

    Student layer k gets teacher layer `layers[k]` (None or empty: `default_layers`). Copied: the embeddings the
    student has (a DistilBERT has no token-type table), the layers, the MLM head (its transform and LayerNorm only
    with `copy_mlm_transform`) and any other head both have; student parameters the teacher lacks keep their fresh
    values. `fold_token_type` (a student without token types only) adds the teacher's type-0 embedding to every
    position row. Values take the student's dtype; every leaf keeps the student's metadata (logical axes).
    ConfigError when the configs do not fit (`check_pair`), CheckpointError when the teacher's parameters do not
    fit its config.
    """
    layers = check_pair(student_config, teacher_config, layers)
    student_prefix, teacher_prefix = student_config.model_type, teacher_config.model_type
    teacher = {tuple(path): _value(leaf) for path, leaf in _flat(teacher_params)}
    student = _flat(student_params)
    token_types = (teacher_prefix, "embeddings", "token_type_embeddings", "embedding")
    if fold_token_type and (student_prefix, *token_types[1:]) in dict(student):
        raise ConfigError("fold_token_type is for a student without token-type embeddings (DistilBERT); a "
                          f"{student_config.model_type} student copies the teacher's token-type table")

    def source(path: tuple) -> tuple | None:
        """The teacher path a student path copies, or None to keep the student's value."""
        if path[0] != student_prefix:  # a head
            if path[0] in MLM_TRANSFORM and not copy_mlm_transform:
                return None
            return path if path in teacher else None  # one the teacher lacks (an NSP head) stays fresh
        if path[1] == "layers":
            return (teacher_prefix, "layers", layers[path[2]], *path[3:])
        origin = (teacher_prefix, *path[1:])
        # The embeddings must be there; a pooler the teacher lacks (a BertForMaskedLM's) stays fresh.
        return origin if path[1] == "embeddings" or origin in teacher else None

    extracted = []
    for path, leaf in student:
        origin = source(path)
        if origin is None:
            extracted.append((path, leaf))
            continue
        if origin not in teacher:  # the teacher's parameters disagree with its config
            raise CheckpointError(f"the teacher has no parameter {'.'.join(map(str, origin))} for the student's "
                              f"{'.'.join(map(str, path))}")
        value, current = teacher[origin], _value(leaf)
        if fold_token_type and path[1:3] == ("embeddings", "position_embeddings"):
            value = value + teacher[token_types][0]  # the type every single-segment token has
        if value.shape != current.shape:
            raise CheckpointError(f"the teacher's {'.'.join(map(str, origin))} has shape {tuple(value.shape)} but the "
                              f"student's {'.'.join(map(str, path))} has {tuple(current.shape)}")
        value = jnp.asarray(value, current.dtype)
        extracted.append((path, leaf.replace(value) if isinstance(leaf, nnx.Variable) else value))
    return nnx.from_flat_state(extracted)
