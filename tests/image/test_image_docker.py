"""`sdenv image` against a real Docker engine (marker `docker`; `make image` runs these).

Start the engine with `scripts/docker-engine.sh start` and export the DOCKER_HOST it prints.
The app images here come from a tiny hand-made lock (rich and its deps, the wheels of this venv)
served by a real local index on 127.0.0.1 that demands basic auth; the images are tagged under a
throwaway env name and removed at the end. The OS base is bootstrapped from Debian when absent.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import socketserver
import subprocess
import sys
import tarfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO
from sdenv import image as im
from sdenv.lock.lockfile import Pin, make_lockfile, read_lockfile, write_lockfile
from sdenv.lock.spec import load_spec

pytestmark = pytest.mark.docker

ENV = "sdenv-itest"
USER, SECRET = "builder", f"tok-{uuid.uuid4().hex}"
TINY = ("packaging", "rich", "markdown-it-py", "mdurl", "pygments")


@pytest.fixture(scope="module")
def client() -> Any:
    return im.connect()


@pytest.fixture(scope="module")
def os_base(client: Any) -> str:
    if not im.image_exists(client, im.BOOTSTRAP_TAG):
        im.bootstrap_os_image(client)
    return im.BOOTSTRAP_TAG


@pytest.fixture(scope="module")
def envs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("envs")
    text = (REPO / "envs" / "sd35-fp8-cu121.toml").read_text()
    (d / f"{ENV}.toml").write_text(text.replace('name = "sd35-fp8-cu121"', f'name = "{ENV}"'))
    return d


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The versions installed here, fetched once from PyPI (pure-Python wheels)."""
    d = tmp_path_factory.mktemp("wheels")
    pins = [f"{name}=={version(name)}" for name in TINY]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--isolated",
            "-q",
            "--no-deps",
            "--only-binary",
            ":all:",
            "-d",
            str(d),
            *pins,
        ],
        check=True,
    )
    return d


class _AuthIndex(http.server.BaseHTTPRequestHandler):
    """PEP 503 simple index over a wheel folder; 401 without the right basic auth."""

    root: Path
    seen_auth: list[str]

    def do_GET(self) -> None:
        want = "Basic " + base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
        got = self.headers.get("Authorization", "")
        self.seen_auth.append(got)
        if got != want:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="idx"')
            self.end_headers()
            return
        parts = [p for p in self.path.split("/") if p]
        if len(parts) == 2 and parts[0] == "simple":
            links = []
            for whl in sorted(self.root.glob("*.whl")):
                norm = whl.name.split("-")[0].replace("_", "-").lower()
                if norm == parts[1]:
                    digest = hashlib.sha256(whl.read_bytes()).hexdigest()
                    links.append(f'<a href="/files/{whl.name}#sha256={digest}">{whl.name}</a>')
            body = ("<html><body>" + "".join(links) + "</body></html>").encode()
            ctype = "text/html"
        elif len(parts) == 2 and parts[0] == "files" and (self.root / parts[1]).is_file():
            body = (self.root / parts[1]).read_bytes()
            ctype = "application/octet-stream"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def auth_index(wheels: Path) -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    handler = type("H", (_AuthIndex,), {"root": wheels, "seen_auth": seen})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://{USER}:{SECRET}@127.0.0.1:{server.server_address[1]}/simple", seen
    server.shutdown()
    server.server_close()


def _write_lock(
    path: Path, wheels: Path, drop: str | None = None, spec_sha256: str | None = None
) -> Path:
    from sdenv.lock import data_sha256

    spec = load_spec(REPO / "envs" / "sd35-fp8-cu121.toml")
    pins = []
    for whl in sorted(wheels.glob("*.whl")):
        name, ver = whl.name.split("-")[:2]
        if name.replace("_", "-").lower() == drop:
            continue
        pins.append(Pin(name, ver, ("sha256:" + hashlib.sha256(whl.read_bytes()).hexdigest(),)))
    # Fresh for the itest env (same spec text but the name): spec and data hashes as `sdenv lock`
    # writes them. Made by hand for tests only, never committed.
    text = spec.path.read_text().replace('name = "sd35-fp8-cu121"', f'name = "{ENV}"')
    header = [
        ("env", ENV),
        ("spec-sha256", spec_sha256 or hashlib.sha256(text.encode()).hexdigest()),
        ("data-sha256", data_sha256()),
        ("python", "3.11"),
    ]
    write_lockfile(path, make_lockfile(header, pins))
    return path


@pytest.fixture(scope="module")
def ca_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    marker = f"sdenv-ca-marker-{uuid.uuid4().hex}"
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    path.write_text(f"# {marker}\n" + Path("/etc/ssl/certs/ca-certificates.crt").read_text())
    return path, marker


