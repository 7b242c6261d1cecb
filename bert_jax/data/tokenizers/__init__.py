"""Tokenizers, one module per vocabulary kind (`wordpiece` for BERT), and `chunk_encoder`, the cache in front of a
tokenizer that makes the dataset build's tokenization fast without changing a single id."""
