"""A real OSV-compatible HTTP server on 127.0.0.1 for the audit tests.

It serves advisories (OSV schema 1.x JSON records) that a test writes into a directory, through
the endpoints of https://api.osv.dev that vulnerability clients call:

- ``POST /v1/query``  ``{"package": {"name", "ecosystem"}, "version"}`` -> ``{"vulns": [...]}``, or
  ``{}`` when nothing matches (what pip-audit's ``OsvService`` calls, one request per package);
- ``POST /v1/querybatch`` ``{"queries": [...]}`` -> ``{"results": [{"vulns": [{id, modified}]}]}``;
- ``GET /v1/vulns/<id>`` -> the full record, or 404.

Matching follows the OSV schema: a version is affected when it is listed in ``affected[].versions``
or falls in an ``ECOSYSTEM`` range (``introduced`` <= v < ``fixed``, or <= ``last_affected``),
compared as PEP 440 versions. Records are re-read on every request so a test can add some while
the server runs. ``fail`` maps a package name to an HTTP status to answer for it: a mirror that
cannot answer for one package; ``delay`` one that answers it slowly. Every query is recorded in
``queries`` so tests can assert what a client asked for.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version


def _in_ranges(version: Version, ranges: list[dict[str, Any]]) -> bool:
    for rng in ranges:
        if rng.get("type") != "ECOSYSTEM":
            continue
        affected = False

        # Events are applied in version order; "0" means "from the first version".
        def key(event: dict[str, str]) -> Version:
            raw = next(iter(event.values()))
            return Version("0") if raw == "0" else Version(raw)

        for event in sorted(rng.get("events", []), key=key):
            ((kind, raw),) = event.items()
            bound = Version("0") if raw == "0" else Version(raw)
            if kind == "introduced" and version >= bound:
                affected = True
            elif (kind == "fixed" and version >= bound) or (
                kind == "last_affected" and version > bound
            ):
                affected = False
        if affected:
            return True
    return False


def affects(record: dict[str, Any], name: str, version: str) -> bool:
    try:
        parsed = Version(version)
    except InvalidVersion:
        return False
    for aff in record.get("affected", []):
        pkg = aff.get("package", {})
        if pkg.get("ecosystem") != "PyPI" or canonicalize_name(pkg.get("name", "")) != name:
            continue
        if version in aff.get("versions", []) or _in_ranges(parsed, aff.get("ranges", [])):
            return True
    return False


class OsvServer:
    """``with OsvServer(dir) as osv: ... osv.query_url ...``: serves ``dir/*.json`` records."""

    def __init__(self, advisory_dir: Path) -> None:
        self.advisory_dir = advisory_dir
        self.fail: dict[str, int] = {}
        self.delay: dict[str, float] = {}  # package -> seconds to wait before answering
        self.queries: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._httpd = _OsvHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.osv = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def query_url(self) -> str:
        return f"{self.url}/v1/query"

    def records(self) -> Iterator[dict[str, Any]]:
        for path in sorted(self.advisory_dir.glob("*.json")):
            yield json.loads(path.read_text(encoding="utf-8"))

    def match(self, name: str, version: str) -> list[dict[str, Any]]:
        with self._lock:
            self.queries.append((name, version))
        return [r for r in self.records() if affects(r, name, version)]

    def __enter__(self) -> OsvServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


class _OsvHTTPServer(ThreadingHTTPServer):
    osv: OsvServer


class _Handler(BaseHTTPRequestHandler):
    """OSV's query, querybatch and vulns endpoints over an ``OsvServer``'s records."""

    server: _OsvHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length", "0"))
        return json.loads(self.rfile.read(length) or b"null")

    def _one(self, query: Any) -> tuple[int, list[dict[str, Any]]]:
        # OSV answers 400 {"code": 3, ...} (INVALID_ARGUMENT) for a malformed query.
        try:
            pkg = query["package"]
            name = canonicalize_name(pkg["name"])
            version = str(query["version"])
            if pkg.get("ecosystem") != "PyPI":
                return 200, []
        except (KeyError, TypeError):
            return 400, []
        if name in self.server.osv.delay:
            time.sleep(self.server.osv.delay[name])
        if name in self.server.osv.fail:
            with self.server.osv._lock:
                self.server.osv.queries.append((name, version))
            return self.server.osv.fail[name], []
        return 200, self.server.osv.match(name, version)

    def do_POST(self) -> None:
        try:
            body = self._body()
        except json.JSONDecodeError:
            self._send(400, {"code": 3, "message": "Invalid JSON"})
            return
        if self.path == "/v1/query":
            status, vulns = self._one(body)
            if status != 200:
                self._send(status, {"code": 3, "message": "cannot answer"})
            else:
                self._send(200, {"vulns": vulns} if vulns else {})
        elif self.path == "/v1/querybatch":
            results = []
            for query in (body or {}).get("queries", []):
                status, vulns = self._one(query)
                if status != 200:
                    self._send(status, {"code": 3, "message": "cannot answer"})
                    return
                brief = [{"id": v["id"], "modified": v.get("modified", "")} for v in vulns]
                results.append({"vulns": brief} if brief else {})
            self._send(200, {"results": results})
        else:
            self._send(404, {"code": 5, "message": "Not Found"})

    def do_GET(self) -> None:
        prefix = "/v1/vulns/"
        if self.path.startswith(prefix):
            wanted = self.path[len(prefix) :]
            for record in self.server.osv.records():
                if record["id"] == wanted:
                    self._send(200, record)
                    return
            self._send(404, {"code": 5, "message": "Bug not found."})
        else:
            self._send(404, {"code": 5, "message": "Not Found"})


def advisory(
    vuln_id: str,
    package: str,
    *,
    ranges: list[tuple[str, str | None]] | None = None,
    versions: list[str] | None = None,
    aliases: list[str] | None = None,
    summary: str = "test advisory",
) -> dict[str, Any]:
    """An OSV record for ``package``.

    ``ranges`` is a list of ``(introduced, fixed)`` pairs (``fixed`` None: no fix yet), written as
    one ECOSYSTEM range the way PYSEC records list several release branches.
    """
    affected: dict[str, Any] = {"package": {"name": package, "ecosystem": "PyPI"}}
    if ranges is not None:
        events: list[dict[str, str]] = []
        for introduced, fixed in ranges:
            events.append({"introduced": introduced})
            if fixed is not None:
                events.append({"fixed": fixed})
        affected["ranges"] = [{"type": "ECOSYSTEM", "events": events}]
    if versions is not None:
        affected["versions"] = versions
    return {
        "schema_version": "1.6.0",
        "id": vuln_id,
        "modified": "2026-01-01T00:00:00Z",
        "published": "2026-01-01T00:00:00Z",
        "aliases": aliases or [],
        "summary": summary,
        "affected": [affected],
    }
