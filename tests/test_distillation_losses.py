"""Each distillation loss term equals Hugging Face's distiller.py computation (PyTorch) on fixed logits and hidden
states within 1e-6, as sums and counts that add up across micro-batches."""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import torch

from bert_jax.objectives.distillation import Distillation

B, S, P, V, D = 3, 9, 4, 17, 8
TEMPERATURE = 2.0


def settings(**fields):
    values = dict(teacher="unused", teacher_dtype="float32", temperature=TEMPERATURE, alpha_ce=5.0, alpha_mlm=2.0,
                  alpha_cos=1.0, alpha_mse=0.5, kd_all_positions=False, student_init="random", student_layers=[],
                  teacher_train="", teacher_train_overrides=[])
    values.update(fields)
    return ml_collections.ConfigDict(dict(distillation=values))


def fixed(seed=0, all_positions=False):
    rng = np.random.default_rng(seed)
    positions = np.sort(rng.choice(np.arange(1, S - 2), size=(B, P)), axis=1).astype(np.int32)
    weights = np.ones((B, P), np.float32)
    weights[2, 2:] = 0  # padding slots
    input_mask = np.ones((B, S), np.int32)
    input_mask[1, 6:] = 0
    width = S if all_positions else P
    batch = dict(input_ids=rng.integers(5, V, (B, S)).astype(np.int32), input_mask=input_mask,
                 segment_ids=np.zeros((B, S), np.int32), masked_lm_positions=positions,
                 masked_lm_ids=rng.integers(5, V, (B, P)).astype(np.int32), masked_lm_weights=weights)
    outputs = {side: {"mlm_logits": rng.normal(size=(B, width, V)).astype(np.float32) * 3,
                      "sequence_output": rng.normal(size=(B, S, D)).astype(np.float32)}
               for side in ("student", "teacher")}
    return batch, outputs


def torch_reference(batch, outputs, all_positions):
    """distiller.py's terms: KLDivLoss(batchmean) * T^2 on the selected positions' log-softmax / softmax at T,
    CosineEmbeddingLoss(target 1) on the non-padding hidden states, MSELoss(sum) / positions."""
    s_logits = torch.tensor(outputs["student"]["mlm_logits"])
    t_logits = torch.tensor(outputs["teacher"]["mlm_logits"])
    select = torch.tensor(batch["input_mask"] if all_positions else batch["masked_lm_weights"]).bool()
    s_sel, t_sel = s_logits[select], t_logits[select]
    kd = torch.nn.KLDivLoss(reduction="batchmean")(torch.log_softmax(s_sel / TEMPERATURE, -1),
                                                    torch.softmax(t_sel / TEMPERATURE, -1)) * TEMPERATURE**2
    mse = torch.nn.MSELoss(reduction="sum")(s_sel, t_sel) / s_sel.size(0)
    mask = torch.tensor(batch["input_mask"]).bool()
    s_hidden = torch.tensor(outputs["student"]["sequence_output"])[mask]
    t_hidden = torch.tensor(outputs["teacher"]["sequence_output"])[mask]
    cos = torch.nn.CosineEmbeddingLoss(reduction="mean")(s_hidden, t_hidden, torch.ones(s_hidden.size(0)))
    return kd.item(), mse.item(), cos.item()


@pytest.mark.parametrize("all_positions", [False, True])
def test_terms_equal_the_pytorch_reference(all_positions):
    objective = Distillation(settings(kd_all_positions=all_positions))
    batch, outputs = fixed(all_positions=all_positions)
    sums = objective.sums(outputs, batch)
    summary = objective.summarize({k: float(v) for k, v in sums.items()})
    kd, mse, cos = torch_reference(batch, outputs, all_positions)
    assert summary["kd_loss"] == pytest.approx(kd, abs=1e-6, rel=1e-6)
    assert summary["mse_loss"] == pytest.approx(mse, abs=1e-6, rel=1e-6)
    assert summary["cos_loss"] == pytest.approx(cos, abs=1e-6, rel=1e-6)
    loss = float(objective.loss(sums, objective.denominators(batch)))
    expected = 5.0 * kd + 2.0 * summary["mlm_loss"] + 1.0 * cos + 0.5 * mse
    assert loss == pytest.approx(expected, rel=1e-6) == pytest.approx(summary["loss"], rel=1e-6)


def test_mlm_term_reads_the_masked_positions_of_full_logits():
    """With soft targets at every position the logits cover the sequence; the MLM terms gather the masked ones."""
    objective = Distillation(settings(kd_all_positions=True))
    batch, outputs = fixed(seed=1, all_positions=True)
    masked = {side: {"mlm_logits": np.take_along_axis(outputs[side]["mlm_logits"],
                                                      batch["masked_lm_positions"][..., None], axis=1),
                     "sequence_output": outputs[side]["sequence_output"]} for side in outputs}
    full = objective.sums(outputs, batch)
    gathered = Distillation(settings()).sums(masked, batch)
    for name in ("mlm_loss_sum", "mlm_correct_sum", "mlm_count", "teacher_mlm_correct_sum"):
        assert float(full[name]) == pytest.approx(float(gathered[name]), rel=1e-6), name


def test_sums_add_across_micro_batches():
    objective = Distillation(settings())
    batch, outputs = fixed(seed=2)
    whole = objective.sums(outputs, batch)
    parts = [objective.sums({side: {k: v[rows] for k, v in out.items()} for side, out in outputs.items()},
                            {k: v[rows] for k, v in batch.items()}) for rows in (slice(0, 1), slice(1, 3))]
    for name, value in whole.items():
        assert float(value) == pytest.approx(float(parts[0][name] + parts[1][name]), rel=1e-5, abs=1e-6), name
    # The loss of the parts, each normalised by the whole batch's counts, adds up to the whole batch's loss.
    denominators = objective.denominators(batch)
    total = sum(float(objective.loss(part, denominators)) for part in parts)
    assert total == pytest.approx(float(objective.loss(whole, denominators)), rel=1e-5)


def test_identical_student_and_teacher_give_zero_kd_and_cosine():
    objective = Distillation(settings(alpha_mse=0.0))
    batch, outputs = fixed(seed=3)
    outputs["student"] = {k: jnp.asarray(v) for k, v in outputs["teacher"].items()}
    summary = objective.summarize({k: float(v) for k, v in objective.sums(outputs, batch).items()})
    assert abs(summary["kd_loss"]) < 1e-6 and abs(summary["cos_loss"]) < 1e-6 and "mse_loss" not in summary
    assert summary["mlm_accuracy"] == summary["teacher_mlm_accuracy"]
