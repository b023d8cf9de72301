"""Fan ``sdenv fleet verify`` out over a Ray cluster: one task pinned to each alive node.

Ray does the scheduling, transport and failure detection: each task is pinned with a hard
``NodeAffinitySchedulingStrategy`` (never retried elsewhere: a row must describe its own node) and
asks for the node's GPUs, so Ray sets ``CUDA_VISIBLE_DEVICES`` to all of them and nothing else
runs on them meanwhile. The host waits for every task up to the node timeout plus a grace period
(the node task's own deadline fires first and reports what timed out); a task still out after
that is cancelled and its node gets a failed row. A node that dies mid-run comes back from Ray as
an error, which becomes that node's failed row: the command always ends.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sdenv.errors import SdenvError, UsageError
from sdenv.fleet.node import NodeJob, run_node
from sdenv.fleet.rows import FleetResult, NodeRow, failed_row, row_from_payload, summarize

# Past the node timeout: the node's clock starts when its Ray worker runs the task, which on a
# loaded box can be tens of seconds after the host submitted it; then result transfer.
GRACE_S = 60.0


class FleetError(SdenvError):
    """The fleet could not be asked at all (Ray unreachable)."""


@dataclass(frozen=True)
class RayNode:
    node_id: str
    address: str
    cpus: float
    gpus: float


def alive_nodes(nodes: list[Mapping[str, Any]]) -> list[RayNode]:
    """Pure: ``ray.nodes()`` entries that are alive, in a stable order."""
    found = [
        RayNode(
            str(n["NodeID"]),
            str(n.get("NodeManagerAddress") or n.get("NodeManagerHostname") or "?"),
            float((n.get("Resources") or {}).get("CPU", 0.0)),
            float((n.get("Resources") or {}).get("GPU", 0.0)),
        )
        for n in nodes
        if n.get("Alive")
    ]
    return sorted(found, key=lambda n: (n.address, n.node_id))


def task_options(node: RayNode) -> dict[str, Any]:
    """Pin to the node, no retry elsewhere, all its GPUs; one CPU where it has one."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return {
        "scheduling_strategy": NodeAffinitySchedulingStrategy(node.node_id, soft=False),
        "max_retries": 0,
        "num_cpus": min(1.0, node.cpus),
        "num_gpus": node.gpus,
    }


def ray_reason(exc: BaseException) -> str:
    """One line for what Ray raised instead of a node's payload."""
    from ray import exceptions as rx

    if isinstance(exc, rx.NodeDiedError):
        return "the node died during the run"
    if isinstance(exc, rx.WorkerCrashedError):
        return "the Ray worker died during the run (killed, or its node was lost)"
    if isinstance(exc, rx.TaskUnschedulableError):
        return "Ray cannot schedule a task on this node (it left the cluster?)"
    if isinstance(exc, rx.RayTaskError):
        cause = exc.cause if exc.cause is not None else exc
        text = str(cause).strip().splitlines()
        return f"the node task raised {type(cause).__name__}: {text[-1] if text else ''}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise UsageError(
            "Ray is not installed; install sdenv with its fleet extra: sdenv[fleet]"
        ) from exc
    return ray


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Ray prints cluster events (e.g. "(raylet) The node with node id ... has died") on the
    driver's stdout; `--json` output must stay the only thing there."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def verify_fleet(
    address: str,
    job: NodeJob,
    *,
    grace: float = GRACE_S,
    on_row: Callable[[NodeRow], None] | None = None,
) -> FleetResult:
    with _stdout_to_stderr():
        return _verify_fleet(address, job, grace=grace, on_row=on_row)


def _verify_fleet(
    address: str,
    job: NodeJob,
    *,
    grace: float,
    on_row: Callable[[NodeRow], None] | None,
) -> FleetResult:
    ray = _import_ray()
    t0 = time.monotonic()
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FleetError(
            f"--ray {address}: cannot join the Ray cluster: {first}; check the address "
            "(the head's `ray start --head` prints it)"
        ) from exc
    rows: list[NodeRow] = []

    def add(row: NodeRow) -> None:
        rows.append(row)
        if on_row:
            on_row(row)

    try:
        nodes = alive_nodes(ray.nodes())
        task = ray.remote(run_node)
        refs = {task.options(**task_options(n)).remote(job): n for n in nodes}
        pending = list(refs)
        deadline = time.monotonic() + job.timeout + grace
        while pending and (left := deadline - time.monotonic()) > 0:
            done, pending = ray.wait(pending, num_returns=1, timeout=left)
            for ref in done:
                node = refs[ref]
                try:
                    payload = ray.get(ref)
                except Exception as exc:  # a Ray error is this node's failed row
                    add(failed_row(node.address, node.node_id, ray_reason(exc), _since(t0)))
                else:
                    add(row_from_payload(node.address, node.node_id, payload))
        for ref in pending:
            node = refs[ref]
            # The node task killed its own steps at its deadline; this frees the worker.
            ray.cancel(ref, force=True)
            add(
                failed_row(
                    node.address,
                    node.node_id,
                    f"no answer within {job.timeout + grace:.0f} s (node busy, unreachable or "
                    "hung); the task was cancelled",
                    _since(t0),
                )
            )
    finally:
        ray.shutdown()
    return summarize(address, rows, time.monotonic() - t0)


def _since(t0: float) -> float:
    return round(time.monotonic() - t0, 3)
