"""The model card (`README.md`) an export writes beside its weights, so that `hf upload REPO DIR` publishes a page
the Hub understands: metadata (`pipeline_tag` from the model's head, the license, `library_name`, tags and, for a
training run, a `model-index` of the final eval metrics) and a body with the architecture, the training recipe, the
data statistics from the dataset's `stats.json` and the final eval values. Written through
`huggingface_hub.ModelCard`, which is also what reads it back.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Mapping

import ml_collections

from bert_jax.errors import ConfigError
from bert_jax.training.phases import phase_plan

CARD_FILE = "README.md"
DEFAULT_LICENSE = "apache-2.0"  # BERT's and this project's; a run sets its own with config.export_license
# transformers' class-name suffix -> the Hub's pipeline tag for what the model's head does
PIPELINE_OF_SUFFIX = {
    "ForPreTraining": "fill-mask",
    "ForMaskedLM": "fill-mask",
    "ForSequenceClassification": "text-classification",
    "ForTokenClassification": "token-classification",
    "ForQuestionAnswering": "question-answering",
    "ForMultipleChoice": "multiple-choice",
}
# Fields of an eval line that describe it rather than measure the model.
_NOT_METRICS = ("step", "kind", "max_seq_length", "examples", "phase")


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """What a card says about the training run that produced the weights."""

    config: Mapping[str, Any]  # the run's config (a ConfigDict or its dict)
    step: int  # the step the weights are from
    final_eval: Mapping[str, Any] | None = None  # the last eval line of metrics.jsonl at or before `step`


def pipeline_tag(architecture_name: str) -> str:
    """The Hub's pipeline tag of a transformers class name; a bare encoder (`BertModel`) extracts features."""
    return next((tag for suffix, tag in PIPELINE_OF_SUFFIX.items() if architecture_name.endswith(suffix)),
                "feature-extraction")


def final_eval(metrics_file: str | Path, step: int | None = None) -> dict | None:
    """The last eval line of a metrics.jsonl at or before `step` (any step when None); None when there is none."""
    path = Path(metrics_file)
    if not path.is_file():
        return None
    found = None
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line torn by a kill
        if record.get("kind") == "eval" and (step is None or record.get("step", 0) <= step):
            found = record
    return found


def _get(config: Mapping[str, Any], dotted: str, default=None):
    value = config
    for key in dotted.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return default
        value = value[key]
    return value


def _table(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]


def _cell(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"


def _metrics(record: Mapping[str, Any]) -> dict[str, float]:
    return {name: value for name, value in record.items() if name not in _NOT_METRICS
            and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)}


def dataset_name(config: Mapping[str, Any]) -> str:
    """A fine-tuning run's task (`rte`), else the name of the built dataset's directory."""
    task = _get(config, "finetune.task")
    if task:
        return str(task)
    return Path(str(_get(config, "data.dir", "") or "data")).name


def data_statistics(config: Mapping[str, Any]) -> dict | None:
    """The built dataset's stats.json (`data.dir`), or None (fine-tuning, or the data is elsewhere now)."""
    data_dir = _get(config, "data.dir")
    path = Path(str(data_dir)) / "stats.json" if data_dir else None
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None


def _architecture_section(architecture_name: str, model_config, parameters: int) -> list[str]:
    fields = [(name, getattr(model_config, name)) for name in
              ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
               "intermediate_size", "max_position_embeddings", "hidden_act") if hasattr(model_config, name)]
    return ["## Architecture", "", f"`{architecture_name}`, {parameters:,} parameters.", "",
            *_table(("field", "value"), fields)]


def _recipe_section(run: RunInfo) -> list[str]:
    config = run.config
    optimizer = _get(config, "optimizer", {}) or {}
    batch = _get(config, "batch_size")
    lines = ["## Training", "", f"Trained with bert_jax for {run.step:,} steps "
             f"(objective `{_get(config, 'objective')}`), global batch {batch} sequences, seed {_get(config, 'seed')}.",
             ""]
    plan = phase_plan(ml_collections.ConfigDict({  # a checkpoint's saved config holds the phases as plain dicts
        "phases": [ml_collections.ConfigDict(dict(p)) for p in _get(config, "phases", []) or []],
        "train_steps": int(_get(config, "train_steps", run.step))}))
    phases = [(p.index, f"{p.start:,}-{p.end - 1:,}", p.max_seq_length, p.max_predictions) for p in plan]
    if phases:
        lines += _table(("phase", "steps", "sequence length", "masked positions"), phases) + [""]
    names = ("name", "learning_rate", "warmup_steps", "end_learning_rate", "weight_decay", "b1", "b2", "eps",
             "grad_clip_norm", "grad_accum_steps")
    lines += _table(("optimizer", "value"), [(name, optimizer[name]) for name in names if name in optimizer])
    lines += ["", f"Compute dtype {_get(config, 'model.dtype')}, parameters {_get(config, 'model.param_dtype')}."]
    return lines


