"""SQuAD v1.1 / v2.0: the official metrics on hand-computed examples, context windows equal to transformers'
tokenizer (WordPiece and byte-level BPE) whose answer spans map back to their text, the span selection on crafted
logits, the loss equal to transformers' BertForQuestionAnswering, one-line errors for bad files, and
`python -m bert_jax.finetune --task squad_v2` on a tiny BERT whose logged metrics equal those of its export run
in transformers' AutoModelForQuestionAnswering."""

from __future__ import annotations

import json

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import torch
import transformers

from bert_jax import finetune
from bert_jax.configuration import load_config
from bert_jax.data import tasks
from bert_jax.data.tasks import squad_features, squad_metrics, squad_postprocess
from bert_jax.data.tasks.squad import SquadExample
from bert_jax.data.tokenizers import vocabs
from bert_jax.errors import ConfigError, InputError
from bert_jax.interop import hf
from bert_jax.objectives.question_answering import QuestionAnswering
from tests.run_helpers import REPO, records
from tests.test_finetune import tiny_model  # noqa: F401 (a fixture)
from tests.test_roberta_model import random_weights
from tests.test_task_heads import hf_config

WORDPIECE_DIR = REPO / "data/sample/vocab"
BPE_DIR = REPO / "data/sample/bpe"


def example(qid, question, context, answers=(), impossible=False, occurrence=0):
    """A SquadExample whose answers are found in the context (the `occurrence`-th time each appears)."""
    starts = []
    for text in answers:
        start = -1
        for _ in range(occurrence + 1):
            start = context.index(text, start + 1)
        starts.append(start)
    return SquadExample(qid, "article", question, context, tuple(answers), tuple(starts), impossible)


# ----------------------------------------------------------------------------------------------------- metrics

def test_answer_normalisation_exact_match_and_f1():
    assert squad_metrics.normalize_answer("  The Denver  Broncos!  ") == "denver broncos"
    assert squad_metrics.normalize_answer("an apple, a day") == "apple day"
    assert squad_metrics.normalize_answer("Theatre") == "theatre"  # an article only as a whole word
    assert squad_metrics.exact_match("the Broncos.", "Broncos") == 1.0
    assert squad_metrics.exact_match("Denver Broncos", "Broncos") == 0.0
    # prediction {cat, sat} against gold {cat, sat, on, mat}: precision 1, recall 1/2
    assert squad_metrics.f1("the cat sat", "a cat sat on the mat") == pytest.approx(2 / 3)
    assert squad_metrics.f1("dog", "cat") == 0.0
    assert squad_metrics.f1("", "") == 1.0 and squad_metrics.f1("", "cat") == 0.0
    # several gold answers: the best of each score
    assert squad_metrics.question_scores("Bernadette", ["Saint Bernadette Soubirous", "Bernadette"]) == (1.0, 1.0)
    assert squad_metrics.question_scores("Saint Bernadette", ["Saint Bernadette Soubirous", "a saint"]) == (
        0.0, pytest.approx(0.8))


V2_EXAMPLES = [example("q1", "Who won?", "The Denver Broncos won.", ["Denver Broncos", "Broncos"]),
               example("q2", "Who?", "It was Saint Bernadette Soubirous.", ["Saint Bernadette Soubirous"]),
               example("q3", "Why?", "No reason is given.", impossible=True)]


