"""`python -m bert_jax.launch`: command structure (--dry-run), input checks, worker scripts, and a preempted
2-process training that `watch` brings back from its checkpoint.

The end-to-end test drives a fake `gcloud` (tests/fake_gcloud/, first on PATH) that records every call and
runs `tpu-vm ssh --worker=all --command CMD` as one local process per worker (HOME = that worker's directory,
BERT_JAX_PROCESS_ID/NUM_PROCESSES/COORDINATOR_ADDRESS set, 2 CPU devices each), so the launcher's exact commands start
a real `jax.distributed` training here. Installing a wheel per test would be slow: on the fake workers `uv` makes the
venv's python the test's interpreter with this checkout on PYTHONPATH, and `uv pip install` of the shipped wheel is a
recorded no-op. The wheel itself is still built (by `launch run` and `launch watch`).
"""

from __future__ import annotations

import json
import os
import re
import secrets as stdlib_secrets
import shlex
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bert_jax.launch import accelerators, cli, remote, resources
from bert_jax.launch import secrets as launch_secrets
from bert_jax.errors import InputError

REPO = Path(__file__).resolve().parents[1]
FAKE_GCLOUD_DIR = REPO / "tests" / "fake_gcloud"
WHERE = ["--name", "bert-test", "--zone", "us-central2-b"]


# ---------------------------------------------------------------------------------------------- accelerator table


@pytest.mark.parametrize(
    "name, chips, workers, devices",
    [
        ("v4-8", 4, 1, 4),
        ("v4-16", 8, 2, 8),
        ("v4-32", 16, 4, 16),
        ("v5litepod-8", 8, 1, 8),  # up to 8 v5e chips are one VM
        ("v5litepod-16", 16, 4, 16),  # beyond, 4 chips per VM
        ("v5p-32", 16, 4, 16),  # v5p counts cores, 2 per chip, one JAX device per chip
        ("v2-32", 16, 4, 32),  # v2/v3: every core is a JAX device
        ("v6e-256", 256, 64, 256),
    ],
)
def test_accelerator_types_give_chips_workers_and_devices(name, chips, workers, devices):
    spec = accelerators.parse_accelerator_type(name)
    assert (spec.name, spec.chips, spec.workers, spec.devices) == (name, chips, workers, devices)


@pytest.mark.parametrize("name, hint", [
    ("v4-33", "sizes like v4-8"), ("v9-8", "unknown TPU generation"), ("tpu-v4-32", "GENERATION-SIZE"),
    ("v4_32", "GENERATION-SIZE"), ("v5litepod-12", "sizes like v5litepod-1"),
])
def test_unknown_accelerator_types_are_rejected_with_valid_examples(name, hint):
    with pytest.raises(InputError, match=re.escape(hint)):
        accelerators.parse_accelerator_type(name)


def test_runtime_version_defaults_per_generation_and_mismatch_is_an_error():
    v4, v5e = accelerators.parse_accelerator_type("v4-32"), accelerators.parse_accelerator_type("v5litepod-16")
    assert accelerators.check_runtime_version(None, v4) == "tpu-ubuntu2204-base"
    assert accelerators.check_runtime_version(None, v5e) == "v2-alpha-tpuv5-lite"
    with pytest.raises(InputError, match="software version for v5litepod"):
        accelerators.check_runtime_version("v2-alpha-tpuv5-lite", v4)
    with pytest.raises(InputError, match="not a TPU software version"):
        accelerators.check_runtime_version("Ubuntu 22.04!", v4)


@pytest.mark.parametrize("zone, ok", [
    ("us-central2-b", True), ("europe-west4-a", True), ("northamerica-northeast1-a", True),
    ("us-central2", False), ("us_central2_b", False), ("US-CENTRAL2-B", False), ("us-central2-bb", False),
])
def test_zone_format(zone, ok):
    if ok:
        assert accelerators.check_zone(zone) == zone
    else:
        with pytest.raises(InputError, match="not a Compute Engine zone"):
            accelerators.check_zone(zone)


# ------------------------------------------------------------------------------------------------ state from describe


def test_describe_output_classification():
    node = {"state": "READY", "networkEndpoints": [{}, {}]}
    assert resources.classify(None, None).health == resources.ABSENT
    assert resources.classify(None, node).health == resources.READY
    assert resources.classify(None, node).workers == 2
    assert resources.classify({"state": {"state": "ACTIVE"}}, node).health == resources.READY
    assert resources.classify({"state": {"state": "WAITING_FOR_RESOURCES"}}, None).health == resources.PENDING
    for dead_queued in ("SUSPENDED", "SUSPENDING", "FAILED"):
        assert resources.classify({"state": {"state": dead_queued}}, node).health == resources.DEAD
    for dead_node in ("PREEMPTED", "TERMINATED"):
        assert resources.classify(None, {"state": dead_node}).health == resources.DEAD
        assert resources.classify({"state": {"state": "ACTIVE"}}, {"state": dead_node}).health == resources.DEAD
    assert resources.classify({"state": {"state": "ACTIVE"}}, None).health == resources.DEAD  # node deleted
    surprise = resources.classify(None, {"state": "SOMETHING_NEW"})
    assert surprise.health == resources.PENDING and surprise.unknown_state  # wait, never destroy, on the unknown


