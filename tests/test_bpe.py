"""Byte-level BPE vocabs (RoBERTa's): ids equal to transformers' AutoTokenizer and to the builder's, RoBERTa's special
ids and files, the committed sample vocab, the CLI, and clear errors for the wrong kind of vocab."""

from __future__ import annotations

import glob
import json
import shutil

import numpy as np
import pytest

from bert_jax.data import build, build_parts, records, vocab
from bert_jax.data.masking import VocabInfo
from bert_jax.data.sources import SourceStats, iterate_documents, list_input_shards
from bert_jax.data.tokenizers import bpe, vocabs, wordpiece
from bert_jax.data.tokenizers.chunk_encoder import BYTE_LEVEL_CHUNKS, CachedSentenceEncoder
from bert_jax.errors import InputError
from tests.conftest import SAMPLE
from tests.test_vocab import UNICODE_TEXTS

SAMPLE_BPE = SAMPLE / "bpe"
SAMPLE_WORDPIECE = SAMPLE / "vocab" / "vocab.txt"
# UNICODE_TEXTS (accents, CJK, emoji, control characters, 200+ character words, special tokens in text) plus what a
# byte-level tokenizer treats differently: leading, trailing and repeated spaces, newlines, <mask> with and without
# the space before it, contractions, a 200-character word.
BPE_TEXTS = UNICODE_TEXTS + [
    " leading space", "trailing space ", "two  spaces and   three", "line\nbreak\n\nand\r\nCRLF", "\ttab start",
    "x <mask> y<mask>z  <mask>", "<s>inside</s> and <pad> <unk>", "it's we're they'll I'd 's 'S", "z" * 200,
    "naïve café 東京 👍🏽 " + "é" * 150,
]


@pytest.fixture(scope="module")
def hf_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(SAMPLE_BPE))