def test_metrics_v1_and_v2_with_the_best_threshold():
    predictions = {"q1": "the Broncos", "q2": "Bernadette", "q3": ""}
    # q1: EM 1, F1 1; q2: EM 0, F1 2 * 1 * (1/3) / (4/3) = 0.5; q3 (no answer, predicted none): 1, 1
    assert squad_metrics.compute(V2_EXAMPLES[:2], predictions) == {"exact_match": 50.0, "f1": 75.0}
    null_scores = {"q1": -2.0, "q2": 0.2, "q3": 0.5}
    best_spans = {"q1": "the Broncos", "q2": "Bernadette", "q3": "no reason"}
    out = squad_metrics.compute(V2_EXAMPLES, predictions, True, null_scores, best_spans)
    assert out["exact_match"] == pytest.approx(200 / 3) and out["f1"] == pytest.approx(250 / 3)
    assert (out["HasAns_exact_match"], out["HasAns_f1"], out["HasAns_total"]) == (50.0, 75.0, 2)
    assert (out["NoAns_exact_match"], out["NoAns_f1"], out["NoAns_total"]) == (100.0, 100.0, 1)
    # Thresholds over the null scores, answering where the null score is at most it: below all, only q3 right (1);
    # at -2 q1 too (2); at 0.2 q2's F1 0.5 (2.5) but not its EM (2); at 0.5 q3 is answered wrongly.
    assert (out["best_f1"], out["best_f1_thresh"]) == (pytest.approx(250 / 3), 0.2)
    assert (out["best_exact_match"], out["best_exact_match_thresh"]) == (pytest.approx(200 / 3), -2.0)


# ---------------------------------------------------------------------------------------------------- features

LONG_CONTEXT = ("The river Thames flows through London, past Westminster and the Tower, before it reaches the sea. "
                "Boats carry visitors from Greenwich to Richmond all summer. ") * 3
LONG_EXAMPLES = [
    example("long", "  Where does the river flow past?", LONG_CONTEXT, ["Westminster", "Westminster and the Tower"],
            occurrence=1),
    example("short", "What do boats carry?", "Boats carry visitors.", ["visitors"]),
    example("none", "What is the capital?", "Boats carry visitors.", impossible=True),
    example("long_question", "Which " + "very " * 30 + "famous river?", "The Thames, of course.", ["Thames"]),
]
WINDOWING = squad_features.Windowing(max_seq_length=40, doc_stride=8, max_query_length=16)


