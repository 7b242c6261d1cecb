"""A centred sliding window over a document stream, the bounded pool random-next segments are drawn from.

The original `create_pretraining_data.py` draws random partners from the whole corpus held in RAM; a window of the
neighbouring documents keeps the builder's memory independent of corpus size (docs/data_build.md).
"""

from __future__ import annotations

import collections
from typing import Generic, Iterator, Protocol, Sequence, TypeVar


class _Sized(Protocol):
    @property
    def num_tokens(self) -> int: ...


ItemT = TypeVar("ItemT", bound=_Sized)


class _PoolView(Sequence[ItemT]):
    """The window minus its current item, without copying: `behind` then `ahead[1:]`."""

    def __init__(self, behind: collections.deque[ItemT], ahead: collections.deque[ItemT]) -> None:
        self._behind, self._ahead = behind, ahead

    def __len__(self) -> int:
        return len(self._behind) + len(self._ahead) - 1

    def __getitem__(self, index: int) -> ItemT:  # type: ignore[override]
        if not 0 <= index < len(self):
            raise IndexError(index)
        behind = len(self._behind)
        return self._behind[index] if index < behind else self._ahead[index - behind + 1]


class RandomNextWindow(Generic[ItemT]):
    """A centred sliding window over a document stream: the random-next pool of each document.

    Push items in stream order; each item comes back once, as `(item, pool)`, when enough items after it have
    arrived: the pool holds up to `half_documents` items before it and after it, each side capped at about
    `half_tokens` tokens (always at least one neighbour per side if one exists). Memory is thus bounded by
    `2 * half_documents + 1` documents and roughly `2 * half_tokens` tokens plus two documents, whatever the corpus
    size. The pool is only valid until the next `push`/`drain` step (it is a view of the window).
    """

    def __init__(self, half_documents: int = 500, half_tokens: int = 4_000_000) -> None:
        if half_documents < 1 or half_tokens < 1:
            raise ValueError("RandomNextWindow needs half_documents >= 1 and half_tokens >= 1")
        self.half_documents = half_documents
        self.half_tokens = half_tokens
        self._behind: collections.deque[ItemT] = collections.deque()
        self._ahead: collections.deque[ItemT] = collections.deque()  # _ahead[0] is the next item to emit
        self._behind_tokens = 0
        self._ahead_tokens = 0  # tokens of _ahead[1:]

    def push(self, item: ItemT) -> Iterator[tuple[ItemT, Sequence[ItemT]]]:
        if self._ahead:
            self._ahead_tokens += item.num_tokens
        self._ahead.append(item)
        while len(self._ahead) > 1 and (len(self._ahead) - 1 >= self.half_documents
                                        or self._ahead_tokens >= self.half_tokens):
            yield from self._emit()

    def drain(self) -> Iterator[tuple[ItemT, Sequence[ItemT]]]:
        """Emits the items still waiting (call at the end of the stream)."""
        while self._ahead:
            yield from self._emit()

    def _emit(self) -> Iterator[tuple[ItemT, Sequence[ItemT]]]:
        current = self._ahead[0]
        yield current, _PoolView(self._behind, self._ahead)
        self._ahead.popleft()
        if self._ahead:
            self._ahead_tokens -= self._ahead[0].num_tokens
        self._behind.append(current)
        self._behind_tokens += current.num_tokens
        while len(self._behind) > self.half_documents or (
                len(self._behind) > 1 and self._behind_tokens > self.half_tokens):
            self._behind_tokens -= self._behind.popleft().num_tokens
