"""The configs and the sample data that ship with bert_jax, found wherever the package runs from.

The repository keeps them in its top-level `configs/` and `data/sample/`; pyproject.toml maps those folders into the
package at build time as `bert_jax.configs` and `bert_jax.sample_data`, so a wheel carries them and an editable
install finds them through setuptools' import hook. Both are located with importlib.resources. One case has no
mapping: running the package straight from a checkout (`PYTHONPATH=.`, or `python -m` from the checkout's root,
which shadows any installed copy); there the checkout's own folders are the package data.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

CONFIGS_PACKAGE = "bert_jax.configs"
SAMPLE_PACKAGE = "bert_jax.sample_data"
_CHECKOUT_FOLDERS = {CONFIGS_PACKAGE: "configs", SAMPLE_PACKAGE: "data/sample"}


def _folder(package: str) -> Path:
    try:
        # pip installs unpacked files, so the resource folder is a real directory (config files are imported by path).
        return Path(str(importlib.resources.files(package)))
    except ModuleNotFoundError:
        checkout = Path(__file__).resolve().parent.parent / _CHECKOUT_FOLDERS[package]
        if checkout.is_dir():
            return checkout
        raise RuntimeError(f"bert_jax is installed without its package data ({package}); reinstall it "
                           "(pip install bert_jax) or run it from a complete checkout") from None


def configs_dir() -> Path:
    """The folder of the bundled config files (`base_cased.py`, ...)."""
    return _folder(CONFIGS_PACKAGE)


def config_names() -> list[str]:
    """The bundled configs by name (`base_cased`, `roberta_base`, ...), as `--config NAME[:variants]` takes them."""
    return sorted(path.stem for path in configs_dir().glob("*.py") if not path.name.startswith("_"))


def config_file(name: str) -> Path | None:
    """The bundled config `name` (`base_cased` or `base_cased.py`), or None when there is none of that name."""
    stem = name.removesuffix(".py")
    if not stem or "/" in stem or "\\" in stem or stem.startswith("_"):
        return None
    path = configs_dir() / f"{stem}.py"
    return path if path.is_file() else None


def sample_dir() -> Path:
    """The folder of the bundled sample corpus (`corpus-0*.txt`), its WordPiece vocab (`vocab/`) and BPE (`bpe/`)."""
    return _folder(SAMPLE_PACKAGE)


def sample_path(relative: str) -> str:
    """A file (or glob) of the bundled sample corpus and its vocabs, e.g. `vocab/vocab.txt` or `corpus-*.txt`."""
    return str(sample_dir() / relative)
