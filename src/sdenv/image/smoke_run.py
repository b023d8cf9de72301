"""``sdenv smoke --json`` inside a built image, with no network: the gate before any tag moves."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class SmokeOutcome:
    passed: bool
    exit_code: int
    gpu: bool
    seconds: float
    report: Any = None
    failure: str | None = None
    output_tail: str = ""


def run_smoke(client: Any, image_id: str, command: Sequence[str], gpu: bool) -> SmokeOutcome:
    """Run ``command`` (the image's entrypoint is sdenv) in a throwaway container of the image."""
    from docker.types import DeviceRequest

    kwargs: dict[str, Any] = {}
    if gpu:
        kwargs["device_requests"] = [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    started = time.monotonic()
    container = client.containers.create(
        image_id, list(command), network_mode="none", detach=True, **kwargs
    )
    try:
        container.start()
        status = container.wait(timeout=1800)
        stdout = container.logs(stdout=True, stderr=False).decode(errors="replace")
        stderr = container.logs(stdout=False, stderr=True).decode(errors="replace")
    finally:
        container.remove(force=True)
    code = int(status.get("StatusCode", 1))
    report: Any = None
    with contextlib.suppress(ValueError):
        report = json.loads(stdout) if stdout.strip() else None
    passed = code == 0
    failure = None if passed else classify_smoke_failure(report, stderr or stdout, code)
    tail = (stderr + stdout).strip()[-2000:]
    return SmokeOutcome(passed, code, gpu, time.monotonic() - started, report, failure, tail)


def classify_smoke_failure(report: Any, output: str, code: int) -> str:
    """One line for a failed smoke: the first failed check with sdenv.smoke's classification
    (kind, culprits, hint); the last output line when there is no report."""
    checks = report.get("checks") if isinstance(report, Mapping) else None
    failed = [c for c in checks or [] if isinstance(c, Mapping) and c.get("status") == "fail"]
    if failed:
        more = f" (+{len(failed) - 1} more failed)" if len(failed) > 1 else ""
        return " ".join(_check_words(failed[0])).replace("\n", " ")[:400] + more
    lines = [ln.strip() for ln in output.strip().splitlines() if ln.strip()]
    return f"exit {code}: {lines[-1][:300]}" if lines else f"exit {code}, no output"


def _check_words(check: Mapping[str, Any]) -> list[str]:
    """``name: kind (culprits) - detail - fix: hint`` of one failed check, as far as it has them."""
    raw = check.get("failure")
    failure: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    words = [f"{check.get('name', 'check')}:"]
    if isinstance(raw, Mapping):
        words.append(str(failure.get("kind") or "failed"))
    if failure.get("culprits"):
        words.append(f"({', '.join(map(str, failure['culprits']))})")
    if check.get("detail"):
        words.append(f"- {check['detail']}")
    if failure.get("hint"):
        words.append(f"- fix: {failure['hint']}")
    return words