def hf_features(directory, examples, windowing):
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    return tokenizer([e.question.lstrip() for e in examples], [e.context for e in examples],
                     truncation="only_second", max_length=windowing.max_seq_length, stride=windowing.doc_stride,
                     return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length")


@pytest.mark.parametrize("directory", [WORDPIECE_DIR, BPE_DIR], ids=["wordpiece", "bpe"])
def test_windows_follow_the_stride_and_answers_map_back_to_their_text(directory):
    vocab = vocabs.load(str(directory))
    features = squad_features.build(vocab.tokenizer(), LONG_EXAMPLES, WINDOWING, vocab.specials.pad,
                                    token_types=vocab.kind == vocabs.WORDPIECE)
    index, offsets = features["example_index"], features["offsets"]
    long_rows = np.flatnonzero(index == 0)
    assert len(long_rows) > 3 and np.array_equal(np.unique(index), [0, 1, 2, 3])
    # consecutive windows share doc_stride context tokens
    for first, second in zip(long_rows, long_rows[1:]):
        spans_1 = [tuple(o) for o in offsets[first] if o[0] >= 0]
        spans_2 = [tuple(o) for o in offsets[second] if o[0] >= 0]
        assert spans_1[-WINDOWING.doc_stride:] == spans_2[:WINDOWING.doc_stride]
    # the target of a window holding the (first) answer is its exact text; others point at [CLS]
    for row, example_index in enumerate(index):
        ex = LONG_EXAMPLES[example_index]
        start, end = features["start_positions"][row], features["end_positions"][row]
        if start:
            assert ex.context[offsets[row, start, 0]:offsets[row, end, 1]] == ex.answer_texts[0]
        else:
            assert end == 0 and (not ex.answer_texts or ex.context.index(ex.answer_texts[0]) < 0
                                 or not _holds(offsets[row], ex.answer_starts[0]))
    assert sum(1 for r in long_rows if features["start_positions"][r]) >= 1
    # the long question is cut to max_query_length tokens; the others are as transformers tokenizes them
    question_tokens = (features["input_mask"][-1] == 1) & (offsets[-1, :, 0] < 0)
    specials = vocab.tokenizer().num_special_tokens_to_add(is_pair=True)
    assert question_tokens.sum() == WINDOWING.max_query_length + specials
    theirs = hf_features(directory, LONG_EXAMPLES[:3], WINDOWING)
    short = index < 3
    assert np.array_equal(np.array(theirs["input_ids"]), features["input_ids"][short])
    assert np.array_equal(np.array(theirs["overflow_to_sample_mapping"]), index[short])
    in_context = offsets[short, :, 0] >= 0
    assert np.array_equal(np.array(theirs["offset_mapping"])[in_context], offsets[short][in_context])
    if "token_type_ids" in theirs:
        assert np.array_equal(np.array(theirs["token_type_ids"]), features["segment_ids"][short])


def _holds(offsets, start_char):
    context = offsets[offsets[:, 0] >= 0]
    return context[0, 0] <= start_char < context[-1, 1]


def test_settings_that_cannot_work_are_config_errors():
    tokenizer = vocabs.load(str(WORDPIECE_DIR)).tokenizer()
    with pytest.raises(ConfigError, match=r"finetune.doc_stride 21 must be .* below the context window of 21"):
        squad_features.build(tokenizer, LONG_EXAMPLES, squad_features.Windowing(40, 21, 16), 0)
    with pytest.raises(ConfigError, match=r"max_query_length 40 leaves no context tokens in a sequence of 40"):
        squad_features.build(tokenizer, LONG_EXAMPLES, squad_features.Windowing(40, 8, 40), 0)
    config = load_config("configs/finetune.py", ["finetune.task=squad", "finetune.n_best_size=0"])
    with pytest.raises(ConfigError, match=r"config.finetune.n_best_size is 0; .* at least 1"):
        QuestionAnswering.prepare_config(config)


# ------------------------------------------------------------------------------------------- span selection

def test_span_selection_picks_the_best_valid_span_across_windows():
    """Crafted logits around the answer's tokens (start 5 at its first, end 5 at its last: 10): higher scores on
    a question token, an end before its start and a span longer than max_answer_length are not valid spans; a
    better span in another window of the question wins; v2.0's no-answer against the threshold."""
    vocab = vocabs.load(str(WORDPIECE_DIR))
    ex = LONG_EXAMPLES[0]
    features = squad_features.build(vocab.tokenizer(), [ex], WINDOWING, vocab.specials.pad)
    offsets, index = features["offsets"], features["example_index"]
    target = next(r for r in range(len(offsets)) if features["start_positions"][r])
    a, b = features["start_positions"][target], features["end_positions"][target]
    context = np.flatnonzero(offsets[target, :, 0] >= 0)
    answer_length = b - a + 1
    assert a - context[0] >= answer_length and context[-1] - b >= answer_length  # room for the distractors

    def answer(starts, ends, **options):
        start = np.zeros(offsets.shape[:2], np.float32)
        end = np.zeros_like(start)
        for (row, token), value in {(target, a): 5.0, **starts}.items():
            start[row, token] = value
        for (row, token), value in {(target, b): 5.0, **ends}.items():
            end[row, token] = value
        selection = squad_postprocess.SpanSelection(**{"n_best_size": 5, "max_answer_length": answer_length,
                                                       **options})
        return squad_postprocess.select_answers([ex], index, offsets, start, end, selection)

    assert answer({}, {}).predictions == {"long": "Westminster"}
    assert answer({(target, 2): 9.0}, {(target, 2): 9.0}).predictions == {"long": "Westminster"}  # a question token
    # the answer's start with an end just before it would score 13; those tokens pair validly only with zeros
    assert answer({(target, b + 1): 8.0}, {(target, a - 1): 8.0}).predictions == {"long": "Westminster"}
    # the window's first to last token would score 14 but is longer than max_answer_length ...
    longest = {(target, context[0]): 7.0}, {(target, context[-1]): 7.0}
    assert answer(*longest).predictions == {"long": "Westminster"}
    # ... unless that allows it
    whole = LONG_CONTEXT[offsets[target, context[0], 0]:offsets[target, context[-1], 1]]
    assert answer(*longest, max_answer_length=len(context)).predictions == {"long": whole}
    # a span of another window scoring 12
    other = next(r for r in range(len(offsets)) if r != target and features["start_positions"][r] == 0)
    token = np.flatnonzero(offsets[other, :, 0] >= 0)[3]
    assert answer({(other, token): 6.0}, {(other, token): 6.0}).predictions == {
        "long": LONG_CONTEXT[offsets[other, token, 0]:offsets[other, token, 1]]}
    # v2.0: [CLS] scores of 6 + 6 (in every window) beat the answer's 10 by 2: no answer, unless the threshold
    # allows 2; the null score difference is the official na_prob
    cls = {(row, 0): 6.0 for row in range(len(offsets))}
    answers = answer(cls, cls, version_2=True)
    assert answers.predictions == {"long": ""} and answers.best_spans == {"long": "Westminster"}
    assert answers.null_score_diffs == {"long": pytest.approx(2.0)}
    assert answer(cls, cls, version_2=True, null_score_diff_threshold=2.5).predictions == {"long": "Westminster"}


# -------------------------------------------------------------------------------------------------------- loss

def test_loss_equals_transformers(tmp_path):
    torch_model = random_weights(transformers.BertForQuestionAnswering(hf_config("bert", num_labels=2)))
    torch_model.save_pretrained(tmp_path)
    ours, _ = hf.load_pretrained(tmp_path, heads=("question_answering",))
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 99, size=(4, 11)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 7:] = 0
    types = np.zeros_like(ids)
    types[:, 4:] = 1
    starts, ends = np.array([0, 3, 5, 10], np.int32), np.array([0, 4, 9, 10], np.int32)
    config = ml_collections.ConfigDict(dict(model=dict(problem_type="", num_labels=2), finetune=dict(task="squad")))
    objective = QuestionAnswering(config)
    batch = {"input_ids": jnp.asarray(ids), "input_mask": jnp.asarray(mask), "segment_ids": jnp.asarray(types),
             "start_positions": jnp.asarray(starts), "end_positions": jnp.asarray(ends)}
    loss = objective.loss(objective.sums(objective.forward(ours, batch, deterministic=True, rngs=None), batch),
                          objective.denominators(batch))
    with torch.no_grad():
        theirs = torch_model(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask),
                             token_type_ids=torch.tensor(types, dtype=torch.long),
                             start_positions=torch.tensor(starts, dtype=torch.long),
                             end_positions=torch.tensor(ends, dtype=torch.long)).loss.item()
    assert abs(float(loss) - theirs) <= 1e-5


