"""How densely `full_sentences` packs a corpus: the share of non-pad positions per sequence length under three
rules, with the packer the build uses (`bert_jax.data.examples.packed.SequencePacker`):

    whole sentences   a sentence that does not fit always closes the sequence (RoBERTa's FULL-SENTENCES as written)
    build (1%)        ... unless that leaves more than 1% of the sequence as padding; then it is cut (the default)
    contiguous        every sequence is filled (Hugging Face's `group_texts`)

    python scripts/measure_packing.py --input 'data/sample/corpus-*.txt' --vocab data/sample/bpe --lengths 128,512

One stream per input file (as the build: no eval split here), documents `<s> ... </s>`. Also prints the mean
sentence length in tokens and the waste next-fit packing of whole sentences predicts, E[s^2] / (2 E[s]) per
sequence, which is why whole sentences alone stay below 99% at 512 on ordinary text.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bert_jax.data.examples.packed import SequencePacker, max_padding_tokens  # noqa: E402
from bert_jax.data.sources import SourceStats, list_input_shards  # noqa: E402
from bert_jax.data.tokenizers import vocabs  # noqa: E402
from bert_jax.data.tokenizers.chunk_encoder import CachedSentenceEncoder  # noqa: E402


def shard_documents(inputs: list[str], vocab: vocabs.Vocab, input_format: str) -> list[list[list[bytes]]]:
    """Per input shard, each document as its sentences' token bytes, markers included (as `packed.PackedPart`)."""
    encoder = CachedSentenceEncoder(vocab.tokenizer(), np.dtype("<u2" if vocab.size <= 2**16 else "<u4"))
    opening = np.array([vocab.specials.cls], encoder.token_dtype).tobytes()
    closing = np.array([vocab.specials.sep], encoder.token_dtype).tobytes()
    shards = []
    for shard in list_input_shards(inputs, input_format=input_format):
        documents = []
        for sentences in shard.documents(SourceStats()):
            token_ids, lengths = encoder.encode(vocab.sentence_texts(sentences))
            items = [ids.tobytes() for ids in np.split(token_ids, np.cumsum(lengths)[:-1]) if len(ids)]
            if items:
                items[0], items[-1] = opening + items[0], items[-1] + closing
                documents.append(items)
        shards.append(documents)
    return shards


def non_pad_fraction(shards: list[list[list[bytes]]], length: int, max_padding: int, itemsize: int) -> dict:
    tokens = examples = cut = 0
    for documents in shards:
        packer = SequencePacker(length, np.dtype(f"<u{itemsize}"), lambda record: None, max_padding=max_padding)
        for items in documents:
            for number, item in enumerate(items):
                packer.add(item, opens_document=number == 0)
        packer.flush()
        tokens, examples = tokens + packer.counts["tokens"], examples + packer.counts["examples"]
        cut += packer.counts["cut_sentences"]
    return {"non_pad_fraction": tokens / (examples * length), "examples": examples, "cut_sentences": cut}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", nargs="+", required=True, help="corpus files or globs (as the build's --input)")
    parser.add_argument("--input_format", default="auto")
    parser.add_argument("--vocab", required=True, help="vocab.txt or a BPE tokenizer.json / directory")
    parser.add_argument("--lengths", default="128,512")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    vocab = vocabs.load(args.vocab)
    shards = shard_documents(args.input, vocab, args.input_format)
    itemsize = 2 if vocab.size <= 2**16 else 4
    sentence_tokens = np.array([len(item) // itemsize for documents in shards for items in documents
                                for item in items], dtype=np.float64)
    summary = {"input_shards": len(shards), "documents": sum(map(len, shards)), "sentences": len(sentence_tokens),
               "tokens": int(sentence_tokens.sum()), "mean_sentence_tokens": float(sentence_tokens.mean()),
               "predicted_whole_sentence_waste_tokens": float((sentence_tokens ** 2).mean()
                                                              / (2 * sentence_tokens.mean())),
               "lengths": {}}
    print(json.dumps({k: v for k, v in summary.items() if k != "lengths"}))
    for length in (int(text) for text in args.lengths.split(",")):
        rules = {"whole sentences": length, "build (1%)": max_padding_tokens(length), "contiguous": 0}
        results = {name: non_pad_fraction(shards, length, padding, itemsize) for name, padding in rules.items()}
        summary["lengths"][length] = results
        for name, result in results.items():
            print(f"seq_{length:<5} {name:<16} non-pad {result['non_pad_fraction']:.4f}  "
                  f"({result['examples']:,} sequences, {result['cut_sentences']:,} cut sentences)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
