"""Corpus readers: BERT text, JSONL, Parquet, TFDS; cleaning, Wikipedia cleanup and bad input, all counted."""

from __future__ import annotations

import bz2
import gzip
import json
import os
import pickle
import subprocess
import sys
import tracemalloc

import pytest

from bert_jax.data import sources
from bert_jax.data.sources import SourceStats, cleaning, list_input_shards
from bert_jax.errors import InputError


def read_all(inputs, **kwargs) -> tuple[list[list[str]], SourceStats]:
    stats = SourceStats()
    documents = list(sources.iterate_documents(list_input_shards(inputs, **kwargs), stats))
    return documents, stats


def write_bert_text(path, documents: list[list[str]], opener=open) -> None:
    with opener(path, "wt", encoding="utf-8") as f:
        f.write("\n\n".join("\n".join(document) for document in documents) + "\n")


# ---------------------------------------------------------------------------------------------------------------
# BERT-format text.

def test_bert_text_plain_gzip_bz2_and_globs_in_sorted_order(tmp_path):
    write_bert_text(tmp_path / "b.txt.gz", [["Gzip one.", "Gzip two."], ["Gzip doc two."]], gzip.open)
    write_bert_text(tmp_path / "a.txt", [["Plain one.", "Plain two."]])
    write_bert_text(tmp_path / "c.txt.bz2", [["Bzip one."]], bz2.open)
    (tmp_path / "notes.md").write_text("Not matched by the glob.\n")

    documents, stats = read_all([str(tmp_path / "*.txt*")])
    assert documents == [["Plain one.", "Plain two."], ["Gzip one.", "Gzip two."], ["Gzip doc two."], ["Bzip one."]]
    assert stats["documents"] == 4 and stats["sentences"] == 6 and stats["files"] == 3


def test_directory_input_is_recursive_sorted_deduplicated_and_skips_hidden_files(tmp_path):
    (tmp_path / "sub").mkdir()
    write_bert_text(tmp_path / "sub" / "z.txt", [["Zed."]])
    write_bert_text(tmp_path / "m.txt", [["Em."]])
    (tmp_path / ".hidden").write_text("Hidden.\n")
    shards = list_input_shards([str(tmp_path), str(tmp_path / "m.txt")])
    assert [shard.name for shard in shards] == [str(tmp_path / "m.txt"), str(tmp_path / "sub" / "z.txt")]


def test_blank_lines_split_documents_and_empty_documents_are_counted(tmp_path):
    (tmp_path / "c.txt").write_bytes(b"\n\nFirst doc.\n\n\n\n\x00\x07\n\nSecond doc.\n  \t \nThird.")
    documents, stats = read_all([str(tmp_path / "c.txt")])
    assert documents == [["First doc."], ["Second doc."], ["Third."]]
    # The line of only control characters is a dropped sentence; its document is then empty.
    assert stats["empty_lines"] == 1 and stats["empty_documents"] == 1
    assert stats["control_chars_removed"] == 2


def test_cleaning_matches_bert_clean_text():
    stats = SourceStats()
    text = "a\x00b\ufffdc\u200bd\te\u3000f\u00a0g  \x07h\U000e0001i\r\nj\x7fk"
    # NUL, U+FFFD, ZWSP (Cf), BEL and DEL (Cc), a tag character (Cf) removed; tab, CR, NL, ideographic and
    # no-break spaces become single spaces.
    assert sources.clean_text(text, stats) == "abcd e f g hi jk"
    assert stats["control_chars_removed"] == 5 and stats["replacement_chars_removed"] == 1


def test_invalid_utf8_is_replaced_counted_then_dropped(tmp_path):
    # Two invalid bytes; a genuine U+FFFD in the source is removed by cleaning but is not invalid UTF-8.
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9 au lait.\nok \xff\xef\xbf\xbd fine.\n")
    documents, stats = read_all([str(tmp_path / "bad.txt")])
    assert documents == [["caf au lait.", "ok fine."]]
    assert stats["invalid_utf8_replaced"] == 2
    assert stats["replacement_chars_removed"] == 3 and stats["control_chars_removed"] == 0


