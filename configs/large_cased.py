"""BERT-large, cased (24 layers, hidden 1024, 16 heads; 340M parameters): the base recipe with a bigger model.

The original trained BERT-large on 16 Cloud TPUs (64 chips); the mesh below shards parameters and optimizer
state 4 ways (FSDP) inside 16 data-parallel groups. Variants are those of `base_cased.py` (`uncased`, `small`, `tiny`):
they shrink the model exactly as for base.
"""

from bert_jax.configuration import load_sibling, parse_variants

base_cased = load_sibling(__file__, "base_cased")
VARIANTS = base_cased.VARIANTS


def get_config(arg=None):
    variants = parse_variants(arg, VARIANTS)
    config = base_cased.get_config(arg)
    if variants & {"small", "tiny"}:
        return config
    config.model.hidden_size = 1024  # width of every layer
    config.model.num_hidden_layers = 24  # encoder layers
    config.model.num_attention_heads = 16  # heads per attention layer (64-dim heads)
    config.model.intermediate_size = 4096  # feed-forward inner width
    config.mesh.data = -1  # data-parallel groups: every device over the fsdp ways (16 on a 64-chip slice)
    config.mesh.fsdp = 4  # parameter/optimizer-state sharding within a group (64 chips in all)
    return config
