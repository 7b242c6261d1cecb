"""Packed examples (RoBERTa's FULL-SENTENCES and DOC-SENTENCES): records that are the documents' token stream in
order, cut only where the rules say, at least 99% non-pad at 512 on the sample corpus, the builder's guarantees
(workers, resume), tiny corpora, either vocab kind, and the loader's batches (no NSP, pad id, specials unmasked)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import grain
import numpy as np
import pytest

from bert_jax.data import build, build_parts, records
from bert_jax.data.examples import packed
from bert_jax.data.inspect import main as inspect_main
from bert_jax.data.masking import MaskingConfig, VocabInfo, mask_example
from bert_jax.data.pipeline import make_loader
from bert_jax.data.sources import SourceStats, list_input_shards
from bert_jax.data.tokenizers import vocabs
from bert_jax.errors import InputError
from tests.conftest import SAMPLE
from tests.test_build import tree_bytes

BPE_VOCAB = str(SAMPLE / "bpe" / "tokenizer.json")
WORDPIECE_VOCAB = str(SAMPLE / "vocab" / "vocab.txt")
CORPUS = (str(SAMPLE / "corpus-00.txt"), str(SAMPLE / "corpus-01.txt"))
LENGTHS = (64, 128)
BOS, PAD, EOS = 0, 1, 2


def config_for(kind: str, **overrides) -> build.BuildConfig:
    settings = dict(inputs=CORPUS, vocab=BPE_VOCAB, lowercase=False, max_seq_lengths=LENGTHS, eval_fraction=0.1,
                    example_kind=kind)
    settings.update(overrides)
    return build.BuildConfig(**settings)


def read_records(output: Path, length: int, split: str) -> list[np.ndarray]:
    paths = sorted(str(p) for p in (output / f"seq_{length}").glob(f"{split}-*.array_record"))
    source = grain.sources.ArrayRecordDataSource(paths)
    return [records.decode_packed(source[i]).input_ids for i in range(len(source))]


def document_streams(vocab_path: str, eval_fraction: float) -> dict[str, list[list[list[int]]]]:
    """Per split, per input file in order: each document as its sentences' ids with the markers, exactly as the
    build must tokenize them (the vocab's sentence texts through the plain tokenizer, no chunk cache)."""
    vocab = vocabs.load(vocab_path)
    tokenizer = vocab.tokenizer()
    streams: dict[str, list[list[list[int]]]] = {"train": [], "eval": []}
    for shard in list_input_shards(list(CORPUS)):
        per_split: dict[str, list[list[list[int]]]] = {"train": [], "eval": []}
        for sentences in shard.documents(SourceStats()):
            split = "eval" if build_parts.is_eval_document(sentences, eval_fraction) else "train"
            ids = [tokenizer.encode(text, add_special_tokens=False).ids for text in vocab.sentence_texts(sentences)]
            ids[0] = [vocab.specials.cls] + ids[0]
            ids[-1] = ids[-1] + [vocab.specials.sep]
            per_split[split].append(ids)
        for split in per_split:
            streams[split].append(per_split[split])
    return streams


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("packed")
    for kind in ("full_sentences", "doc_sentences"):
        build.build(config_for(kind), str(root / kind), workers=1)
    return {kind: root / kind for kind in ("full_sentences", "doc_sentences")}


@pytest.fixture(scope="module")
def streams() -> dict[str, list[list[list[int]]]]:
    return document_streams(BPE_VOCAB, 0.1)


def test_full_sentences_are_the_document_stream_cut_only_by_the_rules(builds, streams):
    output = builds["full_sentences"]
    stats = json.loads((output / "stats.json").read_text())
    assert stats["example_kind"] == "full_sentences" and stats["vocab"]["kind"] == "bpe"
    for length in LENGTHS:
        max_padding = packed.max_padding_tokens(length)
        for split in ("train", "eval"):
            examples = read_records(output, length, split)
            counters = stats["per_length"][str(length)][split]
            # Nothing lost, nothing reordered: the records put together are the documents, shard after shard.
            shard_streams = [[t for document in shard for sentence in document for t in sentence]
                             for shard in streams[split]]
            assert [t for ids in examples for t in ids.tolist()] == [t for s in shard_streams for t in s]
            # Where each shard's stream and each sentence ends, as offsets into the concatenated records.
            stream_ends, sentence_ends, offset = set(), set(), 0
            for shard in streams[split]:
                for document in shard:
                    for sentence in document:
                        offset += len(sentence)
                        sentence_ends.add(offset)
                stream_ends.add(offset)
            ends = np.cumsum([len(ids) for ids in examples]).tolist()
            cut = [end for end in ends if end not in sentence_ends]
            short = [end for end, ids in zip(ends, examples) if len(ids) < length - max_padding]
            assert len(cut) == counters["cut_sentences"] > 0  # no sentence here is longer than a sequence
            assert set(short) <= stream_ends, "only a stream's last sequence pads more than the allowance"
            for end, ids in zip(ends, examples):  # a sentence is cut only where keeping it whole pads too much
                assert len(ids) <= length
                if end in cut:
                    assert len(ids) == length
            assert counters["examples"] == len(examples) and counters["tokens"] == sum(map(len, examples))
            assert counters["length_histogram"] == np.bincount([len(ids) for ids in examples],
                                                               minlength=length + 1).tolist()
            assert counters["non_pad_fraction"] == counters["tokens"] / (len(examples) * length)
            spanning = sum(1 for ids in examples if BOS in ids.tolist()[1:] or EOS in ids.tolist()[:-1])
            assert counters["multi_document_examples"] >= 1 and spanning >= counters["multi_document_examples"]
        assert stats["per_length"][str(length)]["max_padding_tokens"] == max_padding


def test_doc_sentences_never_cross_a_document(builds, streams):
    output = builds["doc_sentences"]
    stats = json.loads((output / "stats.json").read_text())
    for length in LENGTHS:
        examples = [ids.tolist() for ids in read_records(output, length, "train")]
        documents = [[t for sentence in document for t in sentence] for shard in streams["train"]
                     for document in shard]
        position = partial = 0
        for document in documents:  # consecutive records make up each document exactly, never more
            taken = []
            while len(taken) < len(document):
                taken += examples[position]
                position += 1
            assert taken == document
            partial += len(examples[position - 1]) < length  # a document's last sequence, padded
        assert position == len(examples)
        counters = stats["per_length"][str(length)]["train"]
        assert counters["multi_document_examples"] == 0 and counters["partial_examples"] == partial > 0


def test_non_pad_share_is_at_least_99_percent_at_512_on_the_sample_corpus(tmp_path):
    corpus = tuple(sorted(str(p) for p in SAMPLE.glob("corpus-*.txt")))
    report = build.build(config_for("full_sentences", inputs=corpus, max_seq_lengths=(512,), eval_fraction=0.01),
                         str(tmp_path / "out"))
    train = report.stats["per_length"]["512"]["train"]
    assert train["non_pad_fraction"] >= 0.99, train["non_pad_fraction"]
    assert not report.stats["warnings"]


def test_packer_keeps_sentences_whole_when_allowed_any_padding():
    """With an allowance of a whole sequence (RoBERTa's FULL-SENTENCES as written) no sentence that fits is cut;
    only a sentence longer than a sequence is, into full sequences and a rest."""
    written: list[bytes] = []
    packer = packed.SequencePacker(10, np.dtype("<u2"), written.append, max_padding=10)
    sentences = [list(range(n)) for n in (4, 5, 3, 7, 23, 2)]
    for number, sentence in enumerate(sentences):
        packer.add(np.array(sentence, "<u2").tobytes(), opens_document=number == 0)
    packer.flush()
    lengths = [len(records.decode_packed(record).input_ids) for record in written]
    assert lengths == [9, 10, 10, 10, 5]  # 4+5 (3 would not fit) | 3+7 | 23 = 10 + 10 + 3, then +2
    assert packer.counts["cut_sentences"] == packer.counts["overlong_sentences"] == 1
    # The default allowance (1% of 10 = 0 tokens) fills every sequence: contiguous tokens.
    dense: list[bytes] = []
    packer = packed.SequencePacker(10, np.dtype("<u2"), dense.append, max_padding=0)
    for sentence in sentences:
        packer.add(np.array(sentence, "<u2").tobytes())
    packer.flush()
    assert [len(records.decode_packed(r).input_ids) for r in dense] == [10, 10, 10, 10, 4]


def test_output_is_independent_of_workers_and_resumes_byte_identically(builds, tmp_path):
    config = config_for("full_sentences")
    build.build(config, str(tmp_path / "out"), workers=2)
    assert tree_bytes(tmp_path / "out") == tree_bytes(builds["full_sentences"])
    (tmp_path / "out" / "seq_128" / "train-00000-of-00001.array_record").unlink()
    (tmp_path / "out" / ".parts" / "00001.stats.json").unlink()
    report = build.build(config, str(tmp_path / "out"))
    assert report.parts_built == [0, 1]
    assert tree_bytes(tmp_path / "out") == tree_bytes(builds["full_sentences"])


def test_corpus_smaller_than_one_sequence_is_counted_and_reported(tmp_path, capsys):
    (tmp_path / "tiny.txt").write_text("A tiny corpus.\nIt has two sentences.\n")
    argv = ["--input", str(tmp_path / "tiny.txt"), "--vocab", str(SAMPLE / "bpe"), "--output", str(tmp_path / "out"),
            "--example_kind", "full_sentences", "--max_seq_length", "128", "--workers", "1", "--eval_fraction", "0"]
    assert build.main(argv) == 0
    assert "less than one sequence of 128" in capsys.readouterr().err
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    train = stats["per_length"]["128"]["train"]
    assert train["examples"] == 1 and train["short_streams"] == 1 and train["partial_examples"] == 1
    assert 0 < train["non_pad_fraction"] < 0.2
    [example] = read_records(tmp_path / "out", 128, "train")
    assert example[0] == BOS and example[-1] == EOS


def test_cli_refuses_pair_options_for_packed_kinds_and_lowercase_with_bpe(tmp_path, capsys):
    base = ["--input", CORPUS[0], "--output", str(tmp_path / "out"), "--workers", "1"]
    assert build.main(base + ["--vocab", BPE_VOCAB, "--example_kind", "doc_sentences", "--dupe_factor", "2"]) == 2
    assert "--dupe_factor: options of --example_kind nsp_pairs, not of doc_sentences" in capsys.readouterr().err
    assert build.main(base + ["--vocab", BPE_VOCAB, "--example_kind", "full_sentences", "--lowercase"]) == 2
    assert "cased" in capsys.readouterr().err
    with pytest.raises(InputError, match="too short for full_sentences"):
        build.build(config_for("full_sentences", max_seq_lengths=(2,)), str(tmp_path / "short"))


def test_either_vocab_with_either_kind(tmp_path):
    """A WordPiece vocab packs documents as [CLS] ... [SEP]; a BPE vocab makes pairs <s> A </s> B </s>. The built
    directory carries its vocab's files and says which kind it is."""
    build.build(config_for("full_sentences", vocab=WORDPIECE_VOCAB, max_seq_lengths=(64,)), str(tmp_path / "wp"))
    assert (tmp_path / "wp" / "vocab.txt").is_file() and not (tmp_path / "wp" / "tokenizer.json").exists()
    info = VocabInfo.from_data_dir(str(tmp_path / "wp"))
    assert info.kind == vocabs.WORDPIECE
    first = read_records(tmp_path / "wp", 64, "train")[0].tolist()
    assert first[0] == info.cls_id == 2
    build.build(config_for("nsp_pairs", max_seq_lengths=(64,), dupe_factor=1), str(tmp_path / "pairs"))
    assert sorted(p.name for p in (tmp_path / "pairs").iterdir() if p.suffix in (".json", ".txt")) == sorted(
        ["build_config.json", "build_manifest.json", "stats.json", "vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json",
         "special_tokens_map.json"])
    source = grain.sources.ArrayRecordDataSource(sorted(str(p) for p in (tmp_path / "pairs" / "seq_64").glob("t*")))
    pair = records.decode(source[0])
    assert pair.input_ids[0] == BOS and pair.input_ids[pair.len_a + 1] == EOS and pair.input_ids[-1] == EOS
    batch = next(iter(make_loader(str(tmp_path / "pairs"), max_seq_length=64, global_batch_size=4,
                                  max_predictions=10, seed=0, process_index=0, process_count=1)))
    assert "next_sentence_labels" in batch and np.asarray(batch["segment_ids"]).max() == 1
    stats = json.loads((tmp_path / "pairs" / "stats.json").read_text())
    assert stats["vocab"] == {"kind": "bpe", "size": 4096,
                              "special_ids": {"cls": 0, "mask": 4095, "pad": 1, "sep": 2, "unk": 3}}


def test_loader_batches_of_packed_data(builds):
    output = str(builds["full_sentences"])
    vocab = VocabInfo.from_data_dir(output)
    config = MaskingConfig(max_predictions=20)
    loader = make_loader(output, max_seq_length=128, global_batch_size=32, max_predictions=20, seed=5,
                         process_index=0, process_count=1, num_epochs=1, shuffle=False, masking=config)
    stored = read_records(builds["full_sentences"], 128, "train")
    masked = shown_random = 0
    for number, batch in enumerate(loader):
        batch = {name: np.asarray(value) for name, value in batch.items()}
        assert sorted(batch) == ["input_ids", "input_mask", "masked_lm_ids", "masked_lm_positions",
                                 "masked_lm_weights", "segment_ids"]
        assert not batch["segment_ids"].any()
        for row in range(32):
            key = number * 32 + row
            expected = mask_example(records.PackedExample(stored[key]), max_seq_length=128, config=config,
                                    vocab=vocab, seed=5, epoch=0, index=key)
            for name, value in expected.items():
                np.testing.assert_array_equal(batch[name][row], value, err_msg=name)
        real = batch["input_mask"] > 0
        assert (batch["input_ids"][~real] == PAD).all(), "padded with <pad>, not 0"
        rows, slots = np.nonzero(batch["masked_lm_weights"])
        positions = batch["masked_lm_positions"][rows, slots]
        original, shown = batch["masked_lm_ids"][rows, slots], batch["input_ids"][rows, positions]
        assert not np.isin(original, [BOS, PAD, EOS]).any(), "document markers and padding are never masked"
        random = (shown != vocab.mask_id) & (shown != original)
        assert not np.isin(shown[random], vocab.special_ids).any()
        masked, shown_random = masked + len(rows), shown_random + int(random.sum())
    assert abs(shown_random / masked - 0.1) < 0.02  # 10% random, all different from the original
    evaluation = list(make_loader(output, max_seq_length=64, split="eval", global_batch_size=64, max_predictions=10,
                                  seed=5, process_index=0, process_count=1, num_epochs=1, shuffle=False,
                                  drop_remainder=False))
    last = {name: np.asarray(value) for name, value in evaluation[-1].items()}
    padding = last["example_weights"] == 0
    assert padding.any() and (last["input_mask"][padding].sum(axis=1) == 2).all()
    assert (last["input_ids"][padding][:, :2] == [BOS, EOS]).all() and not last["masked_lm_weights"][padding].any()


def test_whole_word_masking_with_bpe_masks_whole_words(builds):
    output = str(builds["full_sentences"])
    vocab = VocabInfo.from_data_dir(output)
    batch = next(iter(make_loader(output, max_seq_length=128, global_batch_size=64, max_predictions=20, seed=1,
                                  process_index=0, process_count=1,
                                  masking=MaskingConfig(max_predictions=20, whole_word=True))))
    original = np.array(batch["input_ids"])
    rows, slots = np.nonzero(np.asarray(batch["masked_lm_weights"]))
    positions = np.asarray(batch["masked_lm_positions"])[rows, slots]
    original[rows, positions] = np.asarray(batch["masked_lm_ids"])[rows, slots]
    chosen = {(int(r), int(p)) for r, p in zip(rows, positions)}
    assert sum(bool(vocab.is_continuation[original[r, p]]) for r, p in chosen) > 10, "multi-token words are chosen"
    for row, position in chosen:  # a chosen token's word (Ġ-token plus the Ġ-less tokens after it) is chosen whole
        if position + 1 < 128 and vocab.is_continuation[original[row, position + 1]]:
            assert (row, position + 1) in chosen
        continues = position and vocab.is_continuation[original[row, position]]
        if continues and original[row, position - 1] not in (BOS, EOS):
            assert (row, position - 1) in chosen


def test_reading_the_wrong_record_kind_is_a_clear_error(builds, tmp_path):
    packed_record = records.encode_packed(np.array([0, 5, 2], "<u2").tobytes(), np.dtype("<u2"))
    pair_record = records.encode(records.PairExample(np.array([0, 5, 2, 6, 2], np.int32), 1, 0))
    with pytest.raises(InputError, match="packed-sequence record .* but a sentence-pair record .* was expected"):
        records.decode(packed_record)
    with pytest.raises(InputError, match="sentence-pair record .* but a packed-sequence record .* was expected"):
        records.decode_packed(pair_record)
    assert records.decode_packed(packed_record).input_ids.tolist() == [0, 5, 2]
    # A directory whose build_config.json says pairs but which holds packed records.
    mislabelled = tmp_path / "mislabelled"
    shutil.copytree(builds["full_sentences"], mislabelled)
    stored = json.loads((mislabelled / "build_config.json").read_text())
    (mislabelled / "build_config.json").write_text(json.dumps({**stored, "example_kind": "nsp_pairs"}))
    loader = make_loader(str(mislabelled), max_seq_length=64, global_batch_size=4, max_predictions=5, seed=0,
                         process_index=0, process_count=1)
    with pytest.raises(InputError, match="built with another --example_kind"):
        next(iter(loader))


def test_inspect_decodes_packed_bpe_text(builds, capsys):
    output = str(builds["full_sentences"])
    assert inspect_main([output, "--max_seq_length", "64", "--masked", "--num", "200", "--decode", "2",
                         "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "random_next_fraction" not in report["masked"] and abs(report["masked"]["masked_fraction"] - 0.15) < 0.02
    assert "next_sentence_label" not in report["examples"][0]
    assert inspect_main([output, "--max_seq_length", "64", "--decode", "1"]) == 0
    text = capsys.readouterr().out
    assert "-- example 0: 64 tokens --" in text and "<s>" in text and "\u0120" not in text
