"""`sdenv fleet` without Ray: the row model, the host's job, one node's task on real venvs, and the
Kubernetes manifests (checked against the Kubernetes schemas, placed on recorded machines)."""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from conftest import REPO
from pypi_index import Dist, build_wheel
from sdenv.cli import main
from sdenv.errors import UsageError
from sdenv.fleet import labeler
from sdenv.fleet.job import prepare_job
from sdenv.fleet.k8s import GFD_CC, GFD_DRIVER, render_manifests, version_at_least
from sdenv.fleet.node import NodeJob, _descendants, run_node
from sdenv.fleet.rows import (
    PAYLOAD_SCHEMA,
    choose_env,
    fp8_hardware,
    row_from_payload,
    summarize,
)
from sdenv.gpu.compat import DRIVER_FLOORS
from sdenv.gpu.facts import recorded_machines
from sdenv.lock.spec import load_spec
from sdenv.venv import install, run_uv

K8S_VERSION = "1.30.0"  # the oldest minor still in upstream support when this was written

# --------------------------------------------------------------------------- rows (pure)


def test_fp8_hardware_and_env_choice() -> None:
    assert fp8_hardware([]) == "no GPU"
    assert fp8_hardware(["native", "native"]) == "native"
    assert fp8_hardware(["native", "emulated"]) == "mixed (emulated, native)"
    assert choose_env("sd35-fp8-cu121", "sd35-fp8-cu128", "") == ("sd35-fp8-cu121", "")
    assert choose_env("auto", "sd35-fp8-cu128", "why") == ("sd35-fp8-cu128", "")
    assert choose_env("auto", None, "no env fits this box: x") == (
        None,
        "ENV auto: no env fits this box: x",
    )


def _payload(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "schema": PAYLOAD_SCHEMA,
        "env": "sd35-fp8-cu121",
        "seconds": 21.5,
        "errors": [],
        "probe": {
            "facts": {"driver": {"version": "580.159.04"}},
            "gpus": [{"name": "NVIDIA H200", "cc": "9.0", "fp8": {"verdict": "native"}}],
        },
        "sync": None,
        "verify": {"ok": True, "fp8_mode": "native", "failed": []},
    }
    base.update(over)
    return base


def test_row_from_payload() -> None:
    row = row_from_payload("10.0.0.5", "ab" * 28, _payload())
    assert (row.verdict, row.gpus, row.driver) == ("pass", ["NVIDIA H200 (9.0)"], "580.159.04")
    assert (row.fp8_hardware, row.fp8_stack, row.env, row.seconds) == (
        "native",
        "native",
        "sd35-fp8-cu121",
        21.5,
    )

    failed = ["model: --fp8 native needs torchao"]
    row = row_from_payload(
        "n", "id", _payload(verify={"ok": False, "fp8_mode": "native", "failed": failed})
    )
    assert row.verdict == "fail" and row.reasons == failed

    skipped = _payload(sync={"status": "skip", "reason": "no `sdenv sync`"})
    row = row_from_payload("n", "id", skipped)
    assert row.verdict == "pass" and row.sync == "skip"
    assert row.reasons == ["sync skipped: no `sdenv sync`"]  # a skip is data, not a failure

    row = row_from_payload(
        "n", "id", _payload(sync={"status": "fail", "reason": "hash mismatch"}, verify=None)
    )
    assert row.verdict == "fail" and row.reasons == ["sync: hash mismatch"]

    row = row_from_payload("n", "id", _payload(verify=None))
    assert row.reasons == ["verify did not run"]

    row = row_from_payload("n", "id", {"schema": 99})
    assert row.verdict == "fail" and "install the same sdenv on every node" in row.reasons[0]


def test_summary_passes_only_with_every_node() -> None:
    good = row_from_payload("b", "2", _payload())
    bad = row_from_payload("a", "1", _payload(verify={"ok": False, "failed": ["x"]}))
    result = summarize("h:6379", [good, bad], 3.14159)
    assert (result.ok, result.nodes, result.passed, result.failed) == (False, 2, 1, 1)
    assert [r.node for r in result.rows] == ["a", "b"] and result.seconds == 3.142
    assert summarize("h:6379", [good], 1).ok
    empty = summarize("h:6379", [], 1)
    assert not empty.ok and empty.reasons == ["no alive node in the Ray cluster"]


