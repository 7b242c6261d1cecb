"""Knowledge distillation (DistilBERT, Sanh et al. 2019): a student trained against a frozen teacher with

    loss = alpha_ce * T^2 * KL(softmax(teacher / T) || softmax(student / T))     soft targets, over the masked
         + alpha_mlm * cross-entropy(student, masked tokens)                      positions (or every real token)
         + alpha_cos * (1 - cos(student's, teacher's last hidden states))         at every real token
         + alpha_mse * sum over the vocabulary of (student - teacher logits)^2    optional, same positions as KD

as Hugging Face's distillation project computes them (`distiller.py`: KLDivLoss "batchmean" x T^2, CosineEmbeddingLoss
with target 1 over non-padding positions, MSELoss summed over the vocabulary per position); each term is a mean over
its positions, kept here as sums and counts so micro-batches and devices add up exactly. The teacher is the core's
frozen model: loaded once, sharded like the student, run forward only, never in the optimizer state or a checkpoint.

Config (`config.distillation`): `teacher` (an HF directory with an MLM head, or a training --workdir), `teacher_dtype`,
`temperature`, `alpha_ce`, `alpha_mlm`, `alpha_cos`, `alpha_mse`, `kd_all_positions`, `student_init` ("teacher":
layers, embeddings and MLM head copied from the teacher, as `extract_distilbert.py`; "random"), `student_layers`.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from bert_jax.errors import CheckpointError, ConfigError
from bert_jax.objectives import losses
from bert_jax.objectives.base import BatchShape, FrozenSpec
from bert_jax.objectives.mlm import MaskedLM

# CosineEmbeddingLoss's epsilon (PyTorch): keeps an all-zero hidden state from dividing by zero.
_COSINE_EPS = 1e-12


class Distillation(MaskedLM):
    name = "distillation"
    heads = ("mlm",)
    train_metrics = ("kd_loss", "mlm_accuracy", "cos_loss")

    def __init__(self, config=None):
        super().__init__(config)
        self.settings = None if config is None else config.distillation
        self.teacher_config = None  # the teacher's model config, known once frozen_spec() has read its source
        self._teacher_vocab_file = ""  # the vocab the teacher was trained with, where its source says

    def complete_config(self, config) -> None:
        """A student starts from its teacher (or at random), never from `init_from`."""
        if config.get("init_from"):
            raise ConfigError(f"init_from={config.init_from} does not apply to distillation: the student starts from its "
                              "teacher (distillation.student_init='teacher': its embeddings, every other layer and "
                              "its MLM head) or at random; pass the model as --teacher and leave init_from empty")

    # ------------------------------------------------------------------------------------------- the teacher

    def frozen_spec(self) -> FrozenSpec:
        from bert_jax import models

        source = self.settings.teacher
        if not source:
            raise ConfigError("distillation.teacher is empty: give a Hugging Face directory with an MLM head or a "
                              "training --workdir (python -m bert_jax.distill --teacher SOURCE)")
        source = source.removeprefix("hf:")
        overrides = {}
        if self.settings.teacher_dtype != "float32":  # stored and run in the lower precision: half the memory
            overrides = dict(dtype=self.settings.teacher_dtype, param_dtype=self.settings.teacher_dtype)
        if os.path.isdir(os.path.join(source, "checkpoints")):
            teacher_config, load, self._teacher_vocab_file = _workdir_teacher(source, overrides)
        else:
            teacher_config, load = _hf_teacher(source, overrides)
            self._teacher_vocab_file = os.path.join(source, "vocab.txt")
        self.teacher_config = teacher_config
        self._check_student_against_teacher()
        return FrozenSpec(make_model=models.constructor(teacher_config, ("mlm",)), load_params=load,
                          description=f"teacher {source}")

    def _check_student_against_teacher(self) -> None:
        from bert_jax import models

        student = models.model_config(self.config.model.to_dict())
        teacher = self.teacher_config
        if student.vocab_size != teacher.vocab_size:
            raise ConfigError(f"model.vocab_size ({student.vocab_size}) differs from the teacher's "
                              f"({teacher.vocab_size}): the student predicts the teacher's vocabulary")
        if self.settings.alpha_cos and student.hidden_size != teacher.hidden_size:
            raise ConfigError(f"distillation.alpha_cos needs the student's width ({student.hidden_size}) to equal the "
                              f"teacher's ({teacher.hidden_size}); set --config.distillation.alpha_cos=0")

    def check_data(self, data_dir: str, vocab_size: int) -> None:
        """The teacher must read the data's vocabulary: same size, and the same tokens where both ship a vocab."""
        from bert_jax.errors import InputError

        if self.teacher_config.vocab_size != vocab_size:
            raise InputError(f"the teacher {self.settings.teacher} has a vocabulary of {self.teacher_config.vocab_size}"
                             f" tokens and the data in {data_dir} one of {vocab_size}: build the data with the "
                             "teacher's vocab")
        ours, theirs = os.path.join(data_dir, "vocab.txt"), self._teacher_vocab_file
        if theirs and os.path.isfile(ours) and os.path.isfile(theirs):
            with open(ours, encoding="utf-8") as a, open(theirs, encoding="utf-8") as b:
                if a.read().split() != b.read().split():
                    raise InputError(f"{ours} and the teacher's {theirs} are different vocabularies of the same size:"
                                     " build the data with the teacher's vocab")

    def init_params(self, params, frozen_params):
        if self.settings.student_init == "random":
            return params
        from bert_jax import models
        from bert_jax.models import extraction

        student = models.model_config(self.config.model.to_dict())
        return extraction.extract_student(params, frozen_params, student_config=student,
                                          teacher_config=self.teacher_config,
                                          layers=tuple(self.settings.student_layers) or None)

    # ------------------------------------------------------------------------------------------------- loss

    def forward(self, model, batch, *, deterministic, rngs, frozen=None):
        positions = None if self.settings.kd_all_positions else batch["masked_lm_positions"]
        inputs = (batch["input_ids"], batch["input_mask"], batch["segment_ids"], positions)
        student = model(*inputs, deterministic=deterministic, rngs=rngs)
        teacher = frozen(*inputs, deterministic=True)
        return {"student": student, "teacher": teacher}

    def _kd_weights(self, batch):
        return batch["input_mask"] if self.settings.kd_all_positions else batch["masked_lm_weights"]

    def sums(self, outputs, batch):
        student, teacher = outputs["student"], outputs["teacher"]
        s_logits, t_logits = student["mlm_logits"].astype(jnp.float32), teacher["mlm_logits"].astype(jnp.float32)
        if self.settings.kd_all_positions:  # logits at every position: the MLM terms read the masked ones
            index = batch["masked_lm_positions"][..., None].astype(jnp.int32)
            s_masked, t_masked = (jnp.take_along_axis(x, index, axis=1) for x in (s_logits, t_logits))
        else:
            s_masked, t_masked = s_logits, t_logits
        ids, weights = batch["masked_lm_ids"], batch["masked_lm_weights"]
        sums = losses.classification_sums("mlm", s_masked, ids, weights)
        sums.update(losses.classification_sums("teacher_mlm", t_masked, ids, weights))

        kd_weights = self._kd_weights(batch).astype(jnp.float32)
        temperature = self.settings.temperature
        t_log_probs = jax.nn.log_softmax(t_logits / temperature, axis=-1)
        s_log_probs = jax.nn.log_softmax(s_logits / temperature, axis=-1)
        kl = jnp.sum(jnp.exp(t_log_probs) * (t_log_probs - s_log_probs), axis=-1) * temperature**2
        sums["kd_loss_sum"] = jnp.sum(kl * kd_weights)
        sums["kd_count"] = jnp.sum(kd_weights)
        if self.settings.alpha_mse:
            sums["mse_loss_sum"] = jnp.sum(jnp.sum((s_logits - t_logits) ** 2, axis=-1) * kd_weights)

        mask = batch["input_mask"].astype(jnp.float32)
        s_hidden = student["sequence_output"].astype(jnp.float32)
        t_hidden = teacher["sequence_output"].astype(jnp.float32)
        dot = jnp.sum(s_hidden * t_hidden, axis=-1)
        norms = jnp.sqrt((jnp.sum(s_hidden**2, axis=-1) + _COSINE_EPS) * (jnp.sum(t_hidden**2, axis=-1) + _COSINE_EPS))
        sums["cos_loss_sum"] = jnp.sum((1.0 - dot / norms) * mask)
        sums["cos_count"] = jnp.sum(mask)
        return sums

    def denominators(self, batch):
        return dict(super().denominators(batch),
                    kd=jnp.maximum(jnp.sum(self._kd_weights(batch).astype(jnp.float32)), 1.0),
                    cos=jnp.maximum(jnp.sum(batch["input_mask"].astype(jnp.float32)), 1.0))

    def loss(self, sums, denominators):
        s = self.settings
        total = (s.alpha_ce * sums["kd_loss_sum"] / denominators["kd"]
                 + s.alpha_mlm * sums["mlm_loss_sum"] / denominators["mlm"]
                 + s.alpha_cos * sums["cos_loss_sum"] / denominators["cos"])
        if s.alpha_mse:
            total = total + s.alpha_mse * sums["mse_loss_sum"] / denominators["kd"]
        return total

    def summarize(self, sums):
        s = self.settings
        out = losses.summarize_classification(sums, ("mlm", "teacher_mlm"))
        out["kd_loss"] = sums["kd_loss_sum"] / max(sums["kd_count"], 1.0)
        out["cos_loss"] = sums["cos_loss_sum"] / max(sums["cos_count"], 1.0)
        out["loss"] = s.alpha_ce * out["kd_loss"] + s.alpha_mlm * out["mlm_loss"] + s.alpha_cos * out["cos_loss"]
        if s.alpha_mse:
            out["mse_loss"] = sums["mse_loss_sum"] / max(sums["kd_count"], 1.0)
            out["loss"] += s.alpha_mse * out["mse_loss"]
        del out["teacher_mlm_loss"]  # the teacher's accuracy is the reference; its loss is not a training signal
        return out

    def flops_per_token(self, model_config, shape: BatchShape) -> float:
        """The student's training FLOPs (MaskedLM's count) plus the teacher's forward pass (a third of its training
        count: no backward) at the same positions."""
        student = super().flops_per_token(model_config, shape)
        if self.teacher_config is None:
            return student
        positions = shape.seq_len if self.settings.kd_all_positions else shape.max_predictions
        if self.settings.kd_all_positions:
            student += 6 * (model_config.hidden_size**2 + model_config.hidden_size * model_config.vocab_size) * (
                shape.seq_len - shape.max_predictions) / shape.seq_len
        teacher = MaskedLM.flops_per_token(self, self.teacher_config, BatchShape(shape.batch_size, shape.seq_len,
                                                                                  positions))
        return student + teacher / 3