def test_binary_file_is_skipped_and_counted_while_others_are_read(tmp_path):
    junk = bytes((index * 7919) % 256 for index in range(20000)).replace(b"\n", b"\x00") + b"\x00" * 5000
    (tmp_path / "junk.txt").write_bytes(junk)
    write_bert_text(tmp_path / "good.txt", [["Good text."]])
    documents, stats = read_all([str(tmp_path)])
    assert documents == [["Good text."]]
    assert stats["binary_files_skipped"] == 1
    assert "junk.txt" in stats.notes["binary_files_skipped"][0]


def test_ten_megabyte_word_is_dropped_with_bounded_memory(tmp_path):
    path = tmp_path / "big.txt"
    with open(path, "wb") as f:
        f.write(b"Before the word.\n" + b"x" * 10_000_000 + b"\nAfter the word.\n\nNext document.\n")
    tracemalloc.start()
    documents, stats = read_all([str(path)])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert documents == [["Before the word.", "After the word."], ["Next document."]]
    assert stats["dropped_overlong_sentences"] == 1
    assert peak < 3 * 2**20, f"reading a 10 MB line held {peak / 2**20:.1f} MiB"  # 10 MB if it were held


def test_huge_document_is_emitted_in_parts_and_counted(tmp_path, monkeypatch):
    monkeypatch.setattr(cleaning, "MAX_DOCUMENT_SENTENCES", 4)
    write_bert_text(tmp_path / "long.txt", [[f"Sentence {index}." for index in range(10)]])
    documents, stats = read_all([str(tmp_path / "long.txt")])
    assert [len(document) for document in documents] == [4, 4, 2]
    assert sum(documents, []) == [f"Sentence {index}." for index in range(10)]
    assert stats["documents_split_at_cap"] == 2


