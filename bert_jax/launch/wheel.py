"""The code shipped to the workers: a wheel of this checkout, the config files and the pinned versions.

The wheel is built from a copy of the sources (pyproject.toml, README.md, bert_jax/, and configs/ and data/sample/,
which pyproject.toml maps into the package) in a temporary directory, so
setuptools' `build/` and `*.egg-info` never land in the checkout. `--no-build-isolation` is used when setuptools is
importable (fast, offline); otherwise pip builds in an isolated environment and fetches setuptools itself.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tomllib
from pathlib import Path

from bert_jax.errors import InputError
from bert_jax.launch.errors import LaunchError
from bert_jax.launch.runner import Runner

_SOURCES = ("pyproject.toml", "README.md", "LICENSE", "bert_jax", "configs", "data/sample")  # data/built stays out


def project_root() -> Path | None:
    """The checkout this package runs from, if it is one (a pyproject.toml naming bert_jax next to bert_jax/)."""
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        return None
    try:
        name = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {}).get("name")
    except tomllib.TOMLDecodeError:
        return None
    return root if name == "bert_jax" else None


def wheel_name(root: Path) -> str:
    version = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    return f"bert_jax-{version}-py3-none-any.whl"


def build_wheel(root: Path, out_dir: Path, runner: Runner) -> Path:
    """Builds the wheel of `root` into `out_dir` and returns its path (a predicted path under --dry-run)."""
    staging = out_dir / "source"
    argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out_dir), str(staging)]
    if importlib.util.find_spec("setuptools") is not None:
        argv.insert(argv.index("--wheel-dir"), "--no-build-isolation")
    if runner.dry_run:
        runner.show(argv)
        return out_dir / wheel_name(root)
    staging.mkdir(parents=True)
    for name in _SOURCES:
        source = root / name
        if source.is_dir():
            shutil.copytree(source, staging / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif source.is_file():
            shutil.copy2(source, staging / name)
    runner.say(f"launch: building the bert_jax wheel from {root}")
    runner.run(argv, what="building the wheel")
    wheels = sorted(out_dir.glob("bert_jax-*.whl"))
    if len(wheels) != 1:
        raise LaunchError(f"building the wheel left {len(wheels)} wheels in {out_dir}; expected one")
    return wheels[0]


def check_wheel(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file() or not path.name.startswith("bert_jax-") or path.suffix != ".whl":
        raise InputError(f"--wheel {path}: not a bert_jax wheel file (bert_jax-VERSION-py3-none-any.whl)")
    return path


def stage(
    stage_dir: Path, wheel: Path, config_path: Path, constraints: Path | None, dry_run: bool = False
) -> list[str]:
    """Lays out dist/, configs/ and constraints.txt as the job directory has them; returns what to scp.

    Every `*.py` next to the config file goes along, since a config may load its siblings (`load_sibling`).
    """
    entries = [stage_dir / "dist", stage_dir / "configs"] + ([stage_dir / "constraints.txt"] if constraints else [])
    if not dry_run:
        (stage_dir / "dist").mkdir(parents=True)
        shutil.copy2(wheel, stage_dir / "dist" / wheel.name)
        (stage_dir / "configs").mkdir()
        for sibling in sorted(config_path.parent.glob("*.py")):
            shutil.copy2(sibling, stage_dir / "configs" / sibling.name)
        if constraints:
            shutil.copy2(constraints, stage_dir / "constraints.txt")
    return [str(entry) for entry in entries]
