"""The service side of `sdenv audit` without a server: which URL pip-audit is given, which service
names exist. (Queries against a real local OSV server: test_audit.py.)"""

from __future__ import annotations

import pytest

from sdenv.errors import UsageError
from sdenv.supply.audit import audit_locks
from sdenv.supply.service import DEFAULT_OSV_URL, osv_query_url


@pytest.mark.parametrize(
    ("given", "used"),
    [
        (DEFAULT_OSV_URL, DEFAULT_OSV_URL),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/v1/query"),
        ("https://mirror.example/osv/", "https://mirror.example/osv/v1/query"),
        ("https://mirror.example/osv/v1/query/", "https://mirror.example/osv/v1/query/"),
    ],
)
def test_a_mirror_base_url_gets_the_query_endpoint(given: str, used: str) -> None:
    assert osv_query_url(given) == used


@pytest.mark.parametrize("url", ["ftp://mirror.example/v1/query", "mirror.example", "http://"])
def test_a_url_that_is_not_http_is_a_usage_error(url: str) -> None:
    with pytest.raises(UsageError, match=r"--osv-url .*not an http\(s\) URL"):
        osv_query_url(url)


def test_an_unknown_service_is_refused_before_any_lock_is_read() -> None:
    with pytest.raises(UsageError, match="--service 'nvd': unknown; choose one of osv, pypi"):
        audit_locks([], service="nvd")
