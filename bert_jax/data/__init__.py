"""Offline corpus preparation and the online input pipeline.

Offline, three CLIs: `vocab` learns a vocab, `build` turns a corpus into example shards, `inspect` reports on them.
    sources/     corpus readers and cleaning: inputs -> `InputShard`s streaming documents of sentences
    tokenizers/  vocab files, tokenizers and learners (`wordpiece`), and the chunk cache the build tokenizes with
    examples/    what a tokenized document becomes, one module per example kind (`nsp_pairs`)
    build*.py    the build itself: layout and config, parallel parts, merge and resume, stats.json
    records.py   the on-disk record of a sentence-pair example
Online: `pipeline` (the grain loader) applies `masking` (dynamic masked-LM masking) to the records.
"""
