"""pip-audit's vulnerability services (OSV, PyPI), asked about one pinned release at a time.

A package the service cannot answer for is *unaudited* (a reason, never a clean result); a
service that cannot be reached at all raises ``Unreachable``, which the audit turns into
``AuditServiceError``. pip-audit is imported inside functions: CLI discovery imports this module
on machines without it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from packaging.version import Version

from sdenv.errors import SdenvError, UsageError

SERVICES = ("osv", "pypi")
DEFAULT_SERVICE = "osv"
DEFAULT_OSV_URL = "https://api.osv.dev/v1/query"  # pip-audit's OsvService.DEFAULT_OSV_URL
DEFAULT_TIMEOUT = 15


class AuditError(SdenvError):
    """The audit could not run to a verdict."""


class AuditServiceError(AuditError):
    """The vulnerability service could not be reached or answered nothing usable."""


class Unreachable(Exception):
    """A connection-level failure: the whole service is down or blocked, not one package."""


def osv_query_url(url: str) -> str:
    """pip-audit wants the full query endpoint; accept a mirror's base URL as well."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--osv-url {url!r}: not an http(s) URL; e.g. {DEFAULT_OSV_URL}")
    if parts.path.rstrip("/").endswith("/query"):
        return url
    return url.rstrip("/") + "/v1/query"


def check_service(service: str) -> None:
    if service not in SERVICES:
        raise UsageError(f"--service {service!r}: unknown; choose one of {', '.join(SERVICES)}")


def _cache_dir() -> Path:
    # Passed explicitly: otherwise PyPIService shells out to `pip cache dir` to find pip's cache.
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pip-audit"


def make_service(service: str, osv_url: str, timeout: int) -> Any:
    from pip_audit._service import OsvService, PyPIService

    check_service(service)
    svc: Any
    if service == "osv":
        svc = OsvService(cache_dir=_cache_dir(), timeout=timeout, osv_url=osv_url)
    else:
        svc = PyPIService(cache_dir=_cache_dir(), timeout=timeout)
    # requests trusts REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE but not SSL_CERT_FILE, which is how an
    # inspecting proxy's CA is often given; without this, TLS fails and the service is "down".
    ca = os.environ.get("SSL_CERT_FILE")
    if ca and not (os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")):
        svc.session.verify = ca
    return svc


def query(service: Any, name: str, version: str) -> tuple[list[Any] | None, str]:
    """One pip-audit query: (results, "") or (None, why the service could not answer)."""
    import requests
    from pip_audit._service import ConnectionError as ServiceConnectionError
    from pip_audit._service import ResolvedDependency, ServiceError

    dep = ResolvedDependency(name=name, version=Version(version))
    try:
        answered, results = service.query(dep)
    except requests.ReadTimeout:
        # Connected, but no answer in time for this one package: the service is up (a slow
        # mirror, one heavy record); that package is unaudited, the others stand.
        return None, f"no answer for {name} {version} within {service.timeout} s (--timeout)"
    except (ServiceConnectionError, requests.ConnectionError, requests.Timeout) as exc:
        raise Unreachable(str(exc) or type(exc).__name__) from exc
    except ServiceError as exc:
        cause = exc.__cause__
        response = getattr(cause, "response", None)
        if response is not None:
            return None, f"service answered HTTP {response.status_code} for {name} {version}"
        return None, f"service error for {name} {version}: {exc or cause}"
    except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
        # A body that is not the JSON the service's schema promises (ValueError covers JSON
        # decoding and InvalidVersion): that package cannot be judged.
        return None, f"unreadable answer for {name} {version}: {type(exc).__name__}: {exc}"
    if answered.is_skipped():
        return None, str(answered.skip_reason)
    return list(results), ""


def dedupe(results: list[Any]) -> list[Any]:
    """OSV lists one vulnerability under several records (PYSEC, GHSA): merge aliases, as
    pip-audit's own auditor does, so one hole is one row."""
    merged: list[Any] = []
    for res in results:
        for i, seen in enumerate(merged):
            if res.alias_of(seen):
                merged[i] = seen.merge_aliases(res)
                break
        else:
            merged.append(res)
    return merged


def advisory_ids(result: Any) -> tuple[str, ...]:
    """The advisory's id, then its aliases in order: what ignore rules match against."""
    return (str(result.id), *sorted(str(a) for a in result.aliases))
