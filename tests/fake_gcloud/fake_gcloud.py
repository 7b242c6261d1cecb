"""A fake `gcloud` for tests/test_launch.py: records every call and emulates Cloud TPU VMs with local processes.

Put this directory first on PATH (its `gcloud` runs this file with FAKE_GCLOUD_INTERPRETER). It accepts only the commands and flags the launcher uses (with gcloud's own
spelling, checked against `gcloud ... --help` of Cloud SDK 528), and rejects any other flag as gcloud would, so a
misspelt flag in the launcher fails here too.

  auth list                          prints FAKE_GCLOUD_ACCOUNT (default tester@example.com; "" = not logged in)
  compute tpus tpu-vm create|describe|delete, compute tpus queued-resources create|describe|delete
                                     a JSON state file; creating gives a READY node (queued: ACTIVE, after
                                     FAKE_GCLOUD_QUEUED_WAIT describes in WAITING_FOR_RESOURCES) with one home
                                     directory per worker; deleting kills the node's processes and wipes its disks
  compute tpus tpu-vm ssh --worker=W --command=CMD [--output-directory=D]
                                     runs `bash -c CMD` as one local process per selected worker, concurrently,
                                     with HOME = that worker's directory and the environment that makes it a
                                     distinct JAX process (BERT_JAX_PROCESS_ID/NUM_PROCESSES/COORDINATOR_ADDRESS,
                                     2 CPU devices each); exit code: the first non-zero one
  compute tpus tpu-vm scp SRC... NAME:DEST --worker=W [--recurse]
                                     copies into each selected worker's directory
  _fake preempt NAME                 test control: the node becomes PREEMPTED (its queued resource SUSPENDED) and
                                     its processes are killed, as a spot preemption does
  _fake set-state NAME STATE         test control: sets the node's state

Workers get `worker_bin/` first on PATH: its `uv` makes `venv/bin/python` a launcher of FAKE_GCLOUD_PYTHON (the test's
interpreter) and records `uv pip install` as a no-op, and FAKE_GCLOUD_PYTHONPATH (the repository) is put on
PYTHONPATH; so the code the workers run is the checkout under test, without installing a wheel per test.

Number of workers per accelerator type: one per 4 chips (v2-v4, v5p: 2 cores per chip; v5e/v6e: slices of up to 8
chips are one VM), worked out here independently of the launcher's table.
"""

import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

ROOT = os.environ.get("FAKE_GCLOUD_ROOT")
HERE = os.path.dirname(os.path.abspath(__file__))

LOCATION_FLAGS = {"--zone", "--project"}
CONNECTION_FLAGS = {"--worker", "--strict-host-key-checking", "--internal-ip", "--quiet", "--ssh-key-file",
                    "--dry-run", "--plain", "--force-key-file-overwrite"}
VALUE_FLAGS = {"--zone", "--project", "--accelerator-type", "--version", "--runtime-version", "--node-id",
               "--worker", "--command", "--output-directory", "--strict-host-key-checking", "--format", "--filter",
               "--ssh-key-file", "--description", "--labels"}
ALLOWED = {
    ("auth", "list"): {"--filter", "--format"},
    ("tpu-vm", "create"): LOCATION_FLAGS | {"--accelerator-type", "--version", "--spot", "--reserved",
                                           "--preemptible", "--description", "--labels", "--async", "--quiet"},
    ("queued-resources", "create"): LOCATION_FLAGS | {"--node-id", "--accelerator-type", "--runtime-version",
                                                     "--spot", "--reserved", "--guaranteed", "--description",
                                                     "--labels", "--async", "--quiet"},
    ("tpu-vm", "describe"): LOCATION_FLAGS | {"--format"},
    ("queued-resources", "describe"): LOCATION_FLAGS | {"--format"},
    ("tpu-vm", "delete"): LOCATION_FLAGS | {"--quiet", "--async"},
    ("queued-resources", "delete"): LOCATION_FLAGS | {"--quiet", "--async", "--force"},
    ("tpu-vm", "ssh"): LOCATION_FLAGS | CONNECTION_FLAGS | {"--command", "--output-directory"},
    ("tpu-vm", "scp"): LOCATION_FLAGS | CONNECTION_FLAGS | {"--recurse", "--compress"},
}