# ------------------------------------------------------------------------------------------------------ errors

def squad_json(articles):
    return {"version": "v2.0", "data": articles}


def article(title, context, *qas):
    return {"title": title, "paragraphs": [{"context": context, "qas": list(qas)}]}


def qa(qid, question, answers=(), impossible=None):
    record = {"id": qid, "question": question, "answers": [{"text": t, "answer_start": s} for t, s in answers]}
    if impossible is not None:
        record["is_impossible"] = impossible
    return record


def write_squad(root, train, dev, version="v2.0"):
    root.mkdir(parents=True, exist_ok=True)
    for split, document in (("train", train), ("dev", dev)):
        (root / f"{split}-{version}.json").write_text(json.dumps(document), encoding="utf-8")
    return root


GOOD = squad_json([article("Rivers", "The Thames flows through London.",
                           qa("a1", "What flows through London?", [("The Thames", 0)]),
                           qa("a2", "Where does it flow?", [("London", 25), ("through London", 17)]))])


def test_squad_files_read_into_examples(tmp_path):
    v2 = squad_json([article("Rivers", "The Thames flows through London.",
                             qa("b1", "What flows?", [("Thames", 4)], impossible=False),
                             qa("b2", "What is the capital?", [], impossible=True))])
    data = tasks.get("squad_v2").read(str(write_squad(tmp_path / "v2", GOOD, v2)))
    assert data.num_labels == 2 and [e.id for e in data.train] == ["a1", "a2"]
    assert data.train[1].answer_texts == ("London", "through London") and data.train[1].answer_starts == (25, 17)
    assert [(e.id, e.is_impossible, e.answer_texts) for e in data.dev["dev"]] == [
        ("b1", False, ("Thames",)), ("b2", True, ())]
    plain = tmp_path / "plain"
    plain.mkdir()
    for split in ("train", "dev"):
        (plain / f"{split}.json").write_text(json.dumps(GOOD), encoding="utf-8")
    assert tasks.get("squad").read(str(plain)).dev["dev"][0].question == "What flows through London?"