def test_table_names_each_node_and_its_reasons(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sdenv.cli._output import out
    from sdenv.cli.fleet import render_verify

    monkeypatch.setattr(out, "width", 160)  # wide enough that no cell folds

    good = row_from_payload("10.0.0.5", "ab" * 28, _payload())
    bad = row_from_payload("10.0.0.6", "cd" * 28, _payload(verify={"ok": False, "failed": ["x y"]}))
    render_verify(summarize("head:6379", [good, bad], 30.0))
    text = capsys.readouterr().out
    assert "NVIDIA H200 (9.0)" in text and "580.159.04" in text and "abababab" in text
    assert "10.0.0.6 cdcdcdcd: x y" in text
    assert "fleet: fail: 1/2 nodes pass in 30.0 s" in text


# --------------------------------------------------------------------------- the host's job


def test_prepare_job_ships_specs_and_locks(repo: Path) -> None:
    job = prepare_job([], envs_dir=repo / "envs", lock_dir=repo / "lockfiles", timeout=60)
    assert job.env == "sd35-fp8-cu121" and list(job.specs) == ["sd35-fp8-cu121"]
    committed = sorted(p.name for p in (repo / "lockfiles").glob("sd35-fp8-cu121-py*.txt"))
    assert committed and sorted(job.locks) == committed
    assert (
        job.locks["sd35-fp8-cu121-py3.11-linux_x86_64.txt"]
        == (repo / "lockfiles" / "sd35-fp8-cu121-py3.11-linux_x86_64.txt").read_text()
    )
    auto = prepare_job(["auto"], envs_dir=repo / "envs", lock_dir=repo / "lockfiles")
    assert sorted(auto.specs) == sorted(p.stem for p in (repo / "envs").glob("*.toml"))
    lock = repo / "lockfiles" / "sd35-fp8-cu121-py3.11-linux_x86_64.txt"
    by_lock = prepare_job([], lock=lock, sync=True)
    assert by_lock.lock_text == lock.read_text() and by_lock.env == "sd35-fp8-cu121"


@pytest.mark.parametrize(
    ("envs", "kw", "message"),
    [
        (["a", "b"], {}, "fleet verify takes one ENV (or auto), got 2: a b"),
        (["sd35-fp8-cu121"], {"no_lock": True}, "give one of ENV, --lock FILE and --no-lock"),
        ([], {"timeout": 0}, "--timeout 0: must be a positive number of seconds"),
        (
            [],
            {"venv": "rel/venv"},
            "--venv rel/venv: give an absolute path (it is a path on every node)",
        ),
        (["nope"], {}, "no env named 'nope'"),
    ],
)
def test_prepare_job_rejects_bad_input(
    repo: Path, envs: list[str], kw: dict[str, Any], message: str
) -> None:
    with pytest.raises(UsageError, match=re.escape(message)) as info:
        prepare_job(envs, envs_dir=repo / "envs", lock_dir=repo / "lockfiles", **kw)
    assert info.value.exit_code == 2


def test_prepare_job_names_the_command_for_a_missing_lock(repo: Path, tmp_path: Path) -> None:
    # Every shipped env is locked, so an empty lock dir stands for an env not locked yet.
    with pytest.raises(UsageError, match=re.escape("make one with `sdenv lock sd35-fp8-cu124`")):
        prepare_job(["sd35-fp8-cu124"], envs_dir=repo / "envs", lock_dir=tmp_path)


# --------------------------------------------------------------------------- one node, no Ray


@pytest.fixture(scope="module")
def small_venvs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real venvs: an empty one (no torch: verify fails, fast) and one whose torch import hangs."""
    root = tmp_path_factory.mktemp("node")
    wheels = root / "wheels"
    build_wheel(
        Dist("torch", "2.4.1", files={"torch/__init__.py": "import time\ntime.sleep(120)\n"}),
        wheels,
    )
    out = {}
    for name, reqs in (("empty", []), ("hung", ["torch==2.4.1"])):
        run_uv(["venv", "--quiet", "--python", sys.executable, str(root / name)])
        if reqs:
            install(
                root / name / "bin" / "python",
                ["--offline", "--no-index", "--find-links", str(wheels), *reqs],
            )
        out[name] = root / name
    return out


def test_node_task_verifies_its_venv_and_says_why_it_fails(small_venvs: dict[str, Path]) -> None:
    venv = small_venvs["empty"]
    payload = run_node(NodeJob(env=None, no_lock=True, venv=str(venv), sync=True, timeout=300))
    json.dumps(payload)  # it travels back through Ray: plain JSON types only
    assert payload["python"] == str(venv / "bin" / "python")
    assert payload["verify"]["python"] == str(venv / "bin" / "python")
    row = row_from_payload("here", "id", payload)
    assert row.verdict == "fail"
    assert "model: torch is not installed: the model check cannot run" in row.reasons
    assert row.sync == "skip"  # no sync command, or nothing to sync to with --no-lock
    assert row.fp8_hardware == "no GPU" and row.driver is None


def test_node_task_without_a_lock_for_its_python(small_venvs: dict[str, Path], repo: Path) -> None:
    job = prepare_job(["sd35-fp8-cu121"], envs_dir=repo / "envs", lock_dir=repo / "lockfiles")
    job = NodeJob(
        **{**job.__dict__, "locks": {}, "venv": str(small_venvs["empty"]), "timeout": 120.0}
    )
    payload = run_node(job)
    xy = "{}.{}".format(*sys.version_info[:2])
    assert payload["errors"] == [
        f"no lock sd35-fp8-cu121-py{xy}-linux_x86_64.txt for env sd35-fp8-cu121 on Python {xy} "
        "(linux_x86_64) on the host; make it with `sdenv lock sd35-fp8-cu121`"
    ]
    assert payload["verify"] is None


def test_node_deadline_kills_a_hung_step_and_all_below_it(small_venvs: dict[str, Path]) -> None:
    venv = small_venvs["hung"]
    t0 = time.monotonic()
    payload = run_node(NodeJob(env=None, no_lock=True, venv=str(venv), timeout=15))
    assert time.monotonic() - t0 < 30
    (error,) = payload["errors"]
    assert error.startswith("verify: `sdenv verify` timed out after 1"), error
    assert payload["verify"] is None
    time.sleep(1)
    python = str(venv / "bin" / "python").encode()
    left = [p for p in Path("/proc").glob("[0-9]*/cmdline") if python in _read(p)]
    assert left == [], "a hung process outlived the node deadline"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # the process ended meanwhile
        return b""


def test_descendants_finds_grandchildren() -> None:
    import subprocess

    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys; "
            "subprocess.run([sys.executable, '-c', 'import time; time.sleep(30)'])",
        ]
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not _descendants(proc.pid):
            time.sleep(0.1)
        assert len(_descendants(proc.pid)) == 1
    finally:
        for pid in _descendants(proc.pid):
            import os
            import signal

            os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------- Kubernetes


def _matches(term: list[Mapping[str, Any]], labels: Mapping[str, str]) -> bool:
    """Kubernetes' nodeSelectorTerm semantics for the operators rendered here."""
    for expr in term:
        value = labels.get(expr["key"])
        if value is None:
            return False
        if expr["operator"] == "In" and value not in expr["values"]:
            return False
        if expr["operator"] == "Gt" and not int(value) > int(expr["values"][0]):
            return False
        if expr["operator"] == "Lt" and not int(value) < int(expr["values"][0]):
            return False
    return True


def _schedulable(ds: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    aff = ds["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    terms = aff["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    return any(_matches(t["matchExpressions"], labels) for t in terms)


def gfd_labels(cc: str, driver: str) -> dict[str, str]:
    """What GPU Feature Discovery publishes for a GPU of ``cc`` on ``driver`` (its label names,
    the driver's dotted parts as they are, e.g. revision "04")."""
    major, minor = cc.split(".")
    labels = {GFD_CC[0]: major, GFD_CC[1]: minor}
    labels.update(zip(GFD_DRIVER, driver.split("."), strict=False))  # "570.26": no revision
    return labels


def _machines() -> dict[str, dict[str, str]]:
    out = {}
    for name, facts in recorded_machines().items():
        if facts.gpus and facts.gpus[0].cc and facts.driver.version:
            out[name] = gfd_labels(facts.gpus[0].cc, facts.driver.version)
    return out


@pytest.fixture
def manifests(repo: Path) -> list[dict[str, Any]]:
    specs = [load_spec(p) for p in sorted((repo / "envs").glob("*.toml"))]
    return render_manifests(specs, image="registry.example.com/sdenv", namespace="gpu-check")


def test_every_rendered_object_is_valid_kubernetes(manifests: list[dict[str, Any]]) -> None:
    kinds = [o["kind"] for o in manifests]
    assert kinds == [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
    ] + ["DaemonSet"] * len(list((REPO / "envs").glob("*.toml")))
    for obj in manifests:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)  # raises on any schema error
    broken = json.loads(json.dumps(manifests[-1]))
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_rbac_is_get_and_patch_nodes_only(manifests: list[dict[str, Any]]) -> None:
    (role,) = [o for o in manifests if o["kind"] == "ClusterRole"]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]}]
    (binding,) = [o for o in manifests if o["kind"] == "ClusterRoleBinding"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "sdenv-fleet", "namespace": "gpu-check"}
    ]
    for ds in (o for o in manifests if o["kind"] == "DaemonSet"):
        pod = ds["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == "sdenv-fleet"
        assert "nvidia.com/gpu" not in json.dumps(pod["containers"][0]["resources"])


def test_images_and_labeler(manifests: list[dict[str, Any]]) -> None:
    daemonsets = {o["metadata"]["name"]: o for o in manifests if o["kind"] == "DaemonSet"}
    c = daemonsets["sdenv-verify-sd35-fp8-cu121"]["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "registry.example.com/sdenv/sd35-fp8-cu121:py3.10"
    assert c["args"] == ["--env", "sd35-fp8-cu121"]
    (cm,) = [o for o in manifests if o["kind"] == "ConfigMap"]
    assert cm["data"]["labeler.py"] == Path(labeler.__file__).read_text()


def _expected(spec: Any, cc: str, driver: str) -> bool:
    """The placement rule written as plain tuple comparisons: the oracle for the label terms."""
    ccs = {tuple(map(int, c.split("."))) for c in spec.compute_capabilities}
    have = tuple(map(int, cc.split(".")))
    if spec.fp8 == "native":
        ccs = {c for c in ccs if c >= (8, 9)}
    floor = tuple(map(int, DRIVER_FLOORS[spec.cuda_version].split(".")))
    return have in ccs and tuple(map(int, driver.split("."))) >= floor


def test_placement_on_recorded_machines(manifests: list[dict[str, Any]]) -> None:
    ds = {
        o["metadata"]["name"].removeprefix("sdenv-verify-"): o
        for o in manifests
        if o["kind"] == "DaemonSet"
    }
    specs = {p.stem: load_spec(p) for p in (REPO / "envs").glob("*.toml")}
    placed: dict[str, list[str]] = {}
    for name, facts in recorded_machines().items():
        if not (facts.gpus and facts.gpus[0].cc and facts.driver.version):
            continue
        cc, driver = facts.gpus[0].cc, facts.driver.version
        labels = gfd_labels(cc, driver)
        placed[name] = sorted(e for e, d in ds.items() if _schedulable(d, labels))
        assert placed[name] == sorted(e for e in ds if _expected(specs[e], cc, driver)), name
    # A100 (8.0, 535.183.01): only the emulated-FP8 cu121 env (the native ones need cc >= 8.9).
    assert placed["a100"] == ["sd35-fp8-cu121"]
    assert placed["t4"] == []  # 7.5: no env lists it
    assert "sd35-fp8-cu121" not in placed["rtx5090-cu121"]  # 12.0: no cu121 kernels


@pytest.mark.parametrize(
    ("driver", "ok"),
    [
        ("530.30.02", True),
        ("530.30.01", False),
        ("530.29.99", False),
        ("530.41.03", True),
        ("531.0.0", True),
        ("529.99.99", False),
        ("530.030.002", True),
    ],
)
def test_driver_floor_terms_compare_as_versions(driver: str, ok: bool) -> None:
    floor = tuple(int(p) for p in DRIVER_FLOORS[(12, 1)].split("."))
    terms = version_at_least(GFD_DRIVER, floor)
    labels = dict(zip(GFD_DRIVER, driver.split("."), strict=False))  # "570.26": no revision
    assert any(_matches(t, labels) for t in terms) is ok


def test_native_fp8_env_lands_only_on_fp8_tensor_cores(repo: Path, tmp_path: Path) -> None:
    text = (repo / "envs" / "sd35-fp8-cu128.toml").read_text()
    native = tmp_path / "sd35-native.toml"
    native.write_text(
        text.replace('name = "sd35-fp8-cu128"', 'name = "sd35-native"').replace(
            'fp8 = "auto"', 'fp8 = "native"'
        )
    )
    (ds,) = [
        o for o in render_manifests([load_spec(native)], image="r") if o["kind"] == "DaemonSet"
    ]
    machines = _machines()
    assert _schedulable(ds, machines["h200"])
    assert _schedulable(ds, gfd_labels("8.9", "570.26"))  # Ada on a driver that fits CUDA 12.8
    assert not _schedulable(ds, machines["rtx4090"])  # Ada, but driver 560.35.03 < 570.26
    assert not _schedulable(ds, gfd_labels("8.0", "580.65.06"))  # an A100 on a new driver
    assert not _schedulable(ds, gfd_labels("8.6", "580.65.06"))


def test_k8s_cli_writes_atomically_and_rejects_bad_input(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "fleet.json"
    args = [
        "fleet",
        "k8s",
        "sd35-fp8-cu128",
        "--image",
        "reg/sdenv",
        "--envs-dir",
        str(repo / "envs"),
    ]
    assert main([*args, "-o", str(out), "--python", "3.12"]) == 0
    items = json.loads(out.read_text())["items"]
    assert (
        items[-1]["spec"]["template"]["spec"]["containers"][0]["image"]
        == "reg/sdenv/sd35-fp8-cu128:py3.12"
    )
    assert capsys.readouterr().err.startswith("wrote 6 objects to ")
    assert main([*args, "-o", str(tmp_path / "x.json"), "--python", "3.9"]) == 2
    assert capsys.readouterr().err.strip() == (
        "sdenv: error: --python 3.9: env sd35-fp8-cu128 is built for 3.10, 3.11, 3.12"
    )
    assert not (tmp_path / "x.json").exists()


# --------------------------------------------------------------------------- node labels


def test_node_labels() -> None:
    ok = {"ok": True, "fp8_mode": "native", "failed": []}
    bad = {"ok": False, "fp8_mode": "native", "failed": ["model: --fp8 native needs torchao"]}
    env = "sd35-fp8-cu121"
    assert labeler.node_labels({}, env, ok) == {
        "sdenv.io/env": env,
        "sdenv.io/verify": "pass",
        "sdenv.io/fp8": "native",
    }
    # A failure is published (FP8 "none": not proven), also over this env's own earlier pass.
    mine = {"sdenv.io/env": env, "sdenv.io/verify": "pass"}
    assert labeler.node_labels(mine, env, bad)["sdenv.io/verify"] == "fail"
    assert labeler.node_labels({}, env, bad)["sdenv.io/fp8"] == "none"
    assert labeler.node_labels({}, env, None)["sdenv.io/verify"] == "fail"
    # ... but never over another env that passed on this node.
    other = {"sdenv.io/env": "sd35-fp8-cu128", "sdenv.io/verify": "pass"}
    assert labeler.node_labels(other, env, bad) == {}
    assert labeler.node_labels(other, env, ok)["sdenv.io/env"] == env
    assert labeler.label_value("-weird name/" + "x" * 80 + "-") == ("weird-name-" + "x" * 80)[:63]
    assert labeler.label_value(None) == "unknown"


class _FakeApiServer(BaseHTTPRequestHandler):
    """The two calls the labeler makes, recorded: a stand-in for the API server, which cannot
    run here (no cluster)."""

    calls: list[tuple[str, str, str | None, bytes]]
    labels: dict[str, str]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _reply(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.calls.append(("GET", self.path, self.headers.get("Authorization"), b""))
        self._reply({"metadata": {"name": "gpu-1", "labels": self.labels}})

    def do_PATCH(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.calls.append(("PATCH", self.path, self.headers.get("Content-Type"), body))
        self._reply({})


@pytest.fixture
def api_server() -> Iterator[tuple[str, type[_FakeApiServer]]]:
    handler = type("H", (_FakeApiServer,), {"calls": [], "labels": {"kubernetes.io/os": "linux"}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_labeler_verifies_then_patches_its_node(
    api_server: tuple[str, type[_FakeApiServer]],
    small_venvs: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, handler = api_server
    monkeypatch.setenv("NODE_NAME", "gpu-1")
    py = small_venvs["empty"] / "bin" / "python"
    code = labeler.main(
        [
            "--env",
            "sd35-fp8-cu121",
            "--once",
            "--api",
            url,
            "--token",
            "t0k",
            "--",
            "--python",
            str(py),
            "--no-lock",
        ]
    )
    assert code == 0
    (get, patch) = handler.calls
    assert get == ("GET", "/api/v1/nodes/gpu-1", "Bearer t0k", b"")
    assert patch[:3] == ("PATCH", "/api/v1/nodes/gpu-1", "application/merge-patch+json")
    meta = json.loads(patch[3])["metadata"]
    assert meta["labels"] == {
        "sdenv.io/env": "sd35-fp8-cu121",
        "sdenv.io/verify": "fail",
        "sdenv.io/fp8": "none",
    }
    record = json.loads(meta["annotations"]["sdenv.io/verify-result"])
    assert record["verdict"] == "fail"
    assert "model: torch is not installed: the model check cannot run" in record["failed"]
    assert json.loads(capsys.readouterr().out)["labels"] == meta["labels"]

    monkeypatch.delenv("NODE_NAME")
    assert labeler.main(["--env", "x", "--once", "--api", url]) == 2
