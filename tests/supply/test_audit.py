"""`sdenv audit` against a real OSV-compatible HTTP server on 127.0.0.1 (tests/osv_server.py):
findings, ignores applied, unaudited packages, unreachable services, --fix proposals, the CLI."""

from __future__ import annotations

import datetime as dt
import json
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from osv_server import OsvServer, advisory
from sdenv import supply as audit
from sdenv.cli import main
from sdenv.errors import UsageError

if TYPE_CHECKING:
    from conftest import LockWriter

TODAY = dt.date(2026, 11, 21)


def publish(osv: OsvServer, record: dict[str, Any]) -> None:
    (osv.advisory_dir / f"{record['id']}.json").write_text(json.dumps(record), encoding="utf-8")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def write_ignores(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


def test_found(osv: OsvServer, tmp_path: Path, make_lock: LockWriter) -> None:
    publish(
        osv,
        advisory("PYSEC-2026-1", "pillow", ranges=[("0", "10.3.0")], aliases=["CVE-2026-0001"]),
    )
    lock = make_lock(tmp_path / "a.txt", {"pillow": "10.0.0", "requests": "2.32.3"})
    report = audit.audit_locks([lock], osv_url=osv.query_url)
    assert report.status == "vulnerable" and report.exit_code == 1
    (f,) = report.findings
    assert (f.package, f.version, f.id, f.aliases) == (
        "pillow",
        "10.0.0",
        "PYSEC-2026-1",
        ("CVE-2026-0001",),
    )
    assert f.fix_versions == ("10.3.0",)
    assert f.locks == ("a",)
    assert sorted(osv.queries) == [("pillow", "10.0.0"), ("requests", "2.32.3")]


def test_clean(osv: OsvServer, tmp_path: Path, make_lock: LockWriter) -> None:
    publish(osv, advisory("PYSEC-2026-1", "pillow", ranges=[("0", "10.3.0")]))
    lock = make_lock(tmp_path / "a.txt", {"pillow": "10.3.0", "requests": "2.32.3"})
    report = audit.audit_locks([lock], osv_url=osv.query_url)
    assert (report.status, report.exit_code, report.findings, report.unaudited) == (
        "pass",
        0,
        (),
        (),
    )
    assert report.packages == 2


def test_shared_pin_is_queried_once_and_names_every_lock(
    osv: OsvServer, tmp_path: Path, make_lock: LockWriter
) -> None:
    publish(osv, advisory("GHSA-aaaa-bbbb-cccc", "protobuf", ranges=[("0", "4.25.8")]))
    a = make_lock(tmp_path / "env-py3.10.txt", {"protobuf": "4.25.3"})
    b = make_lock(tmp_path / "env-py3.11.txt", {"protobuf": "4.25.3", "six": "1.16.0"})
    report = audit.audit_locks([a, b], osv_url=osv.query_url)
    assert report.findings[0].locks == ("env-py3.10", "env-py3.11")
    assert osv.queries.count(("protobuf", "4.25.3")) == 1


def test_local_version_is_audited_as_its_public_version(
    osv: OsvServer, tmp_path: Path, make_lock: LockWriter
) -> None:
    # The record lists the exact release only: asking for "2.4.1+cu121" would not match it.
    publish(osv, advisory("PYSEC-2026-7", "torch", versions=["2.4.1"]))
    lock = make_lock(tmp_path / "a.txt", {"torch": "2.4.1+cu121"})
    report = audit.audit_locks([lock], osv_url=osv.query_url)
    (f,) = report.findings
    assert (f.version, f.audited_version, f.id) == ("2.4.1+cu121", "2.4.1", "PYSEC-2026-7")
    assert osv.queries == [("torch", "2.4.1")]


def test_alias_records_are_one_finding(
    osv: OsvServer, tmp_path: Path, make_lock: LockWriter
) -> None:
    # OSV serves the PYSEC and the GHSA record of one hole; they alias each other.
    publish(osv, advisory("PYSEC-2026-2", "jinja2", ranges=[("0", "3.1.5")], aliases=["GHSA-x"]))
    publish(osv, advisory("GHSA-x", "jinja2", ranges=[("0", "3.1.5")], aliases=["PYSEC-2026-2"]))
    lock = make_lock(tmp_path / "a.txt", {"jinja2": "3.1.4"})
    report = audit.audit_locks([lock], osv_url=osv.query_url)
    assert [(f.id, f.aliases) for f in report.findings] == [("PYSEC-2026-2", ("GHSA-x",))]


def test_ignored_by_alias_until_expiry(
    osv: OsvServer, tmp_path: Path, make_lock: LockWriter
) -> None:
    publish(osv, advisory("PYSEC-2026-1", "pillow", ranges=[("0", "10.3.0")], aliases=["CVE-1"]))
    lock = make_lock(tmp_path / "a.txt", {"pillow": "10.0.0"})
    ignore = write_ignores(
        tmp_path / "ignore.toml",
        '[[ignore]]\nid = "CVE-1"\nreason = "no untrusted images"\nexpires = 2026-11-21\n',
    )
    ignores = audit.load_ignore_file(ignore, today=TODAY)
    report = audit.audit_locks([lock], osv_url=osv.query_url, ignores=ignores)
    assert (report.status, report.exit_code) == ("pass", 0)
    (f,) = report.findings
    assert f.ignored is not None and f.ignored.reason == "no untrusted images"
    assert report.expired_ignores == ()


def test_expired_ignore_does_not_apply_and_is_reported(
    osv: OsvServer, tmp_path: Path, make_lock: LockWriter
) -> None:
    publish(osv, advisory("PYSEC-2026-1", "pillow", ranges=[("0", "10.3.0")]))
    lock = make_lock(tmp_path / "a.txt", {"pillow": "10.0.0"})
    ignore = write_ignores(
        tmp_path / "ignore.toml",
        '[[ignore]]\nid = "PYSEC-2026-1"\nreason = "r"\nexpires = "2026-11-20"\n',
    )
    ignores = audit.load_ignore_file(ignore, today=TODAY)
    report = audit.audit_locks([lock], osv_url=osv.query_url, ignores=ignores)
    assert (report.status, report.exit_code) == ("vulnerable", 1)
    assert report.findings[0].ignored is None
    assert [r.id for r in report.expired_ignores] == ["PYSEC-2026-1"]


def test_ignore_scoped_to_another_package_does_not_apply(
    osv: OsvServer, tmp_path: Path, make_lock: LockWriter
) -> None:
    publish(osv, advisory("PYSEC-2026-1", "pillow", ranges=[("0", "10.3.0")]))
    lock = make_lock(tmp_path / "a.txt", {"pillow": "10.0.0"})
    ignore = write_ignores(
        tmp_path / "ignore.toml",
        '[[ignore]]\nid = "PYSEC-2026-1"\npackage = "torch"\nreason = "r"\nexpires = 2099-01-01\n',
    )
    report = audit.audit_locks(
        [lock], osv_url=osv.query_url, ignores=audit.load_ignore_file(ignore, today=TODAY)
    )
    assert report.status == "vulnerable"


def test_unanswered_package_is_unaudited_not_clean(
    osv: OsvServer, tmp_path: Path, make_lock: LockWriter
) -> None:
    osv.fail["mystery-pkg"] = 500
    lock = make_lock(tmp_path / "a.txt", {"mystery-pkg": "1.0", "requests": "2.32.3"})
    report = audit.audit_locks([lock], osv_url=osv.query_url)
    assert (report.status, report.exit_code, report.findings) == ("incomplete", 3, ())
    (u,) = report.unaudited
    assert (u.package, u.version, u.locks) == ("mystery-pkg", "1.0", ("a",))
    assert "HTTP 500" in u.reason


def test_unreachable_service_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_lock: LockWriter
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    lock = make_lock(tmp_path / "a.txt", {"requests": "2.32.3"})
    url = f"http://127.0.0.1:{free_port()}/v1/query"
    with pytest.raises(audit.AuditServiceError, match="cannot reach the osv vulnerability service"):
        audit.audit_locks([lock], osv_url=url, timeout=5)


def test_service_that_answers_nothing_is_an_error(
    osv: OsvServer, tmp_path: Path, make_lock: LockWriter
) -> None:
    lock = make_lock(tmp_path / "a.txt", {"requests": "2.32.3", "six": "1.16.0"})
    # A wrong endpoint on a live server: 404 for every package.
    with pytest.raises(audit.AuditServiceError, match="answered none of 2 packages.*HTTP 404"):
        audit.audit_locks([lock], osv_url=f"{osv.url}/v2/query")


def test_base_url_of_a_mirror_is_accepted(
    osv: OsvServer, tmp_path: Path, make_lock: LockWriter
) -> None:
    publish(osv, advisory("PYSEC-2026-1", "pillow", ranges=[("0", "10.3.0")]))
    lock = make_lock(tmp_path / "a.txt", {"pillow": "10.0.0"})
    assert audit.audit_locks([lock], osv_url=osv.url).status == "vulnerable"
    with pytest.raises(UsageError, match="not an http"):
        audit.audit_locks([lock], osv_url="ftp://x")


def test_fix_proposes_smallest_clean_bump(
    osv: OsvServer, tmp_path: Path, make_lock: LockWriter
) -> None:
    # 2.4.1 is fixed on its branch in 2.4.2, but 2.4.2 has an advisory of its own fixed in 2.4.3.
    publish(osv, advisory("PYSEC-1", "transformers", ranges=[("0", "2.3.5"), ("2.4.0", "2.4.2")]))
    publish(osv, advisory("PYSEC-2", "transformers", ranges=[("2.4.2", "2.4.3")]))
    publish(osv, advisory("PYSEC-3", "nofix", ranges=[("0", None)]))
    lock = make_lock(tmp_path / "a.txt", {"transformers": "2.4.1", "nofix": "1.0"})
    report = audit.audit_locks([lock], osv_url=osv.query_url, fix=True)
    fixes = {p.package: p for p in report.fixes}
    assert fixes["transformers"].proposed == "2.4.3"
    assert fixes["transformers"].clears == ("PYSEC-1",)
    assert fixes["nofix"].proposed is None and "no fixed version" in fixes["nofix"].note
    assert ("transformers", "2.4.2") in osv.queries


# --- the command line -------------------------------------------------------------------------


def test_cli_json_exit_code_and_table(
    osv: OsvServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], make_lock: LockWriter
) -> None:
    publish(osv, advisory("PYSEC-2026-1", "pillow", ranges=[("0", "10.3.0")]))
    lock = make_lock(tmp_path / "a.txt", {"pillow": "10.0.0", "torch": "2.4.1+cu121"})
    args = ["audit", "--lock", str(lock), "--osv-url", osv.query_url]
    assert main([*args, "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["report"]["status"] == "vulnerable"
    assert data["report"]["findings"][0]["id"] == "PYSEC-2026-1"
    assert data["exit_code"] == 1

    assert main(args) == 1
    text = capsys.readouterr().out
    assert "PYSEC-2026-1" in text and "10.3.0" in text and "1 vulnerable" in text

    ignore = write_ignores(
        tmp_path / "ignore.toml",
        '[[ignore]]\nid = "PYSEC-2026-1"\nreason = "offline renders"\nexpires = 2099-12-31\n',
    )
    assert main([*args, "--ignore-file", str(ignore)]) == 0
    assert "0 vulnerable, 1 ignored" in " ".join(capsys.readouterr().out.split())
    assert main([*args, "--ignore-file", str(ignore), "--json"]) == 0
    (finding,) = json.loads(capsys.readouterr().out)["report"]["findings"]
    assert finding["ignored"] == {
        "id": "PYSEC-2026-1",
        "reason": "offline renders",
        "expires": "2099-12-31",
        "package": None,
    }


def test_cli_unreachable_is_one_line_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    make_lock: LockWriter,
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    lock = make_lock(tmp_path / "a.txt", {"six": "1.16.0"})
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["audit", "--lock", str(lock), "--osv-url", url, "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("sdenv: error: cannot reach the osv vulnerability service")
    assert len(captured.err.splitlines()) == 1
    # --json: stdout still holds one JSON object, with the same error (issue 14).
    data = json.loads(captured.out)
    assert data["report"] is None and data["exit_code"] == 1
    assert captured.err == f"sdenv: error: {data['error']}\n"


def test_cli_bad_ignore_file_is_usage_error(
    osv: OsvServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], make_lock: LockWriter
) -> None:
    lock = make_lock(tmp_path / "a.txt", {"six": "1.16.0"})
    ignore = write_ignores(tmp_path / "i.toml", '[[ignore]]\nid = "X"\nreason = "r"\n')
    code = main(["audit", "--lock", str(lock), "--osv-url", osv.url, "--ignore-file", str(ignore)])
    assert code == 2
    assert "i.toml: ignore[0].expires: required date" in capsys.readouterr().err
    assert osv.queries == []  # refused before asking anything


def test_osv_server_batch_and_record_endpoints(osv: OsvServer) -> None:
    # The other two endpoints of the OSV API, for clients that batch (osv-scanner does).
    import urllib.request

    publish(osv, advisory("PYSEC-2026-1", "pillow", ranges=[("0", "10.3.0")]))
    body = json.dumps(
        {
            "queries": [
                {"package": {"name": "pillow", "ecosystem": "PyPI"}, "version": "10.0.0"},
                {"package": {"name": "pillow", "ecosystem": "PyPI"}, "version": "10.3.0"},
            ]
        }
    ).encode()
    req = urllib.request.Request(f"{osv.url}/v1/querybatch", data=body, method="POST")
    with urllib.request.urlopen(req) as resp:
        results = json.load(resp)["results"]
    assert [[v["id"] for v in r.get("vulns", [])] for r in results] == [["PYSEC-2026-1"], []]
    with urllib.request.urlopen(f"{osv.url}/v1/vulns/PYSEC-2026-1") as resp:
        assert json.load(resp)["affected"][0]["package"]["name"] == "pillow"
