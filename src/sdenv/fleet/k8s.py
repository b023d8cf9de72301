"""Kubernetes manifests for fleet verification: a DaemonSet per env, placed by what the GPU can run.

Placement uses the node labels NVIDIA's GPU Feature Discovery publishes
(``nvidia.com/gpu.compute.*`` and ``nvidia.com/cuda.driver-version.*``), so each env's pods
land only where its build can work:
- compute capability among the env's ``compute_capabilities``; an env whose FP8 mode is
  ``native`` only on cc >= 8.9 (``sdenv.gpu.compat.FP8_NATIVE_MIN_CC``: FP8 tensor cores);
- driver at or above the full-feature floor of the env's CUDA line (``data/driver_floors.json``,
  NVIDIA's CUDA release notes, Table 2).
Node affinity has no "version >=" operator, only integer ``Gt``/``Lt`` on one label: a floor
a.b.c becomes three ORed terms (major > a; major = a and minor > b; major = a, minor = b and
revision >= c), equality written as ``Gt n-1`` + ``Lt n+1`` so "05" and "5" compare alike.

Each pod runs ``sdenv.fleet.labeler`` (a ConfigMap) in the env's image: verify, then label its own
node. Its ServiceAccount may only get and patch nodes. Pods ask for no ``nvidia.com/gpu``: a
DaemonSet pod that did would hold a GPU for as long as it sleeps; ``NVIDIA_VISIBLE_DEVICES=all``
lets the NVIDIA container runtime show it every GPU instead (the way GPU monitoring agents run).
Pure: objects are plain dicts, checked against the Kubernetes schemas in the tests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sdenv.errors import UsageError
from sdenv.fleet.labeler import label_value
from sdenv.gpu.compat import DRIVER_FLOORS, FP8_NATIVE_MIN_CC, parse_cc
from sdenv.lock.spec import EnvSpec, Target

GFD_CC = ("nvidia.com/gpu.compute.major", "nvidia.com/gpu.compute.minor")
GFD_DRIVER = (
    "nvidia.com/cuda.driver-version.major",
    "nvidia.com/cuda.driver-version.minor",
    "nvidia.com/cuda.driver-version.revision",
)
NAME = "sdenv-fleet"  # ServiceAccount, ClusterRole(Binding), ConfigMap
IMAGE_PYTHON = "/opt/sdenv/venv/bin/python"  # where image/docker/app.Dockerfile installs the env
LABELER_DIR = "/etc/sdenv-fleet"
APP = {"app.kubernetes.io/name": "sdenv-verify", "app.kubernetes.io/managed-by": "sdenv"}
Term = list[dict[str, Any]]


def _eq(key: str, value: int) -> Term:
    return [
        {"key": key, "operator": "Gt", "values": [str(value - 1)]},
        {"key": key, "operator": "Lt", "values": [str(value + 1)]},
    ]


def version_at_least(keys: Sequence[str], floor: Sequence[int]) -> list[Term]:
    """ORed terms true exactly when the labels ``keys`` read as integers are >= ``floor``."""
    terms: list[Term] = []
    for i, part in enumerate(floor):
        prefix = [expr for j in range(i) for expr in _eq(keys[j], floor[j])]
        last = i == len(floor) - 1
        terms.append([*prefix, {"key": keys[i], "operator": "Gt", "values": [str(part - last)]}])
    return terms


def driver_floor(spec: EnvSpec) -> tuple[int, ...]:
    floor = DRIVER_FLOORS.get(spec.cuda_version)
    if floor is None:
        raise UsageError(
            f"{spec.path}: env.cuda {spec.cuda}: no driver floor known for CUDA "
            f"{spec.cuda_version[0]}.{spec.cuda_version[1]}; "
            "add it to src/sdenv/data/driver_floors.json"
        )
    return tuple(int(p) for p in floor.split("."))


def placement_ccs(spec: EnvSpec) -> list[tuple[int, int]]:
    """The compute capabilities an env's pods may run on: native FP8 needs FP8 tensor cores."""
    ccs = sorted({parse_cc(cc) for cc in spec.compute_capabilities})
    if spec.fp8 == "native":
        ccs = [cc for cc in ccs if cc >= FP8_NATIVE_MIN_CC]
    if not ccs:
        raise UsageError(
            f"{spec.path}: env.compute_capabilities: none is >= "
            f"{FP8_NATIVE_MIN_CC[0]}.{FP8_NATIVE_MIN_CC[1]}, which env.fp8 = 'native' needs"
        )
    return ccs


