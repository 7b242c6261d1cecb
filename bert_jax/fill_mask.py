"""Fill-mask inference on a Hugging Face-format directory of the family (ours or any BERT, RoBERTa or DistilBERT
with an MLM head).

    python -m bert_jax.fill_mask --model DIR [--top_k 5] "Paris is the [MASK] of France." ...

Prints, for each text, one JSON line shaped as `transformers.pipeline("fill-mask")` returns it: a list of
`{"score", "token", "token_str", "sequence"}` for a text with one `[MASK]`, a list of such lists for several.

A directory that cannot give meaningful scores is refused, never answered: missing encoder weights (unless
--allow_missing) or MLM head, a tokenizer with more tokens than the embedding table, NaN or infinite weights or scores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from bert_jax import errors, storage
from bert_jax.data.tokenizers.model_dir import load_model_tokenizer
from bert_jax.errors import CheckpointError
from bert_jax.interop import hf


class FillMaskError(errors.InputError):
    """Input that fill-mask cannot answer; the message says which text and why."""


def _bucket(length: int, limit: int) -> int:
    """Pads to a power of two (at least 16) so a handful of compiled shapes serve every input length."""
    size = 16
    while size < length:
        size *= 2
    return min(size, limit)


def _clean_up_spaces(text: str) -> str:
    # transformers' `clean_up_tokenization`, applied when the tokenizer config asks for it.
    for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                          (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(before, after)
    return text


class _JaxLogits:
    """The JAX backend: the directory's safetensors in our model, jitted; called with the padded batch arrays."""

    def __init__(self, model_dir: str | Path, *, allow_missing: bool = False):
        self.model, self.report = hf.load_pretrained(model_dir, heads=("mlm",), allow_missing=allow_missing)
        if "MLM head" in self.report.missing_heads:
            raise FillMaskError(
                f"{model_dir} has no masked-LM head: fill-mask needs a checkpoint with one (BertForPreTraining, "
                "BertForMaskedLM, RobertaForMaskedLM, DistilBertForMaskedLM), not a bare encoder (BertModel, "
                "RobertaModel, DistilBertModel)"
            )
        graphdef, self._state = nnx.split(self.model)

        @jax.jit
        def logits_fn(state, input_ids, input_mask, segment_ids):
            model = nnx.merge(graphdef, state)
            return model(input_ids, input_mask, segment_ids)["mlm_logits"]

        self._logits_fn = logits_fn

    def __call__(self, input_ids, input_mask, segment_ids):
        return self._logits_fn(self._state, input_ids, input_mask, segment_ids)


def _onnx_logits(model_dir: str | Path, onnx_file: str):
    """The ONNX Runtime backend (the onnx extra): DIR/model.onnx (or a variant) exported for fill-mask."""
    from bert_jax.interop import onnx_runtime

    return onnx_runtime.OnnxFillMaskLogits(model_dir, onnx_file)