def test_ids_equal_autotokenizer_and_the_builders_encoder(hf_tokenizer):
    assert type(hf_tokenizer).__name__ == "RobertaTokenizer"
    ours = vocabs.load(str(SAMPLE_BPE)).tokenizer()
    for text in BPE_TEXTS:
        assert ours.encode(text).ids == hf_tokenizer(text)["input_ids"], text
    for first, second in zip(BPE_TEXTS, reversed(BPE_TEXTS)):
        if second:  # HF's __call__ treats an empty text_pair as no pair at all
            assert ours.encode(first, second).ids == hf_tokenizer(first, second)["input_ids"], (first, second)
    # The builder: the chunk cache (byte-level chunks) in front of the same tokenizer, sentences in several batches,
    # with the space that separates a document's sentences, and a cache small enough to evict.
    encoder = CachedSentenceEncoder(ours, np.dtype("<u2"), max_entries=32)
    assert encoder.chunk_style == BYTE_LEVEL_CHUNKS
    texts = BPE_TEXTS + [" " + text for text in BPE_TEXTS]
    expected = [hf_tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    printable = [i for i, text in enumerate(texts) if text.isprintable() and "  " not in text]
    for batch in (printable, list(range(len(texts)))[::-1], list(range(len(texts)))):
        token_ids, lengths = encoder.encode([texts[i] for i in batch])
        got = np.split(token_ids, np.cumsum(lengths)[:-1])
        assert [ids.tolist() for ids in got] == [expected[i] for i in batch]
    assert encoder.chunks_tokenized > 32 and encoder.sentences_whole > 0  # evictions, and the whole-sentence path


def test_gpt2_files_alone_give_the_same_tokenizer(hf_tokenizer, tmp_path):
    """vocab.json + merges.txt without tokenizer.json: transformers and our loader build the same pipeline."""
    from transformers import AutoTokenizer

    for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(SAMPLE_BPE / name, tmp_path / name)
    from_files = AutoTokenizer.from_pretrained(str(tmp_path))
    ours = bpe.load_tokenizer(str(tmp_path))
    for text in BPE_TEXTS:
        expected = hf_tokenizer(text)["input_ids"]
        assert from_files(text)["input_ids"] == expected == ours.encode(text).ids, text


def test_build_tokenizes_each_document_as_hf_tokenizes_its_text(tmp_path, hf_tokenizer):
    """End to end: the packed records of a unicode-heavy corpus are `<s>` + HF ids of each cleaned document (its
    sentences joined by spaces) + `</s>`, documents in file order, whatever the chunk cache did."""
    documents = [BPE_TEXTS[i:i + 5] for i in range(0, len(BPE_TEXTS), 5)] * 3
    corpus = tmp_path / "unicode.txt"
    corpus.write_text("\n\n".join("\n".join(line.replace("\n", " ") for line in document if line.strip())
                                  for document in documents) + "\n", encoding="utf-8")
    config = build.BuildConfig(inputs=(str(corpus),), vocab=str(SAMPLE_BPE / "tokenizer.json"), lowercase=False,
                               max_seq_lengths=(48,), eval_fraction=0.0, example_kind="full_sentences")
    build.build(config, str(tmp_path / "out"))
    stream = []
    for path in sorted((tmp_path / "out" / "seq_48").glob("train-*.array_record")):
        import grain

        source = grain.sources.ArrayRecordDataSource([str(path)])
        stream += [token for i in range(len(source)) for token in records.decode_packed(source[i]).input_ids]
    cleaned = list(iterate_documents(list_input_shards([str(corpus)]), SourceStats()))
    assert len(cleaned) == len(documents)
    expected = []
    for sentences in cleaned:
        expected += [0] + hf_tokenizer(" ".join(sentences), add_special_tokens=False)["input_ids"] + [2]
    assert stream == expected
    assert build_parts._ENCODERS == {}  # the in-process build leaves no cache behind


def test_learned_vocab_has_robertas_special_ids_and_files(tmp_path, capsys):
    from transformers import AutoTokenizer

    corpus = sorted(glob.glob(str(SAMPLE / "corpus-0[01].txt")))
    assert vocab.main(["--kind", "bpe", "--input", *corpus, "--output", str(tmp_path / "v"),
                       "--vocab_size", "400"]) == 0
    assert "<mask> id 399" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == sorted(bpe.FILES)
    tokenizer = bpe.load_tokenizer(str(tmp_path / "v"))
    assert [tokenizer.token_to_id(t) for t in ("<s>", "<pad>", "</s>", "<unk>", "<mask>")] == [0, 1, 2, 3, 399]
    assert tokenizer.get_vocab_size() == 400
    config = json.loads((tmp_path / "v" / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "RobertaTokenizer" and config["model_max_length"] == 512
    assert config["add_prefix_space"] is False and config["mask_token"] == "<mask>"
    special_map = json.loads((tmp_path / "v" / "special_tokens_map.json").read_text())
    assert special_map["mask_token"]["lstrip"] is True and special_map["pad_token"] == "<pad>"
    vocab_json = json.loads((tmp_path / "v" / "vocab.json").read_text())
    assert len(vocab_json) == 400 and vocab_json["<mask>"] == 399
    hf = AutoTokenizer.from_pretrained(str(tmp_path / "v"))
    assert (hf.bos_token_id, hf.pad_token_id, hf.eos_token_id, hf.unk_token_id, hf.mask_token_id) == (0, 1, 2, 3, 399)
    assert len(hf) == 400


def test_committed_sample_bpe_vocab_regenerates_byte_for_byte(tmp_path):
    shards = list_input_shards(sorted(glob.glob(str(SAMPLE / "corpus-*.txt"))))
    texts = vocab.iterate_sentences(shards, SourceStats(), join_documents=True)
    bpe.write_vocab_dir(bpe.learn_bpe(texts, 4096), str(tmp_path))
    for name in bpe.FILES:
        assert (tmp_path / name).read_bytes() == (SAMPLE_BPE / name).read_bytes(), name
    assert bpe.load_tokenizer(str(SAMPLE_BPE)).token_to_id("<mask>") == 4095


def test_cli_refuses_wordpiece_options_and_tiny_sizes(tmp_path, capsys):
    corpus = str(SAMPLE / "corpus-00.txt")
    for extra in (["--lowercase"], ["--learner", "wordpiece"], ["--max_alphabet", "10"]):
        assert vocab.main(["--kind", "bpe", "--input", corpus, "--output", str(tmp_path), *extra]) == 2
        assert f"{extra[0]}: options of --kind wordpiece" in capsys.readouterr().err
    assert vocab.main(["--kind", "bpe", "--input", corpus, "--output", str(tmp_path), "--vocab_size", "100"]) == 2
    assert "vocab_size must be at least 261" in capsys.readouterr().err


def test_wrong_kind_of_vocab_is_a_clear_error_naming_file_and_expectation(tmp_path):
    with pytest.raises(InputError, match=r"vocab.txt is a WordPiece vocab .* but a byte-level BPE vocab .* is "
                                         r"expected here.*--kind bpe"):
        vocabs.load(str(SAMPLE_WORDPIECE), expected_kind=vocabs.BPE)
    with pytest.raises(InputError, match=r"tokenizer.json is a byte-level BPE vocab .* but a WordPiece vocab .* is "
                                         r"expected here"):
        vocabs.load(str(SAMPLE_BPE / "tokenizer.json"), expected_kind=vocabs.WORDPIECE)
    with pytest.raises(InputError, match=r"vocab.txt is not a tokenizer.json: a byte-level BPE vocab .* is expected "
                                         r"here, and a WordPiece vocab.txt is not one"):
        bpe.load_tokenizer(str(SAMPLE_WORDPIECE))
    with pytest.raises(InputError, match=r"vocab.json is a JSON file, not a WordPiece vocab.txt"):
        wordpiece.read_vocab(str(SAMPLE_BPE / "vocab.json"))
    with pytest.raises(InputError, match=r"holds neither vocab.txt \(WordPiece\) nor tokenizer.json"):
        vocabs.load(str(tmp_path))
    with pytest.raises(InputError, match=r"cased .*drop --lowercase"):
        vocabs.load(str(SAMPLE_BPE), lowercase=True)
    # Both kinds load from a file or a directory, and say what they are.
    for path in (SAMPLE_BPE, SAMPLE_BPE / "tokenizer.json", SAMPLE_BPE / "vocab.json"):
        assert vocabs.load(str(path)).kind == vocabs.BPE
    for path in (SAMPLE_WORDPIECE, SAMPLE_WORDPIECE.parent):
        assert vocabs.load(str(path)).kind == vocabs.WORDPIECE


def test_vocab_info_of_a_bpe_vocab():
    info = VocabInfo.from_vocab_file(str(SAMPLE_BPE))
    tokens = bpe.tokens_by_id(bpe.load_tokenizer(str(SAMPLE_BPE)))
    assert info.kind == vocabs.BPE and info.vocab_size == len(tokens) == 4096
    assert (info.cls_id, info.pad_id, info.sep_id, info.unk_id, info.mask_id) == (0, 1, 2, 3, 4095)
    assert info.special_ids.tolist() == [0, 1, 2, 3, 4095]
    assert sorted(info.replacement_ids.tolist()) == list(range(4, 4095))
    # A word continues in the tokens without the leading-space marker; special tokens never continue one.
    assert info.is_continuation.tolist() == [not t.startswith("\u0120") and i not in (0, 1, 2, 3, 4095)
                                             for i, t in enumerate(tokens)]
    assert VocabInfo.from_vocab_file(str(SAMPLE_WORDPIECE)).kind == vocabs.WORDPIECE
