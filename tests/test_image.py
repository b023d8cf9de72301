"""Offline parts of `sdenv image`: lock splitting, Dockerfile rendering, target checks, transport.

The builds themselves run against a real engine in test_image_docker.py (marker `docker`).
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from sdenv import image as im
from sdenv.cli import main
from sdenv.lock.lockfile import Pin, make_lockfile
from sdenv.lock.spec import load_spec

H = "sha256:" + "a" * 64
ENVS = Path(__file__).resolve().parents[1] / "envs"


def _lock(*names: str) -> object:
    return make_lockfile(
        [("env", "sd35-fp8-cu121"), ("python", "3.11")],
        [Pin(n, "1.0", (H,)) for n in names],
    )


def test_split_lock_puts_cuda_torch_deps_and_app_in_their_layers() -> None:
    lock = _lock(
        "torch",
        "triton",
        "nvidia-cublas-cu12",
        "cuda-bindings",
        "diffusers",
        "rich",
        "sdenv",
        "xformers",
        "numpy",
    )
    parts = im.split_lock(lock, ["Diffusers", "torch", "xformers"])  # type: ignore[arg-type]
    assert [p.name for p in parts.cuda] == ["cuda-bindings", "nvidia-cublas-cu12"]
    assert [p.name for p in parts.torch] == ["torch", "triton"]
    # xformers follows torch's version, so it sits with the stable dependencies, not the app.
    assert [p.name for p in parts.deps] == ["numpy", "rich", "xformers"]
    assert [p.name for p in parts.app] == ["diffusers"]
    # sdenv comes from the wheel of this checkout, never from the lock.
    assert all(
        p.name != "sdenv" for part in (parts.cuda, parts.torch, parts.deps, parts.app) for p in part
    )


def test_a_small_pin_change_leaves_every_lower_part_byte_identical() -> None:
    names = ["diffusers"]
    before = im.split_lock(_lock("torch", "nvidia-cublas-cu12", "numpy", "diffusers"), names)  # type: ignore[arg-type]
    after_lock = make_lockfile(
        [],
        [
            Pin("torch", "1.0", (H,)),
            Pin("nvidia-cublas-cu12", "1.0", (H,)),
            Pin("numpy", "1.0", (H,)),
            Pin("diffusers", "2.0", (H,)),
        ],
    )
    after = im.split_lock(after_lock, names)
    for part in ("cuda", "torch", "deps"):
        assert im.render_requirements(getattr(before, part)) == im.render_requirements(
            getattr(after, part)
        )
    assert im.render_requirements(before.app) != im.render_requirements(after.app)
    assert before.cuda_sha256 == after.cuda_sha256


def test_render_requirements_is_pip_hash_mode_syntax() -> None:
    text = im.render_requirements([Pin("torch", "2.4.1", (H, "sha256:" + "b" * 64))])
    assert text == f"torch==2.4.1 --hash={H} --hash=sha256:{'b' * 64}\n"
    assert im.render_requirements([]) == ""


def test_templates_fill_every_placeholder() -> None:
    base = im.render_template(
        "base.Dockerfile", {"BASE_IMAGE": "sdenv/base:bookworm", "TRANSPORT": "x", "LABELS": "a=b"}
    )
    assert "@" not in base.replace("@ signs", "")
    assert base.splitlines()[4] == "FROM sdenv/base:bookworm"
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in base
    assert "NVIDIA_VISIBLE_DEVICES=all" in base
    values = {
        "CUDA_BASE": "c",
        "TRANSPORT": "t",
        "WHEEL": "sdenv-0.1.0-py3-none-any.whl",
        "LOCK_NAME": "l.txt",
        "ENV": "e",
        "PYTHON": "3.11",
        "LABELS": "a=b",
    }
    app = im.render_template("app.Dockerfile", values)
    lines = [ln for ln in app.splitlines() if ln and not ln.startswith("#")]
    runs = [ln for ln in lines if ln.startswith("RUN ")]
    # Heavy and stable first: a small pin change reuses every layer below its own.
    assert [r.rsplit("/", 1)[1] for r in runs] == ["torch.txt", "deps.txt", "app.txt", "sdenv.txt"]
    assert 'ENTRYPOINT ["sdenv"]' in lines
    assert 'CMD ["verify", "--lock", "/opt/sdenv/lock/l.txt"]' in lines
    assert "USER sdenv" in lines
    # No secret-bearing build argument: only the transport address is an ARG.
    assert [ln for ln in lines if ln.startswith("ARG ")] == ["ARG SDENV_TRANSPORT=t"]


def test_template_and_values_out_of_step_is_an_error() -> None:
    with pytest.raises(im.ImageError, match=r"placeholders \['LABELS'\] have no value"):
        im.render_template("base.Dockerfile", {"BASE_IMAGE": "b", "TRANSPORT": "t"})


def test_labels_render_as_one_quoted_instruction() -> None:
    text = im.render_labels({"b": 'say "hi"', "a": "x >= 1"})
    assert text == '"a"="x >= 1" \\\n    "b"="say \\"hi\\""'


def test_tags_and_slugs() -> None:
    assert im.os_slug("sdenv/base:bookworm") == "bookworm"
    assert im.os_slug("python:3.11-slim-bookworm") == "python-3.11-slim-bookworm"
    spec = load_spec("sd35-fp8-cu121", ENVS)
    parts = im.split_lock(_lock("nvidia-cublas-cu12"))  # type: ignore[arg-type]
    tag = im.cuda_base_tag(spec, "3.11", "sdenv/base:bookworm", parts)
    assert tag == f"sdenv/cuda-base:cu121-py3.11-bookworm-{parts.cuda_sha256[:8]}"
    target = spec.targets[1]
    assert im.app_tags(target, "f" * 64) == (
        "sdenv/sd35-fp8-cu121:py3.11",
        "sdenv/sd35-fp8-cu121:py3.11-ffffffffffff",
    )


def test_app_labels_carry_env_lock_torch_cuda_python_fp8() -> None:
    spec = load_spec("sd35-fp8-cu121", ENVS)
    lock = make_lockfile([], [Pin("torch", "2.4.1", (H,))])
    labels = im.app_labels(spec, spec.targets[1], lock, "d" * 64, "sdenv/base:bookworm")
    assert labels["io.sdenv.env"] == "sd35-fp8-cu121"
    assert labels["io.sdenv.lock.sha256"] == "d" * 64
    assert labels["io.sdenv.torch"] == "2.4.1"
    assert labels["io.sdenv.cuda"] == "cu121"
    assert labels["io.sdenv.python"] == "3.11"
    assert labels["io.sdenv.fp8"] == spec.fp8 == "emulated"
    assert labels["org.opencontainers.image.base.name"] == "sdenv/base:bookworm"


def test_python_of_the_base_must_match_the_target() -> None:
    spec = load_spec("sd35-fp8-cu121", ENVS)
    assert im.resolve_target(spec, None, "3.11", "b").python == "3.11"
    with pytest.raises(im.PythonMismatch, match=r"base image b has Python 3.11 .* needs 3.10"):
        im.resolve_target(spec, "3.10", "3.11", "b")
    with pytest.raises(Exception, match=r"3.13 is not a Python of env sd35-fp8-cu121"):
        im.resolve_target(spec, "3.13", "3.13", "b")


def test_a_lock_from_another_spec_or_sdenv_is_stale() -> None:
    from sdenv.lock import data_sha256

    spec = load_spec("sd35-fp8-cu121", ENVS)
    im.check_lock_fresh(
        spec, make_lockfile([("spec-sha256", spec.sha256), ("data-sha256", data_sha256())], [])
    )
    with pytest.raises(im.LockStale, match="stale, made from another version of"):
        im.check_lock_fresh(spec, make_lockfile([("spec-sha256", "0" * 64)], []))
    with pytest.raises(im.LockStale, match="other rules/torch tables"):
        im.check_lock_fresh(
            spec, make_lockfile([("spec-sha256", spec.sha256), ("data-sha256", "0")], [])
        )


def test_smoke_failure_line_comes_from_the_smoke_report() -> None:
    # The shape `sdenv smoke --json` prints (sdenv.smoke.SmokeReport).
    report = {
        "ok": False,
        "checks": [
            {"name": "torch", "status": "pass", "detail": "2.4.1"},
            {
                "name": "diffusers",
                "status": "fail",
                "detail": "module 'torch' has no attribute 'accelerator'",
                "failure": {
                    "kind": "api-mismatch",
                    "culprits": ["diffusers", "torch"],
                    "hint": "constrain diffusers<0.36",
                    "error": "AttributeError",
                },
            },
            {"name": "pipeline", "status": "fail", "detail": "blocked"},
        ],
    }
    assert im.classify_smoke_failure(report, "", 1) == (
        "diffusers: api-mismatch (diffusers, torch) - module 'torch' has no attribute "
        "'accelerator' - fix: constrain diffusers<0.36 (+1 more failed)"
    )
    assert im.classify_smoke_failure(None, "a\nboom\n", 2) == "exit 2: boom"
    assert im.classify_smoke_failure({"ok": True}, "", 137) == "exit 137, no output"


def test_a_failed_build_keeps_the_error_at_the_end_of_its_last_output() -> None:
    # The end of a real pip run in the base build that died of a full disk: the progress bar
    # and the long package list used to fill the message and cut pip's own error off.
    tail = [
        "\x1b[?25l   \x1b[90m" + "━" * 40 + "\x1b[0m \x1b[32m99.1/99.1 kB\x1b[0m",
        "Installing collected packages: " + ", ".join(f"nvidia-pkg{i}-cu12" for i in range(30)),
        "ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device",
        "",
        "Removing intermediate container 0123456789ab",
    ]
    out = im._last_output(tail)
    assert out.endswith("[Errno 28] No space left on device")
    assert "━" not in out and len(out) <= 401
    assert "Removing" not in out

    class Engine:
        def info(self) -> dict[str, str]:
            return {"DockerRootDir": "/var/lib/sdenv-docker"}

    assert "/var/lib/sdenv-docker is full" in im._space_hint(tail, Engine())
    assert im._space_hint(tail[:2], Engine()) == ""


def test_transport_is_served_on_localhost_and_only_while_building(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    transport = im.Transport(ca, "https://u:tok@idx.example/simple", ("https://b.example/s",))
    # _serve, not serve_transport: that one first waits for any running build's turn.
    with im._serve(transport.files()) as addr:
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
    t = im.Transport().with_spec_indexes(spec)
    assert t.index_url == "https://pypi.org/simple"
    given = im.Transport(index_url="http://127.0.0.1:1/simple")
    assert given.with_spec_indexes(spec) is given


def test_install_helper_skips_an_empty_part(tmp_path: Path) -> None:
    req = tmp_path / "empty.txt"
    req.write_text("# nothing\n\n")
    proc = subprocess.run(
        [sys.executable, str(im._DOCKER_DIR / "sdenv-install"), str(req)],
        capture_output=True,
        text=True,
        env={"SDENV_TRANSPORT": ""},
        check=False,
    )
    assert proc.returncode == 0
    assert "pins nothing; skipped" in proc.stdout


def test_no_engine_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sock = tmp_path / "none.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")
    assert main(["image", "build", "--envs-dir", str(ENVS)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert f"Docker engine not reachable at unix://{sock}" in lines[0]
    assert "start it with `scripts/docker-engine.sh start`" in lines[0]


def test_missing_ca_bundle_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["image", "build", "--ca-bundle", str(tmp_path / "nope.pem")]) == 2
    assert "--ca-bundle" in capsys.readouterr().err
