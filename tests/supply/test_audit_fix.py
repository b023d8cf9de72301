"""`sdenv audit --fix` end to end: real locks (a local test index, or PyPI), a real local OSV
server, and the lock engine's dry-run re-lock deciding which bumps fit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpers.specs import STACK_REQS, write_spec
from osv_server import OsvServer, advisory
from sdenv.cli import main
from sdenv.lock.lockfile import read_lockfile


def write_demo_spec(dest: Path, url: str, diffusers: str) -> Path:
    """The test stack's env (test_lock's writer) with ``diffusers`` as given."""
    return write_spec(dest, url, {**STACK_REQS, "diffusers": diffusers})


def publish(adv: Path, *records: dict[str, Any]) -> None:
    adv.mkdir(exist_ok=True)
    for rec in records:
        (adv / f"{rec['id']}.json").write_text(json.dumps(rec))


def test_fix_on_a_local_index(
    index: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SDENV_CACHE_DIR", str(tmp_path / "sdenv-cache"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    locks = tmp_path / "locks"
    spec = write_demo_spec(tmp_path, index, "<0.35")
    assert main(["lock", str(spec), "--lock-dir", str(locks), "--no-verify"]) == 0
    (path,) = locks.glob("*.txt")
    assert read_lockfile(path).versions()["diffusers"] == "0.34.0"
    write_demo_spec(
        tmp_path, index, ">=0.31"
    )  # the spec allows newer now; the lock still pins 0.34.0
    publish(
        tmp_path / "adv",
        advisory("PYSEC-T", "torch", ranges=[("0", "2.6.0")]),  # the spec keeps torch < 2.5
        # 0.0.35 resolves with torch 2.4.1 but its _C.so was built for 2.6.0+cu124.
        advisory("GHSA-XF", "xformers", ranges=[("0", "0.0.35")]),
        advisory("GHSA-D1", "diffusers", ranges=[("0", "0.35.0")]),
        advisory("GHSA-D2", "diffusers", ranges=[("0.35.0", "0.35.2")]),  # 0.35.0 is no fix
        advisory("GHSA-X", "transformers", ranges=[("0", None)]),  # no fix known
    )
    capsys.readouterr()
    args = ["audit", str(spec), "--lock-dir", str(locks), "--fix"]
    with OsvServer(tmp_path / "adv") as osv:
        assert main([*args, "--osv-url", osv.url, "--json"]) == 1
        data = json.loads(capsys.readouterr().out)
        assert main([*args, "--osv-url", osv.url]) == 1
        table = " ".join(capsys.readouterr().out.split())
    fixes = {f["package"]: f for f in data["report"]["fixes"]}
    assert (fixes["torch"]["proposed"], fixes["diffusers"]["proposed"]) == ("2.6.0", "0.35.2")
    assert fixes["transformers"]["proposed"] is None
    checks = {c["package"]: c for c in data["fix_plan"]["checks"]}
    assert (checks["torch"]["spec_status"], checks["torch"]["lock_status"]) == ("fail", "skip")
    assert "torch<2.5,>=2.4 excludes 2.6.0" in checks["torch"]["spec_note"]
    assert (checks["xformers"]["spec_status"], checks["xformers"]["lock_status"]) == ("ok", "fail")
    assert (checks["diffusers"]["spec_status"], checks["diffusers"]["lock_status"]) == ("ok", "ok")
    assert "diffusers 0.34.0->0.35.2" in checks["diffusers"]["lock_note"]
    (plan,) = data["fix_plan"]["sets"]
    assert plan["command"] == "sdenv lock demo --upgrade-package diffusers==0.35.2"
    assert "apply with: sdenv lock demo --upgrade-package diffusers==0.35.2" in table
    assert read_lockfile(path).versions()["diffusers"] == "0.34.0"  # a dry run: lock untouched


@pytest.mark.online
@pytest.mark.slow
def test_fix_relocks_and_rejects_a_bump_the_cuda_variant_forbids(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    envs, locks = repo / "envs", tmp_path / "locks"
    lock_args = ["sd35-fp8-cu121", "--envs-dir", str(envs), "--lock-dir", str(locks)]
    assert main(["lock", *lock_args, "--no-verify"]) == 0
    paths = sorted(locks.glob("*.txt"))
    assert len(paths) == 3  # py3.10, py3.11 and py3.12
    torch = read_lockfile(paths[1]).versions()["torch"]
    # Pretend the locks are older: urllib3 2.6.0 (only the version matters to audit and re-lock).
    for path in paths:
        old = read_lockfile(path).versions()["urllib3"]
        path.write_text(path.read_text().replace(f"urllib3=={old} ", "urllib3==2.6.0 "))
    capsys.readouterr()

    adv = tmp_path / "adv"
    publish(
        adv,
        advisory("PYSEC-T", "torch", ranges=[("0", "2.6.0")]),  # cu121 torch exists only <2.5
        advisory("GHSA-A", "urllib3", ranges=[("0", "2.6.2")]),
        advisory("GHSA-B", "urllib3", ranges=[("2.6.2", "2.6.3")]),  # so 2.6.2 is not enough
    )
    with OsvServer(adv) as osv:
        code = main(["audit", *lock_args, "--osv-url", osv.url, "--fix", "--json"])
    assert code == 1
    data = json.loads(capsys.readouterr().out)
    fixes = {f["package"]: f for f in data["report"]["fixes"]}
    # The cu121 line is torch 2.4.x: no fixed torch fits it, so none is proposed, and why is said.
    assert fixes["torch"]["version"] == torch and fixes["torch"]["proposed"] is None
    assert "no fixed release fits sd35-fp8-cu121: fixed in torch 2.6.0" in json.dumps(data)
    assert fixes["urllib3"]["proposed"] == "2.6.3"
    checks = {c["package"]: c for c in data["fix_plan"]["checks"]}
    assert checks["torch"]["proposed"] is None  # listed, with nothing to re-lock
    assert checks["urllib3"]["lock_status"] == "ok"
    (plan,) = data["fix_plan"]["sets"]
    assert plan["command"] == "sdenv lock sd35-fp8-cu121 --upgrade-package urllib3==2.6.3"
    # A dry run: the locks are untouched.
    assert all(read_lockfile(p).versions()["urllib3"] == "2.6.0" for p in paths)