@pytest.fixture(scope="module")
def sdenv_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return im.build_sdenv_wheel(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def request_(
    tmp_path_factory: pytest.TempPathFactory,
    os_base: str,
    envs_dir: Path,
    wheels: Path,
    auth_index: tuple[str, list[str]],
    ca_bundle: tuple[Path, str],
    sdenv_wheel: Path,
    client: Any,
) -> Iterator[im.BuildRequest]:
    tmp = tmp_path_factory.mktemp("build")
    req = im.BuildRequest(
        env=ENV,
        base=os_base,
        lock_path=_write_lock(tmp / "tiny.txt", wheels),
        envs_dir=envs_dir,
        out_dir=tmp / "images",
        transport=im.Transport(ca_bundle[0], auth_index[0]),
        smoke_command=("--version",),
        sdenv_wheel=sdenv_wheel,
    )
    yield req
    for image in client.images.list(filters={"label": f"io.sdenv.env={ENV}"}):
        client.images.remove(image.id, force=True)


@pytest.fixture(scope="module")
def built(request_: im.BuildRequest, client: Any) -> im.ImageResult:
    return im.build_image(request_, client)


def test_smoke_pass_tags_the_image_with_labels_user_and_entrypoint(
    built: im.ImageResult, client: Any, auth_index: tuple[str, list[str]]
) -> None:
    assert built.tagged and built.smoke.passed
    assert built.smoke.output_tail.startswith("sdenv ")
    image = client.images.get(built.tags[0])
    assert image.id == built.image_id
    assert client.images.get(built.tags[1]).id == built.image_id
    config = image.attrs["Config"]
    assert config["User"] == "sdenv"
    assert config["Entrypoint"] == ["sdenv"]
    assert config["Cmd"] == ["verify", "--lock", "/opt/sdenv/lock/tiny.txt"]
    assert "NVIDIA_VISIBLE_DEVICES=all" in config["Env"]
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in config["Env"]
    labels = config["Labels"]
    assert labels["io.sdenv.env"] == ENV
    assert labels["io.sdenv.lock.sha256"] == built.lock_sha256
    assert labels["io.sdenv.torch"] == "none" and labels["io.sdenv.python"] == "3.11"
    assert labels["org.opencontainers.image.version"]
    # The index really demanded auth and really got it: the build went through it.
    assert any(a.startswith("Basic ") for a in auth_index[1])
    # Installed exactly the lock, and sdenv itself.
    out = client.containers.run(
        built.image_id,
        ["-m", "pip", "list", "--format=freeze"],
        entrypoint=["python"],
        network_mode="none",
        remove=True,
    ).decode()
    names = {line.split("==")[0].lower() for line in out.split()}
    # The baked-in lock is readable by the image's non-root user (verify's drift reads it).
    lock_text = client.containers.run(
        built.image_id,
        ["cat", "/opt/sdenv/lock/tiny.txt"],
        entrypoint=[],
        network_mode="none",
        remove=True,
    ).decode()
    assert lock_text.startswith("# This file is generated by `sdenv lock`")
    assert {"rich", "packaging", "pygments", "sdenv"} <= names
    summary = Path(built.summary).read_text()
    assert '"passed": true' in summary and Path(built.log).is_file()


def test_no_credential_and_no_ca_in_layers_or_history(
    built: im.ImageResult, client: Any, ca_bundle: tuple[Path, str]
) -> None:
    history = client.api.history(built.image_id)
    text = " ".join(h.get("CreatedBy", "") for h in history)
    assert "SDENV_TRANSPORT=127.0.0.1" in text  # the only build argument: an address
    for secret in (SECRET, USER, ca_bundle[1]):
        assert secret not in text
    raw = io.BytesIO()
    for chunk in client.images.get(built.image_id).save(named=False):
        raw.write(chunk)
    blob = raw.getvalue()
    assert len(blob) > 10_000_000
    for secret in (SECRET.encode(), ca_bundle[1].encode()):
        assert secret not in blob
    # Layers are nested tars: look inside each one too (they are stored uncompressed).
    with tarfile.open(fileobj=io.BytesIO(blob)) as outer:
        names = [m.name for m in outer.getmembers() if m.name.endswith("layer.tar")]
        assert names
        for name in names:
            f = outer.extractfile(name)
            assert f is not None
            with tarfile.open(fileobj=f) as layer:
                assert not [m for m in layer.getnames() if "sdenv-transport" in m]


def test_rebuild_reuses_cuda_and_torch_layers_after_a_small_pin_change(
    built: im.ImageResult, request_: im.BuildRequest, client: Any, wheels: Path, tmp_path: Path
) -> None:
    again = im.build_image(request_, client)
    # All but FROM, and the LABEL step when a commit landed meanwhile (it carries the revision).
    assert again.cached_steps >= again.steps - 2
    assert again.new_layer_bytes == 0
    assert again.cuda_base_cached
    changed = replace(request_, lock_path=_write_lock(tmp_path / "t.txt", wheels, drop="mdurl"))
    result = im.build_image(changed, client)
    log = Path(result.log).read_text()
    torch_step = log.split("sdenv-install /opt/sdenv/lock/torch.txt", 1)[1][:200]
    deps_step = log.split("sdenv-install /opt/sdenv/lock/deps.txt", 1)[1][:200]
    assert "Using cache" in torch_step and "Using cache" not in deps_step
    assert result.new_layer_bytes < 50_000_000
    client.images.remove(result.tags[1])  # keep built's tags for the other tests


def test_failing_smoke_moves_no_tag(
    built: im.ImageResult, request_: im.BuildRequest, client: Any, wheels: Path, tmp_path: Path
) -> None:
    # `sdenv smoke` fails in an image without torch; drop a pin too so the image differs.
    failing = replace(
        request_,
        lock_path=_write_lock(tmp_path / "f.txt", wheels, drop="pygments"),
        smoke_command=("smoke", "--json"),
    )
    moving_before = client.images.get(built.tags[0]).id
    with pytest.raises(im.SmokeFailed, match="no tag moved") as exc:
        im.build_image(failing, client)
    assert "\n" not in str(exc.value)
    assert "torch: not-installed" in str(exc.value)  # sdenv.smoke's classification, one line
    assert client.images.get(built.tags[0]).id == moving_before  # the moving tag stayed put
    summaries = list((failing.out_dir).glob("*/summary.json"))
    text = summaries[0].read_text()
    assert '"passed": false' in text and '"tagged": false' in text
    lock_tag = im.app_tags(
        im.resolve_target(load_spec(ENV, request_.envs_dir), None, "3.11", "b"),
        hashlib.sha256(failing.lock_path.read_bytes()).hexdigest(),
    )[1]
    assert not im.image_exists(client, lock_tag)


def test_python_mismatch_missing_base_and_stale_lock_fail_before_building(
    request_: im.BuildRequest, client: Any, wheels: Path, tmp_path: Path
) -> None:
    before = {i.id for i in client.images.list(all=True)}
    with pytest.raises(im.PythonMismatch, match="has Python 3.11 but the lock target needs 3.10"):
        im.build_image(replace(request_, python="3.10"), client)
    with pytest.raises(im.BaseImageMissing, match="sdenv image base --bootstrap"):
        im.build_image(replace(request_, base="sdenv/absent:none"), client)
    stale = _write_lock(tmp_path / "s.txt", wheels, spec_sha256="0" * 64)
    with pytest.raises(im.LockStale, match="stale, made from another version"):
        im.build_image(replace(request_, lock_path=stale), client)
    assert {i.id for i in client.images.list(all=True)} == before


def test_a_base_without_python_is_a_clear_error(request_: im.BuildRequest, client: Any) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("etc/os-release")
        data = b"ID=empty\n"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    client.api.import_image_from_data(raw.getvalue(), repository=f"sdenv/{ENV}-nopy", tag="1")
    containers = len(client.containers.list(all=True))
    try:
        with pytest.raises(im.BaseImageMissing, match="has no usable python3 with venv"):
            im.build_image(replace(request_, base=f"sdenv/{ENV}-nopy:1"), client)
        assert len(client.containers.list(all=True)) == containers  # no "Created" leftover
    finally:
        client.images.remove(f"sdenv/{ENV}-nopy:1", force=True)


def test_bootstrapped_base_is_minimal_bookworm_with_python(os_base: str, client: Any) -> None:
    image = client.images.get(os_base)
    assert image.attrs["Size"] < 300_000_000  # minbase + python3: no apt caches or lists
    out = client.containers.run(
        os_base, ["cat", "/etc/os-release"], network_mode="none", remove=True
    ).decode()
    assert "VERSION_CODENAME=bookworm" in out
    assert im.image_python(client, os_base) == "3.11"


def test_cli_smoke_failure_is_one_line_exit_1_and_no_tag(
    request_: im.BuildRequest,
    client: Any,
    wheels: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from sdenv.cli import main

    lock = _write_lock(tmp_path / "cli.txt", wheels, drop="mdurl")
    sha = hashlib.sha256(lock.read_bytes()).hexdigest()
    args = ["image", "build", ENV, "--envs-dir", str(request_.envs_dir), "--lock", str(lock)]
    args += ["--out-dir", str(tmp_path / "out"), "--index-url", request_.transport.index_url or ""]
    args += ["--ca-bundle", str(request_.transport.ca_bundle), "--json"]
    code = main(args)
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""  # no summary on stdout for a failed image
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("sdenv: error: smoke test failed inside sha256:")
    assert "torch: not-installed" in line and "no tag moved" in line
    assert not im.image_exists(client, f"sdenv/{ENV}:py3.11-{sha[:12]}")
    out = tmp_path / "out" / f"{ENV}-py3.11-linux_x86_64"
    summary = json.loads((out / "summary.json").read_text())
    sbom = json.loads(Path(summary["sbom"]).read_text())
    assert sbom["bomFormat"] == "CycloneDX"
    # The SBOM lists exactly what the lock pins (mdurl was dropped from it above).
    assert {c["name"] for c in sbom["components"]} == {p.name for p in read_lockfile(lock).pins}
