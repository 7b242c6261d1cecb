"""Helpers for comparing against Hugging Face `transformers` (PyTorch), the numerical reference."""

from __future__ import annotations

import numpy as np
import torch
import transformers


def tiny_hf_config(**overrides) -> transformers.BertConfig:
    values = dict(
        vocab_size=211,
        hidden_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=96,
        max_position_embeddings=64,
        type_vocab_size=2,
        hidden_act="gelu",
    )
    values.update(overrides)
    return transformers.BertConfig(**values)


def random_hf_pretraining_model(config: transformers.BertConfig, seed: int = 0) -> transformers.BertForPreTraining:
    """A BertForPreTraining whose every weight (LayerNorm and biases too) is random, so no mapping error hides."""
    torch.manual_seed(seed)
    model = transformers.BertForPreTraining(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(torch.randn_like(param) * (0.5 if "LayerNorm.weight" not in name else 0.2) + (1.0 if "LayerNorm.weight" in name else 0.0))
    return model


def padded_batch(vocab_size: int, seed: int = 0, batch=3, seq=17):
    """Token ids with padding of varied length and both segment ids."""
    rng = np.random.default_rng(seed)
    input_ids = rng.integers(5, vocab_size, size=(batch, seq)).astype(np.int32)
    lengths = [seq, seq - 5, 7][:batch]
    input_mask = np.zeros((batch, seq), np.int32)
    segment_ids = np.zeros((batch, seq), np.int32)
    for i, n in enumerate(lengths):
        input_mask[i, :n] = 1
        segment_ids[i, n // 2 : n] = 1
        input_ids[i, n:] = 0
    return input_ids, input_mask, segment_ids


def max_abs_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def torch_forward(model, input_ids, input_mask, segment_ids, **kwargs):
    """Runs a transformers model on NumPy inputs of the batch contract, without gradients."""
    with torch.no_grad():
        return model(
            input_ids=torch.tensor(input_ids, dtype=torch.long),
            attention_mask=torch.tensor(input_mask, dtype=torch.long),
            token_type_ids=torch.tensor(segment_ids, dtype=torch.long),
            **kwargs,
        )
