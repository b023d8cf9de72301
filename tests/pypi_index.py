"""A real PEP 503 index on 127.0.0.1 serving small wheels that the tests build.

The wheels are real zip files with real metadata (uv resolves them, pip/uv install them with
hashes) and real modules that behave like the packages they stand for where sdenv looks: torch
computes the smoke's matmul and pins a CUDA runtime (or carries ``+cu121``), xformers ships
``cpp_lib.json`` and fails to "load its C++ extension" on another torch, diffusers >= 0.36 touches
``torch.accelerator`` at import, transformers 5 disables its torch backend on torch < 2.6.
The file server answers HTTP range requests (206), like PyPI's CDN, and serves no PEP 658 files.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from packaging.utils import canonicalize_name


@dataclass(frozen=True)
class Dist:
    name: str
    version: str
    requires: tuple[str, ...] = ()
    files: Mapping[str, str] = field(default_factory=dict)
    tag: str = "py3-none-any"

    @property
    def filename(self) -> str:
        return f"{self.name.replace('-', '_')}-{self.version}-{self.tag}.whl"


def build_wheel(dist: Dist, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / dist.filename
    dist_info = f"{dist.name.replace('-', '_')}-{dist.version}.dist-info"
    meta = ["Metadata-Version: 2.1", f"Name: {dist.name}", f"Version: {dist.version}"]
    meta += [f"Requires-Dist: {r}" for r in dist.requires]
    files = dict(dist.files)
    files[f"{dist_info}/METADATA"] = "\n".join(meta) + "\n"
    files[f"{dist_info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: sdenv-tests\nRoot-Is-Purelib: true\nTag: {dist.tag}\n"
    )
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{name},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = "\n".join(record) + "\n"
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in sorted(files.items()):
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, text)
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    root: Path
    log: list[tuple[str, str, str | None]]  # (method, path, Range header)

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _send(self, code: int, body: bytes, ctype: str, extra: Mapping[str, str] = {}) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()

    def _serve(self, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        self.log.append(("HEAD" if head else "GET", path, self.headers.get("Range")))
        wheels = sorted(self.root.glob("*.whl"))
        body: bytes
        if path in ("/simple", "/simple/"):
            names = sorted({canonicalize_name(w.name.split("-")[0]) for w in wheels})
            body = "".join(f'<a href="{n}/">{n}</a>\n' for n in names).encode()
            self._send(200, body, "text/html")
        elif m := re.fullmatch(r"/simple/([^/]+)/?", path):
            name = canonicalize_name(m.group(1))
            links = [
                f'<a href="../../files/{w.name}#sha256={_sha256(w)}">{w.name}</a>'
                for w in wheels
                if canonicalize_name(w.name.split("-")[0]) == name
            ]
            if not links:
                self._send(404, b"not found", "text/plain")
                if not head:
                    self.wfile.write(b"not found")
                return
            body = ("<html><body>\n" + "\n".join(links) + "\n</body></html>\n").encode()
            self._send(200, body, "text/html")
        elif m := re.fullmatch(r"/files/([^/]+)", path):
            file = self.root / m.group(1)
            if not file.is_file():  # includes every .whl.metadata: no PEP 658 here
                self._send(404, b"", "text/plain")
                return
            data = file.read_bytes()
            rng = self.headers.get("Range")
            if rng and (rm := re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())):
                start_s, end_s = rm.groups()
                if start_s:
                    start = int(start_s)
                    end = int(end_s) if end_s else len(data) - 1
                else:
                    start, end = max(0, len(data) - int(end_s)), len(data) - 1
                end = min(end, len(data) - 1)
                body = data[start : end + 1]
                self._send(
                    206,
                    body,
                    "application/octet-stream",
                    {"Content-Range": f"bytes {start}-{end}/{len(data)}"},
                )
            else:
                body = data
                self._send(200, body, "application/octet-stream")
        else:
            self._send(404, b"", "text/plain")
            return
        if not head:
            self.wfile.write(body)


@contextmanager
def serve(root: Path, log: list[tuple[str, str, str | None]] | None = None) -> Iterator[str]:
    """Serve the wheels in ``root``; yields the simple index URL. ``log`` collects requests."""
    handler = type("Handler", (_Handler,), {"root": root, "log": [] if log is None else log})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    finally:
        server.shutdown()
        server.server_close()


# --- the fake SD stack ---------------------------------------------------------------------------

_TORCH = '''\
"""A tiny stand-in for torch: enough for the smoke's import-and-compute check."""
__version__ = {version!r}


class version:
    cuda = {cuda!r}
    git_version = "sdenv-test"


float32 = "float32"
bfloat16 = "bfloat16"


class Tensor:
    def __init__(self, rows):
        self.rows = rows

    def reshape(self, r, c):
        flat = [x for row in self.rows for x in row]
        return Tensor([flat[i * c : (i + 1) * c] for i in range(r)])

    @property
    def T(self):
        return Tensor([list(col) for col in zip(*self.rows)])

    def __matmul__(self, other):
        cols = list(zip(*other.rows))
        return Tensor([[sum(a * b for a, b in zip(row, col)) for col in cols] for row in self.rows])

    def sum(self):
        return Tensor([[sum(x for row in self.rows for x in row)]])

    def __float__(self):
        return float(self.rows[0][0])