# ------------------------------------------------------------------------------------------------------- secrets


def test_env_file_round_trips_any_value_through_bash_and_is_private(tmp_path):
    values = {"TOKEN": "it's a \"tricky\" $HOME `x` value\nwith a second line", "EMPTY": "", "PLAIN": "abc"}
    path = launch_secrets.write_env_file(values, tmp_path, ".secrets.env")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    printed = subprocess.run(
        ["bash", "-c", f"set -a; . {shlex.quote(str(path))}; set +a; "
                       "python3 -c 'import json, os; print(json.dumps({k: os.environ[k] for k in "
                       "(\"TOKEN\", \"EMPTY\", \"PLAIN\")}))'"],
        capture_output=True, text=True, check=True, env={"PATH": os.environ["PATH"], "HOME": "/nonexistent"},
    )
    assert json.loads(printed.stdout) == values


def test_redactor_masks_every_value_and_env_names_are_checked():
    redact = launch_secrets.Redactor(["abc", "abcdef", ""])
    assert redact("x abcdef y abc z") == "x [REDACTED] y [REDACTED] z"
    with pytest.raises(InputError, match="not NAME=VALUE"):
        launch_secrets.collect(["HF_TOKEN=x"], {})
    with pytest.raises(InputError, match="is not set in this shell"):
        launch_secrets.collect(["HF_TOKEN"], {})


def _pem_key() -> str:
    """A PEM key shaped like a real one: armor lines around 64-character base64 lines (the last one 8 long)."""
    import base64

    body = base64.b64encode(stdlib_secrets.token_bytes(150)).decode()
    return "-----BEGIN PRIVATE KEY-----\n" + "\n".join(body[i:i + 64] for i in range(0, len(body), 64)) + \
        "\n-----END PRIVATE KEY-----\n"


def _service_account_key() -> str:
    """A pretty-printed JSON service-account key (its private_key holds \\n escapes, on one line)."""
    return json.dumps({"type": "service_account", "private_key_id": stdlib_secrets.token_hex(20),
                       "private_key": _pem_key(), "client_id": str(stdlib_secrets.randbelow(10 ** 21))}, indent=2)


def _secret_lines(value: str) -> list[str]:
    """The lines of a multi-line secret that must never be printed (the rule in bert_jax/launch/secrets.py)."""
    lines = [line.strip() for line in value.splitlines()]
    return [line for line in lines if len(line) >= launch_secrets.MIN_LINE_CHARS and not line.startswith("-----")]


@pytest.mark.parametrize("argument, environ, said", [
    ("HF_TOKEN={secret}", {}, "the 2nd --env has the form NAME=VALUE"),
    ("HF_TOKEN={secret}", {"HF_TOKEN": "{secret}"}, "the 2nd --env has the form NAME=VALUE"),
    ("{secret}", {"HF_TOKEN": "{secret}"}, "the 2nd --env is the value of $HF_TOKEN, not a variable name: write "
     "--env HF_TOKEN"),  # --env "$HF_TOKEN"
    ("{secret}", {}, "the 2nd --env names a variable that is not set in this shell"),  # a pasted token
    ("{secret}-x", {}, "the 2nd --env is not an environment variable name"),
])
def test_env_errors_name_the_position_or_variable_never_the_argument(argument, environ, said):
    secret = "hf_" + stdlib_secrets.token_hex(12)
    environ = {name: value.format(secret=secret) for name, value in environ.items()}
    with pytest.raises(InputError) as raised:
        launch_secrets.collect(["WANDB_API_KEY", argument.format(secret=secret)], {**environ, "WANDB_API_KEY": "k"})
    message = str(raised.value)
    assert said in message
    assert secret not in message and secret[3:] not in message


def test_env_in_a_bad_form_is_an_error_that_shows_no_value(fake_gcloud, monkeypatch, capsys):
    secret = "hf_" + stdlib_secrets.token_hex(12)
    monkeypatch.setenv("HF_TOKEN", secret)
    run = ["run", *WHERE, "--config", "configs/base_cased.py:tiny", "--workdir", "gs://my-bucket/w"]
    for bad in (["--env", f"HF_TOKEN={secret}"], ["--env", secret], ["--env", "HF_TOKEN", secret]):
        try:
            code = cli.main([*run, *bad])
        except SystemExit as exit:  # argparse: `--env HF_TOKEN "$HF_TOKEN"` leaves an unrecognized argument
            code = exit.code
        captured = capsys.readouterr()
        assert code == 2 and "error:" in captured.err
        assert secret not in captured.out + captured.err and secret[3:] not in captured.out + captured.err
    assert f"unrecognized arguments: argument {len(run) + 3} (an argument that is not a flag is not shown" \
        in captured.err
    assert fake_gcloud() == []
    assert cli.main(["logs", *WHERE, "--env", secret]) == 2
    assert "the 1st --env is the value of $HF_TOKEN" in capsys.readouterr().err


