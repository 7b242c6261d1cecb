"""Vocab learning and tokenizer loading: parity with Hugging Face's BertTokenizerFast, vocab format, CLI."""

from __future__ import annotations

import glob
import json
import shutil

import pytest

from bert_jax.data import vocab
from bert_jax.data.sources import SourceStats, iterate_documents, list_input_shards
from bert_jax.data.tokenizers import wordpiece
from bert_jax.errors import InputError
from tests.conftest import SAMPLE

# Accents (precomposed and combining), CJK, Korean, Arabic, Devanagari, Thai, punctuation, control characters,
# zero-width characters, emoji with modifiers and joiners, 200+ character words, mixed whitespace, special tokens
# in text, numbers, URLs.
UNICODE_TEXTS = [
    "Café naïve Ångström résumé Straße ÉCOLE Ærø façade e\u0301te\u0301 Zoë",
    "東京タワーは高い。北京大学 한국어 텍스트 مرحبا بالعالم हिन्दी ภาษาไทย",
    "¿Qué? ¡Sí! «quoted» — “curly” ‘single’ … (paren) [bracket] {brace} a/b\\c #tag @user",
    "50% $3.14 ±½ x² 1,000.5 — 3–4 pages",
    "ctrl\x00nul\x01soh\x07bel\x1besc\x7fdel\x85nel\u200bzwsp\u200czwnj\u200dzwj\ufefffeff\u00adshy end",
    "emoji 🙂👍🏽 👨\u200d👩\u200d👧 🇫🇷 ✓ ☃ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "long " + "a" * 99 + " " + "b" * 100 + " " + "c" * 101 + " " + "Supercalifragilistic" * 12 + " end",
    "tabs\tand\nnewlines\r\nand\u00a0nbsp\u2003em\u3000ideographic\u2028line\u2029para  double",
    "The [MASK] sat on the [SEP] mat [CLS] [UNK] [PAD] [mask] in 2024, see https://example.com/a?b=1&c=2.",
    "MiXeD CaSe WORDS and ALLCAPS and camelCaseWords and snake_case_words",
    "",
    "   ",
]


@pytest.fixture(scope="module")
def real_vocab_file(minilm_dir) -> str:
    return str(minilm_dir / "vocab.txt")


def hf_fast(vocab_file: str, lowercase: bool):
    from transformers import BertTokenizerFast

    # The positional argument: transformers 5 ignores a `vocab_file=` keyword (it builds an empty vocab).
    return BertTokenizerFast(vocab_file, do_lower_case=lowercase)


def assert_same_ids_as_hf(vocab_file: str, lowercase: bool) -> None:
    ours = wordpiece.load_tokenizer(vocab_file, lowercase=lowercase)
    theirs = hf_fast(vocab_file, lowercase)
    assert ours.get_vocab_size() == len(theirs)
    for text in UNICODE_TEXTS:
        expected = theirs(text)
        encoding = ours.encode(text)
        assert encoding.ids == expected["input_ids"], text
        assert encoding.type_ids == expected["token_type_ids"], text
    for first, second in zip(UNICODE_TEXTS, reversed(UNICODE_TEXTS)):
        if not second:
            continue  # HF's __call__ treats an empty text_pair as no pair at all
        expected = theirs(first, second)
        encoding = ours.encode(first, second)
        assert encoding.ids == expected["input_ids"], (first, second)
        assert encoding.type_ids == expected["token_type_ids"], (first, second)
    # Without special tokens, as the builder uses it; several documents at once.
    batch = [encoding.ids for encoding in ours.encode_batch(UNICODE_TEXTS, add_special_tokens=False)]
    assert batch == [theirs(text, add_special_tokens=False)["input_ids"] for text in UNICODE_TEXTS]


@pytest.mark.parametrize("lowercase", [True, False])
def test_load_tokenizer_equals_hf_with_real_bert_base_uncased_vocab(real_vocab_file, lowercase):
    assert len(wordpiece.read_vocab(real_vocab_file)) == 30522
    assert_same_ids_as_hf(real_vocab_file, lowercase)


def test_real_vocab_lowercase_is_read_from_tokenizer_config(real_vocab_file, tmp_path):
    assert wordpiece.is_lowercase_vocab(real_vocab_file)  # its tokenizer_config.json says do_lower_case: true
    shutil.copy(real_vocab_file, tmp_path / "vocab.txt")
    assert not wordpiece.is_lowercase_vocab(str(tmp_path / "vocab.txt"))  # no config: cased
    lowercased = wordpiece.load_tokenizer(real_vocab_file).encode("Hello WORLD", add_special_tokens=False).ids
    assert lowercased == hf_fast(real_vocab_file, True)("Hello WORLD", add_special_tokens=False)["input_ids"]
    assert wordpiece.load_tokenizer(real_vocab_file).token_to_id("[PAD]") == 0


