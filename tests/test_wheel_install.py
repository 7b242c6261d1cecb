"""The wheel works when installed, not only from a checkout: built from this checkout, installed into a fresh venv,
and run from another directory through its console scripts, with a bundled config by name and the bundled sample
corpus (package data) that the demo builds on first use."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO

# The tiny demo, cut to a few steps of one short phase on a 1-layer model (compiling dominates the test's time):
# data build, compile, train, eval, checkpoint, export.
DEMO_OVERRIDES = {
    "model.num_hidden_layers": 1, "model.hidden_size": 32, "model.intermediate_size": 64,
    "train_steps": 3, "optimizer.warmup_steps": 1, "batch_size": 8, "log_every": 1, "eval_every": 3, "eval_steps": 1,
    "checkpoint_every": 3, "data.worker_count": 0, "peak_flops_per_device": 1e10,
    "phases": "[{'max_seq_length': 32, 'fraction': 1.0, 'max_predictions': 5}]",
}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed (no dependencies: they come from the test interpreter's import path, minus
    the checkout, through a path file whose lines are appended after the venv's own site-packages; so the venv's
    bert_jax wins, and the test environment's editable install, a .pth import hook there, is never run)."""
    from bert_jax.launch import wheel
    from bert_jax.launch.runner import Runner

    tmp = tmp_path_factory.mktemp("wheel")
    built = wheel.build_wheel(REPO, tmp / "dist", Runner(stderr=io.StringIO()))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site_packages = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                        capture_output=True, text=True, check=True).stdout.strip())
    # Everything but the checkout's own source root (CI's venv lives inside the checkout: its site-packages stay).
    dependencies = [p for p in dict.fromkeys(sys.path) if p and Path(p).is_dir()
                    and Path(p).resolve() != REPO.resolve()]
    (site_packages / "test_dependencies.pth").write_text("\n".join(dependencies) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", str(built)], check=True, timeout=300, env=_clean_environment())
    return venv


def _clean_environment(**extra) -> dict[str, str]:
    """No PYTHONPATH (it would put the checkout first) and one CPU device (the conftest emulates 16)."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "XLA_FLAGS")}
    env.update(JAX_PLATFORMS="cpu", **extra)
    return env


def test_the_installed_package_runs_the_tiny_demo_from_another_directory(installed, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _clean_environment()
    where = subprocess.run(
        [str(installed / "bin" / "python"), "-c",
         "import bert_jax, bert_jax.bundled as b; print(bert_jax.__file__); print(b.configs_dir()); "
         "print(b.sample_path('vocab/vocab.txt'))"],
        cwd=elsewhere, env=env, capture_output=True, text=True, check=True, timeout=60)
    package, configs, vocab = map(Path, where.stdout.split())
    for path in (package, configs, vocab):  # the venv's copy, not the checkout's
        assert path.is_relative_to(installed) and path.exists(), path
    assert not any(path.is_relative_to(REPO) for path in (package, configs, vocab))

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert all((installed / "bin" / name).is_file() for name in scripts)

    # The Python API first, then the console script on a second workdir: the second run's compilations come from
    # the persistent compilation cache the first one filled.
    env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path / "compilation_cache")
    fields = [f"{key}={value}" for key, value in DEMO_OVERRIDES.items()]
    api = subprocess.run(
        [str(installed / "bin" / "python"), "-c",
         "import sys, bert_jax; result = bert_jax.train('base_cased:tiny', sys.argv[1], overrides=sys.argv[2:]); "
         "print(result.status, result.step)", str(tmp_path / "api"), *fields],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert api.returncode == 0, api.stderr[-3000:]
    assert api.stdout.split() == ["finished", "3"]
    # Logging is set up as the command's: INFO lines on stderr. The demo built its data in the working directory
    # from the corpus the wheel installed.
    assert " INFO step 3/3 | loss " in api.stderr
    assert f"from {configs.parent / 'sample_data' / 'corpus-*.txt'}" in api.stderr
    assert (elsewhere / "data" / "built" / "sample" / "seq_32").is_dir()

    workdir = tmp_path / "run"
    train = [str(installed / "bin" / "bert-jax-train"), "--config", "base_cased:tiny", "--workdir", str(workdir),
             *(f"--config.{field}" for field in fields)]
    result = subprocess.run(train, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (workdir / "checkpoints" / "3").is_dir()
    assert {"config.json", "model.safetensors", "vocab.txt"} <= {p.name for p in (workdir / "export").iterdir()}
    assert (workdir / "export" / "vocab.txt").read_bytes() == vocab.read_bytes()
    last = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()][-1]
    assert last["step"] == 3
