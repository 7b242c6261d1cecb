"""A Hugging Face Hub id (`ORG/NAME`) resolved to its snapshot in the local Hugging Face cache, never downloaded.

Training machines (TPU VMs, clusters) often have no network, and a download in the middle of a run's start would be a
surprise: a model is fetched once with `hf download ORG/NAME` where there is network, and the cache (HF_HUB_CACHE,
or HF_HOME/hub) or the downloaded directory is then read here. huggingface_hub's own cache functions find the
snapshot (`refs/main` -> `snapshots/REV/`), so the layout is always the one `hf download` writes.
"""

from __future__ import annotations

import os
from pathlib import Path

from bert_jax.errors import CheckpointError


def cache_dir() -> str:
    """The cache huggingface_hub reads, from the environment as it is now (its own constant is fixed at import)."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return constants.HF_HUB_CACHE


def is_repo_id(text: str) -> bool:
    """Whether `text` is spelled as a Hub model id (`NAME` or `ORG/NAME`)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


def snapshot(repo_id: str, revision: str | None = None) -> Path:
    """The local snapshot directory of `repo_id` (its `main` revision unless `revision`); a `CheckpointError`
    saying how to get it when the cache does not hold it."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = cache_dir()
    try:
        return Path(snapshot_download(repo_id, revision=revision, cache_dir=cache, local_files_only=True))
    except LocalEntryNotFoundError:
        raise CheckpointError(
            f"hf:{repo_id} is not in the local Hugging Face cache ({cache}) and bert_jax never downloads: run "
            f"`hf download {repo_id}` on a machine with network (into this cache: set HF_HUB_CACHE), or copy the "
            "downloaded directory here and pass hf:DIR"
        ) from None