def test_corrupt_gzip_is_counted_not_raised(tmp_path):
    data = gzip.compress(("Line one.\n" * 5000).encode())
    (tmp_path / "cut.txt.gz").write_bytes(data[: len(data) // 2])
    documents, stats = read_all([str(tmp_path / "cut.txt.gz")])
    assert stats["unreadable_files"] == 1
    assert all(sentence == "Line one." for document in documents for sentence in document)


# ---------------------------------------------------------------------------------------------------------------
# Missing and empty input.

@pytest.mark.parametrize("make_input, message", [
    (lambda tmp: [str(tmp / "nope.txt")], "does not exist"),
    (lambda tmp: [str(tmp / "*.none")], "matches no files"),
    (lambda tmp: [str(tmp / "emptydir")], "contains no files"),
    (lambda tmp: [str(tmp / "empty.txt")], "empty"),
    (lambda tmp: [], "no input"),
])
def test_missing_or_empty_input_raises_clear_error(tmp_path, make_input, message):
    (tmp_path / "emptydir").mkdir()
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(InputError, match=message):
        list_input_shards(make_input(tmp_path))


# ---------------------------------------------------------------------------------------------------------------
# Raw documents: JSONL and Parquet, sentence splitting and Wikipedia cleanup.

def test_sentence_splitting_keeps_abbreviations():
    assert sources.split_sentences("Dr. Smith went home. He slept.") == ["Dr. Smith went home.", "He slept."]
    assert sources.split_sentences("Mr. J. R. Tolkien wrote it. The U.S. economy grew 3.5% in 2020! Really?") == [
        "Mr. J. R. Tolkien wrote it.", "The U.S. economy grew 3.5% in 2020!", "Really?"]


WIKI_TEXT = """Anna Berg

Anna Berg was a painter from Oslo. She painted the sea.
== Early life ==
Early life
She was born in 1900, e.g. in a cold winter.
* A list item.
- Another item
1. Numbered item
{| class="wikitable"
| cell || cell
|}
! Header cell
1984 was a good year for her.
See also
"""


def test_wiki_cleanup_drops_lists_tables_headers_counted_by_reason(tmp_path):
    (tmp_path / "w.jsonl").write_text(json.dumps({"text": WIKI_TEXT}) + "\n")
    documents, stats = read_all([str(tmp_path / "w.jsonl")])
    assert documents == [["Anna Berg was a painter from Oslo.", "She painted the sea.",
                          "She was born in 1900, e.g. in a cold winter.", "1984 was a good year for her."]]
    assert stats["dropped_header_lines"] == 4  # title, "== Early life ==", "Early life", "See also"
    assert stats["dropped_list_lines"] == 3
    assert stats["dropped_table_lines"] == 4
    kept, _ = read_all([str(tmp_path / "w.jsonl")], wiki_cleanup=False)
    assert "* A list item." in kept[0]


def test_jsonl_bad_lines_are_counted_with_file_and_line(tmp_path, caplog):
    path = tmp_path / "docs.jsonl.gz"
    lines = [json.dumps({"text": "Good one. Two sentences."}), "{not json", json.dumps({"body": "x."}),
             json.dumps({"text": 5}), "", json.dumps({"text": "Last doc."})]
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")
    documents, stats = read_all([str(path)])
    assert documents == [["Good one.", "Two sentences."], ["Last doc."]]
    assert stats["invalid_json_lines"] == 1 and stats["missing_text_field"] == 2
    assert stats.notes["invalid_json_lines"][0].startswith(f"{path}:2: invalid JSON")
    assert f"{path}:3: no field 'text'" in stats.notes["missing_text_field"][0]
    assert f"{path}:2" in caplog.text


def test_jsonl_where_every_line_is_bad_raises_naming_file_line_and_field(tmp_path):
    (tmp_path / "docs.jsonl").write_text(json.dumps({"content": "A."}) + "\n" + json.dumps({"content": "B."}) + "\n")
    with pytest.raises(InputError, match=r"docs.jsonl:1: no field 'text'.*--text_field"):
        read_all([str(tmp_path / "docs.jsonl")])
    documents, _ = read_all([str(tmp_path / "docs.jsonl")], text_field="content")
    assert documents == [["A."], ["B."]]


def test_jsonl_ten_megabyte_word_is_dropped_and_counted(tmp_path):
    text = "A normal sentence. " + "y" * 10_000_000 + ". Another normal sentence."
    (tmp_path / "big.jsonl").write_text(json.dumps({"text": text}) + "\n")
    documents, stats = read_all([str(tmp_path / "big.jsonl")])
    assert documents == [["A normal sentence.", "Another normal sentence."]]
    assert stats["dropped_overlong_sentences"] == 1


def test_parquet_in_row_batches_with_nulls_counted(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [f"Document {index} begins. It ends here." for index in range(2500)] + [None]
    pq.write_table(pa.table({"id": list(range(len(texts))), "body": texts}), tmp_path / "d.parquet",
                   row_group_size=1000)
    documents, stats = read_all([str(tmp_path / "d.parquet")], text_field="body")
    assert len(documents) == 2500
    assert documents[1234] == ["Document 1234 begins.", "It ends here."]
    assert stats["missing_text_field"] == 1 and "row 2500" in stats.notes["missing_text_field"][0]
    with pytest.raises(InputError, match=r"d.parquet: no column 'text' \(columns: \['id', 'body'\]\)"):
        read_all([str(tmp_path / "d.parquet")])


def test_input_format_override_and_unknown_format(tmp_path):
    (tmp_path / "data.log").write_text(json.dumps({"text": "Forced JSONL."}) + "\n")
    documents, _ = read_all([str(tmp_path / "data.log")], input_format="jsonl")
    assert documents == [["Forced JSONL."]]
    with pytest.raises(InputError, match="unknown input format"):
        list_input_shards([str(tmp_path / "data.log")], input_format="csv")


# ---------------------------------------------------------------------------------------------------------------
# Workers: shards and stats are picklable and stats merge.

def test_shards_and_stats_pickle_and_merge(tmp_path):
    write_bert_text(tmp_path / "a.txt", [["One."], ["Two."]])
    write_bert_text(tmp_path / "b.txt", [["Three."]])
    shards = list_input_shards([str(tmp_path)])
    total = SourceStats()
    documents = []
    for shard in pickle.loads(pickle.dumps(shards)):
        stats = SourceStats()
        documents += list(shard.documents(stats))
        total.merge(pickle.loads(pickle.dumps(stats)))
    assert documents == [["One."], ["Two."], ["Three."]]
    assert total.to_dict() == {"documents": 3, "files": 2, "sentences": 3}


# ---------------------------------------------------------------------------------------------------------------
# TFDS: a dataset built here, without TensorFlow, in ArrayRecord form.

def build_tiny_tfds(data_dir: str, num_train: int) -> None:
    import tensorflow_datasets as tfds

    class BertJaxTinyWiki(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
                {"title": tfds.features.Text(), "text": tfds.features.Text()}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(num_train), "test": self._generate_examples(2)}

        def _generate_examples(self, count):
            for index in range(count):
                yield index, {"title": f"Article {index}",
                              "text": f"Article {index}\n\nArticle {index} was written by Dr. Smith in May. "
                                      f"It has\x07 two sentences.\n== Notes ==\n* a list item"}

    BertJaxTinyWiki(data_dir=data_dir, file_format="array_record").download_and_prepare()


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    build_tiny_tfds(data_dir, num_train=23)
    return data_dir


def test_tfds_split_is_sharded_by_record_ranges_and_read_without_tensorflow(tfds_dir):
    assert "tensorflow" not in sys.modules
    shards = list_input_shards(["tfds:bert_jax_tiny_wiki[train]"], tfds_data_dir=tfds_dir, tfds_records_per_shard=10)
    assert [(shard.start, shard.stop) for shard in shards] == [(0, 10), (10, 20), (20, 23)]
    assert shards[0].name == "tfds:bert_jax_tiny_wiki[train][0:10]"
    stats = SourceStats()
    documents = list(sources.iterate_documents(shards, stats))
    assert len(documents) == 23 and stats["records_read"] == 23
    indices = set()
    for document in documents:
        assert len(document) == 2 and document[1] == "It has two sentences."
        indices.add(int(document[0].split()[1]))
        assert document[0] == f"Article {document[0].split()[1]} was written by Dr. Smith in May."
    assert indices == set(range(23))
    assert stats["dropped_header_lines"] == 2 * 23 and stats["dropped_list_lines"] == 23
    assert stats["control_chars_removed"] == 23
    assert "tensorflow" not in sys.modules


def test_tfds_shard_reads_in_a_fresh_worker_process(tfds_dir, tmp_path):
    shards = list_input_shards(["tfds:bert_jax_tiny_wiki:1.0.0[test]"], tfds_data_dir=tfds_dir)
    (tmp_path / "shard.pkl").write_bytes(pickle.dumps(shards[0]))
    # A spawned worker does not have the builder class registered: it must read from the prepared files only.
    script = ("import pickle, sys, json; from bert_jax.data.sources import SourceStats; "
              f"shard = pickle.load(open({str(tmp_path / 'shard.pkl')!r}, 'rb')); "
              "print(json.dumps(list(shard.documents(SourceStats()))))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert result.returncode == 0, result.stderr
    documents = json.loads(result.stdout.strip().splitlines()[-1])
    assert sorted(documents) == [["Article 0 was written by Dr. Smith in May.", "It has two sentences."],
                                 ["Article 1 was written by Dr. Smith in May.", "It has two sentences."]]


@pytest.mark.parametrize("spec, kwargs, message", [
    ("tfds:bert_jax_no_such_dataset[train]", {}, "not found"),
    ("tfds:bert_jax_tiny_wiki[validation]", {}, "Unknown split"),
    ("tfds:bert_jax_tiny_wiki[train]", {"text_field": "body"}, r"no feature 'body' \(features: \['text', 'title'\]\)"),
    ("tfds:bert_jax_tiny_wiki[train", {}, "split must be in brackets"),
])
def test_tfds_errors_are_clear(tfds_dir, spec, kwargs, message):
    with pytest.raises(InputError, match=message):
        list_input_shards([spec], tfds_data_dir=tfds_dir, **kwargs)


def test_tfds_sliced_split(tfds_dir):
    shards = list_input_shards(["tfds:bert_jax_tiny_wiki[train[:5]]"], tfds_data_dir=tfds_dir)
    assert len(shards) == 1 and (shards[0].start, shards[0].stop) == (0, 5)
    assert len(list(shards[0].documents(SourceStats()))) == 5