def _hf_teacher(directory: str, overrides: dict):
    """A teacher from a Hugging Face directory: its config now, its weights (MLM head required) when loaded."""
    from bert_jax.interop import hf

    config = hf.config_from_hf(directory, **overrides)

    def load():
        model, report = hf.load_pretrained(directory, heads=("mlm",), **overrides)
        if "MLM head" in report.missing_heads:
            raise CheckpointError(f"the teacher {directory} has no masked-LM head ({report.summary().splitlines()[1]}):"
                                  " distillation needs its predictions; give a *ForMaskedLM or *ForPreTraining "
                                  "checkpoint")
        from flax import nnx

        return jax.device_get(nnx.state(model, nnx.Param))

    return config, load


def _workdir_teacher(workdir: str, overrides: dict):
    """A teacher from one of our training runs: its latest checkpoint's parameters, MLM head included."""
    import dataclasses

    from bert_jax import models
    from bert_jax.training import checkpointing

    manager = checkpointing.make_manager(workdir, keep=1, read_only=True)
    try:
        step = manager.latest_step()
        if step is None:
            raise CheckpointError(f"the teacher workdir {workdir} holds no complete checkpoint: train it first")
        saved = checkpointing.read_metadata(manager, step)
    finally:
        manager.close()
    config = dataclasses.replace(models.model_config(saved["config"]["model"]), **overrides)
    vocab_file = saved["config"]["data"].get("vocab_file", "")

    def load():
        from flax import nnx

        model, _, _ = checkpointing.load_run_model(workdir, step)
        params = nnx.state(models.constructor(config, ("mlm",))(nnx.Rngs(0)), nnx.Param)
        flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
        for path, variable in nnx.to_flat_state(params):  # the MLM model's subset of the run's model
            variable.set_value(jnp.asarray(flat[path].get_value(), variable.get_value().dtype))
        return jax.device_get(params)

    return config, load, vocab_file