def test_redactor_masks_quoted_escaped_and_multi_line_forms():
    quoted = "it's a \"tricky\" one\\" + stdlib_secrets.token_hex(8)
    redact = launch_secrets.Redactor([quoted])
    script = f"cd job; python -m x --workdir {shlex.quote('gs://b/' + quoted)}"  # quoted once, in a worker script
    for printed in (shlex.quote(quoted), shlex.join(["gcloud", f"--command={script}"]), repr(quoted),
                    f"--workdir {('/x/' + quoted)!r} is not on GCS", repr({"k": quoted}), f"{quoted}\n"):
        assert quoted[-16:] not in redact(printed), printed
        assert launch_secrets.MASK in redact(printed)
    trailing = launch_secrets.Redactor(["tok_" + "a" * 20 + "\n"])  # a value read from a file, newline and all
    assert trailing("x tok_" + "a" * 20) == "x [REDACTED]"
    overlapping = launch_secrets.Redactor(["abcdef", "defghi"])
    assert overlapping("x abcdefghi y") == "x [REDACTED] y"  # no fragment of either is left

    pem, account = _pem_key(), _service_account_key()
    redact = launch_secrets.Redactor([pem, account])
    out = "\n".join(redact(line) for line in f"key: {pem}\n{account}\nstep 1".splitlines())  # line by line
    for line in _secret_lines(pem) + _secret_lines(account):
        assert line not in out
    assert "-----BEGIN PRIVATE KEY-----" in out and "{" in out.splitlines() and "step 1" in out  # rule: kept


def test_worker_output_is_masked_line_by_line_for_multi_line_and_quoted_secrets(monkeypatch):
    """The Runner's streams (logs, install, start; several workers at once) and captured output."""
    import io

    from bert_jax.launch.runner import Runner

    pem, account, quoted = _pem_key(), _service_account_key(), "it's " + stdlib_secrets.token_hex(8)
    monkeypatch.setenv("PEM_KEY", pem)
    monkeypatch.setenv("SA_KEY", account)
    monkeypatch.setenv("QUOTED", quoted)
    script = 'echo "key: $PEM_KEY"; printf "%s\\n" "$SA_KEY"; python3 -c ' \
             '"import os, shlex; print(shlex.quote(os.environ[\'QUOTED\']), repr(os.environ[\'PEM_KEY\']))"'
    out = io.StringIO()
    runner = Runner(redactor=launch_secrets.Redactor([pem, account, quoted]), stdout=out, stderr=io.StringIO())
    assert runner.stream(["bash", "-c", script], prefix="[w] ") == 0
    assert runner.stream_many([["bash", "-c", script]] * 2, ["[worker 0] ", "[worker 1] "]) == 0
    captured = runner.run(["bash", "-c", script])
    printed = out.getvalue() + captured.stdout
    for line in _secret_lines(pem) + _secret_lines(account) + [quoted, quoted[5:]]:
        assert line not in printed
    # Streamed (3 runs), the armor lines stay: a key was printed here, masked; captured, the whole key is masked.
    assert printed.count("-----BEGIN PRIVATE KEY-----") == 3


def test_logs_mask_a_key_in_the_workers_log(fake_gcloud, monkeypatch, capfd):
    pem = _pem_key()
    monkeypatch.setenv("PEM_KEY", pem)
    assert cli.main(["up", *WHERE, "--accelerator_type", "v4-16", "--poll_seconds", "0.05"]) == 0
    for worker in (0, 1):
        job = Path(os.environ["FAKE_GCLOUD_ROOT"]) / "nodes" / "bert-test" / f"worker-{worker}" / "bert_jax_job"
        job.mkdir(parents=True)
        (job / "train.log").write_text(f"x INFO step 1\nloaded key {pem}x INFO step 2\n")
    capfd.readouterr()
    assert cli.main(["logs", *WHERE, "--env", "PEM_KEY"]) == 0  # streamed, line by line
    assert cli.main(["logs", *WHERE, "--env", "PEM_KEY", "--worker", "all"]) == 0  # captured per worker
    printed = capfd.readouterr()
    assert printed.out.count("x INFO step 2") == 3 and printed.out.count("loaded key [REDACTED]") == 2
    assert "loaded key -----BEGIN PRIVATE KEY-----" in printed.out  # streamed: the armor lines stay
    for line in _secret_lines(pem):
        assert line not in printed.out + printed.err