def fail(group, message, code=1):
    print(f"ERROR: (gcloud.{group}) {message}", file=sys.stderr)
    sys.exit(code)


def parse(group, key, args):
    """(positionals, {flag: value or True}) with gcloud's rules for the flags this command accepts."""
    allowed = ALLOWED[key]
    positionals, flags = [], {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if name not in allowed:
                fail(group, f"unrecognized arguments: {arg}", code=2)
            if name in VALUE_FLAGS and not eq:
                i += 1
                if i >= len(args):
                    fail(group, f"argument {name}: expected one argument", code=2)
                value = args[i]
            flags[name] = value if (eq or name in VALUE_FLAGS) else True
        else:
            positionals.append(arg)
        i += 1
    return positionals, flags


def workers_for(accelerator_type):
    prefix, _, size = accelerator_type.partition("-")
    size = int(size)
    if prefix in ("v5litepod", "v6e"):
        return 1 if size <= 8 else size // 4
    chips = size // 2
    return max(1, chips // 4)


class State:
    """state.json under an exclusive lock for the whole call."""

    def __enter__(self):
        os.makedirs(ROOT, exist_ok=True)
        self._lock = open(os.path.join(ROOT, "state.lock"), "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        path = os.path.join(ROOT, "state.json")
        self.data = json.load(open(path)) if os.path.exists(path) else {"nodes": {}, "queued": {}}
        return self

    def save(self):
        path = os.path.join(ROOT, "state.json")
        with open(path + ".tmp", "w") as f:
            json.dump(self.data, f, indent=1)
        os.replace(path + ".tmp", path)

    def __exit__(self, *exc):
        fcntl.flock(self._lock, fcntl.LOCK_UN)
        self._lock.close()


def node_dir(name):
    return os.path.join(ROOT, "nodes", name)


def worker_home(name, index):
    return os.path.join(node_dir(name), f"worker-{index}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_node(state, name, accelerator_type, runtime_version, spot):
    workers = workers_for(accelerator_type)
    shutil.rmtree(node_dir(name), ignore_errors=True)
    for i in range(workers):
        os.makedirs(worker_home(name, i))
    state.data["nodes"][name] = {
        "state": "READY", "acceleratorType": accelerator_type, "runtimeVersion": runtime_version,
        "workers": workers, "port": free_port(), "instance": uuid.uuid4().hex, "spot": spot,
    }


def kill_node_processes(node):
    """SIGKILLs every process started on the node: they carry its instance id in their environment."""
    marker = f"FAKE_GCLOUD_INSTANCE={node['instance']}".encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:
            continue
        if marker in environ:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass


def not_found(group, kind, name, flags):
    project = flags.get("--project", "fake-project")
    fail(group, f"NOT_FOUND: Resource 'projects/{project}/locations/{flags.get('--zone')}/{kind}/{name}' "
                f"was not found")


def node_json(name, node, flags):
    return {
        "name": f"projects/{flags.get('--project', 'fake-project')}/locations/{flags.get('--zone')}/nodes/{name}",
        "acceleratorType": node["acceleratorType"], "runtimeVersion": node["runtimeVersion"],
        "state": node["state"], "health": "HEALTHY",
        "networkEndpoints": [{"ipAddress": "127.0.0.1", "port": 8470} for _ in range(node["workers"])],
        "schedulingConfig": {"spot": True} if node["spot"] else {},
    }


def select_workers(spec, count):
    if spec == "all":
        return list(range(count))
    selected = []
    for part in spec.split(","):
        low, dash, high = part.partition("-")
        selected.extend(range(int(low), int(high) + 1) if dash else [int(low)])
    if any(not 0 <= w < count for w in selected):
        raise ValueError(f"worker {spec} out of range [0, {count})")
    return selected


def reachable_node(group, name, flags):
    with State() as state:
        node = state.data["nodes"].get(name)
    if node is None:
        not_found(group, "nodes", name, flags)
    if node["state"] != "READY":
        print(f"ssh: connect to host 127.0.0.1 port 22: Connection refused (node is {node['state']})",
              file=sys.stderr)
        sys.exit(255)
    return node


def worker_env(name, node, index):
    env = dict(os.environ)
    pythonpath = os.environ.get("FAKE_GCLOUD_PYTHONPATH")
    env.update({
        "HOME": worker_home(name, index),
        "PATH": os.path.join(HERE, "worker_bin") + os.pathsep + os.environ.get("PATH", ""),
        "BERT_JAX_PROCESS_ID": str(index),
        "BERT_JAX_NUM_PROCESSES": str(node["workers"]),
        "BERT_JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{node['port']}",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
        "FAKE_GCLOUD_INSTANCE": node["instance"],
        "FAKE_GCLOUD_WORKER": str(index),
        "FAKE_GCLOUD_PYTHON": os.environ.get("FAKE_GCLOUD_PYTHON", sys.executable),
    })
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def ssh(group, args):
    positionals, flags = parse(group, ("tpu-vm", "ssh"), args)
    (name,) = positionals
    node = reachable_node(group, name, flags)
    workers = select_workers(flags.get("--worker", "0"), node["workers"])
    command = flags["--command"]
    output_directory = flags.get("--output-directory")
    if output_directory is None:  # output streams through, interleaved, as gcloud's does (`tail -F` works)
        processes = [subprocess.Popen(["bash", "-c", command], cwd=worker_home(name, i),
                                      env=worker_env(name, node, i), stdin=subprocess.DEVNULL) for i in workers]
        codes = [process.wait() for process in processes]
        sys.exit(next((c for c in codes if c), 0))
    processes = []
    for i in workers:
        log = open(os.path.join(output_directory, f"{i}.log"), "w")
        processes.append((log, subprocess.Popen(
            ["bash", "-c", command], cwd=worker_home(name, i), env=worker_env(name, node, i),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)))
    code = 0
    for log, process in processes:
        returncode = process.wait()
        code = code or returncode
        log.close()
    sys.exit(code)


def scp(group, args):
    positionals, flags = parse(group, ("tpu-vm", "scp"), args)
    *sources, remote = positionals
    name, colon, destination = remote.partition(":")
    if not colon or not sources:
        fail(group, "expected SRC... NAME:DEST (local to remote)", code=2)
    node = reachable_node(group, name, flags)
    destination = destination[2:] if destination.startswith("~/") else destination
    for i in select_workers(flags.get("--worker", "0"), node["workers"]):
        target = os.path.join(worker_home(name, i), destination)
        into_directory = destination.endswith("/") or os.path.isdir(target) or len(sources) > 1
        for source in sources:
            path = os.path.join(target, os.path.basename(source.rstrip("/"))) if into_directory else target
            if os.path.isdir(source):
                if not flags.get("--recurse"):
                    print(f"scp: {source}: not a regular file", file=sys.stderr)
                    sys.exit(1)
                shutil.copytree(source, path, dirs_exist_ok=True)
            else:
                if not os.path.isdir(os.path.dirname(path)):
                    print(f"scp: {os.path.dirname(path)}: No such file or directory", file=sys.stderr)
                    sys.exit(1)
                shutil.copy2(source, path)  # keeps the mode bits, as scp does for a new file


def create(group, kind, args):
    positionals, flags = parse(group, (kind, "create"), args)
    (name,) = positionals
    spot = bool(flags.get("--spot"))
    with State() as state:
        if name in state.data["nodes"] or name in state.data["queued"]:
            fail(group, f"ALREADY_EXISTS: Resource '{name}' already exists")
        if kind == "queued-resources":
            if flags.get("--node-id") != name:
                fail(group, "the fake supports one node per queued resource, with --node-id equal to its name", 2)
            runtime = flags["--runtime-version"]
            state.data["queued"][name] = {
                "state": "WAITING_FOR_RESOURCES", "node_id": name, "acceleratorType": flags["--accelerator-type"],
                "runtimeVersion": runtime, "spot": spot,
                "waits": int(os.environ.get("FAKE_GCLOUD_QUEUED_WAIT", "0")),
            }
        else:
            new_node(state, name, flags["--accelerator-type"], flags["--version"], spot)
        state.save()
    print(f"Create request issued for: [{name}]", file=sys.stderr)


def describe(group, kind, args):
    positionals, flags = parse(group, (kind, "describe"), args)
    (name,) = positionals
    with State() as state:
        if kind == "queued-resources":
            queued = state.data["queued"].get(name)
            if queued is None:
                not_found(group, "queuedResources", name, flags)
            if queued["state"] == "WAITING_FOR_RESOURCES":
                if queued["waits"] > 0:
                    queued["waits"] -= 1
                else:  # capacity found: provision the node
                    queued["state"] = "ACTIVE"
                    new_node(state, name, queued["acceleratorType"], queued["runtimeVersion"], queued["spot"])
                state.save()
            result = {
                "name": f"projects/{flags.get('--project', 'fake-project')}/locations/{flags.get('--zone')}/"
                        f"queuedResources/{name}",
                "state": {"state": queued["state"]},
                "tpu": {"nodeSpec": [{"nodeId": queued["node_id"],
                                      "node": {"acceleratorType": queued["acceleratorType"]}}]},
            }
        else:
            node = state.data["nodes"].get(name)
            if node is None:
                not_found(group, "nodes", name, flags)
            result = node_json(name, node, flags)
    print(json.dumps(result, indent=2))


def delete_node(state, name):
    node = state.data["nodes"].pop(name, None)
    if node is not None:
        kill_node_processes(node)
        shutil.rmtree(node_dir(name), ignore_errors=True)


def delete(group, kind, args):
    positionals, flags = parse(group, (kind, "delete"), args)
    (name,) = positionals
    with State() as state:
        if kind == "queued-resources":
            queued = state.data["queued"].get(name)
            if queued is None:
                not_found(group, "queuedResources", name, flags)
            if queued["node_id"] in state.data["nodes"] and not flags.get("--force"):
                fail(group, "FAILED_PRECONDITION: the queued resource has nodes; use --force")
            delete_node(state, queued["node_id"])
            del state.data["queued"][name]
        else:
            if name not in state.data["nodes"]:
                not_found(group, "nodes", name, flags)
            delete_node(state, name)
        state.save()
    print(f"Deleted [{name}].", file=sys.stderr)


def fake_control(args):
    action, name, *rest = args
    with State() as state:
        node = state.data["nodes"].get(name)
        if node is None:
            sys.exit(f"fake gcloud: no node {name}")
        if action == "preempt":
            kill_node_processes(node)
            node["state"] = "PREEMPTED"
            if name in state.data["queued"]:
                state.data["queued"][name]["state"] = "SUSPENDED"
        elif action == "set-state":
            node["state"] = rest[0]
        else:
            sys.exit(f"fake gcloud: unknown control {action}")
        state.save()


def record(args):
    with open(os.path.join(ROOT, "calls.jsonl"), "a") as f:
        f.write(json.dumps({"argv": args, "time": time.time()}) + "\n")


def main(args):
    if not ROOT:
        sys.exit("fake gcloud: set FAKE_GCLOUD_ROOT")
    os.makedirs(ROOT, exist_ok=True)
    record(args)
    if args[:1] == ["_fake"]:
        return fake_control(args[1:])
    if args[:2] == ["auth", "list"]:
        parse("auth.list", ("auth", "list"), args[2:])
        account = os.environ.get("FAKE_GCLOUD_ACCOUNT", "tester@example.com")
        if account:
            print(account)
        else:
            print("No credentialed accounts.", file=sys.stderr)
        return
    match = re.fullmatch(r"compute tpus (tpu-vm|queued-resources) (create|describe|delete|ssh|scp)",
                         " ".join(args[:4]))
    if not match:
        fail(".".join(args[:4]), f"the fake does not implement: {' '.join(args[:4])}", code=2)
    kind, verb = match.groups()
    group = f"compute.tpus.{kind}.{verb}"
    if (kind, verb) not in ALLOWED:
        fail(group, f"the fake does not implement {kind} {verb}", code=2)
    rest = args[4:]
    if verb == "ssh":
        return ssh(group, rest)
    if verb == "scp":
        return scp(group, rest)
    return {"create": create, "describe": describe, "delete": delete}[verb](group, kind, rest)


if __name__ == "__main__":
    main(sys.argv[1:])
