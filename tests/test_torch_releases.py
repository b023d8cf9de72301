"""PyPI torch releases that no env covers, against the local index (tests/pypi_index.py) serving
torch wheels whose METADATA requires what the real ones do, and once against real PyPI."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from pypi_index import (
    RUNTIME_121,
    Dist,
    build_index,
    sd_stack,
    serve,
    simple_dist,
    torch_dist,
)
from sdenv.cli import main
from sdenv.lock import torch_releases as tr
from sdenv.lock.spec import EnvSpec, load_spec, load_specs

# Requires-Dist lines as the real linux x86_64 cp311 wheels' METADATA has them (read 2026-12-01).
REQ_241 = (
    'nvidia-cuda-runtime-cu12 (==12.1.105) ; platform_system == "Linux" and '
    'platform_machine == "x86_64"'
)
REQ_2141 = (
    "cuda-toolkit[cublas,cudart,cufft,cufile,cupti,curand,cusolver,cusparse,nvjitlink,nvrtc,nvtx]"
    '==13.0.3; platform_system == "Linux"'
)
REQ_2150 = (
    "cuda-toolkit[cublas,cudart,cufft,cufile,cupti,cusolver,cusparse,nvjitlink,nvrtc,nvtx]"
    '==13.2.2; platform_system == "Linux"'
)


def torch_wheels() -> list[Dist]:
    return [
        torch_dist("2.3.1", "12.1", RUNTIME_121),  # older than any env targets: never listed
        torch_dist("2.4.1", "12.1", REQ_241),
        torch_dist("2.14.1", "13.0", REQ_2141),
        torch_dist("2.15.0", "13.2", REQ_2150),
        torch_dist("2.16.0rc1", "13.2", REQ_2150),  # a pre-release: not a release to cover
        # A series data/torch_cuda.toml does not know yet (its CUDA only in the wheel).
        torch_dist("2.99.0", "13.2", REQ_2150.replace("13.2.2", "13.4.1")),
    ]


Log = list[tuple[str, str, str | None]]  # the local index's (method, path, Range) per request


@pytest.fixture(scope="module")
def index_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Log]]:
    root = build_index(torch_wheels(), tmp_path_factory.mktemp("torch-wheels"))
    log: Log = []
    with serve(root, log) as url:
        yield url, log


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDENV_CACHE_DIR", str(tmp_path / "sdenv-cache"))


def spec(dest: Path, name: str, cuda: str, torch: str, url: str) -> EnvSpec:
    path = dest / f"{name}.toml"
    path.write_text(
        f'[env]\nname = "{name}"\npythons = ["3.11"]\nplatforms = ["linux_x86_64"]\n'
        f'cuda = "{cuda}"\ncompute_capabilities = ["9.0"]\n'
        f'[[indexes]]\nname = "local"\nurl = "{url}"\n'
        f'[requirements]\ntorch = "{torch}"\n'
    )
    return load_spec(path, dest)


def test_cuda_line_from_the_real_requires_dist_lines() -> None:
    assert tr.cuda_of_requires([REQ_241]) == ("cu121", "nvidia-cuda-runtime-cu12==12.1.105")
    assert tr.cuda_of_requires([REQ_2150]) == ("cu132", "cuda-toolkit==13.2.2")
    # The runtime pin wins over the meta-package when both are there (cuda-toolkit's own form).
    both = [REQ_2141, 'nvidia-cuda-runtime==13.0.96.*; sys_platform == "linux"']
    assert tr.cuda_of_requires(both) == ("cu130", "nvidia-cuda-runtime==13.0.96")
    # Another platform's pin is not this wheel's CUDA; a CPU build pins none.
    arm = 'nvidia-cuda-runtime==13.2.86; platform_machine == "aarch64"'
    assert tr.cuda_of_requires([arm, "filelock", "sympy>=1.13.3"]) is None


def test_reports_what_no_env_covers_reading_only_those_wheels(
    index_log: tuple[str, Log], tmp_path: Path
) -> None:
    url, log = index_log
    specs = [
        spec(tmp_path, "a", "cu121", ">=2.4", url),
        spec(tmp_path, "b", "cu130", ">=2.11,<2.15", url),
    ]
    log.clear()
    report = tr.uncovered_torch(specs, url)
    assert report.error == ""
    assert report.releases == ("2.4.1", "2.14.1", "2.15.0", "2.99.0")
    by_version = {u.version: u for u in report.uncovered}
    assert sorted(by_version) == ["2.15.0", "2.99.0"]
    new_line = by_version["2.15.0"]
    assert (new_line.cuda, new_line.table_cuda) == ("cu132", "cu132")
    assert new_line.how == "cuda-toolkit==13.2.2 in torch-2.15.0-py3-none-any.whl"
    assert "add an env with cuda = 'cu132'" in new_line.reason
    unknown = by_version["2.99.0"]
    assert not unknown.in_table and unknown.cuda == "cu134"
    assert "series 2.99 is not in data/torch_cuda.toml" in unknown.reason
    # Covered releases cost nothing but the index page: their wheels are never opened.
    opened = {p.rsplit("/", 1)[-1] for _, p, _ in log if p.startswith("/files/")}
    assert opened == {"torch-2.15.0-py3-none-any.whl", "torch-2.99.0-py3-none-any.whl"}


def test_an_env_on_the_line_but_a_narrow_range_is_named(
    index_log: tuple[str, Log], tmp_path: Path
) -> None:
    url, _ = index_log
    specs = [spec(tmp_path, "old130", "cu130", ">=2.11,<2.14", url)]
    found = {u.version: u for u in tr.uncovered_torch(specs, url).uncovered}
    assert "widen requirements.torch of old130" in found["2.14.1"].reason
    assert found["2.14.1"].cuda == "cu130"


def test_an_unreachable_index_is_said_not_taken_for_empty(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/simple"
    report = tr.uncovered_torch([spec(tmp_path, "a", "cu121", ">=2.4", url)], url)
    assert report.uncovered == () and report.releases == ()
    assert report.error.startswith(f"{url.rstrip('/')}/torch/: cannot read the index page")


def test_lock_check_warns_and_keeps_its_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The offline SD stack (torch 2.4.1 cu121, 2.6.0 cu124) plus a torch on a CUDA line no env has.
    dists = [
        *sd_stack(),
        simple_dist("cuda-toolkit", "13.2.2"),
        torch_dist("2.15.0", "13.2", REQ_2150),
    ]
    root = build_index(dists, tmp_path / "wheels")
    envs, locks = tmp_path / "envs", tmp_path / "locks"
    envs.mkdir()
    with serve(root) as url:
        spec(envs, "demo", "cu121", ">=2.4,<2.5", url)
        args = ["lock", "demo", "--envs-dir", str(envs), "--lock-dir", str(locks)]
        assert main([*args, "--no-verify"]) == 0
        capsys.readouterr()
        assert main([*args, "--check", "--json"]) == 0  # a warning, not a stale lock
        doc = json.loads(capsys.readouterr().out)
        assert doc["ok"] is True and doc["torch_index_errors"] == []
        found = {u["version"]: u for u in doc["uncovered_torch"]}
        assert sorted(found) == ["2.15.0", "2.6.0"]
        assert found["2.6.0"]["cuda"] == "cu124"
        assert found["2.15.0"]["how"].startswith("cuda-toolkit==13.2.2 in torch-2.15.0-")
        assert main([*args, "--check"]) == 0
        text = capsys.readouterr().err
        assert f"2 torch release(s) on {url} that no shipped env covers" in text
        assert "torch 2.15.0 (cu132, cuda-toolkit==13.2.2" in text
        # Locking (not --check) does not list the index.
        assert main([*args, "--no-verify", "--json"]) == 0
        assert "uncovered_torch" not in json.loads(capsys.readouterr().out)


@pytest.mark.online
def test_pypi_torch_releases_against_the_shipped_envs() -> None:
    repo = Path(__file__).resolve().parents[1]
    shipped, broken = load_specs(repo / "envs")
    assert broken == []
    report = tr.uncovered_torch(shipped, "https://pypi.org/simple")
    assert report.error == ""
    assert {"2.4.1", "2.10.0", "2.15.0"} <= set(report.releases)
    # What the shipped envs cover today is covered (a release PyPI adds later may show here).
    assert not {u.version for u in report.uncovered} & {"2.4.1", "2.10.0", "2.14.1", "2.15.0"}
    without_cu132 = [s for s in shipped if s.cuda != "cu132"]
    gap_report = tr.uncovered_torch(without_cu132, "https://pypi.org/simple")
    gap = {u.version: u for u in gap_report.uncovered}
    assert gap["2.15.0"].cuda == "cu132"  # read from the real wheel's METADATA
    assert gap["2.15.0"].how.startswith("cuda-toolkit==13.2.2 in torch-2.15.0-cp311-cp311-")