@pytest.mark.parametrize("command", ["run", "watch"])
def test_dry_run_and_errors_show_no_form_of_a_secret(capsys, monkeypatch, command):
    core = stdlib_secrets.token_hex(8)
    quoted, pem = f"it's-{core}-'x'", _pem_key()  # a ' is written '"'"' by shlex.quote, twice over in --command
    monkeypatch.setenv("QUOTED", quoted)
    monkeypatch.setenv("PEM_KEY", pem)
    monkeypatch.setenv("PATH", "/nonexistent")  # --dry-run needs no gcloud
    argv = [command, *WHERE, "--accelerator_type", "v4-32", "--config", "configs/base_cased.py:tiny",
            "--env", "QUOTED", "--env", "PEM_KEY", "--config.model.dtype=bfloat16"]
    assert cli.main([*argv, "--workdir", f"gs://my-bucket/{quoted}", "--dry-run"]) == 0
    dry = capsys.readouterr()
    assert cli.main([*argv, "--workdir", f"/local/{quoted}", "--dry-run"]) == 2  # the error repr()s the workdir
    error = capsys.readouterr()
    for printed in (dry.out, dry.err, error.out, error.err):
        assert core not in printed
        assert not any(line in printed for line in _secret_lines(pem))
    assert any("[REDACTED]" in line and "--workdir" in line for line in dry.out.splitlines())
    assert "is not on GCS" in error.err


# ------------------------------------------------------------------------------------------- worker shell scripts


FAKE_TRAINER = """#!/bin/bash
echo "trainer args: $*"
echo "secret is ${TEST_SECRET:-unset}"
trap 'echo "trainer: SIGTERM, saving"; exit 0' TERM
for i in $(seq 600); do sleep 0.05; done
echo "trainer: finished at step 7; workdir w"
"""


def _bash(script: str, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], cwd=home, env={**os.environ, "HOME": str(home)},
                          capture_output=True, text=True, timeout=60)


def test_worker_scripts_start_detached_report_state_and_stop(tmp_path):
    """start/state/stop as a worker runs them, with a stand-in trainer (a shell script) as venv/bin/python."""
    job = tmp_path / remote.DEFAULT_REMOTE_DIR
    (job / "venv" / "bin").mkdir(parents=True)
    trainer = job / "venv" / "bin" / "python"
    trainer.write_text(FAKE_TRAINER)
    trainer.chmod(0o755)
    state = lambda: remote.parse_state(_bash(remote.state_script(), tmp_path).stdout)  # noqa: E731
    assert state().state == "not-started"

    launch_secrets.write_env_file({"TEST_SECRET": "s3cret value"}, job, remote.SECRETS_FILE)
    args = remote.train_arguments("configs/base_cased.py:tiny", "gs://b/run", ["train_steps=7"])
    started = _bash(remote.start_script(args), tmp_path)
    assert started.returncode == 0, started.stderr
    assert re.search(r"bert_jax-job: started pid=\d+", started.stdout)
    assert not (job / remote.SECRETS_FILE).exists()  # sourced, then deleted before training starts
    running = state()
    assert running.state == "running" and running.detail == f"pid={(job / 'train.pid').read_text().strip()}"

    again = _bash(remote.start_script(args), tmp_path)
    assert again.returncode == 3 and "already running" in again.stderr

    stopped = _bash(remote.stop_script(timeout_seconds=30), tmp_path)
    assert stopped.returncode == 0 and "bert_jax-job: stopped pid=" in stopped.stdout
    after = state()
    assert (after.state, after.exit_code) == ("stopped", 0)
    log = (job / "train.log").read_text()
    assert "trainer args: -m bert_jax.train --config configs/base_cased.py:tiny --workdir gs://b/run " \
           "--config.train_steps=7" in log
    assert "secret is s3cret value" in log and "trainer: SIGTERM, saving" in log


def test_worker_state_tells_finished_from_preempted_and_lost(tmp_path):
    job = tmp_path / remote.DEFAULT_REMOTE_DIR
    job.mkdir()
    header = f"{remote.START_HEADER} t ===\n"
    (job / "train.log").write_text(header + "x INFO preempted at step 10; workdir w\n" + header + "x INFO step 3\n")
    (job / "train.pid").write_text("999999999\n")  # no such process
    assert remote.parse_state(_bash(remote.state_script(), tmp_path).stdout).state == "lost"
    (job / "exit_code").write_text("0\n")
    exited = remote.parse_state(_bash(remote.state_script(), tmp_path).stdout)
    assert (exited.state, exited.exit_code, exited.result) == ("exited", 0, None)  # the old run's line is not used
    with open(job / "train.log", "a") as f:
        f.write("x INFO finished at step 20; workdir w\n")
    assert remote.parse_state(_bash(remote.state_script(), tmp_path).stdout).result == "finished at step 20"


# --------------------------------------------------------------------------------------------------------- wheel


