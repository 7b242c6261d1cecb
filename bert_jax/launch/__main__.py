"""`python -m bert_jax.launch`: see `bert_jax/launch/cli.py`."""

import sys

from bert_jax.launch.cli import main

sys.exit(main())
