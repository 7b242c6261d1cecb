"""The sample corpus and its vocabs (data/README.md): installed as the package data of `bert_jax.sample_data`."""
