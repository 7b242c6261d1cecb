"""SQuAD v1.1 and v2.0 (extractive question answering) read from the JSON the official site distributes:

    {"version": "v2.0", "data": [{"title": ..., "paragraphs": [{"context": ..., "qas": [{"id": ..., "question": ...,
        "answers": [{"text": ..., "answer_start": 42}], "is_impossible": false}]}]}]}

`--data DIR` holds `train-v1.1.json` and `dev-v1.1.json` (`squad`) or `train-v2.0.json` and `dev-v2.0.json`
(`squad_v2`); `train.json` and `dev.json` are accepted for either. Every answer must be its context's text at
`answer_start` (the official files satisfy this), so a span that is not is an error naming the file, the article
and the question id. v1.1 questions all have an answer; v2.0 adds unanswerable ones (`is_impossible`, no answers).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from bert_jax.data.tasks.base import Task, TaskData, check_not_empty
from bert_jax.errors import InputError

QUESTION_ANSWERING = "question_answering"


@dataclasses.dataclass(frozen=True)
class SquadExample:
    id: str  # the question's `id`, the key of the official predictions file
    title: str  # the article's title, for messages
    question: str
    context: str
    answer_texts: tuple[str, ...]  # every gold answer (dev has several per question; train one); () = no answer
    answer_starts: tuple[int, ...]  # character offset of each answer in `context`
    is_impossible: bool  # SQuAD v2.0: the context does not answer the question


@dataclasses.dataclass(frozen=True)
class QuestionAnsweringData(TaskData):
    """A QA task's examples (`SquadExample`s). The head always has two outputs: the answer's start and end."""

    @property
    def num_labels(self) -> int:
        return 2


@dataclasses.dataclass(frozen=True)
class SquadTask(Task):
    version_2: bool = False  # SQuAD v2.0: unanswerable questions, the no-answer threshold and its metrics

    @property
    def file_version(self) -> str:
        return "v2.0" if self.version_2 else "v1.1"

    def read(self, path: str, settings: Any = None) -> QuestionAnsweringData:
        root = Path(path)
        if not root.is_dir():
            raise InputError(f"task data directory {root} does not exist: pass --data DIR holding SQuAD's "
                             f"train-{self.file_version}.json and dev-{self.file_version}.json")
        splits = {split: read_file(self._split_file(root, split), self.version_2) for split in ("train", "dev")}
        return QuestionAnsweringData(self.name, (), self.problem_type, splits["train"], {"dev": splits["dev"]},
                                     self.metrics, self.best_metric)

    def _split_file(self, root: Path, split: str) -> Path:
        names = (f"{split}-{self.file_version}.json", f"{split}.json")
        for name in names:
            if (root / name).is_file():
                return root / name
        raise InputError(f"{root} holds neither {names[0]} nor {names[1]}: pass --data DIR with SQuAD "
                         f"{self.file_version}'s train and dev files")


def read_file(path: Path, version_2: bool) -> list[SquadExample]:
    """The questions of one SQuAD JSON file, in file order."""
    try:
        with open(path, encoding="utf-8") as f:
            document = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: not a JSON file ({error}); SQuAD files are one JSON document") from None
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise InputError(f"{path}: not SQuAD's layout: the top level must be an object with a \"data\" list of "
                         "articles ({\"data\": [{\"title\", \"paragraphs\": [{\"context\", \"qas\"}]}]})")
    examples, seen = [], set()
    for number, article in enumerate(document["data"]):
        title = article.get("title", f"#{number}") if isinstance(article, dict) else f"#{number}"
        where = f"{path}: article {title!r}"
        for paragraph in _field(article, "paragraphs", list, where):
            context = _field(paragraph, "context", str, where)
            for qa in _field(paragraph, "qas", list, where):
                qid = str(_field(qa, "id", (str, int), where))
                example = _example(qa, qid, title, context, version_2, f"{where}, question id {qid!r}")
                if qid in seen:
                    raise InputError(f"{where}, question id {qid!r}: the id appears twice; ids key the predictions, "
                                     "so each question needs its own")
                seen.add(qid)
                examples.append(example)
    return check_not_empty(examples, path)


def _example(qa: dict, qid: str, title: str, context: str, version_2: bool, where: str) -> SquadExample:
    question = _field(qa, "question", str, where)
    answers = _field(qa, "answers", list, where)
    impossible = bool(qa.get("is_impossible", False))
    if impossible and not version_2:
        raise InputError(f"{where}: is_impossible is true, but SQuAD v1.1 has no unanswerable questions; use "
                         "--task squad_v2 for SQuAD v2.0 data")
    if not answers and not impossible:
        raise InputError(f"{where}: no answers and not is_impossible; give the question an answer "
                         f"({'or mark it is_impossible' if version_2 else 'v1.1 has no unanswerable questions'})")
    texts, starts = [], []
    for answer in ([] if impossible else answers):
        text = _field(answer, "text", str, where)
        start = _field(answer, "answer_start", int, where)
        if context[start:start + len(text)] != text:
            found = context.find(text)
            hint = f"the text is at {found}" if found >= 0 else "the text is nowhere in the context"
            raise InputError(f"{where}: the answer {text!r} is not in its context at answer_start {start} ({hint}); "
                             "fix the answer's text or answer_start")
        texts.append(text)
        starts.append(start)
    return SquadExample(qid, title, question, context, tuple(texts), tuple(starts), impossible)


def _field(record: Any, name: str, kind, where: str):
    """`record[name]`, which must be of `kind`; anything else is SQuAD's layout broken, named where."""
    if not isinstance(record, dict) or name not in record:
        raise InputError(f"{where}: an entry lacks {name!r}, which SQuAD's layout has there; is this a SQuAD file?")
    value = record[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InputError(f"{where}: {name!r} is {type(value).__name__}, not as SQuAD's layout has it")
    return value


METRICS_V1 = ("exact_match", "f1")
METRICS_V2 = METRICS_V1 + ("HasAns_exact_match", "HasAns_f1", "NoAns_exact_match", "NoAns_f1", "best_exact_match",
                           "best_exact_match_thresh", "best_f1", "best_f1_thresh")
TASKS = {
    task.name: task
    for task in (
        SquadTask("squad", (), "", METRICS_V1, "f1", objective=QUESTION_ANSWERING),
        SquadTask("squad_v2", (), "", METRICS_V2, "f1", objective=QUESTION_ANSWERING, version_2=True),
    )
}