def arange(n, dtype=None):
    return Tensor([list(range(n))])
{extra}'''

_XF_CPP = """\
import torch

_BUILT = {built!r}
_cpp_library_load_exception = None
if torch.__version__.split("+")[0] != _BUILT.split("+")[0]:
    # What the real loader reports when _C.so was linked against another libtorch.
    _cpp_library_load_exception = ImportError(
        "xformers/_C.so: undefined symbol: _ZN3c1017RegisterOperatorsD1Ev"
    )
"""

_DIFFUSERS_NEW = """\
import torch

__version__ = {version!r}
_device_api = torch.accelerator  # new in torch 2.6, like the real diffusers >= 0.36


class StableDiffusion3Pipeline:
    pass


class SD3Transformer2DModel:
    def enable_layerwise_casting(self):
        pass
"""

_DIFFUSERS_OLD = """\
__version__ = {version!r}


class StableDiffusion3Pipeline:
    pass


class SD3Transformer2DModel:
    def enable_layerwise_casting(self):
        pass
"""

_TRANSFORMERS = """\
__version__ = {version!r}


class CLIPTextModelWithProjection:
    pass


class T5EncoderModel:
    pass
"""

_TRANSFORMERS_UTILS = """\
from importlib import metadata


def is_torch_available():
    torch = metadata.version("torch").split("+")[0]
    major, minor = (int(p) for p in torch.split(".")[:2])
    return {min_torch!r} is None or (major, minor) >= {min_torch!r}
"""


def torch_dist(version: str, cuda: str | None, runtime: str | None = None) -> Dist:
    extra = (
        "\naccelerator = object()\n"
        if tuple(map(int, version.split("+")[0].split(".")[:2])) >= (2, 6)
        else ""
    )
    return Dist(
        "torch",
        version,
        (runtime,) if runtime else (),
        {"torch/__init__.py": _TORCH.format(version=version, cuda=cuda, extra=extra)},
    )


def xformers_dist(version: str, requires_torch: str, built: str, cuda: int, archs: str) -> Dist:
    cpp = {
        "version": {"cuda": cuda, "hip": None, "torch": built, "python": "3.11.10"},
        "env": {"TORCH_CUDA_ARCH_LIST": archs, "XFORMERS_BUILD_TYPE": "Release"},
    }
    return Dist(
        "xformers",
        version,
        (f"torch{requires_torch}",),
        {
            "xformers/__init__.py": f"__version__ = {version!r}\n",
            "xformers/_cpp_lib.py": _XF_CPP.format(built=built),
            "xformers/cpp_lib.json": json.dumps(cpp),
        },
    )


def diffusers_dist(version: str) -> Dist:
    new = tuple(map(int, version.split(".")[:2])) >= (0, 36)
    body = (_DIFFUSERS_NEW if new else _DIFFUSERS_OLD).format(version=version)
    return Dist("diffusers", version, ("torch",), {"diffusers/__init__.py": body})


def transformers_dist(version: str) -> Dist:
    min_torch = (2, 6) if int(version.split(".")[0]) >= 5 else None
    return Dist(
        "transformers",
        version,
        (),
        {
            "transformers/__init__.py": _TRANSFORMERS.format(version=version),
            "transformers/utils/__init__.py": _TRANSFORMERS_UTILS.format(min_torch=min_torch),
        },
    )


def simple_dist(name: str, version: str, requires: Sequence[str] = ()) -> Dist:
    module = name.replace("-", "_")
    return Dist(
        name, version, tuple(requires), {f"{module}/__init__.py": f"__version__ = {version!r}\n"}
    )


ARCHS_CU121 = "6.0+PTX 7.0 7.5 8.0+PTX 9.0a"
RUNTIME_121 = "nvidia-cuda-runtime-cu12==12.1.105"
RUNTIME_124 = "nvidia-cuda-runtime-cu12==12.4.127"


def sd_stack() -> list[Dist]:
    """Recorded facts in miniature (docs/evidence.md#E-torch-cuda-lines,
    docs/evidence.md#E-xformers-cpp-lib, docs/evidence.md#E-naive-resolve): torch 2.4.1 (cu121) /
    2.6.0 (cu124) as on PyPI, an exactly pinned xformers per torch and a loosely pinned newest
    one, diffusers and transformers that break on old torch, and sdenv's own runtime deps."""
    return [
        simple_dist("nvidia-cuda-runtime-cu12", "12.1.105"),
        simple_dist("nvidia-cuda-runtime-cu12", "12.4.127"),
        torch_dist("2.4.1", "12.1", RUNTIME_121),
        torch_dist("2.6.0", "12.4", RUNTIME_124),
        xformers_dist("0.0.28.post1", "==2.4.1", "2.4.1+cu121", 1201, ARCHS_CU121),
        xformers_dist("0.0.29.post3", "==2.6.0", "2.6.0+cu124", 1204, ARCHS_CU121),
        # Like 0.0.35: metadata accepts any newer torch, _C.so was built for one
        # (docs/evidence.md#E-xformers-cpp-lib).
        xformers_dist("0.0.35", ">=2.4", "2.6.0+cu124", 1204, "7.5 8.0+PTX 8.0 9.0a"),
        diffusers_dist("0.33.1"),
        diffusers_dist("0.34.0"),
        diffusers_dist("0.35.2"),
        diffusers_dist("0.36.0"),
        diffusers_dist("0.38.0"),
        diffusers_dist("0.42.1"),
        transformers_dist("4.57.6"),
        transformers_dist("5.23.0"),
        simple_dist("packaging", "24.2"),
        simple_dist("rich", "13.9.4"),
        simple_dist("tomli", "2.2.1"),
    ]


def build_index(dists: Sequence[Dist], dest: Path) -> Path:
    for d in dists:
        build_wheel(d, dest)
    return dest
