"""RoBERTa-base: the RoBERTa recipe (Liu et al. 2019) on BERT-base's shape: byte-level BPE, packed full sentences of
up to 512 tokens (FULL-SENTENCES), masked LM alone with dynamic masking, Adam with beta2 0.98, peak lr 6e-4 after
24k warmup steps, batch 8K for 500k steps. Fields RoBERTa does not change (the run's logging, checkpoints, seed,
model width) come from `base_cased.py`.

Variants (comma-separated after the path, e.g. `configs/roberta_base.py:tiny`), as base_cased's:
  small  4 layers, hidden 256, 4 heads: benchmarks and CPU experiments
  tiny   2 layers, hidden 128, trained in minutes on a laptop CPU on the bundled sample corpus and its BPE vocab
"""

import ml_collections

from bert_jax.bundled import sample_path
from bert_jax.configuration import load_sibling, parse_variants

base_cased = load_sibling(__file__, "base_cased")
VARIANTS = ("small", "tiny")


def get_config(arg=None):
    variants = parse_variants(arg, VARIANTS)
    config = base_cased.get_config(arg)
    config.objective = "mlm"  # masked LM alone: RoBERTa drops next-sentence prediction

    model = config.model
    model.model_type = "roberta"  # the architecture (Hugging Face's model_type)
    model.vocab_size = 50265  # byte-level BPE of 50K merges plus specials, as released
    model.max_position_embeddings = 514  # 512 tokens: positions start after the padding id (pad_token_id + 1)
    model.type_vocab_size = 1  # one token type: no sentence pairs
    model.layer_norm_eps = 1e-5  # LayerNorm epsilon, as released
    model.pad_token_id = 1  # <pad>, also the position table's padding index
    model.bos_token_id = 0  # <s>, opens every document
    model.eos_token_id = 2  # </s>, closes every document

    data = config.data
    data.dir = "data/built/roberta"  # built dataset (python -m bert_jax.data.build --example_kind full_sentences)
    data.vocab_file = "data/vocab/bpe/tokenizer.json"  # byte-level BPE (python -m bert_jax.data.vocab --kind bpe)
    data.example_kind = "full_sentences"  # FULL-SENTENCES packing, crossing documents (doc_sentences does not)
    data.lowercase = False  # byte-level BPE keeps case

    opt = config.optimizer
    opt.b2 = 0.98  # Adam beta2: RoBERTa's, for stability with large batches
    opt.grad_clip_norm = 0.0  # no gradient clipping in RoBERTa's recipe (0 = off)
    # Every sequence is packed full, so one length: 15% of 512 tokens is 77 predictions on average.
    config.phases = [ml_collections.ConfigDict(dict(max_seq_length=512, fraction=1.0, max_predictions=80))]

    if not variants & {"small", "tiny"}:
        # 8K sequences per step: devices x the per-device batch x grad_accum_steps (64 x 32 x 4), on a v5p-128
        # slice (64 chips of 95 GiB; mesh.data -1 takes them all).
        config.batch_size = 8192
        config.train_steps = 500_000
        opt.learning_rate = 6e-4  # peak learning rate (base)
        opt.warmup_steps = 24_000
        opt.grad_accum_steps = 4
        config.eval_steps = 20
        config.checkpoint_every = 5_000
    else:
        # Short sequences keep CPU runs to minutes.
        config.phases = [ml_collections.ConfigDict(dict(max_seq_length=128, fraction=1.0, max_predictions=20))]
    if "tiny" in variants:
        model.vocab_size = 4096  # the sample corpus's BPE vocab (data/sample/bpe)
        model.max_position_embeddings = 514
        data.dir = "data/built/sample_roberta"
        data.vocab_file = sample_path("bpe/tokenizer.json")  # the package data's (data/sample/bpe/ in a checkout)
    return config