class FillMask:
    """A loaded model and tokenizer; call with texts to get the pipeline-shaped predictions. `backend` "jax" runs
    the directory's safetensors, "onnxruntime" its `onnx_file`."""

    def __init__(self, model_dir: str | Path, backend: str = "jax", onnx_file: str = "model.onnx", *,
                 allow_missing: bool = False):
        self.model_dir = model_dir
        model_dir = storage.local_copy(model_dir, flag="--model")  # a gs:// directory: its local mirror
        if backend == "onnxruntime":
            self._logits = _onnx_logits(model_dir, onnx_file)  # the ONNX file and config.json; no JAX model
            config = hf.config_from_hf(model_dir)
        else:
            self._logits = _JaxLogits(model_dir, allow_missing=allow_missing)
            config = self._logits.model.config
        self.max_length, self.vocab_size = config.max_sequence_length, config.vocab_size
        self.tokenizer, self.clean_up_spaces, specials = load_model_tokenizer(model_dir)
        tokens = self.tokenizer.get_vocab_size(with_added_tokens=True)
        if tokens > self.vocab_size:
            raise CheckpointError(
                f"the tokenizer in {model_dir} has {tokens} tokens but the model's embedding table has "
                f"{self.vocab_size} rows (config.json vocab_size): ids past the table would score NaN; use the "
                "tokenizer the model was trained with"
            )
        self.mask_token = specials["mask"]
        self.mask_id = self.tokenizer.token_to_id(self.mask_token)
        self.pad_id = self.tokenizer.token_to_id(specials["pad"])
        if self.mask_id is None or self.pad_id is None:
            raise FillMaskError(f"the tokenizer in {model_dir} has no {self.mask_token} or no {specials['pad']} token")

    def _decode(self, ids, skip_special_tokens: bool) -> str:
        text = self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
        return _clean_up_spaces(text) if self.clean_up_spaces else text

    def __call__(self, texts: list[str], top_k: int = 5) -> list:
        encodings = [self.tokenizer.encode(text) for text in texts]
        limit = self.max_length
        for i, (text, enc) in enumerate(zip(texts, encodings)):
            if self.mask_id not in enc.ids:
                raise FillMaskError(f"text {i + 1} ({text!r}) contains no {self.mask_token}; put {self.mask_token} "
                                    "where a word should be predicted")
            if max(enc.ids, default=0) >= self.vocab_size:
                raise FillMaskError(f"text {i + 1} has token id {max(enc.ids)}, past the model's embedding table "
                                    f"({self.vocab_size} rows); use the tokenizer the model was trained with")
            if len(enc.ids) > limit:
                raise FillMaskError(f"text {i + 1} is {len(enc.ids)} tokens long; this model reads at most {limit}")
        length = _bucket(max(len(enc.ids) for enc in encodings), limit)
        input_ids = np.full((len(texts), length), self.pad_id, np.int32)
        input_mask = np.zeros((len(texts), length), np.int32)
        segment_ids = np.zeros((len(texts), length), np.int32)
        for row, enc in enumerate(encodings):
            input_ids[row, : len(enc.ids)] = enc.ids
            input_mask[row, : len(enc.ids)] = 1
            segment_ids[row, : len(enc.ids)] = enc.type_ids
        logits = np.asarray(self._logits(input_ids, input_mask, segment_ids), np.float32)
        if not np.isfinite(logits[input_ids == self.mask_id]).all():
            raise CheckpointError(f"the model in {self.model_dir} gives NaN or infinite scores; its weights are "
                                  "unusable: export it again from a healthy checkpoint")
        top_k = min(top_k, logits.shape[-1])
        return [self._predictions(np.asarray(enc.ids), logits[row], top_k) for row, enc in enumerate(encodings)]

    def _predictions(self, ids: np.ndarray, logits_SxV: np.ndarray, top_k: int):
        mask_positions = np.flatnonzero(ids == self.mask_id)
        single_mask = len(mask_positions) == 1
        results = []
        for position in mask_positions:
            logits_V = logits_SxV[position].astype(np.float64)
            probs = np.exp(logits_V - logits_V.max())
            probs /= probs.sum()
            best = np.argsort(-probs, kind="stable")[:top_k]
            row = []
            for token in best:
                filled = ids.copy()
                filled[position] = token
                filled = filled[filled != self.pad_id]
                row.append(
                    {
                        "score": float(probs[token]),
                        "token": int(token),
                        "token_str": self._decode([token], skip_special_tokens=False),
                        # As the pipeline: special tokens are kept in the sequence when several masks remain.
                        "sequence": self._decode(filled, skip_special_tokens=single_mask),
                    }
                )
            results.append(row)
        return results[0] if single_mask else results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bert_jax.fill_mask",
        description="Predict the [MASK] tokens of each TEXT with a Hugging Face-format BERT, RoBERTa or DistilBERT "
        "directory (model.safetensors, config.json, vocab.txt or tokenizer.json): a table of the top guesses per "
        "[MASK], or with --json one JSON line per text, as transformers' fill-mask pipeline.",
    )
    parser.add_argument("--model", required=True, help="HF-format model directory (e.g. from python -m bert_jax.export)")
    parser.add_argument("--top_k", type=int, default=5, help="predictions per [MASK] (default 5)")
    parser.add_argument("--allow_missing", action="store_true",
                        help="answer even if the checkpoint lacks encoder weights (they are freshly initialised)")
    parser.add_argument("--backend", choices=("jax", "onnxruntime"), default="jax",
                        help="jax (default): the directory's model.safetensors; onnxruntime: its model.onnx, from "
                        "python -m bert_jax.export --format onnx --task fill-mask (the onnx extra)")
    parser.add_argument("--onnx_file", default="model.onnx", help="with --backend onnxruntime: the file in --model "
                        "(default %(default)s; model_quantized.onnx for int8, from python -m bert_jax.optimize_onnx)")
    parser.add_argument("--json", action="store_true",
                        help="one JSON line per text, as transformers' fill-mask pipeline returns it")
    parser.add_argument("texts", nargs="+", metavar="TEXT", help="text with one or more [MASK] tokens")
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error("--top_k must be at least 1")
    try:
        fill_mask = FillMask(args.model, backend=args.backend, onnx_file=args.onnx_file,
                             allow_missing=args.allow_missing)
        results = fill_mask(args.texts, top_k=args.top_k)
    except errors.UserError as e:
        return errors.report("python -m bert_jax.fill_mask", e)
    for text, result in zip(args.texts, results):
        print(json.dumps(result, ensure_ascii=False, allow_nan=False) if args.json else format_table(text, result))
    return 0


def format_table(text: str, result) -> str:
    """The guesses for each [MASK] of `text`, best first: rank, token, probability, the filled-in text."""
    lines = [text]
    per_mask = result if result and isinstance(result[0], list) else [result]
    for index, guesses in enumerate(per_mask):
        if len(per_mask) > 1:
            lines.append(f"  mask {index + 1}:")
        width = max(len(guess["token_str"]) for guess in guesses)
        lines += [f"  {rank}. {guess['token_str']:<{width}}  {guess['score']:.3f}  {guess['sequence']}"
                  for rank, guess in enumerate(guesses, 1)]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
