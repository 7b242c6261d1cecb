"""The run's phases: consecutive step ranges with their own sequence length and masked positions (BERT trains at
128 tokens for 90% of its steps, then at 512). The phase is a function of the step, so a run resumes in either."""

from __future__ import annotations

import dataclasses

import ml_collections


@dataclasses.dataclass(frozen=True)
class Phase:
    index: int
    start: int  # first step of the phase
    end: int  # one past its last step
    max_seq_length: int
    max_predictions: int


def phase_plan(config: ml_collections.ConfigDict) -> list[Phase]:
    """Splits `train_steps` by each phase's `fraction` (rounded; the last phase ends at train_steps)."""
    plan, start, cumulative = [], 0, 0.0
    for index, phase in enumerate(config.phases):
        cumulative += phase.fraction
        end = config.train_steps if index == len(config.phases) - 1 else round(cumulative * config.train_steps)
        if end > start:
            plan.append(Phase(index, start, end, phase.max_seq_length, phase.max_predictions))
        start = end
    return plan


def phase_at(plan: list[Phase], step: int) -> Phase | None:
    return next((phase for phase in plan if phase.start <= step < phase.end), None)
