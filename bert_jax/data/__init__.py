"""Offline corpus preparation and the online input pipeline.

Offline, four CLIs: `vocab` learns a vocab, `build` turns a corpus into example shards, `inspect` reports on them,
`count_tokens` counts a build's train tokens for frequency-smoothed masking.
    sources/     corpus readers and cleaning: inputs -> `InputShard`s streaming documents of sentences
    tokenizers/  vocab files, tokenizers and learners (`wordpiece` for BERT, `bpe` for RoBERTa's byte-level BPE),
                 `vocabs` (which kind a path holds, one `Vocab` view of either), and the chunk cache the build
                 tokenizes with
    examples/    what a tokenized document becomes, one module per example kind (`nsp_pairs`; `packed`:
                 `full_sentences`, `doc_sentences`)
    build*.py    the build itself: layout and config, parallel parts, merge and resume, stats.json
    records.py   the on-disk records: a sentence pair, a packed sequence
Online: `pipeline` (the grain loader) applies `masking` (dynamic masked-LM masking, any vocab; `mask_positions`
chooses the positions, optionally weighted by `token_counts`) to the records.
"""
