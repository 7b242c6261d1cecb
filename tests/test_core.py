"""The training core's architecture: no import cycles, configs load without JAX, sharding rules never fail silently,
and every command reports a user error as one line with exit status 2."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from bert_jax import errors
from bert_jax.configuration import load_config
from bert_jax.training import setup

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "bert_jax"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports, anywhere in its code (module level or inside functions)."""
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from bert_jax.x import y` depends on the module bert_jax.x.y when there is one, else on bert_jax.x.
                # (That a submodule imports its package's __init__ is how packages work, not an edge here.)
                targets = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                           for alias in node.names]
            else:
                continue
            edges.update(t for t in targets if t in modules and t != name)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 40 and "bert_jax.training.step" in graph["bert_jax.training.setup"]  # the graph is real
    assert cycles(graph) == []


def test_every_package_import_resolves():
    """Every `bert_jax` import, lazy ones inside functions included, in the package, scripts and tests names a module
    or a module attribute that exists: a moved module cannot leave an import behind that only fails when called."""
    import importlib

    broken = []
    for path in [*PACKAGE.rglob("*.py"), *(REPO / "scripts").glob("*.py"), *(REPO / "tests").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("bert_jax"):
                module = importlib.import_module(node.module)
                broken += [f"{path.name}: from {node.module} import {alias.name}" for alias in node.names
                           if not hasattr(module, alias.name)
                           and importlib.util.find_spec(f"{node.module}.{alias.name}") is None]
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("bert_jax") and importlib.util.find_spec(alias.name) is None:
                        broken.append(f"{path.name}: import {alias.name}")
    assert broken == []


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_the_core_names_no_objective_and_model_code_no_mesh_axis():
    """The core (state, step, loop, checkpoints, metrics, sharding) never names an objective's terms or a model
    class; model code never names a mesh axis."""
    core = ["state", "step", "loop", "checkpointing", "metrics", "sharding", "rules", "setup", "flops", "inputs",
            "phases", "optim"]
    for name in core:
        text = (PACKAGE / "training" / f"{name}.py").read_text(encoding="utf-8")
        for word in ("nsp", "mlm", "next_sentence", "masked_lm", "BertFor"):
            assert word not in text, f"training/{name}.py names {word!r}"
    for path in (PACKAGE / "models").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        for axis in ('"data"', '"fsdp"', '"tensor"'):
            assert axis not in text, f"{path.name} names mesh axis {axis}"


def test_loading_a_config_imports_no_jax_or_model_code():
    code = (
        "import sys\n"
        "from bert_jax.configuration import load_config, model_config\n"
        "config = load_config('configs/base_cased.py:tiny', ['objective=mlm'])\n"
        "model_config(config)\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'jaxlib', 'flax', 'optax', 'orbax')\n"
        "               or m in ('bert_jax.models.bert', 'bert_jax.models.layers', 'bert_jax.training.sharding'))\n"
        "print(heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("overrides,message", [
    (["objective=nsp_only"], "objective 'nsp_only' is not supported; use one of ['classification', 'distillation', "
                             "'mlm', 'mlm_nsp', 'multiple_choice', 'question_answering', 'token_classification']"),
    (["model.model_type=gpt2"], "model.model_type 'gpt2' is not supported"),
    (["model.dropout_impl=fastest"], "model.dropout_impl 'fastest' is not supported"),
    (["mesh.rules=[('vocab', 'model')]"], "names mesh axis 'model'"),
    (["mesh.rules=['vocab']"], "each rule is a pair"),
    (["mesh.data=-1", "mesh.fsdp=-1"], "at most one -1"),
])
def test_bad_objective_model_and_rules_name_the_field(overrides, message):
    with pytest.raises(errors.ConfigError) as error:
        load_config("configs/base_cased.py:tiny", overrides)
    assert message in str(error.value)


RULE_TEST = ["model.hidden_size=128", "model.num_attention_heads=4", "mesh.data=4", "mesh.tensor=4",
             "model.vocab_size=50265"]  # RoBERTa's released vocabulary: odd, so no tensor split divides it


def test_a_rule_that_does_not_divide_a_parameter_stops_with_the_fix():
    config = load_config("configs/base_cased.py:tiny", RULE_TEST)
    with pytest.raises(errors.MeshError) as error:
        setup.build(config)
    message = str(error.value)
    assert "parameter bert/embeddings/word_embeddings/embedding of shape (50265, 128)" in message
    assert "rule ('vocab', 'tensor') splits dimension 0 (50265) 4 ways" in message
    assert "--config.model.vocab_size=50268" in message and "--config.mesh.rules=\"[('vocab', None)]\"" in message


def test_replication_happens_only_where_the_config_asks():
    config = load_config("configs/base_cased.py:tiny", RULE_TEST + ["mesh.rules=[('vocab', None)]"])
    run = setup.build(config)
    params = run.shardings.params
    assert params["bert"]["embeddings"]["word_embeddings"]["embedding"].get_value().spec == jax.sharding.PartitionSpec(
        None, None)  # vocab replicated as asked; embed (128) on fsdp, which is 1 here
    assert params["bert"]["layers"][0]["intermediate"]["kernel"].get_value().spec[1] == "tensor"  # the rest still split
    padded = setup.build(load_config("configs/base_cased.py:tiny", RULE_TEST[:-1] + ["model.vocab_size=50268"]))
    assert padded.shardings.params["mlm_bias"].get_value().spec == jax.sharding.PartitionSpec("tensor")


def test_two_dimensions_on_one_mesh_axis_is_an_error():
    config = load_config("configs/base_cased.py:tiny",
                         ["mesh.data=4", "mesh.tensor=4", "model.num_attention_heads=4", "mesh.rules=[('embed', 'tensor')]"])
    with pytest.raises(errors.MeshError, match="over mesh axis 'tensor', which can split one dimension only"):
        setup.build(config)


@pytest.mark.parametrize("command", [
    ["bert_jax.train", "--workdir", "{tmp}/run", "--config.model.hidden_size=129"],
    ["bert_jax.benchmark", "--config", "configs/base_cased.py:tiny", "--config.objective=nsp"],
    ["bert_jax.export", "--output", "{tmp}/export", "--config.batch_size=x"],
    ["bert_jax.compile_ahead", "--config", "configs/base_cased.py:tiny", "--topology", "v9:1x1"],
    ["bert_jax.fill_mask", "--model", "no/such/dir", "a [MASK]"],
    ["bert_jax.finetune", "--model", "no/such/dir", "--task", "rte", "--data", "no/such/RTE", "--workdir", "{tmp}/run"],
    ["bert_jax.glue", "--model", "no/such/dir", "--data", "no/such/glue_data", "--workdir", "{tmp}/run"],
    ["bert_jax.data.build", "--input", "no/such/*.txt", "--vocab", "data/sample/vocab/vocab.txt", "--output", "{tmp}/data"],
])
def test_every_command_reports_a_user_error_in_one_line_with_status_2(command, tmp_path):
    command = [arg.replace("{tmp}", str(tmp_path)) for arg in command]
    result = subprocess.run([sys.executable, "-m", *command], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert not any(tmp_path.iterdir())  # a refused command creates nothing