def _data_section(config: Mapping[str, Any], stats: Mapping[str, Any] | None) -> list[str]:
    task = _get(config, "finetune.task")
    if task:
        return ["## Data", "", f"Fine-tuned on task `{task}` from `{_get(config, 'finetune.data')}`, starting from "
                f"`{_get(config, 'finetune.model')}`."]
    if stats is None:
        return ["## Data", "", f"The dataset `{_get(config, 'data.dir')}` (its stats.json was not found at export)."]
    overall, vocab = stats.get("overall", {}), stats.get("vocab", {})
    rows = [(name, overall[name]) for name in ("documents", "sentences", "tokens", "examples", "unknown_token_rate")
            if name in overall]
    if isinstance(vocab, Mapping) and "size" in vocab:
        rows.append(("vocab", f"{vocab.get('kind', '')} {vocab['size']:,}".strip()))
    rows.append(("example kind", stats.get("example_kind", "")))
    lines = ["## Data", "", f"Built by `python -m bert_jax.data.build` into `{_get(config, 'data.dir')}` "
             "(from its stats.json):", "", *_table(("statistic", "value"), rows)]
    per_length = stats.get("per_length", {})
    if per_length:
        lines += ["", *_table(("sequence length", "train examples", "eval examples"),
                              [(length, entry.get("train_examples", 0), entry.get("eval_examples", 0))
                               for length, entry in sorted(per_length.items(), key=lambda item: int(item[0]))])]
    return lines


def _eval_section(record: Mapping[str, Any] | None) -> list[str]:
    if not record:
        return ["## Evaluation", "", "No evaluation was logged before these weights."]
    where = f"step {record.get('step')}"
    if "max_seq_length" in record:
        where += f", sequence length {record['max_seq_length']}"
    if "examples" in record:
        where += f", {record['examples']:,} examples"
    return ["## Evaluation", "", f"Held-out split, {where}:", "",
            *_table(("metric", "value"), list(_metrics(record).items()))]


def _usage_section(tag: str, model_type: str) -> list[str]:
    mask = "<mask>" if model_type == "roberta" else "[MASK]"
    example = f'"Paris is the {mask} of France."' if tag == "fill-mask" else '"An example sentence."'
    return ["## Usage", "", "```python", "from transformers import pipeline", "",
            f'model = pipeline("{tag}", model="PATH_OR_REPO")', f"print(model({example}))", "```"]


def build_card(architecture_name: str, model_config, parameters: int, *, run: RunInfo | None = None,
               license: str | None = None):
    """The card of an export: `architecture_name` is transformers' class (`BertForPreTraining`), `model_config` ours,
    `parameters` the exported tensors' element count; `run` adds the recipe, data and final eval of its run."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    tag = pipeline_tag(architecture_name)
    if run is not None and isinstance(run.config, ml_collections.ConfigDict):
        run = dataclasses.replace(run, config=run.config.to_dict())
    config = run.config if run is not None else {}
    license = license or (_get(config, "export_license") if run is not None else None) or DEFAULT_LICENSE
    if not isinstance(license, str) or not license.strip() or any(c.isspace() for c in license):
        raise ConfigError(f"export_license {license!r} is not a Hub license id (e.g. apache-2.0, mit, other); set "
                          "config.export_license or --license")
    model_type = getattr(model_config, "model_type", "bert")
    record = run.final_eval if run is not None else None
    results = [EvalResult(task_type=tag, dataset_type=dataset_name(config), dataset_name=dataset_name(config),
                          dataset_split="eval", metric_type=name, metric_name=name, metric_value=value)
               for name, value in _metrics(record or {}).items()]
    data = ModelCardData(license=license, pipeline_tag=tag, library_name="transformers",
                         tags=["bert_jax", model_type, "jax"], model_name=architecture_name if results else None,
                         eval_results=results or None)
    body = [f"# {architecture_name}", "",
            f"A {model_type} encoder exported by bert_jax as a Hugging Face directory (safetensors, config.json and "
            "the tokenizer, tokenizer.json included).", "",
            *_architecture_section(architecture_name, model_config, parameters), ""]
    if run is not None:
        body += [*_recipe_section(run), "", *_data_section(config, data_statistics(config)), "",
                 *_eval_section(record), ""]
    body += _usage_section(tag, model_type)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body) + "\n")
