"""bert_jax: pre-training BERT-family encoders in JAX, from raw text to a Hugging Face checkpoint."""

__version__ = "0.1.0"
