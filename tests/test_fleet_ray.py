"""`sdenv fleet verify` on a real local Ray cluster (head + workers, `ray start --block` each).

Every node serves its own env, named by ``SDENV_FLEET_VENV`` where its `ray start` runs, as a
deployment box would: the runtime env `make install` syncs from the default lock under .envs/
(real torch on CPU, real diffusers: verify passes), the same
with diffusers swapped for an old build (verify fails and says why), a venv whose torch import
hangs (the node's deadline ends it), and a node killed mid-run (Ray reports it; the command ends).
Marked ``ray`` and ``slow``: each cluster takes a minute to boot on a 2-core box and the real
verify a minute or two; CI runs them through `make test-online`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pypi_index import Dist, build_wheel, diffusers_dist
from ray_cluster import SRC, Cluster, Node, local_cluster, marked_pids
from sdenv.fleet.node import VENV_VAR
from sdenv.fleet.ray_fanout import GRACE_S
from sdenv.venv import install, run_uv

pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(1500)]

HANG_S = 240  # bounded, so even a leak ends by itself
NODE_TIMEOUT_S = 90
REPO = Path(SRC).parent
# The runtime env of `make install` (the default lock for this Python, synced under .envs/): the
# dev venv holds no torch.
RUNTIME = next(
    iter(sorted(REPO.glob(f".envs/{os.environ.get('RUNTIME_ENV', 'sd35-fp8-cu121')}-py"
                          f"{sys.version_info[0]}.{sys.version_info[1]}-*/bin/python"))),
    None,
)  # fmt: skip
if RUNTIME is None:
    pytest.skip("no runtime env under .envs/ (make install syncs it)", allow_module_level=True)


def _purelib(python: Path) -> str:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def _overlay_venv(dest: Path, wheels: Path, *reqs: str) -> Path:
    """A venv that sees the runtime env's packages (torch, diffusers...) below its own: what it
    installs itself shadows them, like a package swapped in a deployed env."""
    assert RUNTIME is not None
    run_uv(["venv", "--quiet", "--python", str(RUNTIME), str(dest)])
    site = next((dest / "lib").glob("python3*/site-packages"))
    (site / "_runtime_env.pth").write_text(_purelib(RUNTIME) + "\n")
    py = dest / "bin" / "python"
    if reqs:
        install(py, ["--offline", "--no-index", "--find-links", str(wheels), "--no-deps", *reqs])
    return dest


@pytest.fixture(scope="module")
def venvs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fleet")
    wheels = root / "wheels"
    build_wheel(diffusers_dist("0.33.1"), wheels)
    # A torch whose import blocks, like one on a dead network mount.
    build_wheel(
        Dist("torch", "2.4.1", files={"torch/__init__.py": f"import time\ntime.sleep({HANG_S})\n"}),
        wheels,
    )
    return {
        "swapped": _overlay_venv(root / "swapped", wheels, "diffusers==0.33.1"),
        "hung": _overlay_venv(root / "hung", wheels, "torch==2.4.1"),
    }


def fleet(cluster: Cluster, *args: str, timeout: float = 900) -> tuple[int, dict[str, Any], float]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
    t0 = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sdenv",
            "fleet",
            "verify",
            "--ray",
            cluster.address,
            "--json",
            *list(args),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    took = time.monotonic() - t0
    assert proc.stdout, proc.stderr[-2000:]
    return proc.returncode, json.loads(proc.stdout), took


def by_node(cluster: Cluster, result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    names = {n.node_id: n.name for n in cluster.nodes}
    return {names[r["node_id"]]: r for r in result["rows"]}


def test_every_node_reports_and_a_swapped_env_fails_with_its_reason(
    venvs: dict[str, Path],
) -> None:
    runtime = {VENV_VAR: str(Path(str(RUNTIME)).parent.parent)}
    nodes = [Node("a", runtime), Node("b", runtime), Node("c", {VENV_VAR: str(venvs["swapped"])})]
    with local_cluster(nodes) as cluster:
        code, result, took = fleet(cluster, "--no-lock", "--sync", "--timeout", "600")
        rows = by_node(cluster, result)
        assert sorted(rows) == ["a", "b", "c"]  # one row per alive node, each from its node
        for name in ("a", "b"):
            row = rows[name]
            assert row["verdict"] == "pass", row["reasons"]
            assert row["verify"]["python"] == str(RUNTIME)
            assert row["fp8_hardware"] == "no GPU" and row["fp8_stack"] == "off"
            assert row["verify"]["model_mode"] == "emulated"  # the tiny model ran on CPU
        bad = rows["c"]
        assert bad["verdict"] == "fail"
        assert bad["verify"]["python"] == str(venvs["swapped"] / "bin" / "python")
        assert any("diffusers" in r for r in bad["reasons"]), bad["reasons"]
        assert code == 1 and not result["ok"] and (result["passed"], result["failed"]) == (2, 1)
        assert took < 600
        # --sync: `sdenv sync` is another branch's command; without it the row says so (a skip),
        # and --no-lock leaves nothing to sync to in any case.
        assert {r["sync"] for r in rows.values()} == {"skip"}


def test_a_hung_node_times_out_and_a_killed_node_fails_and_the_command_ends(
    venvs: dict[str, Path],
) -> None:
    hung = {VENV_VAR: str(venvs["hung"])}
    # c (killed) before b: the last node started hosts the driver's raylet (Cluster.kill).
    nodes = [Node("a", {VENV_VAR: str(venvs["swapped"])}), Node("c", hung), Node("b", hung)]
    with local_cluster(nodes) as cluster:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
        args = ["fleet", "verify", "--ray", cluster.address, "--json", "--no-lock"]
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "sdenv", *args, "--timeout", str(NODE_TIMEOUT_S)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        # Kill node c once its verify is stuck in the hung torch import (its probe started).
        hung_python = str(venvs["hung"] / "bin" / "python")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not _running(cluster.node("c").marker, hung_python):
            time.sleep(0.5)
        assert _running(cluster.node("c").marker, hung_python), "node c never started its verify"
        cluster.kill("c")
        killed_at = time.monotonic() - t0
        out, err = proc.communicate(timeout=400)
        took = time.monotonic() - t0
        assert out, err[-3000:]
        result = json.loads(out)
        rows = by_node(cluster, result)
        assert sorted(rows) == ["a", "b", "c"], err[-2000:]
        assert proc.returncode == 1 and result["failed"] == 3
        assert any("died" in r for r in rows["c"]["reasons"]), rows["c"]
        assert rows["c"]["seconds"] < NODE_TIMEOUT_S  # reported as dead, not waited out
        # Timed out on the node (its step killed at its deadline), or on the host when the Ray
        # worker itself took long to start on the loaded box: either way a failed row, in time.
        why = {name: row["reasons"] for name, row in rows.items()}
        assert any(
            "timed out after" in r or "no answer within" in r for r in rows["b"]["reasons"]
        ), why
        assert rows["a"]["verify"] is not None, why  # the healthy node's answer is still there
        assert took < NODE_TIMEOUT_S + GRACE_S + 60, (killed_at, took)  # timeout + grace + slack
        # The hung node's step was killed with everything below it: nothing of it runs on.
        time.sleep(2)
        assert not _running(cluster.node("b").marker, hung_python)


def _running(marker: str, needle: str) -> bool:
    for pid in marked_pids(marker):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if needle in cmd:
            return True
    return False
