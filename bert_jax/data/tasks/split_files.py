"""Finding a task's split file when datasets name it several ways (CoNLL's `train.txt`, `eng.train`; SWAG's `val.csv`,
or a `datasets` export as `validation.jsonl`): exactly one candidate must exist, else an error listing them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from bert_jax.errors import InputError


def find_split(root: Path, stems: Sequence[str], extensions: Sequence[str], task: str) -> Path:
    """The one file `root/STEM+EXT` that exists among the candidates; none or several is an `InputError`."""
    candidates = [stem + ext for stem in stems for ext in extensions]
    found = [root / name for name in candidates if (root / name).is_file()]
    if len(found) != 1:
        what = "none" if not found else f"more than one ({', '.join(p.name for p in found)})"
        raise InputError(f"{root} holds {what} of the {task} split files {candidates}: keep exactly one per split "
                         f"(pass --data DIR of the {task} files)")
    return found[0]


def setting(settings: Any, name: str, default: Any) -> Any:
    """A `config.finetune` field, or `default` without settings (a reader called outside a run) or when unset."""
    value = None if settings is None else settings.get(name)
    return default if value in (None, "") else value
