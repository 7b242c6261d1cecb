"""Tokenizers, one module per vocabulary kind (`wordpiece` for BERT, `bpe` for RoBERTa's byte-level BPE), `vocabs`
(which kind a path holds, and one `Vocab` view of either for the build, masking and the trainer), and
`chunk_encoder`, the cache in front of a tokenizer that makes the dataset build's tokenization fast without changing
a single id."""
