"""The bundled configs: installed as the package `bert_jax.configs`, loaded by name (`--config base_cased:tiny`) or
by path (`--config configs/base_cased.py:tiny`). Each file defines `get_config(arg=None)`."""