def sample_sentences(limit: int) -> list[str]:
    shards = list_input_shards(sorted(glob.glob(str(SAMPLE / "corpus-*.txt"))))
    sentences = [sentence for document in iterate_documents(shards, SourceStats()) for sentence in document]
    return sentences[:limit]


@pytest.fixture(scope="module")
def training_sentences() -> list[str]:
    # The sample corpus plus the unicode texts, so accented, CJK and other characters are in the alphabet.
    return sample_sentences(3000) + [text for text in UNICODE_TEXTS if text.strip()] * 3


@pytest.fixture(scope="module")
def learned_vocabs(training_sentences, tmp_path_factory) -> dict[tuple[str, bool], str]:
    paths = {}
    for learner in wordpiece.LEARNERS:
        for lowercase in (False, True):
            tokens = wordpiece.learn_vocab(iter(training_sentences), 1200, lowercase=lowercase, learner=learner)
            directory = tmp_path_factory.mktemp(f"{learner}-{'uncased' if lowercase else 'cased'}")
            paths[learner, lowercase] = wordpiece.write_vocab_dir(tokens, str(directory), lowercase=lowercase)
    return paths


@pytest.mark.parametrize("learner", wordpiece.LEARNERS)
@pytest.mark.parametrize("lowercase", [False, True])
def test_load_tokenizer_equals_hf_with_learned_vocab(learned_vocabs, learner, lowercase):
    assert_same_ids_as_hf(learned_vocabs[learner, lowercase], lowercase)


@pytest.mark.parametrize("learner", wordpiece.LEARNERS)
@pytest.mark.parametrize("lowercase", [False, True])
def test_learned_vocab_format(learned_vocabs, training_sentences, learner, lowercase):
    vocab_file = learned_vocabs[learner, lowercase]
    tokens = wordpiece.read_vocab(vocab_file)  # validates: no duplicates, specials present, [PAD] first
    assert tuple(tokens[:5]) == wordpiece.SPECIAL_TOKENS
    assert len(tokens) == 1200  # exactly the size asked for
    assert all(token and token != "##" and not any(char.isspace() for char in token) for token in tokens)
    with open(vocab_file.replace("vocab.txt", "tokenizer_config.json")) as f:
        config = json.load(f)
    assert config["do_lower_case"] is lowercase and config["tokenizer_class"] == "BertTokenizer"
    assert config["model_max_length"] == 512 and config["mask_token"] == "[MASK]"
    assert wordpiece.is_lowercase_vocab(vocab_file) is lowercase
    if lowercase:  # an uncased vocab never holds upper-case letters or accents
        assert not any(token != token.lower() for token in tokens[5:])
        assert "é" not in tokens and "e" in tokens
    # Coverage as WordPiece's: every word of the training text is tokenised without [UNK], except words over
    # 100 characters (always [UNK] in BERT).
    tokenizer = wordpiece.load_tokenizer(vocab_file)
    unk_id = tokenizer.token_to_id(wordpiece.UNK)
    words = tokenizer.pre_tokenizer.pre_tokenize_str(tokenizer.normalizer.normalize_str(" ".join(training_sentences)))
    short_words = sorted({word for word, _ in words if len(word) <= wordpiece.MAX_INPUT_CHARS_PER_WORD})
    encodings = tokenizer.encode_batch(short_words, add_special_tokens=False)
    unknown = [word for word, encoding in zip(short_words, encodings) if unk_id in encoding.ids]
    assert unknown == []


@pytest.mark.parametrize("model_type", wordpiece.SENTENCEPIECE_MODEL_TYPES)
def test_sentencepiece_learning_is_deterministic(training_sentences, model_type):
    # (tokenizers' WordPieceTrainer is not: huggingface/tokenizers#1794; hence it is not the default.)
    runs = [wordpiece.learn_vocab(iter(training_sentences), 1000, lowercase=False, learner="sentencepiece",
                              sentencepiece_model_type=model_type) for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]


def test_slow_bert_tokenizer_loads_written_vocab_dir(learned_vocabs):
    from transformers import BertTokenizerFast, BertTokenizerLegacy

    text = "Zoë visited Östermalm and Faitrisbury in 1901, then the river Caidrainda."
    for lowercase in (False, True):
        vocab_file = learned_vocabs[wordpiece.DEFAULT_LEARNER, lowercase]
        directory = vocab_file.rsplit("/", 1)[0]
        slow = BertTokenizerLegacy.from_pretrained(directory)  # the Python (slow) BertTokenizer of transformers 5
        fast = BertTokenizerFast.from_pretrained(directory)
        assert slow.do_lower_case is lowercase and fast.do_lower_case is lowercase
        ours = wordpiece.load_tokenizer(vocab_file).encode(text).ids
        assert slow(text)["input_ids"] == ours == fast(text)["input_ids"]
        assert slow.pad_token_id == 0 and slow.mask_token_id == 4


