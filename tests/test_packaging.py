"""What makes bert_jax work when installed: the package list and the folders mapped into it, a console script per
command, configs by name as well as by path, the sample corpus as package data, the `bert_jax.train(...)` API, and
commands that start without importing TensorFlow Datasets, PyTorch or transformers."""

from __future__ import annotations

import glob
import importlib
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import setuptools

from bert_jax import bundled
from bert_jax.configuration import load_config
from bert_jax.errors import ConfigError
from tests.run_helpers import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
SCRIPTS = PYPROJECT["project"]["scripts"]


def _command_modules() -> set[str]:
    """Every `python -m bert_jax...` command: a module with a `__main__` block, or a package's `__main__.py`."""
    found = set()
    for path in (REPO / "bert_jax").rglob("*.py"):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        if path.name == "__main__.py":
            found.add(module.removesuffix(".__main__"))
        elif 'if __name__ == "__main__":' in path.read_text(encoding="utf-8"):
            found.add(module)
    return found


def test_the_package_list_and_the_mapped_folders_cover_everything():
    found = setuptools.find_packages(str(REPO), include=["bert_jax*"])
    mapped = SETUPTOOLS["package-dir"]
    assert sorted(SETUPTOOLS["packages"]) == sorted(found + list(mapped))
    assert mapped == {bundled.CONFIGS_PACKAGE: "configs", bundled.SAMPLE_PACKAGE: "data/sample"}
    for folder in mapped.values():
        assert (REPO / folder / "__init__.py").is_file()
    patterns = SETUPTOOLS["package-data"][bundled.SAMPLE_PACKAGE]
    shipped = {p for pattern in patterns for p in (REPO / "data/sample").glob(pattern)}
    assert shipped == {p for p in (REPO / "data/sample").rglob("*") if p.is_file() and p.suffix != ".py"}


def test_every_command_has_a_console_script_named_after_it():
    targets = {}
    for name, target in SCRIPTS.items():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), target
        targets[module.removesuffix(".cli")] = name  # bert_jax.launch's command is its cli module's main
    assert set(targets) == _command_modules()
    for module, name in targets.items():
        assert name == "bert-jax-" + module.removeprefix("bert_jax.").replace(".", "-").replace("_", "-")


def test_a_bundled_config_by_name_is_the_file_and_loads_its_siblings_from_anywhere(tmp_path, monkeypatch):
    by_path = load_config(str(REPO / "configs/large_cased.py:tiny")).to_dict()
    monkeypatch.chdir(tmp_path)  # no configs/ here: large_cased loads base_cased through load_sibling
    assert load_config("large_cased:tiny").to_dict() == by_path
    assert load_config("large_cased.py:tiny").to_dict() == by_path
    # The tiny configs' corpus and vocabs are the bundled sample data's files.
    tiny = load_config("base_cased:tiny")
    assert Path(tiny.data.vocab_file).read_bytes() == (REPO / "data/sample/vocab/vocab.txt").read_bytes()
    assert len(glob.glob(tiny.data.build_from)) == 4
    assert Path(load_config("roberta_base:tiny").data.vocab_file).name == "tokenizer.json"
    assert load_config("distilbert_base_cased:tiny").distillation.teacher_train == "base_cased:tiny"


def test_an_existing_file_wins_over_a_bundled_name_and_an_unknown_name_lists_the_bundled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = (REPO / "configs/base_cased.py").read_text(encoding="utf-8")
    Path("base_cased.py").write_text(source.replace("config.seed = 12345", "config.seed = 7"), encoding="utf-8")
    assert load_config("base_cased.py:tiny").seed == 7  # the file here
    assert load_config("base_cased:tiny").seed == 12345  # no file of that name: the bundled config
    with pytest.raises(ConfigError) as error:
        load_config("base_cassed:tiny")
    assert "base_cassed not found" in str(error.value)
    assert "base_cased, distilbert_base_cased, finetune, large_cased, roberta_base, roberta_large" in str(error.value)


def test_a_checkout_run_without_the_build_mapping_uses_its_own_folders():
    """`python -m bert_jax...` from a checkout's root imports the checkout's bert_jax, which has no mapped packages
    (no editable hook; -S leaves site and any install out): the checkout's configs/ and data/sample/ serve."""
    code = "import bert_jax.bundled as b; print(b.configs_dir()); print(b.sample_dir()); print(b.config_names()[0])"
    result = subprocess.run([sys.executable, "-S", "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                            env={"PATH": "/usr/bin:/bin"}, timeout=60)
    assert result.stdout.split() == [str(REPO / "configs"), str(REPO / "data" / "sample"), "base_cased"]


HEAVY = ("tensorflow_datasets", "tensorflow", "torch", "transformers")
HELP_PROBE = """
import json, runpy, sys
first = {}
for module in sys.argv[1:]:
    sys.argv = [module, "--help"]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
    for heavy in %r:
        if heavy in sys.modules:
            first.setdefault(heavy, module)
print(json.dumps(first))
""" % (HEAVY,)


def test_no_command_imports_tensorflow_datasets_torch_or_transformers_to_start():
    commands = sorted(_command_modules())
    result = subprocess.run([sys.executable, "-c", HELP_PROBE, *commands], cwd=REPO, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.splitlines()[-1]) == {}  # heavy module -> the first command that imported it


def test_bert_jax_train_checks_a_config_before_it_changes_anything(tmp_path):
    """The callable module; a ConfigDict is copied before its overrides apply, and a bad one raises before any set-up
    (training through the API, installed, is in test_wheel_install.py)."""
    import bert_jax
    from bert_jax import train as train_module

    assert bert_jax.train is train_module and callable(train_module.main)
    config = load_config("base_cased:tiny")
    with pytest.raises(ConfigError, match="unknown config field 'train_stepz'; did you mean train_steps"):
        bert_jax.train(config, tmp_path / "run", overrides=["train_steps=9", "train_stepz=3"])
    assert config.train_steps == 3000 and not (tmp_path / "run").exists()  # the caller's config, unchanged
