"""What every corpus reader gives the rest of the package: `InputShard`s that stream documents, and the
`SourceStats` counters of what reading them cleaned and dropped."""

from __future__ import annotations

import collections
import dataclasses
import logging
from typing import Iterator, Mapping

logger = logging.getLogger(__name__)

# Problems of one kind logged with their location; the rest are only counted.
MAX_LOGGED_PER_PROBLEM = 5


class SourceStats:
    """Named counters of what was read, cleaned and dropped; picklable and mergeable across workers.

    `notes` keeps the first few located messages ("file:line: why") per counter, so a report can show where.
    """

    def __init__(self, counts: Mapping[str, int] | None = None) -> None:
        self.counts: collections.Counter[str] = collections.Counter(counts or {})
        self.notes: dict[str, list[str]] = {}

    def count(self, name: str, n: int = 1) -> None:
        if n:
            self.counts[name] += n

    def note(self, name: str, message: str) -> None:
        """Counts one occurrence of problem `name` and remembers (and logs) the first few locations."""
        self.counts[name] += 1
        examples = self.notes.setdefault(name, [])
        if len(examples) < MAX_LOGGED_PER_PROBLEM:
            examples.append(message)
            logger.warning("%s (%s)", message, name)

    def merge(self, other: "SourceStats") -> "SourceStats":
        self.counts.update(other.counts)
        for name, messages in other.notes.items():
            examples = self.notes.setdefault(name, [])
            examples.extend(messages[: MAX_LOGGED_PER_PROBLEM - len(examples)])
        return self

    def to_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))

    def __getitem__(self, name: str) -> int:
        return self.counts[name]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SourceStats) and self.counts == other.counts

    def __repr__(self) -> str:
        return f"SourceStats({self.to_dict()})"


@dataclasses.dataclass(frozen=True)
class InputShard:
    """A unit of parallel work with a stable name; `documents` streams lists of cleaned sentences."""

    name: str

    def documents(self, stats: SourceStats) -> Iterator[list[str]]:
        raise NotImplementedError
