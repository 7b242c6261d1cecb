"""The start of a build in its output directory, and the check at the end of its parts: may the directory be used
(`build_manifest.open_output`), did an input file or the vocab change since the parts there were made, and what a
change makes the build redo. A change is an `InputError` naming the file and what changed; with --rebuild_changed
the parts of a changed input (every part, for a changed vocab) and everything merged from them are deleted and
built again. Examples of two versions of a file are never mixed: that is how a vocab re-learned in place between
a kill and a rerun once gave a dataset of two vocabularies, and training went NaN.

TFDS inputs have no file of their own to fingerprint; they are identified by name and record range (a prepared
TFDS dataset version does not change; pin :VERSION in the input to be sure).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Sequence

from bert_jax import fileio
from bert_jax.data import build_manifest, fingerprints, sources
from bert_jax.data.build_layout import BUILD_CONFIG, STATS, token_counts_path
from bert_jax.data.build_manifest import Manifest
from bert_jax.data.tokenizers import vocabs
from bert_jax.errors import InputError

# Changed files named in one message; the rest are counted.
MAX_NAMED = 5

Fingerprints = dict[str, dict[str, Any]]


def current_fingerprints(shards: Sequence[sources.InputShard], vocab: vocabs.Vocab) -> tuple[Fingerprints,
                                                                                               Fingerprints]:
    """(input shard name -> fingerprint of its file, vocab file -> fingerprint); vocab files are hashed whole."""
    files = {shard.name: shard.path for shard in shards if isinstance(getattr(shard, "path", None), str)}
    by_path = fingerprints.fingerprints(files.values())
    return ({name: by_path[path] for name, path in files.items()},
            fingerprints.fingerprints(vocab.source_files(), whole=True))


def _named(changed: list[tuple[str, str]]) -> str:
    text = "; ".join(f"{name}: {why}" for name, why in changed[:MAX_NAMED])
    return text + (f"; and {len(changed) - MAX_NAMED:,} more" if len(changed) > MAX_NAMED else "")


def _changed_error(output_dir: str, inputs: list[tuple[str, str]], vocab: list[tuple[str, str]]) -> InputError:
    if vocab:
        return InputError(
            f"the vocab changed since the build in {output_dir} tokenized with it ({_named(vocab)}): its examples "
            f"hold the old vocab's ids, and resuming would mix two vocabularies. Rerun with --rebuild_changed to "
            f"rebuild the dataset with the new vocab, restore the old one, or choose another --output")
    return InputError(
        f"{len(inputs):,} input file{'s' if len(inputs) > 1 else ''} changed since the build in {output_dir} read "
        f"{'them' if len(inputs) > 1 else 'it'} ({_named(inputs)}): the examples there were made from the old "
        f"content, and old and new are never mixed. Rerun with --rebuild_changed to rebuild from the new content, "
        f"or restore the file{'s' if len(inputs) > 1 else ''}")


def _invalidate(manifest: Manifest, shards: Sequence[sources.InputShard], inputs: list[tuple[str, str]],
                vocab: list[tuple[str, str]]) -> None:
    """Deletes what the changes make stale: the changed inputs' parts (all parts for a new vocab) and the merged
    outputs (the output shards are slices over all parts, so any changed part shifts them)."""
    if vocab:
        print(f"build: the vocab changed ({_named(vocab)}): rebuilding every input shard", file=sys.stderr)
        manifest.remove_parts(range(manifest.part_shards))
    else:
        changed = {name for name, _ in inputs}
        print(f"build: rebuilding {len(changed):,} changed input shards ({_named(inputs)}) and the output shards",
              file=sys.stderr)
        manifest.remove_parts(index for index, shard in enumerate(shards) if shard.name in changed)
    manifest.remove_outputs()


def start(output_dir: str, config: dict[str, Any], shards: Sequence[sources.InputShard], vocab: vocabs.Vocab, *,
          force: bool, rebuild_changed: bool) -> Manifest:
    """Opens `output_dir` for the build `config` (build_config.json's content), checks and records what it reads,
    writes build_config.json and removes the build's own left-over temporary files; returns the manifest."""
    manifest = build_manifest.open_output(output_dir, config, vocab.file_names(), force=force)
    inputs, vocab_prints = current_fingerprints(shards, vocab)
    changed_inputs, changed_vocab = manifest.changes(inputs, vocab_prints)
    if changed_inputs or changed_vocab:
        if not rebuild_changed:
            raise _changed_error(output_dir, changed_inputs, changed_vocab)
        _invalidate(manifest, shards, changed_inputs, changed_vocab)
    if manifest.adopted:
        print(f"build: {output_dir} was built before build manifests: the contents of its inputs and vocab cannot "
              f"be checked against what it was built from (their fingerprints are recorded from now on)",
              file=sys.stderr)
    manifest.inputs, manifest.vocab = inputs, vocab_prints
    # Every file of a fixed name is claimed now, so a foreign file there is refused before any work, not at the end.
    config_path = os.path.join(output_dir, BUILD_CONFIG)
    manifest.claim([config_path, os.path.join(output_dir, STATS),
                    *(os.path.join(output_dir, name) for name in vocab.file_names()),
                    *(token_counts_path(output_dir, length) for length in config["max_seq_lengths"])])
    manifest.claim_parts(len(shards))
    if not os.path.exists(config_path):
        fileio.write_json(config_path, json.loads(json.dumps(config)), indent=1, sort_keys=True)
    manifest.remove_temporaries()
    return manifest


def check_unchanged(manifest: Manifest, shards: Sequence[sources.InputShard], vocab: vocabs.Vocab) -> None:
    """After the parts: an input or the vocab that changed while the build read it is an error (the next run then
    finds the change and, with --rebuild_changed, rebuilds what it touched)."""
    changed_inputs, changed_vocab = manifest.changes(*current_fingerprints(shards, vocab))
    if changed_inputs or changed_vocab:
        raise InputError(f"{_named(changed_vocab + changed_inputs)}: changed while this build was reading it; "
                         f"rerun the same command with --rebuild_changed to rebuild from the new version")
