"""What a job's TPU is doing: `describe` output -> ready / pending / dead / absent.

- ready:   the node is READY (and its queued resource, if any, ACTIVE): workers can be reached.
- pending: on its way (queued, provisioning, creating, repairing): wait.
- dead:    preempted, terminated, suspended, failed or being deleted: only deleting and recreating helps.
- absent:  neither a queued resource nor a node of that name exists.

States are the TPU API's (`QueuedResourceState.State`, `Node.State`). A state this table does not know counts as
pending (and is reported), so a new API state makes `watch` wait rather than destroy a slice.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess

from bert_jax.launch import gcloud
from bert_jax.launch.errors import LaunchError
from bert_jax.launch.runner import Runner

QUEUED_PENDING = {"CREATING", "ACCEPTED", "WAITING_FOR_RESOURCES", "PROVISIONING", "STATE_UNSPECIFIED"}
QUEUED_DEAD = {"SUSPENDING", "SUSPENDED", "FAILED", "DELETING"}
NODE_PENDING = {"CREATING", "STARTING", "RESTARTING", "REPAIRING", "REIMAGING", "UNHIDING", "STATE_UNSPECIFIED"}
NODE_DEAD = {"PREEMPTED", "TERMINATED", "STOPPING", "STOPPED", "DELETING", "HIDING", "HIDDEN"}

READY, PENDING, DEAD, ABSENT = "ready", "pending", "dead", "absent"


@dataclasses.dataclass(frozen=True)
class ResourceStatus:
    health: str  # READY, PENDING, DEAD or ABSENT
    queued_state: str | None = None  # None: no queued resource
    node_state: str | None = None  # None: no node
    workers: int | None = None  # network endpoints of the node, when it has them
    unknown_state: bool = False

    @property
    def queued(self) -> bool:
        return self.queued_state is not None

    def summary(self) -> str:
        parts = []
        if self.queued_state:
            parts.append(f"queued resource {self.queued_state}")
        if self.node_state:
            parts.append(f"node {self.node_state}" + (f" ({self.workers} workers)" if self.workers else ""))
        return ", ".join(parts) or "no queued resource or node"


def _node_health(state: str) -> tuple[str, bool]:
    if state == "READY":
        return READY, False
    if state in NODE_DEAD:
        return DEAD, False
    return PENDING, state not in NODE_PENDING


def classify(queued: dict | None, node: dict | None) -> ResourceStatus:
    """From the `--format=json` output of the describes (None where the resource does not exist)."""
    node_state = str(node.get("state", "STATE_UNSPECIFIED")) if node is not None else None
    workers = len(node.get("networkEndpoints") or []) or None if node is not None else None
    if queued is not None:
        queued_state = str((queued.get("state") or {}).get("state", "STATE_UNSPECIFIED"))
        if queued_state in QUEUED_DEAD:
            return ResourceStatus(DEAD, queued_state, node_state, workers)
        if queued_state != "ACTIVE":
            return ResourceStatus(PENDING, queued_state, node_state, workers, queued_state not in QUEUED_PENDING)
        if node_state is None:  # ACTIVE, but the node is gone (deleted by hand or after a preemption)
            return ResourceStatus(DEAD, queued_state, None, None)
        health, unknown = _node_health(node_state)
        return ResourceStatus(health, queued_state, node_state, workers, unknown)
    if node_state is None:
        return ResourceStatus(ABSENT)
    health, unknown = _node_health(node_state)
    return ResourceStatus(health, None, node_state, workers, unknown)


def _not_found(result: subprocess.CompletedProcess) -> bool:
    text = (result.stderr or "") + (result.stdout or "")
    return "NOT_FOUND" in text or "was not found" in text


def _describe(argv: list[str], runner: Runner, what: str) -> dict | None:
    result = runner.run(argv, check=False, query=True)
    if result.returncode != 0:
        if _not_found(result):
            return None
        raise LaunchError(f"{what} failed (exit {result.returncode}): {(result.stderr or result.stdout).strip()}")
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        raise LaunchError(f"{what} printed no JSON: {result.stdout[:300]!r}") from None


def inspect(target: gcloud.Target, runner: Runner, *, queued: bool, assume: str = READY) -> ResourceStatus:
    """Describes the job's queued resource and node. Under --dry_run prints the commands and returns `assume`."""
    if runner.dry_run:
        runner.show(gcloud.queued_resource_describe(target) if queued else gcloud.tpu_vm_describe(target), query=True)
        if assume == ABSENT:
            return ResourceStatus(ABSENT)
        return ResourceStatus(assume, "ACTIVE" if queued else None, "READY")
    queued_json = _describe(gcloud.queued_resource_describe(target), runner, "describing the queued resource")
    node_json = _describe(gcloud.tpu_vm_describe(target), runner, "describing the TPU VM")
    return classify(queued_json, node_json)