def test_sentencepiece_pieces_to_wordpiece_form():
    pieces = ["<unk>", "\u2581", "\u2581the", "ing", "\u2581T", "s", "<s>"]
    assert list(wordpiece.sentencepiece_to_wordpiece(pieces)) == ["the", "##ing", "T", "##s"]


def test_sentencepiece_unigram_learner_also_works(training_sentences):
    tokens = wordpiece.learn_vocab(iter(training_sentences[:800]), 500, lowercase=False, learner="sentencepiece",
                               sentencepiece_model_type="unigram")
    assert tuple(tokens[:5]) == wordpiece.SPECIAL_TOKENS and len(tokens) == len(set(tokens)) <= 500


def test_vocab_size_the_corpus_cannot_reach_is_reported(tmp_path, capsys):
    (tmp_path / "tiny.txt").write_text("A tiny corpus.\nIt has few words.\n")
    assert vocab.main(["--input", str(tmp_path / "tiny.txt"), "--output", str(tmp_path / "v"),
                       "--vocab_size", "5000"]) == 0
    size = len(wordpiece.read_vocab(str(tmp_path / "v" / "vocab.txt")))
    assert size < 5000
    assert f"set the model's vocab_size to {size}" in capsys.readouterr().err


def test_cli_writes_vocab_dir_with_progress(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join("\n".join(document) for document in [[f"Sentence {i} of doc {d}." for i in range(5)]
                                                                     for d in range(40)]))
    assert vocab.main(["--input", str(corpus), "--output", str(tmp_path / "out"), "--vocab_size", "60",
                       "--lowercase"]) == 0
    captured = capsys.readouterr()
    assert "read 40 documents, 200 sentences" in captured.err and "wrote" in captured.out
    assert wordpiece.is_lowercase_vocab(str(tmp_path / "out" / "vocab.txt"))
    assert len(wordpiece.read_vocab(str(tmp_path / "out" / "vocab.txt"))) == 60


def test_cli_help_names_the_default_learner_and_bad_input_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        vocab.parse_args(["--help"])
    assert exit_info.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"--learner {{{','.join(wordpiece.LEARNERS)}}}" in help_text
    assert f"{wordpiece.DEFAULT_LEARNER} (default)" in help_text and "docs/data_vocab.md" in help_text
    assert vocab.main(["--input", str(tmp_path / "missing.txt"), "--output", str(tmp_path / "o")]) == 2
    assert "missing.txt' does not exist" in capsys.readouterr().err


def test_committed_sample_vocab_matches_the_default_learner():
    vocab_file = str(SAMPLE / "vocab" / "vocab.txt")
    tokens = wordpiece.read_vocab(vocab_file)
    assert len(tokens) == 4096 and not wordpiece.is_lowercase_vocab(vocab_file)
    sentences = sample_sentences(10**9)
    assert wordpiece.learn_vocab(iter(sentences), 4096, lowercase=False) == tokens  # regenerating gives the same file


@pytest.mark.parametrize("lines, message", [
    (["[PAD]", "[UNK]", "[CLS]", "[SEP]"], r"missing BERT special tokens \['\[MASK\]'\]"),
    (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "a"], r"vocab.txt:7: token 'a' repeats line 6"),
    (["[UNK]", "[PAD]", "[CLS]", "[SEP]", "[MASK]"], r"\[PAD\] is on line 2 but must be the first line"),
    (["[PAD]", "", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], r"vocab.txt:2: empty line"),
])
def test_bad_vocab_files_are_clear_errors(tmp_path, lines, message):
    (tmp_path / "vocab.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=message):
        wordpiece.read_vocab(str(tmp_path / "vocab.txt"))


def test_missing_vocab_and_bad_tokenizer_config_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        wordpiece.load_tokenizer(str(tmp_path / "nope.txt"))
    wordpiece.write_vocab_dir(list(wordpiece.SPECIAL_TOKENS) + ["a"], str(tmp_path), lowercase=False)
    (tmp_path / "tokenizer_config.json").write_text('{"do_lower_case": "yes"}')
    with pytest.raises(InputError, match="'do_lower_case' must be true or false"):
        wordpiece.load_tokenizer(str(tmp_path / "vocab.txt"))


def test_uncased_tokenizer_strips_accents_like_bert(tmp_path):
    # An uncased BERT tokenizer lowercases and strips accents; a cased one keeps both.
    path = wordpiece.write_vocab_dir(list(wordpiece.SPECIAL_TOKENS) + ["cafe", "café", "##s"], str(tmp_path),
                                     lowercase=True)
    assert wordpiece.load_tokenizer(path).encode("CAFÉS", add_special_tokens=False).tokens == ["cafe", "##s"]
    assert wordpiece.load_tokenizer(path, lowercase=False).encode("café", add_special_tokens=False).tokens == ["café"]