def node_affinity(spec: EnvSpec) -> dict[str, Any]:
    by_major: dict[int, list[int]] = {}
    for major, minor in placement_ccs(spec):
        by_major.setdefault(major, []).append(minor)
    cc_terms = [
        [
            *_eq(GFD_CC[0], major),
            {"key": GFD_CC[1], "operator": "In", "values": [str(m) for m in minors]},
        ]
        for major, minors in sorted(by_major.items())
    ]
    driver_terms = version_at_least(GFD_DRIVER, driver_floor(spec))
    terms = [{"matchExpressions": cc + drv} for cc in cc_terms for drv in driver_terms]
    return {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}


def image_for(spec: EnvSpec, repo: str, python: str | None) -> str:
    """``REPO/ENV:pyX.Y``: the moving tag that `sdenv image build` gives a target (app_tags)."""
    from sdenv.image import app_tags

    py = python or spec.pythons[0]
    if py not in spec.pythons:
        raise UsageError(f"--python {py}: env {spec.name} is built for {', '.join(spec.pythons)}")
    return app_tags(
        Target(spec.name, py, spec.platforms[0]), "", repo=f"{repo.rstrip('/')}/{spec.name}"
    )[0]


def daemonset(spec: EnvSpec, image: str, namespace: str) -> dict[str, Any]:
    labels = {**APP, "app.kubernetes.io/instance": label_value(spec.name)}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {
            "name": f"sdenv-verify-{spec.name}"[:63].rstrip("-."),
            "namespace": namespace,
            "labels": labels,
        },
        "spec": {
            "selector": {"matchLabels": labels},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": NAME,
                    "automountServiceAccountToken": True,
                    "affinity": {"nodeAffinity": node_affinity(spec)},
                    # GPU nodes are commonly tainted so that only GPU work lands there.
                    "tolerations": [
                        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
                    ],
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [
                        {
                            "name": "verify",
                            "image": image,
                            "command": [IMAGE_PYTHON, f"{LABELER_DIR}/labeler.py"],
                            "args": ["--env", spec.name],
                            "env": [
                                {
                                    "name": "NODE_NAME",
                                    "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}},
                                },
                                {"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"},
                                {"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "compute,utility"},
                            ],
                            "resources": {
                                "requests": {"cpu": "500m", "memory": "2Gi"},
                                "limits": {"memory": "16Gi"},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [
                                {"name": "labeler", "mountPath": LABELER_DIR, "readOnly": True},
                                {"name": "tmp", "mountPath": "/tmp"},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "labeler", "configMap": {"name": NAME}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def rbac(namespace: str) -> list[dict[str, Any]]:
    """Least privilege: read and patch Node objects, nothing else, nowhere else."""
    meta = {"labels": dict(APP)}
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": NAME, "namespace": namespace, **meta},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": NAME, **meta},
            "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": NAME, **meta},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": NAME,
            },
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}],
        },
    ]


def render_manifests(
    specs: Sequence[EnvSpec], *, image: str, namespace: str = "sdenv", python: str | None = None
) -> list[dict[str, Any]]:
    if label_value(namespace) != namespace or namespace != namespace.lower():
        raise UsageError(f"--namespace {namespace}: use lowercase letters, digits and '-'")
    labeler = (Path(__file__).parent / "labeler.py").read_text()
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": dict(APP)},
        },
        *rbac(namespace),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": NAME, "namespace": namespace, "labels": dict(APP)},
            "data": {"labeler.py": labeler},
        },
    ]
    objects += [daemonset(s, image_for(s, image, python), namespace) for s in specs]
    return objects


def to_text(objects: Sequence[Mapping[str, Any]]) -> str:
    """One ``v1 List`` as JSON (JSON is YAML too): `kubectl apply -f FILE` takes it as it is."""
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}, indent=2) + "\n"
