"""RoBERTa-large as its model card trained it: 24 layers, hidden 1024, 16 heads (355M parameters); Adam lr 4e-4,
beta1 0.9, beta2 0.98, eps 1e-6, weight decay 0.01, 30k warmup steps then linear decay, 500k steps of 8K sequences
of 512 tokens (1024 V100s in the paper). The rest is `roberta_base.py`'s recipe.

The 8K batch on a TPU slice, as in `roberta_base.py`: v5p-128 (64 chips of 95 GiB; mesh.data = -1 takes them
all), so each chip takes 8192 / 64 = 128 sequences per step, as optimizer.grad_accum_steps = 4 micro-batches of 32
(64 x 32 x 4 = 8192). `python -m bert_jax.compile_ahead --config configs/roberta_large.py --topology v5p-128` checks that it fits
(docs/scale_projection.md). Variants are those of `roberta_base.py`.
"""

from bert_jax.configuration import load_sibling, parse_variants

roberta_base = load_sibling(__file__, "roberta_base")
large_cased = load_sibling(__file__, "large_cased")
VARIANTS = roberta_base.VARIANTS


def get_config(arg=None):
    variants = parse_variants(arg, VARIANTS)
    config = roberta_base.get_config(arg)
    if variants & {"small", "tiny"}:
        return config
    large = large_cased.get_config().model
    for field in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
        config.model[field] = large[field]  # BERT-large's shape: 24 x 1024, 16 heads, 4096 feed-forward
    config.optimizer.learning_rate = 4e-4  # the card's peak learning rate
    config.optimizer.warmup_steps = 30_000  # the card's warmup
    return config
