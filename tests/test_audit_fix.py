"""`sdenv audit --fix` end to end: a real lock of the default env (PyPI), a real local OSV server,
and the lock engine's dry-run re-lock deciding which bumps fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from osv_server import OsvServer, advisory
from sdenv.cli import main
from sdenv.lockfile import read_lockfile


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
    assert len(paths) == 2  # py3.10 and py3.11
    torch = read_lockfile(paths[1]).versions()["torch"]
    # Pretend the locks are older: urllib3 2.6.0 (only the version matters to audit and re-lock).
    for path in paths:
        old = read_lockfile(path).versions()["urllib3"]
        path.write_text(path.read_text().replace(f"urllib3=={old} ", "urllib3==2.6.0 "))
    capsys.readouterr()

    adv = tmp_path / "adv"
    adv.mkdir()
    for rec in (
        advisory("PYSEC-T", "torch", ranges=[("0", "2.6.0")]),  # cu121 torch exists only <2.5
        advisory("GHSA-A", "urllib3", ranges=[("0", "2.6.2")]),
        advisory("GHSA-B", "urllib3", ranges=[("2.6.2", "2.6.3")]),  # so 2.6.2 is not enough
    ):
        (adv / f"{rec['id']}.json").write_text(json.dumps(rec))
    with OsvServer(adv) as osv:
        code = main(["audit", *lock_args, "--osv-url", osv.url, "--fix", "--json"])
    assert code == 1
    data = json.loads(capsys.readouterr().out)
    fixes = {f["package"]: f for f in data["report"]["fixes"]}
    assert fixes["torch"]["version"] == torch and fixes["torch"]["proposed"] == "2.6.0"
    assert fixes["urllib3"]["proposed"] == "2.6.3"
    checks = {c["package"]: c for c in data["fix_plan"]["checks"]}
    assert checks["torch"]["spec_status"] == "ok"  # torch>=2.4 allows 2.6.0 ...
    assert checks["torch"]["lock_status"] == "fail"  # ... but the cu121 rules do not
    assert checks["urllib3"]["lock_status"] == "ok"
    (plan,) = data["fix_plan"]["sets"]
    assert plan["command"] == "sdenv lock sd35-fp8-cu121 --upgrade-package urllib3==2.6.3"
    # A dry run: the locks are untouched.
    assert all(read_lockfile(p).versions()["urllib3"] == "2.6.0" for p in paths)