def test_bad_files_are_one_line_naming_the_file_and_question(tmp_path):
    def error(task, train, dev=GOOD, version="v2.0"):
        root = write_squad(tmp_path / str(len(list(tmp_path.iterdir()))), train, dev, version)
        with pytest.raises(InputError) as raised:
            tasks.get(task).read(str(root))
        assert "\n" not in str(raised.value)
        return str(raised.value)

    wrong_answer = squad_json([article("Rivers", "The Thames flows through London.",
                                       qa("x7", "Where?", [("Paris", 25)]))])
    message = error("squad_v2", wrong_answer)
    assert "train-v2.0.json: article 'Rivers', question id 'x7': the answer 'Paris' is not in its context" in message
    assert "the text is nowhere in the context" in message
    shifted = squad_json([article("Rivers", "The Thames flows through London.", qa("x8", "Where?", [("London", 3)]))])
    assert "at answer_start 3 (the text is at 25)" in error("squad_v2", shifted)
    assert "dev-v2.0.json holds no examples" in error("squad_v2", GOOD, squad_json([]))
    assert "not SQuAD's layout" in error("squad_v2", [GOOD])
    no_paragraphs = squad_json([{"title": "Rivers"}])
    assert "article 'Rivers': an entry lacks 'paragraphs'" in error("squad_v2", no_paragraphs)
    unanswerable = squad_json([article("Rivers", "The Thames.", qa("u1", "Why?", [], impossible=True))])
    assert "question id 'u1': is_impossible is true, but SQuAD v1.1" in error("squad", unanswerable, version="v1.1")
    assert "holds neither train-v1.1.json nor train.json" in error("squad", GOOD)  # v2.0 files for the v1.1 task


# ------------------------------------------------------------------------------------------ the command

def qa_rows(count, seed, unanswerable_every=0):
    """SQuAD-layout articles over whole words of the sample vocab: each question names the two words before its
    answer (two words) in a context of 24 words, so the answer is findable; some questions ask about words that
    are not there (v2.0's no-answer)."""
    words = [w for w in (WORDPIECE_DIR / "vocab.txt").read_text().split()[300:1500] if w.isalpha() and len(w) > 2]
    rng = np.random.default_rng(seed)
    articles = []
    for index in range(count):
        context_words = rng.choice(words, size=24, replace=False).tolist()
        at = int(rng.integers(2, 22))
        context = " ".join(context_words)
        impossible = bool(unanswerable_every) and index % unanswerable_every == 0
        if impossible:
            missing = [w for w in rng.choice(words, size=6).tolist() if w not in context_words][:2]
            record = qa(f"q{seed}_{index}", f"what follows {' '.join(missing)} ?", [], impossible=True)
        else:
            answer = " ".join(context_words[at:at + 2])
            start = len(" ".join(context_words[:at])) + 1
            record = qa(f"q{seed}_{index}", f"what follows {' '.join(context_words[at - 2:at])} ?",
                        [(answer, start)], impossible=False)
        articles.append(article(f"t{index}", context, record))
    return squad_json(articles)


@pytest.fixture(scope="module")
def squad_v2_dir(tmp_path_factory):
    return write_squad(tmp_path_factory.mktemp("squad") / "v2", qa_rows(24, 0, unanswerable_every=4),
                       qa_rows(12, 1, unanswerable_every=3))


