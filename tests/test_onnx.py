"""ONNX export: the graph in ONNX Runtime equals transformers (PyTorch) on the same weights within 1e-4 for every
architecture and task, at several shapes from one file; fill-mask on ONNX Runtime prints what the JAX backend prints;
bad input is a clear error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
import transformers

from bert_jax import export, fill_mask
from bert_jax.errors import InputError
from bert_jax.interop import hf, onnx_export
from bert_jax.interop.onnx_runtime import OnnxEncoder
from tests.hf_reference import max_abs_diff
from tests.conftest import SAMPLE
from tests.run_helpers import REPO

TOLERANCE = 1e-4  # f32 on CPU; observed differences are ~1e-6
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


def random_weights(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every weight random (LayerNorm and biases too), so a mapping error shows as an O(1) difference; the scale
    (0.1) keeps activations where float32 rounding stays ~1e-6."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            is_scale = name.endswith(("LayerNorm.weight", "layer_norm.weight"))
            param.copy_(torch.randn_like(param) * (0.2 if is_scale else 0.1) + (1.0 if is_scale else 0.0))
    return model.eval()


def _bert():
    return transformers.BertForMaskedLM(transformers.BertConfig(vocab_size=4096, max_position_embeddings=64, **TINY))


def _roberta():
    return transformers.RobertaForMaskedLM(transformers.RobertaConfig(
        vocab_size=4096, max_position_embeddings=66, type_vocab_size=1, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, layer_norm_eps=1e-5, **TINY))


def _distilbert():
    return transformers.DistilBertForMaskedLM(transformers.DistilBertConfig(
        vocab_size=4096, max_position_embeddings=64, dim=32, n_layers=2, n_heads=4, hidden_dim=64))


# architecture -> (random MLM model, its tokenizer files in data/sample, pad id, inputs optimum names)
ARCHITECTURES = {
    "bert": (_bert, "vocab", 0, ["input_ids", "attention_mask", "token_type_ids"]),
    "roberta": (_roberta, "bpe", 1, ["input_ids", "attention_mask"]),
    "distilbert": (_distilbert, "vocab", 0, ["input_ids", "attention_mask"]),
}


@pytest.fixture(scope="module")
def export_of(tmp_path_factory):
    """architecture -> (transformers model, its directory, the ONNX fill-mask export of that directory by the CLI),
    made once per module."""
    made = {}

    def make(name: str):
        if name not in made:
            new_model, tokenizer_dir, _, _ = ARCHITECTURES[name]
            model = random_weights(new_model())
            source = tmp_path_factory.mktemp(f"{name}_hf")
            model.save_pretrained(source)
            for path in (SAMPLE / tokenizer_dir).iterdir():
                shutil.copy(path, source / path.name)
            out = tmp_path_factory.mktemp(f"{name}_onnx")
            assert export.main(["--model", str(source), "--format", "onnx", "--task", "fill-mask", "--output",
                                str(out), "--force"]) == 0
            made[name] = model, source, out
        return made[name]

    return make


@pytest.fixture(params=sorted(ARCHITECTURES))
def exported(request, export_of):
    return (request.param, *export_of(request.param))


def padded_ids(pad: int, batch: int, length: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random ids; row i is padded after length - 3 i tokens; BERT-style token types on the second half."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, 4096, size=(batch, length))
    mask = np.ones_like(ids)
    types = np.zeros_like(ids)
    for row in range(batch):
        n = max(1, length - 3 * row)
        ids[row, n:], mask[row, n:] = pad, 0
        types[row, n // 2 : n] = 1
    return ids, mask, types


def torch_outputs(model, ids, mask, types, with_types: bool):
    kwargs = {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}
    if with_types:
        kwargs["token_type_ids"] = torch.tensor(types)
    with torch.no_grad():
        return model(**kwargs)


def test_fill_mask_logits_equal_transformers_at_every_shape(exported):
    name, model, _, out = exported
    pad = ARCHITECTURES[name][2]
    encoder = OnnxEncoder.from_directory(out)
    longest = encoder.max_sequence_length  # 64, or RoBERTa's 64 (66 positions past its padding id)
    for batch, length in ((1, 5), (3, 23), (2, longest)):  # one file, several batch sizes and lengths
        ids, mask, types = padded_ids(pad, batch, length, seed=batch)
        types = types if name == "bert" else np.zeros_like(ids)
        expected = torch_outputs(model, ids, mask, types, with_types=name == "bert").logits.numpy()
        got = encoder(ids, mask, types)["logits"]
        assert got.shape == expected.shape
        assert max_abs_diff(got, expected) <= TOLERANCE, (name, batch, length)


def test_graph_has_optimums_names_dynamic_axes_and_opset(exported):
    name, _, source, out = exported
    graph = onnx.load(out / "model.onnx")
    assert [i.name for i in graph.graph.input] == ARCHITECTURES[name][3]
    for value in graph.graph.input:
        assert [d.dim_param for d in value.type.tensor_type.shape.dim] == ["batch_size", "sequence_length"]
        assert value.type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert [o.name for o in graph.graph.output] == ["logits"]
    assert [d.dim_param or d.dim_value for d in graph.graph.output[0].type.tensor_type.shape.dim] == [
        "batch_size", "sequence_length", 4096]
    assert {op.domain: op.version for op in graph.opset_import}[""] == 18
    assert json.loads((out / "config.json").read_text())["model_type"] == name
    names = {p.name for p in out.iterdir()}
    assert {"model.onnx", "config.json", "tokenizer_config.json"} <= names and "model.safetensors" not in names
    assert ("tokenizer.json" if name == "roberta" else "vocab.txt") in names


@pytest.mark.parametrize("texts", [["The river [MASK] through the old town.", "[MASK] and [MASK] are words ."]])
def test_fill_mask_on_onnx_runtime_prints_what_jax_prints(exported, texts, capsys):
    name, _, source, out = exported
    if name == "roberta":
        texts = [text.replace("[MASK]", "<mask>") for text in texts]
    assert fill_mask.main(["--json", "--model", str(source), "--top_k", "4", *texts]) == 0
    jax_lines = capsys.readouterr().out.splitlines()
    assert fill_mask.main(["--json", "--model", str(out), "--backend", "onnxruntime", "--top_k", "4", *texts]) == 0
    onnx_lines = capsys.readouterr().out.splitlines()
    assert len(jax_lines) == len(onnx_lines) == 2
    for jax_line, onnx_line in zip(jax_lines, onnx_lines):
        expected, got = json.loads(jax_line), json.loads(onnx_line)
        rows = zip([expected], [got]) if isinstance(expected[0], dict) else zip(expected, got)
        for expected_row, got_row in rows:
            for key in ("token", "token_str", "sequence"):
                assert [p[key] for p in got_row] == [p[key] for p in expected_row]
            assert max(abs(a["score"] - b["score"]) for a, b in zip(got_row, expected_row)) <= 1e-4


def test_real_minilm_feature_extraction_equals_transformers(minilm_dir, tmp_path, capsys):
    out = tmp_path / "minilm_onnx"
    assert export.main(["--model", str(minilm_dir), "--format", "onnx", "--task", "feature-extraction",
                        "--output", str(out)]) == 0
    printed = capsys.readouterr().err
    assert "batch 1 x sequence 512" in printed and "(padded)" in printed  # the validation shapes, with their diffs
    assert [o.name for o in onnx.load(out / "model.onnx").graph.output] == ["last_hidden_state"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)  # the tokenizer files travel with the model
    reference = transformers.BertModel.from_pretrained(minilm_dir).eval()
    encoder = OnnxEncoder.from_directory(out)
    for sentences in (["A man is eating food.", "The new movie is awesome, said the critics of the paper.",
                       "Paris"], ["One sentence alone."]):
        batch = tokenizer(sentences, padding=True, return_tensors="np")
        with torch.no_grad():
            expected = reference(**{k: torch.tensor(v) for k, v in batch.items()}).last_hidden_state.numpy()
        got = encoder(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])["last_hidden_state"]
        assert max_abs_diff(got, expected) <= TOLERANCE


def test_weights_over_the_threshold_go_to_external_data(export_of, tmp_path):
    _, source, regular = export_of("bert")
    model, _ = hf.load_pretrained(source, heads=("mlm",))
    out = tmp_path / "external"
    written, checks = onnx_export.export_onnx(model, out, task="fill-mask", external_data_threshold=0,
                                              log=lambda line: None)
    assert {p.name for p in written} == {"model.onnx", "model.onnx_data", "config.json"}
    assert (out / "model.onnx").stat().st_size < 100_000 < (out / "model.onnx_data").stat().st_size
    assert len(checks) == 3 and all(max(c.max_abs_diff.values()) <= TOLERANCE for c in checks)
    ids, mask, types = padded_ids(0, 2, 11, seed=0)
    np.testing.assert_array_equal(OnnxEncoder.from_directory(out)(ids, mask, types)["logits"],
                                  OnnxEncoder.from_directory(regular)(ids, mask, types)["logits"])
    (out / "model_quantized.onnx").write_bytes(b"a variant of the model being replaced")
    onnx_export.export_onnx(model, out, task="fill-mask", force=True, log=lambda line: None)  # small: one file again
    assert not (out / "model.onnx_data").exists() and not (out / "model_quantized.onnx").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_a_graph_past_the_tolerance_is_not_written(export_of, tmp_path, monkeypatch):
    _, source, _ = export_of("distilbert")
    model, _ = hf.load_pretrained(source, heads=("mlm",))
    monkeypatch.setattr(onnx_export, "TOLERANCE", 0.0)
    with pytest.raises(onnx_export.ValidationError, match="differs from the JAX model at batch"):
        onnx_export.export_onnx(model, tmp_path / "out", task="fill-mask", log=lambda line: None)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_bfloat16_run_is_exported_and_validated_in_float32(tmp_path):
    from flax import nnx

    from bert_jax import models
    from bert_jax.models.bert_config import BertConfig

    config = BertConfig(vocab_size=4096, max_position_embeddings=48, dtype="bfloat16", **TINY)
    model = models.constructor(config, ("mlm",))(nnx.Rngs(0))
    _, checks = onnx_export.export_onnx(model, tmp_path / "out", task="fill-mask", log=lambda line: None)
    assert [(c.batch, c.length) for c in checks] == [(2, 16), (3, 37), (1, 48)]  # 512 capped by the position table
    assert max(max(c.max_abs_diff.values()) for c in checks) <= TOLERANCE  # a bfloat16 reference is ~3e-3 off


def test_bad_exports_are_clear_errors(export_of, minilm_dir, tmp_path, capsys):
    from bert_jax import optimize_onnx

    _, source, out = export_of("bert")

    def fails(argv: list[str], prog: str = "export") -> str:
        main = {"export": export.main, "fill_mask": fill_mask.main, "optimize_onnx": optimize_onnx.main}[prog]
        assert main(argv) == 2
        last = capsys.readouterr().err.splitlines()[-1]  # after an import's report, if any
        assert last.startswith(f"python -m bert_jax.{prog}: error: ")
        return last

    onnx_to = ["--format", "onnx", "--output", str(tmp_path / "o")]
    err = fails(["--model", str(source), "--task", "question-answering", *onnx_to])
    assert "no trained question-answering head, which --task question-answering needs" in err
    assert "fill-mask, feature-extraction, text-classification" in fails(
        ["--model", str(source), "--task", "translation", *onnx_to])
    with pytest.raises(SystemExit):  # a usage error, from argparse
        export.main(["--model", str(source), "--task", "fill-mask", "--output", str(tmp_path / "x")])
    assert "--task needs --format onnx" in capsys.readouterr().err
    other = tmp_path / "xlnet"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "xlnet"}')
    assert "bert, distilbert, roberta" in fails(["--model", str(other), *onnx_to])
    with pytest.raises(InputError, match="the architectures that can are bert, distilbert, roberta"):
        onnx_export.check_exportable("xlnet")
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    shutil.copy(source / "config.json", no_weights / "config.json")
    assert "no model.safetensors" in fails(["--model", str(no_weights), *onnx_to])
    assert "no trained MLM head" in fails(["--model", str(minilm_dir), "--task", "fill-mask", *onnx_to])
    assert "--force" in fails(["--model", str(source), "--format", "onnx", "--output", str(out)])  # not empty
    assert "model.onnx not found" in fails(["--model", str(source), "--backend", "onnxruntime", "a [MASK]"],
                                           prog="fill_mask")
    too_long = " ".join(["word"] * 80) + " [MASK]"
    assert "reads at most 64" in fails(["--model", str(out), "--backend", "onnxruntime", too_long], prog="fill_mask")
    assert "choose from optimized, int8" in fails(["--model", str(out), "--variants", "fp16"], prog="optimize_onnx")
    assert "model.onnx not found" in fails(["--model", str(source)], prog="optimize_onnx")
    ids = np.zeros((1, 65), np.int64)
    with pytest.raises(InputError, match="65 tokens is longer than this model reads \\(64"):
        OnnxEncoder.from_directory(out)(ids, np.ones_like(ids))


def test_training_imports_neither_onnx_nor_onnxruntime():
    code = ("import sys, bert_jax.train, bert_jax.distill, bert_jax.export, bert_jax.fill_mask; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnx', 'onnxruntime')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                            env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert result.stdout.strip() == "[]"


def test_optimized_variant_stays_within_tolerance_and_int8_is_quantized(export_of, tmp_path, capsys):
    from bert_jax import optimize_onnx

    _, _, out = export_of("bert")
    variants = tmp_path / "variants"
    shutil.copytree(out, variants)
    assert optimize_onnx.main(["--model", str(variants)]) == 0
    assert capsys.readouterr().out.count("max abs diff from model.onnx: batch 2 x sequence 16") == 2
    fused = {node.op_type for node in onnx.load(variants / "model_optimized.onnx").graph.node}
    assert {"Attention", "SkipLayerNormalization", "BiasGelu"} <= fused  # ONNX Runtime's fusions matched our graph
    quantized = {node.op_type for node in onnx.load(variants / "model_quantized.onnx").graph.node}
    assert {"QAttention", "DynamicQuantizeLinear", "MatMulInteger"} <= quantized
    ids, mask, types = padded_ids(0, 3, 23, seed=4)
    ids[2], mask[2] = np.roll(ids[2], 9), np.roll(mask[2], 9)  # padding on the left: the 2D mask is kept as given
    fp32 = OnnxEncoder.from_directory(variants)(ids, mask, types)["logits"]
    optimized = OnnxEncoder.from_directory(variants, "model_optimized.onnx")(ids, mask, types)["logits"]
    real = mask.astype(bool)
    assert max_abs_diff(optimized[real], fp32[real]) <= TOLERANCE
    int8 = OnnxEncoder.from_directory(variants, "model_quantized.onnx")(ids, mask, types)["logits"]
    assert np.mean(int8[real].argmax(-1) == fp32[real].argmax(-1)) >= 0.9


# ------------------------------------------------------------------------------------------- fine-tuning heads

AUTO_CLASSES = {"text-classification": "SequenceClassification", "token-classification": "TokenClassification",
                "question-answering": "QuestionAnswering", "multiple-choice": "MultipleChoice"}
TASK_OUTPUTS = {"question-answering": ["start_logits", "end_logits"]}  # the others: logits
LABELS = ["negative", "neutral", "positive"]


def _task_model(arch: str, task: str) -> torch.nn.Module:
    """A random transformers model of `arch` with `task`'s head (3 labels, named; QA's 2), from the MLM models'
    configs."""
    config = ARCHITECTURES[arch][0]().config
    labels = ["start", "end"] if task == "question-answering" else LABELS
    config.id2label, config.label2id = dict(enumerate(labels)), {name: i for i, name in enumerate(labels)}
    config.problem_type = "single_label_classification" if task == "text-classification" else None
    auto = getattr(transformers, f"AutoModelFor{AUTO_CLASSES[task]}")
    return random_weights(auto.from_config(config), seed=1)


@pytest.fixture(scope="module")
def task_export_of(tmp_path_factory):
    """(arch, task) -> (transformers task model, its save_pretrained directory, the CLI's ONNX export of it)."""
    made = {}

    def make(arch: str, task: str):
        if (arch, task) not in made:
            model = _task_model(arch, task)
            source = tmp_path_factory.mktemp(f"{arch}_{task}_hf")
            model.save_pretrained(source)
            for path in (SAMPLE / ARCHITECTURES[arch][1]).iterdir():
                shutil.copy(path, source / path.name)
            out = tmp_path_factory.mktemp(f"{arch}_{task}_onnx")
            assert export.main(["--model", str(source), "--format", "onnx", "--task", task, "--output", str(out)]) == 0
            made[arch, task] = model, source, out
        return made[arch, task]

    return make


# Every task for BERT; text classification and one more for RoBERTa (its own classification head, BERT's pooled
# multiple-choice head) and DistilBERT (pre_classifier; question answering).
TASK_CASES = [("bert", task) for task in AUTO_CLASSES] + [
    ("roberta", "text-classification"), ("roberta", "multiple-choice"),
    ("distilbert", "text-classification"), ("distilbert", "question-answering")]


@pytest.mark.parametrize("arch,task", TASK_CASES)
def test_task_outputs_equal_transformers_with_optimums_names_and_axes(arch, task, task_export_of):
    torch_model, _, out = task_export_of(arch, task)
    pad, input_names = ARCHITECTURES[arch][2], ARCHITECTURES[arch][3]
    choices = task == "multiple-choice"
    graph = onnx.load(out / "model.onnx")
    axes = ["batch_size", "num_choices", "sequence_length"] if choices else ["batch_size", "sequence_length"]
    assert [i.name for i in graph.graph.input] == input_names
    for value in graph.graph.input:
        assert [d.dim_param for d in value.type.tensor_type.shape.dim] == axes
    output_axes = {"text-classification": ["batch_size", 3],
                   "token-classification": ["batch_size", "sequence_length", 3],
                   "question-answering": ["batch_size", "sequence_length"],
                   "multiple-choice": ["batch_size", "num_choices"]}[task]
    names = TASK_OUTPUTS.get(task, ["logits"])
    assert [o.name for o in graph.graph.output] == names
    for value in graph.graph.output:
        assert [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim] == output_axes
    config = json.loads((out / "config.json").read_text())  # the labels and problem type travel with the model
    assert config["architectures"] == [type(torch_model).__name__]
    assert config["id2label"] == {str(i): name for i, name in torch_model.config.id2label.items()}
    assert config["label2id"] == torch_model.config.label2id
    assert config.get("problem_type") == torch_model.config.problem_type
    encoder = OnnxEncoder.from_directory(out)
    for batch, length in ((1, 5), (3, 23), (2, 64)):
        ids, mask, types = padded_ids(pad, batch, length, seed=batch)
        types = types if arch == "bert" else np.zeros_like(ids)
        if choices:  # [B, 2, S]
            ids, mask, types = (np.stack([x, np.roll(x, 1, axis=0)], axis=1) for x in (ids, mask, types))
        expected = torch_outputs(torch_model, ids, mask, types, with_types=arch == "bert")
        got = encoder(ids, mask, types)
        for name in names:
            assert got[name].shape == tuple(getattr(expected, name).shape)
            assert max_abs_diff(got[name], getattr(expected, name).numpy()) <= TOLERANCE, (arch, task, name, batch)


def test_task_export_refuses_a_model_of_another_task(task_export_of, tmp_path, capsys):
    _, source, _ = task_export_of("bert", "text-classification")
    for task in ("question-answering", "token-classification"):  # the latter's classifier has the same shape
        assert export.main(["--model", str(source), "--format", "onnx", "--task", task, "--output",
                            str(tmp_path / task)]) == 2
        err = capsys.readouterr().err
        assert f"--task {task} needs a model with a" in err
        assert "holds a BertForSequenceClassification, a text-classification model (--task text-classification" in err
    model, _ = hf.load_pretrained(source, heads=("sequence_classification",))
    with pytest.raises(InputError, match="exports a BertForMultipleChoice, and the model is a "
                                         "BertForSequenceClassification, a text-classification model"):
        onnx_export.export_onnx(model, tmp_path / "mc", task="multiple-choice", log=lambda line: None)
