"""GLUE submission files: the test-split predictions of a task's best checkpoint (its Hugging Face export in
WORKDIR/best), in the layout GLUE's server scores: SUBMISSION/<name>.tsv with the header `index\\tprediction`, one
row per test example, the prediction as GLUE expects it: the label string for MNLI, QNLI and RTE
(`entailment`, ...), 0/1 for CoLA, SST-2, MRPC, QQP and WNLI (their label names are "0"/"1"), the similarity for
STS-B clipped to GLUE's [0, 5]. AX.tsv, the diagnostic set, is predicted with the MNLI model.

Predictions run our Flax model of the export (the same parameters transformers loads) in one jitted forward over
fixed-size batches, the last one padded, with the texts encoded as training encoded them (the export's tokenizer,
the run's sequence length).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from bert_jax import fileio
from bert_jax.data.tasks.base import REGRESSION, Example

log = logging.getLogger("bert_jax")

# The file names GLUE's server expects, where they differ from the task's folder name.
SUBMISSION_NAMES = {"test_matched": "MNLI-m", "test_mismatched": "MNLI-mm"}
DIAGNOSTIC_NAME = "AX"
STSB_RANGE = (0.0, 5.0)  # GLUE's similarity scale
PREDICT_BATCH = 64  # examples per forward


def submission_name(task, split: str) -> str:
    return SUBMISSION_NAMES.get(split, task.directory)


class Predictor:
    """A fine-tuned classifier's export (a Hugging Face directory) with its tokenizer, ready to predict."""

    def __init__(self, model_dir: str | Path, max_seq_length: int) -> None:
        import jax
        from flax import nnx

        from bert_jax.data.tokenizers import vocabs
        from bert_jax.interop import hf, sources

        self.model_dir, self.max_seq_length = str(model_dir), max_seq_length
        model, _ = hf.load_pretrained(model_dir, heads=("sequence_classification",))
        self.config = model.config
        self.labels = hf.label_names(model_dir)  # the task's label names, as the export's id2label holds them
        source = sources.describe(self.model_dir)
        self.vocab = vocabs.load(source.vocab_file, lowercase=source.lowercase)
        self.token_types = getattr(self.config, "type_vocab_size", 1) > 1
        graphdef, self.state = nnx.split(model)

        @jax.jit
        def logits(state, input_ids, input_mask, segment_ids):
            return nnx.merge(graphdef, state)(input_ids, input_mask, segment_ids, deterministic=True)["logits"]

        self._logits = logits

    def logits(self, examples: list[Example]) -> np.ndarray:
        """[N, num_labels] float32 logits of the examples."""
        from bert_jax.data.tasks import encoding

        arrays = encoding.encode(self.vocab.tokenizer(), examples, self.max_seq_length, self.vocab.specials.pad,
                                 self.token_types)
        out = []
        for start in range(0, len(examples), PREDICT_BATCH):
            batch = {name: _padded(values[start:start + PREDICT_BATCH]) for name, values in arrays.items()}
            rows = min(PREDICT_BATCH, len(examples) - start)
            out.append(np.asarray(self._logits(self.state, batch["input_ids"], batch["input_mask"],
                                               batch["segment_ids"]), np.float32)[:rows])
        return np.concatenate(out)

    def predictions(self, examples: list[Example]) -> list[str]:
        """The predictions as GLUE's submission writes them."""
        from bert_jax.data.tasks import metrics

        logits = self.logits(examples)
        if self.config.problem_type == REGRESSION:
            return [f"{value:.3f}" for value in np.clip(logits[:, 0], *STSB_RANGE)]
        return [self.labels[int(index)] for index in metrics.predicted(logits, self.config.problem_type)]


def _padded(values: np.ndarray) -> np.ndarray:
    """A batch of exactly PREDICT_BATCH rows (the last batch padded with copies of row 0): one compiled shape."""
    if len(values) == PREDICT_BATCH:
        return values
    return np.concatenate([values, np.repeat(values[:1], PREDICT_BATCH - len(values), axis=0)])


def write(path: Path, indices: list[str], predictions: list[str]) -> Path:
    """SUBMISSION/<name>.tsv: `index\\tprediction` then one row per example."""
    lines = ["index\tprediction"] + [f"{index}\t{prediction}" for index, prediction in zip(indices, predictions)]
    path.parent.mkdir(parents=True, exist_ok=True)
    return fileio.write_text(path, "\n".join(lines) + "\n")


def write_task(task, test_splits: dict, predictor: Predictor, submission_dir: Path) -> list[Path]:
    """One file per test split of the task (MNLI: MNLI-m and MNLI-mm)."""
    written = []
    for split, test in test_splits.items():
        path = submission_dir / f"{submission_name(task, split)}.tsv"
        written.append(write(path, test.indices, predictor.predictions(test.examples)))
        log.info("%s: %d test predictions written to %s", task.directory, len(test.indices), path)
    return written
