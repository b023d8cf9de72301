"""Runs in the pods of `sdenv fleet k8s`: verify this node, then publish the verdict as its labels.

Standard library only: it is shipped as a ConfigMap and run by the image's own Python, next to
whatever sdenv that image has. Steps: ``python -m sdenv verify --json`` (against the lock the image
carries, ``$SDENV_LOCK``), read this node (``$NODE_NAME``, from the downward API) through the
in-cluster API with the pod's service-account token, compute the labels (``node_labels``, a pure
function), merge-patch them, then sleep until the pod is stopped: a DaemonSet pod that exited
would be restarted and verify again in a loop.

Labels: ``sdenv.io/env`` (the env verified), ``sdenv.io/verify`` (pass | fail) and
``sdenv.io/fp8`` (the FP8 mode the verified stack runs in: native | emulated | off; ``none`` when
the verify failed), so a workload asks for ``sdenv.io/fp8=native`` and lands only where FP8 was
proven, not merely where the GPU could do it. The full reasons go in an annotation.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

PREFIX = "sdenv.io/"
LABEL_ENV = PREFIX + "env"
LABEL_VERIFY = PREFIX + "verify"
LABEL_FP8 = PREFIX + "fp8"
ANNOTATION = PREFIX + "verify-result"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
VERIFY_TIMEOUT_S = 1800.0
_BAD = re.compile(r"[^A-Za-z0-9._-]+")


def label_value(text: str | None) -> str:
    """A valid label value: 63 characters of [A-Za-z0-9._-], alphanumeric at both ends."""

    def ends(value: str) -> str:
        return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)

    return ends(ends(_BAD.sub("-", text or ""))[:63]) or "unknown"


def node_labels(
    current: Mapping[str, str], env: str, result: Mapping[str, Any] | None
) -> dict[str, str]:
    """The labels to set on a node whose current labels are ``current`` after verifying ``env``.

    A failure never overwrites another env's pass on the same node (two DaemonSets can share a
    node: the cu121 one fails where the cu128 one passes); the failure is still in the annotation.
    """
    env_value = label_value(env)
    ok = bool(result and result.get("ok"))
    if not ok and current.get(LABEL_VERIFY) == "pass" and current.get(LABEL_ENV) != env_value:
        return {}
    fp8 = label_value(str((result or {}).get("fp8_mode"))) if ok else "none"
    return {LABEL_ENV: env_value, LABEL_VERIFY: "pass" if ok else "fail", LABEL_FP8: fp8}


def annotation(env: str, result: Mapping[str, Any] | None, error: str | None) -> str:
    """A short JSON record of the run: verdict, FP8 mode and the first reasons."""
    failed = list((result or {}).get("failed") or ([error] if error else []))
    record = {
        "env": env,
        "verdict": "pass" if result and result.get("ok") else "fail",
        "fp8_mode": (result or {}).get("fp8_mode"),
        "failed": [str(f)[:300] for f in failed[:10]],
        "seconds": (result or {}).get("seconds"),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return json.dumps(record, separators=(",", ":"))


def patch_body(labels: Mapping[str, str], annotations: Mapping[str, str]) -> bytes:
    """A JSON merge patch (RFC 7386) of the node's labels and annotations: nothing else moves."""
    return json.dumps(
        {"metadata": {"labels": dict(labels), "annotations": dict(annotations)}}
    ).encode()


def run_verify(extra: Sequence[str]) -> tuple[dict[str, Any] | None, str | None]:
    args = [sys.executable, "-m", "sdenv", "verify", "--json", *extra]
    lock = os.environ.get("SDENV_LOCK")
    if lock and "--lock" not in extra and "--no-lock" not in extra:
        args += ["--lock", lock]
    try:
        proc = subprocess.run(
            args, capture_output=True, text=True, timeout=VERIFY_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"sdenv verify did not run: {exc}"
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        lines = proc.stderr.strip().splitlines()
        return None, f"sdenv verify exit {proc.returncode}: {lines[-1] if lines else 'no output'}"
    return result if isinstance(result, dict) else None, None


class Api:
    """The few calls needed, with the pod's service-account token (get and patch nodes only)."""

    def __init__(self, base: str, token: str, context: ssl.SSLContext | None) -> None:
        self.base, self.token, self.context = base.rstrip("/"), token, context

    @classmethod
    def in_cluster(cls, sa_dir: str = SA_DIR) -> Api:
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        with open(os.path.join(sa_dir, "token")) as fh:
            token = fh.read().strip()
        context = ssl.create_default_context(cafile=os.path.join(sa_dir, "ca.crt"))
        host = f"[{host}]" if ":" in host else host
        return cls(f"https://{host}:{port}", token, context)

    def call(self, method: str, path: str, body: bytes | None = None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/merge-patch+json"
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=30, context=self.context) as resp:
            data: dict[str, Any] = json.loads(resp.read() or b"{}")
        return data


def publish(
    api: Api, node: str, env: str, result: dict[str, Any] | None, error: str | None
) -> dict[str, str]:
    path = "/api/v1/nodes/" + urllib.parse.quote(node, safe="")
    current = api.call("GET", path).get("metadata", {}).get("labels") or {}
    labels = node_labels(current, env, result)
    api.call("PATCH", path, patch_body(labels, {ANNOTATION: annotation(env, result, error)}))
    return labels


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True, help="the env this image serves")
    parser.add_argument("--once", action="store_true", help="exit after publishing (no sleep)")
    parser.add_argument("--api", help="API server URL (default: the in-cluster service)")
    parser.add_argument("--token", default=None, help="bearer token (default: the pod's)")
    parser.add_argument("verify_args", nargs="*", help="passed on to `sdenv verify`")
    args = parser.parse_args(argv)
    node = os.environ.get("NODE_NAME")
    if not node:
        print(
            "labeler: NODE_NAME is not set; give the pod spec.nodeName as NODE_NAME",
            file=sys.stderr,
        )
        return 2
    result, error = run_verify(args.verify_args)
    api = Api(args.api, args.token or "", None) if args.api else Api.in_cluster()
    try:
        labels = publish(api, node, args.env, result, error)
    except (OSError, urllib.error.URLError, ValueError, KeyError) as exc:
        print(f"labeler: cannot label node {node}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"node": node, "labels": labels, "error": error}), flush=True)
    if not args.once:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while True:
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
