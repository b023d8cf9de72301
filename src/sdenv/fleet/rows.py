"""The fleet's row model: one row per node from what its task returned (or why it returned nothing).

Pure and typed: the Ray fan-out (``sdenv.fleet.ray_fanout``) hands each node's payload, or the
error Ray raised for it, to these functions; tests feed them recorded payloads. A node that died,
timed out or could not run its task is a failed row with the reason, never a missing one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

PAYLOAD_SCHEMA = 1


@dataclass
class NodeRow:
    node: str  # host name (or address) as Ray knows the node
    node_id: str
    gpus: list[str] = field(default_factory=list)  # "NVIDIA H200 (9.0)"
    driver: str | None = None
    fp8_hardware: str = "no GPU"  # native | emulated | unsupported | mixed (...) | no GPU
    fp8_stack: str | None = (
        None  # the FP8 mode verify's probe chose in the env: native/emulated/off
    )
    env: str | None = None  # the env verified (the probe's pick under ENV auto)
    sync: str | None = None  # pass | fail | skip | None (not asked)
    verdict: str = "fail"  # pass | fail
    seconds: float = 0.0
    reasons: list[str] = field(default_factory=list)
    verify: dict[str, Any] | None = None  # the node's `sdenv verify --json`, as it printed it

    @property
    def ok(self) -> bool:
        return self.verdict == "pass"


@dataclass
class FleetResult:
    ok: bool
    address: str
    nodes: int
    passed: int
    failed: int
    seconds: float
    rows: list[NodeRow]
    reasons: list[str] = field(default_factory=list)  # fleet-level: e.g. no alive node


def fp8_hardware(verdicts: Sequence[str]) -> str:
    """One word for a node's GPUs: their common FP8 verdict, or ``mixed (...)``."""
    if not verdicts:
        return "no GPU"
    distinct = sorted(set(verdicts))
    return distinct[0] if len(distinct) == 1 else f"mixed ({', '.join(distinct)})"


def choose_env(requested: str | None, recommended: str | None, why: str) -> tuple[str | None, str]:
    """The env a node verifies: the one asked for, or under ``auto`` the probe's pick for it."""
    if requested != "auto":
        return requested, ""
    if recommended is None:
        return None, f"ENV auto: {why}"
    return recommended, ""


def row_from_payload(node: str, node_id: str, payload: Mapping[str, Any]) -> NodeRow:
    """A row from what a node task returned (``sdenv.fleet.node.run_node``)."""
    if payload.get("schema") != PAYLOAD_SCHEMA:
        return failed_row(
            node,
            node_id,
            f"the node answered schema {payload.get('schema')!r}, expected {PAYLOAD_SCHEMA}: "
            "install the same sdenv on every node",
        )
    probe: Mapping[str, Any] = payload.get("probe") or {}
    verify: dict[str, Any] | None = payload.get("verify")
    sync: Mapping[str, Any] | None = payload.get("sync")
    reasons = list(payload.get("errors") or [])
    gpus = probe.get("gpus") or []
    row = NodeRow(
        node=node,
        node_id=node_id,
        gpus=[f"{g.get('name')} ({g.get('cc') or '?'})" for g in gpus],
        driver=(probe.get("facts") or {}).get("driver", {}).get("version"),
        fp8_hardware=fp8_hardware([(g.get("fp8") or {}).get("verdict", "?") for g in gpus]),
        env=payload.get("env"),
        seconds=float(payload.get("seconds") or 0.0),
        verify=verify,
    )
    if sync is not None:
        row.sync = str(sync.get("status"))
        if row.sync == "fail":
            reasons.append(f"sync: {sync.get('reason')}")
        elif row.sync == "skip":
            row.reasons.append(f"sync skipped: {sync.get('reason')}")
    if verify is not None:
        row.fp8_stack = verify.get("fp8_mode")
        if not verify.get("ok"):
            reasons += list(verify.get("failed") or []) or ["verify failed"]
    elif not reasons:
        reasons.append("verify did not run")
    row.verdict = "fail" if reasons else "pass"
    row.reasons = reasons + row.reasons
    return row


def failed_row(node: str, node_id: str, reason: str, seconds: float = 0.0) -> NodeRow:
    """A node with no payload: its task died, timed out or could not be scheduled."""
    return NodeRow(node=node, node_id=node_id, verdict="fail", seconds=seconds, reasons=[reason])


def summarize(address: str, rows: Sequence[NodeRow], seconds: float) -> FleetResult:
    """Pass only when there is at least one node and every node passed."""
    passed = sum(r.ok for r in rows)
    reasons = [] if rows else ["no alive node in the Ray cluster"]
    return FleetResult(
        ok=bool(rows) and passed == len(rows),
        address=address,
        nodes=len(rows),
        passed=passed,
        failed=len(rows) - passed,
        seconds=round(seconds, 3),
        rows=sorted(rows, key=lambda r: (r.node, r.node_id)),
        reasons=reasons,
    )