def test_wheel_holds_the_package_and_is_built_outside_the_checkout(tmp_path):
    import io
    import zipfile

    from bert_jax.launch import wheel
    from bert_jax.launch.runner import Runner

    root = wheel.project_root()
    assert root == REPO
    built = wheel.build_wheel(root, tmp_path / "out", Runner(stderr=io.StringIO()))
    assert built.name == wheel.wheel_name(root) == "bert_jax-0.1.0-py3-none-any.whl"
    names = set(zipfile.ZipFile(built).namelist())
    assert {"bert_jax/train.py", "bert_jax/launch/__main__.py", "bert_jax/data/build.py"} <= names
    assert not any(name.startswith(("tests/", "configs/")) for name in names)
    assert (tmp_path / "out" / "source" / "bert_jax.egg-info").is_dir()  # setuptools' leftovers stay in the copy


# ------------------------------------------------------------------------------------------------------ --dry-run


def _dry_run(capsys, *argv: str) -> list[list[str]]:
    assert cli.main([*argv, "--dry-run"]) == 0
    out = capsys.readouterr().out
    return [shlex.split(line) for line in out.splitlines() if line.strip()]


def _flags(argv: list[str]) -> dict[str, str]:
    return dict(a[2:].partition("=")[::2] for a in argv if a.startswith("--"))


