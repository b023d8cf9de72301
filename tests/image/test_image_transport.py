"""CA bundle and index settings served on 127.0.0.1 to a build's RUN steps, only while it runs."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO
from sdenv.image.transport import Transport, serve_files
from sdenv.lock.spec import load_spec

ENVS = REPO / "envs"


def test_transport_is_served_on_localhost_and_only_while_building(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    transport = Transport(ca, "https://u:tok@idx.example/simple", ("https://b.example/s",))
    # serve_files, not serve_transport: that one first waits for any running build's turn.
    with serve_files(transport.files()) as addr:
        assert addr.startswith("127.0.0.1:")
        got = urllib.request.urlopen(f"http://{addr}/ca.pem", timeout=5).read()
        assert got == ca.read_bytes()
        conf = urllib.request.urlopen(f"http://{addr}/pip.conf", timeout=5).read().decode()
        assert "index-url = https://u:tok@idx.example/simple" in conf
        assert "extra-index-url = https://b.example/s" in conf
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://{addr}/etc/passwd", timeout=5)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://{addr}/ca.pem", timeout=2)


def test_spec_indexes_are_the_default_transport() -> None:
    spec = load_spec("sd35-fp8-cu121", ENVS)
    t = Transport().with_spec_indexes(spec)
    assert t.index_url == "https://pypi.org/simple"
    given = Transport(index_url="http://127.0.0.1:1/simple")
    assert given.with_spec_indexes(spec) is given
