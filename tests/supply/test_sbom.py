"""`sdenv sbom`: CycloneDX per lock target, schema-valid and byte-for-byte reproducible."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from sdenv.cli import main
from sdenv.lock.lockfile import LockfileError, Pin, make_lockfile, render_lockfile
from sdenv.supply.sbom import render_sbom, sbom_path, write_sbom


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_lock(path: Path, extra: dict[str, str] | None = None) -> Path:
    pins = [
        Pin("torch", "2.4.1+cu121", (sha(b"torch-whl-a"), sha(b"torch-whl-b"))),
        Pin("Pillow", "10.0.0", (sha(b"pillow-whl"),)),
    ]
    pins += [Pin(n, v, (sha(f"{n}{v}".encode()),)) for n, v in (extra or {}).items()]
    lock = make_lockfile([("env", "sd35-test"), ("python", "3.11")], pins)
    path.write_text(render_lockfile(lock), encoding="utf-8")
    return path


def test_components_purls_and_hashes(tmp_path: Path) -> None:
    lock = write_lock(tmp_path / "sd35-test-py3.11-linux_x86_64.txt")
    out = write_sbom(lock, tmp_path / "out" / "x.cdx.json")
    text = out.read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    bom = json.loads(text)
    comps = {c["name"]: c for c in bom["components"]}
    assert comps["torch"]["purl"] == "pkg:pypi/torch@2.4.1%2Bcu121"
    assert comps["torch"]["version"] == "2.4.1+cu121"
    assert comps["pillow"]["purl"] == "pkg:pypi/pillow@10.0.0"  # canonical name, as purl wants
    assert sorted(h["content"] for h in comps["torch"]["hashes"]) == sorted(
        hashlib.sha256(b).hexdigest() for b in (b"torch-whl-a", b"torch-whl-b")
    )
    root = bom["metadata"]["component"]
    assert root["name"] == "sd35-test-py3.11-linux_x86_64"
    props = {p["name"]: p["value"] for p in root["properties"]}
    assert props["sdenv:lock:python"] == "3.11"
    assert props["sdenv:lock:sha256"] == hashlib.sha256(lock.read_bytes()).hexdigest()
    (dep,) = [d for d in bom["dependencies"] if d["ref"] == root["bom-ref"]]
    assert sorted(dep["dependsOn"]) == sorted(c["bom-ref"] for c in bom["components"])


def test_deterministic_and_content_addressed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    lock = write_lock(tmp_path / "a.txt")
    first = write_sbom(lock, tmp_path / "1.json").read_bytes()
    second = write_sbom(lock, tmp_path / "2.json").read_bytes()
    assert first == second
    assert "timestamp" not in json.loads(first)["metadata"]
    other = write_sbom(write_lock(tmp_path / "a.txt", {"six": "1.16.0"}), tmp_path / "3.json")
    assert json.loads(other.read_text())["serialNumber"] != json.loads(first)["serialNumber"]


def test_timestamp_only_when_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lock = write_lock(tmp_path / "a.txt")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    stamped = json.loads(write_sbom(lock, tmp_path / "e.json").read_text())
    assert stamped["metadata"]["timestamp"].startswith("2023-11-14T22:13:20")
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    given = json.loads(write_sbom(lock, tmp_path / "g.json", timestamp=when).read_text())
    assert given["metadata"]["timestamp"].startswith("2026-01-02T03:04:05")


def test_bad_lock_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("torch>=2\n")
    out = tmp_path / "out" / "bad.cdx.json"
    with pytest.raises(LockfileError, match="not an exact pin"):
        write_sbom(bad, out)
    assert not out.exists()
    with pytest.raises(LockfileError, match="no such lockfile"):
        write_sbom(tmp_path / "missing.txt", out)


def test_render_matches_write(tmp_path: Path) -> None:
    from sdenv.lock.lockfile import read_lockfile

    lock = write_lock(tmp_path / "a.txt")
    # The lock is canonical (rendered by sdenv), so its bytes and its rendering agree.
    assert render_sbom(read_lockfile(lock)) == write_sbom(lock, tmp_path / "o.json").read_text()


def test_cli_per_target(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locks = tmp_path / "locks"
    locks.mkdir()
    for py in ("3.10", "3.11", "3.12"):
        write_lock(locks / f"sd35-fp8-cu121-py{py}-linux_x86_64.txt")
    out = tmp_path / "sbom"
    args = ["sbom", "--lock-dir", str(locks), "--envs-dir", str(repo / "envs"), "--out", str(out)]
    assert main([*args, "--json"]) == 0
    written = json.loads(capsys.readouterr().out)
    assert [Path(w["sbom"]).name for w in written] == [
        "sd35-fp8-cu121-py3.10-linux_x86_64.cdx.json",
        "sd35-fp8-cu121-py3.11-linux_x86_64.cdx.json",
        "sd35-fp8-cu121-py3.12-linux_x86_64.cdx.json",
    ]
    assert sbom_path(out, Path(written[0]["lock"])).is_file()


def test_cli_missing_env_lock(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["sbom", "sd35-fp8-cu124", "--lock-dir", str(tmp_path), "--envs-dir", str(repo / "envs")]
    )
    assert code == 2
    assert "create it with `sdenv lock sd35-fp8-cu124`" in capsys.readouterr().err
