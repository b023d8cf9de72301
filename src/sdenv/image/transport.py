"""Transport settings (CA bundle, index URLs) reach a build's RUN steps without entering a layer.

They are not build arguments (those show in ``docker history``) and not COPYed files (those stay in
a layer): sdenv serves them on 127.0.0.1 while it builds (builds use the host network), and
``docker/sdenv-install`` fetches them inside a RUN, hands them to pip and deletes them.
"""

from __future__ import annotations

import contextlib
import http.server
import socketserver
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdenv.errors import UsageError
from sdenv.lock.spec import EnvSpec

# Fixed so that the ARG value, part of the classic builder's cache key, stays the same between
# builds; another port is used (and the cache missed) only when this one is taken.
TRANSPORT_PORT = 47311


@dataclass(frozen=True)
class Transport:
    ca_bundle: Path | None = None
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()

    def files(self) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        if self.ca_bundle is not None:
            try:
                out["ca.pem"] = self.ca_bundle.read_bytes()
            except OSError as exc:
                raise UsageError(
                    f"{self.ca_bundle}: cannot read the CA bundle ({exc.strerror}); "
                    "pass a readable PEM file to --ca-bundle"
                ) from None
        conf = ["[global]"]
        if self.index_url:
            conf.append(f"index-url = {self.index_url}")
        if self.extra_index_urls:
            conf.append("extra-index-url = " + " ".join(self.extra_index_urls))
        if len(conf) > 1:
            out["pip.conf"] = ("\n".join(conf) + "\n").encode()
        return out

    def with_spec_indexes(self, spec: EnvSpec) -> Transport:
        """The env's [[indexes]] unless index URLs were given: the lock was resolved there."""
        if self.index_url or not spec.indexes:
            return self
        first, *others = spec.indexes
        extras = self.extra_index_urls or tuple(i.url for i in others)
        return Transport(self.ca_bundle, first.url, extras)


# The default: pip's own settings (the env's [[indexes]] still apply, see with_spec_indexes).
DEFAULT_TRANSPORT = Transport()


@contextlib.contextmanager
def serve_transport(transport: Transport) -> Iterator[str]:
    """Serve the transport files on 127.0.0.1 for the duration of a build; yields host:port.

    sdenv builds take turns (a file lock) so that each gets the fixed port, and with it the same
    ``SDENV_TRANSPORT`` value, which the classic builder hashes into the cache key of every RUN.
    """
    from filelock import FileLock

    files = transport.files()
    turn = FileLock(str(Path(tempfile.gettempdir()) / f"sdenv-image-{TRANSPORT_PORT}.lock"))
    with turn, serve_files(files) as addr:
        yield addr


@contextlib.contextmanager
def serve_files(files: Mapping[str, bytes]) -> Iterator[str]:
    """``files`` over HTTP on 127.0.0.1 (the fixed port when free), without taking a turn."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path.lstrip("/"))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True

    try:
        server = Server(("127.0.0.1", TRANSPORT_PORT), Handler)
    except OSError:
        server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
