"""bert_jax: pre-training BERT-family encoders in JAX, from raw text to a Hugging Face checkpoint.

    import bert_jax
    result = bert_jax.train("base_cased:tiny", "runs/tiny", overrides=["train_steps=100"])

`bert_jax.train` is the `bert_jax.train` module, callable (see its `run`); it is imported on first use, so
`import bert_jax` stays light and `python -m bert_jax.train` runs the module only once.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "train":
        import importlib

        return importlib.import_module("bert_jax.train")
    raise AttributeError(f"module 'bert_jax' has no attribute {name!r}")