ARGS = ["--config.batch_size=16", "--config.phases=[{'max_seq_length': 32, 'fraction': 1.0, 'max_predictions': 1}]",
        "--config.finetune.epochs=1", "--config.optimizer.learning_rate=1e-3", "--config.log_every=1",
        "--config.peak_flops_per_device=1e10", "--config.finetune.doc_stride=8",
        "--config.finetune.max_query_length=10", "--config.finetune.max_answer_length=6"]


def test_finetune_squad_v2_metrics_equal_transformers_on_the_export(tiny_model, squad_v2_dir, tmp_path,  # noqa: F811
                                                                    capsys):
    workdir = tmp_path / "run"
    argv = ["--model", str(tiny_model), "--task", "squad_v2", "--data", str(squad_v2_dir), "--workdir", str(workdir)]
    assert finetune.main(argv + ARGS) == 0
    evals = records(workdir, "eval")
    assert len(evals) == 1
    logged = next(iter(evals.values()))
    best = json.loads((workdir / "best" / "best.json").read_text())
    assert best["metric"] == "f1" and best["value"] == logged["f1"]
    assert logged["HasAns_total"] + logged["NoAns_total"] == 12

    # transformers on the exported best parameters: features by its tokenizer, the same span selection
    model, info = transformers.AutoModelForQuestionAnswering.from_pretrained(workdir / "best",
                                                                            output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    data = tasks.get("squad_v2").read(str(squad_v2_dir))
    windowing = squad_features.Windowing(32, 8, 10)
    theirs = hf_features(workdir / "best", data.dev["dev"], windowing)
    assert logged["examples"] == len(theirs["input_ids"]) > 12  # features: contexts in several windows
    with torch.no_grad():
        out = model.eval()(input_ids=torch.tensor(theirs["input_ids"]),
                           attention_mask=torch.tensor(theirs["attention_mask"]),
                           token_type_ids=torch.tensor(theirs["token_type_ids"]))
    offsets = np.array(theirs["offset_mapping"])
    sequence = np.array([[s == 1 for s in theirs.sequence_ids(row)] for row in range(len(offsets))])
    offsets[~sequence] = squad_features.NOT_CONTEXT
    selection = squad_postprocess.SpanSelection(n_best_size=20, max_answer_length=6, version_2=True)
    answers = squad_postprocess.select_answers(data.dev["dev"], np.array(theirs["overflow_to_sample_mapping"]),
                                               offsets, out.start_logits.numpy(), out.end_logits.numpy(), selection)
    expected = squad_metrics.compute(data.dev["dev"], answers.predictions, True, answers.null_score_diffs,
                                     answers.best_spans)
    for name in ("exact_match", "f1", "HasAns_f1", "NoAns_exact_match", "best_f1"):
        assert logged[name] == pytest.approx(expected[name], abs=1e-9), name
    assert transformers.AutoModelForQuestionAnswering.from_pretrained(workdir / "export").config.num_labels == 2

    # the official scripts' inputs next to the best parameters: they score to the logged metrics
    written = json.loads((workdir / "best" / "predictions.json").read_text())
    null_odds = json.loads((workdir / "best" / "null_odds.json").read_text())
    assert set(written) == set(null_odds) == {example.id for example in data.dev["dev"]}
    rescored = squad_metrics.compute(data.dev["dev"], written, True)
    assert rescored["exact_match"] == logged["exact_match"] and rescored["f1"] == logged["f1"]
    assert all(written[qid] == "" for qid, diff in null_odds.items() if diff > 0)  # threshold 0: null wins
    for qid, diff in answers.null_score_diffs.items():
        assert null_odds[qid] == pytest.approx(diff, abs=1e-3), qid

    # bad data is one line through the command
    (squad_v2_dir.parent / "bad").mkdir()
    bad = write_squad(squad_v2_dir.parent / "bad", GOOD, squad_json([article("Rivers", "The Thames.", qa(
        "z1", "What?", [("Seine", 4)]))]))
    assert finetune.main(["--model", str(tiny_model), "--task", "squad_v2", "--data", str(bad), "--workdir",
                          str(tmp_path / "bad_run")]) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("python -m bert_jax.finetune: error: ") and "question id 'z1'" in message
