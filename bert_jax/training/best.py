"""The best parameters of a run by an eval metric (`Objective.best_metric`: fine-tuning's task metric), kept as a
Hugging Face export in WORKDIR/best with WORKDIR/best/best.json (step, metric, value, the eval record). Checkpoints
stay the latest ones (resume needs those); the best is exported when an evaluation improves on it, and a resumed run
reads best.json so it only replaces a better one."""

from __future__ import annotations

import json
import logging

from etils import epath

from bert_jax import fileio
from bert_jax.training import checkpointing, inputs

log = logging.getLogger("bert_jax")

BEST_DIR = "best"
BEST_FILE = "best.json"


class BestParams:
    def __init__(self, run_setup, workdir: str, is_chief: bool) -> None:
        self.run_setup, self.workdir, self.is_chief = run_setup, workdir, is_chief
        self.metric = run_setup.objective.best_metric
        path = epath.Path(workdir) / BEST_DIR / BEST_FILE
        self.best = json.loads(path.read_text()) if self.metric and path.exists() else None

    def offer(self, step: int, record: dict, params) -> None:
        """Exports `params` to WORKDIR/best when `record[metric]` beats the best so far (every process calls it)."""
        if not self.metric or self.metric not in record:
            return
        value = record[self.metric]
        if self.best is not None and not value > self.best["value"]:
            return
        from bert_jax.interop import hf, model_card

        host_params = checkpointing.replicated_host_copy(params)
        self.best = {"step": step, "metric": self.metric, "value": value, "eval": record}
        if self.is_chief:
            config = self.run_setup.config
            hf.export_to(self.run_setup.graphdef, host_params, self.workdir, vocab_file=config.data.vocab_file,
                         lowercase=config.data.lowercase, name=BEST_DIR,
                         labels=self.run_setup.objective.export_labels(),
                         run=model_card.RunInfo(config, step, record))
            write_json(epath.Path(self.workdir) / BEST_DIR / BEST_FILE, self.best)
            for name, text in self.run_setup.objective.eval_files().items():  # this evaluation's prediction files
                fileio.write_text_anywhere(epath.Path(self.workdir) / BEST_DIR / name, text)
        inputs.sync("best exported")
        log.info("best %s so far: %.4f at step %d, exported to %s", self.metric, value, step,
                 epath.Path(self.workdir) / BEST_DIR)


def write_json(path: epath.Path, data: dict) -> None:
    """An indented JSON file, written atomically (locally) or whole (an object store)."""
    fileio.write_text_anywhere(path, json.dumps(data, indent=2) + "\n")