def test_dry_run_up_creates_a_queued_resource_with_the_requested_slice(capsys, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # --dry-run needs no gcloud
    commands = _dry_run(capsys, "up", *WHERE, "--project", "my-project-1", "--accelerator_type", "v4-32",
                        "--provisioning", "spot")
    create = [c for c in commands if c[:5] == ["gcloud", "compute", "tpus", "queued-resources", "create"]]
    assert len(create) == 1
    assert create[0][5] == "bert-test"
    assert _flags(create[0]) == {
        "zone": "us-central2-b", "project": "my-project-1", "node-id": "bert-test", "accelerator-type": "v4-32",
        "runtime-version": "tpu-ubuntu2204-base", "spot": "",
    }
    direct = _dry_run(capsys, "up", *WHERE, "--accelerator_type", "v5litepod-16", "--no-queued",
                      "--provisioning", "reserved")
    (create,) = [c for c in direct if c[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "create"]]
    assert _flags(create) == {"zone": "us-central2-b", "accelerator-type": "v5litepod-16",
                              "version": "v2-alpha-tpuv5-lite", "reserved": ""}


def test_dry_run_run_ships_code_to_all_workers_and_starts_training_detached(capsys, monkeypatch):
    secret = "hf_" + stdlib_secrets.token_hex(12)
    monkeypatch.setenv("HF_TOKEN", secret)
    commands = _dry_run(capsys, "run", *WHERE, "--accelerator_type", "v4-32", "--config",
                        "configs/base_cased.py:small", "--workdir", "gs://bucket/runs/a", "--data",
                        "gs://bucket/data/base", "--env", "HF_TOKEN", "--config.model.dtype=bfloat16")
    text = "\n".join(shlex.join(c) for c in commands)
    assert secret not in text
    ssh = [c for c in commands if c[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh"]]
    scp = [c for c in commands if c[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"]]
    assert all(c[5] == "bert-test" and "--zone=us-central2-b" in c for c in ssh)
    assert all(any(a.startswith("bert-test:") for a in c) and "--zone=us-central2-b" in c for c in scp)
    assert all("--worker=all" in c for c in scp) and len(scp) == 2  # code and configs, then the secrets file
    code, secrets_copy = scp
    assert "--recurse" in code and "bert-test:bert_jax_job/" in code
    assert [Path(p).name for p in code[5:8]] == ["dist", "configs", "constraints.txt"]
    assert "bert-test:bert_jax_job/.secrets.env" in secrets_copy
    install, start = [c for c in ssh if "--worker=all" in c][-2:]
    install_cmd, start_cmd = _flags(install)["command"], _flags(start)["command"]
    assert "--reinstall-package bert_jax -c constraints.txt 'dist/bert_jax-0.1.0-py3-none-any.whl[tpu]' gcsfs" \
        in install_cmd
    assert "gcloud storage rsync --recursive gs://bucket/data/base data" in install_cmd
    assert "setsid nohup" in start_cmd and "< /dev/null &" in start_cmd and ". ./.secrets.env" in start_cmd
    train = ("-m bert_jax.train --config configs/base_cased.py:small --workdir gs://bucket/runs/a "
             "--config.model.dtype=bfloat16 --config.data.dir=data --config.data.vocab_file=data/vocab.txt")
    assert train in start_cmd
    assert "HF_TOKEN" not in start_cmd  # not even the name: the file carries NAME=VALUE


def test_dry_run_down_deletes_queued_resource_with_its_node(capsys):
    commands = _dry_run(capsys, "down", *WHERE)
    deletes = [c for c in commands if "delete" in c]
    assert deletes == [["gcloud", "compute", "tpus", "queued-resources", "delete", "bert-test",
                        "--zone=us-central2-b", "--force", "--quiet"]]


# -------------------------------------------------------------------------------------- bad input, with a fake gcloud


@pytest.fixture
def fake_gcloud(tmp_path, monkeypatch):
    """The fake gcloud first on PATH; returns a function reading its recorded calls."""
    root = tmp_path / "fake_gcloud_state"
    monkeypatch.setenv("PATH", f"{FAKE_GCLOUD_DIR}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_GCLOUD_ROOT", str(root))
    monkeypatch.setenv("FAKE_GCLOUD_INTERPRETER", sys.executable)
    monkeypatch.setenv("FAKE_GCLOUD_PYTHON", sys.executable)
    monkeypatch.setenv("FAKE_GCLOUD_PYTHONPATH", str(REPO))

    def calls() -> list[list[str]]:
        path = root / "calls.jsonl"
        return [json.loads(line)["argv"] for line in path.read_text().splitlines()] if path.exists() else []

    return calls


def _creates(calls) -> list[list[str]]:
    return [c for c in calls() if "create" in c]


@pytest.mark.parametrize("argv, message", [
    (["up", *WHERE, "--accelerator_type", "v4-31"], "v4 slices are counted in cores"),
    (["up", "--name", "bert-test", "--zone", "us-central2", "--accelerator_type", "v4-32"],
     "not a Compute Engine zone"),
    (["up", "--name", "Bert_Test", "--zone", "us-central2-b", "--accelerator_type", "v4-32"], "not a valid TPU name"),
    (["run", *WHERE, "--accelerator_type", "v4-32", "--config", "configs/base_cased.py:tiny", "--workdir",
      "gs://my-bucket/w", "--config.model.hiden_size=3"], "did you mean model.hidden_size"),
    (["run", *WHERE, "--accelerator_type", "v4-32", "--config", "configs/base_cased.py:tiny", "--workdir",
      "gs://my-bucket/w", "--config.mesh.data=3"], "needs 3 devices but 16 are available"),
    (["run", *WHERE, "--config", "configs/base_cased.py:tiny", "--workdir", "/local/dir"], "is not on GCS"),
])
def test_bad_input_is_an_error_before_any_gcloud_call(fake_gcloud, capsys, argv, message):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err
    assert fake_gcloud() == []


def test_gcloud_missing_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no gcloud anywhere
    assert cli.main(["up", *WHERE, "--accelerator_type", "v4-32"]) == 2
    assert "`gcloud` is not on PATH: install the Google Cloud CLI" in capsys.readouterr().err


def test_not_authenticated_is_a_clear_error_before_anything_is_created(fake_gcloud, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_GCLOUD_ACCOUNT", "")
    assert cli.main(["up", *WHERE, "--accelerator_type", "v4-32"]) == 2
    assert "gcloud is not authenticated" in capsys.readouterr().err
    assert [c[:2] for c in fake_gcloud()] == [["auth", "list"]]


def test_up_waits_for_the_queued_resource_and_is_idempotent_then_down_removes_it(fake_gcloud, monkeypatch, capfd):
    monkeypatch.setenv("FAKE_GCLOUD_QUEUED_WAIT", "2")  # two describes in WAITING_FOR_RESOURCES
    up = ["up", *WHERE, "--accelerator_type", "v4-16", "--poll_seconds", "0.05"]
    assert cli.main(up) == 0
    assert "queued resource WAITING_FOR_RESOURCES" in capfd.readouterr().err
    assert cli.main(up) == 0
    assert "already up" in capfd.readouterr().err
    assert len(_creates(fake_gcloud)) == 1
    assert cli.main(["status", *WHERE]) == 0
    status = capfd.readouterr().out
    assert "queued resource ACTIVE, node READY (2 workers)" in status
    assert "worker 0: not-started" in status and "worker 1: not-started" in status
    assert cli.main(["down", *WHERE, "--poll_seconds", "0.05"]) == 0
    assert "bert-test deleted" in capfd.readouterr().err
    assert cli.main(["status", *WHERE]) == 0
    assert "no queued resource or node" in capfd.readouterr().out


# ------------------------------------------------------- run / status / logs / stop / watch with a stand-in trainer


STAND_IN_TRAINER = """#!/bin/bash
# Stands in for `python -m bert_jax.train` (the fake workers' venv python): says its arguments, honours SIGTERM
# like the trainer (exit 0), and finishes once the test creates $FAKE_GCLOUD_ROOT/finish.
echo "stand-in trainer on worker $FAKE_GCLOUD_WORKER: $*"
trap 'echo "x INFO preempted at step 3; workdir w"; exit 0' TERM
for i in $(seq 1200); do [ -f "$FAKE_GCLOUD_ROOT/finish" ] && break; sleep 0.05; done
echo "x INFO finished at step 7; workdir w"
"""


def test_subcommands_drive_workers_through_the_fake_gcloud(fake_gcloud, tmp_path, monkeypatch, capfd):
    """run/status/logs/stop/watch on a 2-worker slice; a shell script stands in for the trainer (fast, no JAX)."""
    trainer = tmp_path / "stand_in_trainer.sh"
    trainer.write_text(STAND_IN_TRAINER)
    trainer.chmod(0o755)
    monkeypatch.setenv("FAKE_GCLOUD_PYTHON", str(trainer))
    wheel = tmp_path / "bert_jax-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"not installed: the fake workers' uv makes `pip install` a no-op")
    fast = [*WHERE, "--poll_seconds", "0.1"]
    slice_flags = ["--accelerator_type", "v4-16"]
    training = ["--config", "configs/base_cased.py:tiny", "--workdir", "gs://my-bucket/run", "--wheel", str(wheel)]
    root = Path(os.environ["FAKE_GCLOUD_ROOT"])

    assert cli.main(["run", *fast, *training]) == 1  # nothing to run on yet
    assert "bert-test is not ready (no queued resource or node)" in capfd.readouterr().err
    assert cli.main(["up", *fast, *slice_flags]) == 0
    assert cli.main(["run", *fast, *slice_flags, *training]) == 0
    capfd.readouterr()
    assert cli.main(["run", *fast, *slice_flags, *training]) == 1
    assert "training already runs on bert-test" in capfd.readouterr().err

    assert cli.main(["status", *fast]) == 0
    status = capfd.readouterr().out
    assert re.search(r"worker 0: running \(pid=\d+\)", status) and re.search(r"worker 1: running", status)
    assert cli.main(["logs", *fast, "--worker", "all"]) == 0
    logs = capfd.readouterr().out
    for worker in (0, 1):
        assert f"stand-in trainer on worker {worker}: -m bert_jax.train --config configs/base_cased.py:tiny " \
               "--workdir gs://my-bucket/run" in logs

    assert cli.main(["stop", *fast, "--timeout", "30"]) == 0
    assert cli.main(["status", *fast]) == 0
    assert capfd.readouterr().out.count(": stopped (code=0), preempted at step 3") == 2
    assert cli.main(["watch", *fast, *slice_flags, *training]) == 0  # a stopped run is left stopped
    assert "training was stopped" in capfd.readouterr().err

    # A preemption: watch recreates the slice, reruns, and ends when training says it finished.
    assert cli.main(["run", *fast, *slice_flags, *training]) == 0
    subprocess.run(["gcloud", "_fake", "preempt", "bert-test"], check=True)
    (root / "finish").touch()
    capfd.readouterr()
    assert cli.main(["watch", *fast, *slice_flags, *training, "--max_restarts", "1"]) == 0
    err = capfd.readouterr().err
    assert "bert-test is queued resource SUSPENDED, node PREEMPTED (2 workers); recovery 1/1" in err
    assert "training finished at step 7" in err
    creates = [c for c in fake_gcloud() if c[2:4] == ["queued-resources", "create"]]
    assert len(creates) == 2

    # Out of restarts: give up, exit 1.
    (root / "finish").unlink()
    assert cli.main(["run", *fast, *slice_flags, *training]) == 0
    subprocess.run(["gcloud", "_fake", "preempt", "bert-test"], check=True)
    capfd.readouterr()
    assert cli.main(["watch", *fast, *slice_flags, *training, "--max_restarts", "0"]) == 1
    assert "watch gives up: bert-test is queued resource SUSPENDED" in capfd.readouterr().err
    assert cli.main(["down", *fast]) == 0


# ---------------------------------------------------------------------------- end to end: run, preempt, watch, resume


def _launch(argv: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "bert_jax.launch", *argv], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"launch {argv[0]} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _checkpoint_steps(workdir: Path) -> list[int]:
    directory = workdir / "checkpoints"
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()) if directory.is_dir() else []


@pytest.mark.slow
def test_run_then_preemption_then_watch_resumes_from_the_checkpoint(tmp_path, sample_dataset):
    root, workdir = tmp_path / "fake_gcloud_state", tmp_path / "gcs" / "workdir"
    secret = "tok_" + stdlib_secrets.token_hex(16)
    env = {
        **os.environ,
        "PATH": f"{FAKE_GCLOUD_DIR}{os.pathsep}{os.environ['PATH']}",
        "FAKE_GCLOUD_ROOT": str(root), "FAKE_GCLOUD_PYTHON": sys.executable, "FAKE_GCLOUD_PYTHONPATH": str(REPO),
        "FAKE_GCLOUD_INTERPRETER": sys.executable,
        "FAKE_GCLOUD_QUEUED_WAIT": "1", "BERT_JAX_TEST_SECRET": secret,
    }
    # Polls are python processes too: a slow poll leaves the 2 CPU cores to training.
    where = ["--name", "bert-e2e", "--zone", "us-central2-b", "--poll_seconds", "2"]
    train_steps, every = 20, 5
    training = [
        "--accelerator_type", "v4-16",  # 2 workers
        "--config", "configs/base_cased.py:tiny", "--workdir", str(workdir), "--allow_local_workdir",
        "--env", "BERT_JAX_TEST_SECRET",
        f"--config.data.dir={sample_dataset}", "--config.data.build_from=", "--config.data.worker_count=0",
        "--config.phases=[{'max_seq_length': 32, 'fraction': 1.0, 'max_predictions': 5}]",
        "--config.model.hidden_size=32", "--config.model.num_hidden_layers=1", "--config.model.intermediate_size=64",
        f"--config.train_steps={train_steps}", f"--config.checkpoint_every={every}", "--config.log_every=1",
        "--config.eval_every=1000", "--config.eval_steps=1", "--config.export_at_end=false", "--config.batch_size=16",
        "--config.optimizer.warmup_steps=5", "--config.peak_flops_per_device=1e12",
    ]
    outputs = [_launch(["up", *where, "--accelerator_type", "v4-16"], env, 60)]
    outputs.append(_launch(["run", *where, *training], env, 120))
    homes = [root / "nodes" / "bert-e2e" / f"worker-{i}" / remote.DEFAULT_REMOTE_DIR for i in range(2)]

    # The secret reached both trainers' environments, through a file that is gone.
    for home in homes:
        pid = int((home / "train.pid").read_text())
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"BERT_JAX_TEST_SECRET={secret}".encode() in environ
        assert not (home / remote.SECRETS_FILE).exists()

    deadline = time.monotonic() + 300
    while not _checkpoint_steps(workdir):
        assert time.monotonic() < deadline, "no checkpoint within 300 s:\n" + (homes[0] / "train.log").read_text()
        assert not (homes[0] / "exit_code").exists(), "training ended early:\n" + (homes[0] / "train.log").read_text()
        time.sleep(0.2)
    subprocess.run(["gcloud", "_fake", "preempt", "bert-e2e"], env=env, check=True)  # kill -9 + PREEMPTED
    saved = _checkpoint_steps(workdir)[-1]
    assert saved < train_steps, "the first run finished before it could be preempted; raise train_steps"
    first_log = (homes[0] / "train.log").read_text()
    # Tag the metrics lines the first run wrote: a resumed run keeps those up to its checkpoint as they are and
    # appends the rest; a run restarted from step 0 would repeat steps or rewrite them untagged.
    metrics_file = workdir / "metrics.jsonl"
    first_records = []
    for line in metrics_file.read_text().splitlines():
        try:
            first_records.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line torn by the kill; the trainer drops those too
    assert max(r["step"] for r in first_records) >= saved
    metrics_file.write_text("".join(json.dumps({**r, "first_run": True}) + "\n" for r in first_records))

    watch = _launch(["watch", *where, *training, "--max_restarts", "2", "--finish_grace", "0"], env, 420)
    outputs.append(watch)
    assert "recovery 1/2" in watch.stderr and "recovery 2/2" not in watch.stderr
    assert f"training finished at step {train_steps}" in watch.stderr or "training exited 0; watch ends" in watch.stderr

    calls = [json.loads(line)["argv"] for line in (root / "calls.jsonl").read_text().splitlines()]
    after_preemption = calls[[c[:2] for c in calls].index(["_fake", "preempt"]):]
    verbs = [" ".join(c[2:4]) for c in after_preemption if c[:2] == ["compute", "tpus"]]
    assert verbs.index("queued-resources delete") < verbs.index("queued-resources create") < verbs.index("tpu-vm scp")

    records = [json.loads(line) for line in metrics_file.read_text().splitlines()]
    train_records = [r for r in records if r.get("kind") == "train"]
    assert [r["step"] for r in train_records] == list(range(1, train_steps + 1))  # log_every=1: no step twice
    assert all(r.get("first_run") for r in train_records if r["step"] <= saved)
    assert not any(r.get("first_run") for r in train_records if r["step"] > saved)  # the rerun began at saved+1
    assert _checkpoint_steps(workdir)[-1] == train_steps
    second_log = (homes[0] / "train.log").read_text()  # the recreated worker's fresh disk: the second run only

    # The secret appears in no command, no launcher output and no log.
    assert secret not in json.dumps(calls)
    for result in outputs:
        assert secret not in result.stdout + result.stderr
    assert secret not in first_log + second_log
    assert not any(p.name == remote.SECRETS_FILE for p in root.rglob("*"))
    installs = [json.loads(line)["argv"] for line in (root / "worker_calls.jsonl").read_text().splitlines()]
    assert sum(a[:3] == ["uv", "pip", "install"] for a in installs) == 4  # 2 workers x (run + rerun)
