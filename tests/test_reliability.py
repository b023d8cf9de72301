"""Issue 14: bad input, faults and signals end in one line, the documented exit code, and
nothing left behind (docs/exit-codes.md lists the codes per command).

Real components throughout: the local PEP 503 index (tests/pypi_index.py) with uv, real venvs
for the import proof, the local OSV server (tests/osv_server.py), real signals to a real
``python -m sdenv`` process.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.specs import HOST, lock_options, write_spec
from osv_server import OsvServer, advisory
from pypi_index import Dist, build_index, sd_stack, serve
from sdenv import _cleanup, supply
from sdenv import lock as core
from sdenv.cli import main
from sdenv.lock.lockfile import Pin, make_lockfile, render_lockfile
from sdenv.lock.spec import load_spec

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(autouse=True)
def _private_cache(private_cache: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)


def one_error_line(err: str) -> str:
    """The run's stderr ends in exactly one error line and holds no traceback."""
    assert "Traceback" not in err, err
    errors = [ln for ln in err.splitlines() if ln.startswith("sdenv: error: ")]
    assert len(errors) == 1, err
    return errors[0]


def write_lock(path: Path, pins: dict[str, str], header: list[tuple[str, str]]) -> Path:
    made = []
    for name, version in pins.items():
        digest = hashlib.sha256(f"{name}-{version}".encode()).hexdigest()
        made.append(Pin(name, version, (f"sha256:{digest}",)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_lockfile(make_lockfile(header, made)), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- tracebacks -> one line


@pytest.fixture
def odd_paths(tmp_path: Path) -> dict[str, Path]:
    a_file = tmp_path / "a-file"
    a_file.write_text("x\n")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(bytes(range(256)) * 4)
    a_dir = tmp_path / "a-dir"
    a_dir.mkdir()
    return {"file": a_file, "binary": binary, "dir": a_dir}


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["lock", "--lock-dir", "{file}", "--no-verify"], "--lock-dir {file}: is a file"),
        (["lock", "--lock-dir", "{file}", "--check"], "--lock-dir {file}: is a file"),
        (["sbom", "--out", "{file}"], "--out {file}: is a file"),
        (["sbom", "--out", "{file}/sub"], "is inside {file}, which is a file"),
        (["verify", "--lock", "{dir}"], "{dir}: is a directory, not a lockfile"),
        (["verify", "--python", "/bin/true"], "--python /bin/true: not a working Python"),
        (["verify", "--python", "{dir}/python"], "no such interpreter"),
        (["verify", "--python", "{dir}"], "--python {dir}: is a directory"),
        (["verify", "--lock", "{binary}"], "{binary}: binary data, not a lockfile"),
        (["audit", "--lock", "{binary}"], "{binary}: binary data, not a lockfile"),
        (["sbom", "--lock", "{binary}", "--out", "{dir}"], "binary data, not a lockfile"),
        (["audit", "--lock", "{dir}"], "--lock {dir}: is a directory, not a lockfile"),
        (["sbom", "--lock", "{dir}", "--out", "{dir}"], "--lock {dir}: is a directory"),
        (["verify", "--no-lock", "--model", "{file}"], "--model {file}: is a file, not a model"),
        (["verify", "--no-lock", "--model", "{dir}/none"], "no such model directory"),
        (
            ["generate", "--model", "{dir}", "--prompt", "p", "--height", "7", "--out", "o.png"],
            "--height 7: must be a positive multiple of 16",
        ),
        (
            ["generate", "--model", "{dir}", "--prompt", "p", "--width", "1000", "--out", "o.png"],
            "--width 1000: must be a positive multiple of 16 for this model (VAE downscale x "
            "patch size); e.g. 992",
        ),
        (
            ["generate", "--model", "{dir}", "--prompt", "p", "--out", "{dir}/x.png/"],
            "is a directory",
        ),
        (["image", "build", "--out-dir", "{file}"], "--out-dir {file}: is a file"),
        (["image", "build", "--lock", "{dir}"], "--lock {dir}: is a directory, not a lockfile"),
        (["image", "build", "--lock", "{binary}"], "{binary}: binary data, not a lockfile"),
        # The same kinds elsewhere: every option naming a file or a directory.
        (
            ["generate", "--model", "{file}", "--prompt", "p", "--out", "o.png"],
            "{file}: is a file, not a model directory",
        ),
        (["audit", "--lock-dir", "{file}"], "--lock-dir {file}: is a file"),
        (
            [
                "audit",
                "--ignore-file",
                "{dir}",
                "--lock",
                "{repo}/lockfiles/sd35-fp8-cu121-py3.11-linux_x86_64.txt",
            ],
            "{dir}: cannot read the ignore file",
        ),
        (["probe", "--no-torch", "--save-facts", "{dir}"], "{dir}: is a directory; name the file"),
        (
            ["probe", "--no-torch", "--save-facts", "{file}/f.json"],
            "{file} is a file, not a directory",
        ),
        (["probe", "--facts", "{binary}"], "{binary}: binary data, not a JSON fact set"),
        (["probe", "--facts", "{dir}"], "{dir}: cannot read: Is a directory"),
        (
            ["lock", "--rules", "{binary}", "--check", "--envs-dir", "{repo}/envs"],
            "{binary}: binary data, not a TOML rules",
        ),
        (
            ["lock", "--rules", "{dir}", "--check", "--envs-dir", "{repo}/envs"],
            "{dir}: cannot read the rules file",
        ),
        (["lock", "{binary}", "--check"], "{binary}: not UTF-8 text"),
        (["smoke", "--python", "{dir}"], "--python {dir}: is a directory"),
        (["smoke", "--python", "/bin/true"], "--python /bin/true: not a working Python"),
    ],
)
def test_bad_path_or_value_is_one_line_exit_2(
    argv: list[str],
    expected: str,
    odd_paths: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    if "{dir}/x.png/" in argv:
        (odd_paths["dir"] / "x.png").mkdir()
    args = [a.format(**odd_paths, repo=SRC.parent) for a in argv]
    start = time.perf_counter()
    assert main(args) == 2
    # Inputs are checked before any slow step.
    assert time.perf_counter() - start < 5
    line = one_error_line(capsys.readouterr().err)
    assert expected.format(**odd_paths).rstrip("/") in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-dir", "a-file", "binary.txt"]


def test_model_size_multiple_comes_from_the_model_config(tmp_path: Path) -> None:
    from sdenv.runtime.modelfiles import check_size, size_multiple

    assert size_multiple(tmp_path) == 16  # SD3.5's 8x VAE and patch 2 when configs are absent
    (tmp_path / "vae").mkdir()
    (tmp_path / "transformer").mkdir()
    (tmp_path / "vae" / "config.json").write_text(json.dumps({"block_out_channels": [32, 64]}))
    (tmp_path / "transformer" / "config.json").write_text(json.dumps({"patch_size": 2}))
    assert size_multiple(tmp_path) == 4  # the tiny verify model
    check_size(tmp_path, 64, 68)
    with pytest.raises(Exception, match="--width 66: must be a positive multiple of 4"):
        check_size(tmp_path, 64, 66)
    with pytest.raises(Exception, match="--height 0"):
        check_size(tmp_path, 0, None)


def test_probe_facts_with_a_cc_that_is_not_a_version(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    facts = json.loads((repo / "src/sdenv/data/machines/h200.json").read_text())
    facts["gpus"][0]["cc"] = "nine"
    bad = tmp_path / "facts.json"
    bad.write_text(json.dumps(facts))
    assert main(["probe", "--facts", str(bad), "--envs-dir", str(repo / "envs")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"{bad}.gpus[0].cc: 'nine' is not a compute capability" in line
    facts["gpus"][0]["cc"] = "9.0"
    bad.write_text(json.dumps(facts))
    assert main(["probe", "--facts", str(bad), "--envs-dir", str(repo / "envs")]) == 0


@pytest.mark.parametrize("mode", [["--check"], ["--no-verify"], ["--check", "--json"]])
def test_no_target_for_the_python_is_a_usage_error(
    index: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: list[str]
) -> None:
    write_spec(tmp_path, index)
    argv = ["lock", "demo", "--python", "3.99", "--envs-dir", str(tmp_path)]
    assert main([*argv, "--lock-dir", str(tmp_path / "locks"), *mode]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # never {"ok": true, "targets": []}
    line = one_error_line(captured.err)
    assert f"--python 3.99: demo has no target for it (its Pythons: {HOST})" in line
    assert not (tmp_path / "locks").exists()


def test_conflict_from_a_shipped_rule_names_the_rule(index: str, tmp_path: Path) -> None:
    reqs = {"torch": ">=2.4,<2.5", "diffusers": ">=0.36", "transformers": "<5"}
    spec = load_spec(write_spec(tmp_path, index, reqs))
    result = core.lock_target(spec, spec.targets[0], lock_options(tmp_path / "l", verify=False))
    assert result.status == "failed"
    assert "found no solution" in result.message
    assert "diffusers<0.36 from rule diffusers-torch-accelerator" in result.message
    assert "src/sdenv/data/rules.toml" in result.message


# --------------------------------------------------------------------------- verify inputs first


def test_verify_malformed_lock_fails_in_under_a_second(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "lock.txt"
    bad.write_text("# sdenv-lock: 1\ntorch>=2\n")
    start = time.perf_counter()
    assert main(["verify", "--lock", str(bad), "--python", sys.executable]) == 2
    assert time.perf_counter() - start < 1.0
    assert "is not an exact pin" in one_error_line(capsys.readouterr().err)


def test_verify_missing_python_is_one_line_not_four_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", "--json", "--python", str(tmp_path / "venv/bin/python")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no such interpreter" in one_error_line(captured.err)


def test_verify_drift_names_a_lock_for_another_platform(tmp_path: Path) -> None:
    from sdenv.verify import drift_part

    header = [("python", f"{HOST}"), ("platform", "linux_x86_64 (x86_64-manylinux_2_28)")]
    ok = write_lock(tmp_path / "ok.txt", {"packaging": "1"}, header)
    header[1] = ("platform", "linux_aarch64 (aarch64-manylinux_2_28)")
    other = write_lock(tmp_path / "other.txt", {"packaging": "1"}, header)
    here = f"{sys.platform}_{os.uname().machine}"
    assert not any("lock is for platform" in r for r in drift_part(None, ok).reasons)
    reasons = drift_part(None, other).reasons
    assert reasons[0] == f"lock is for platform linux_aarch64, this interpreter runs on {here}"


# --------------------------------------------------------------------------- smoke timeout


def test_smoke_tiny_timeout_blames_the_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["smoke", "--timeout", "0.001"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith("sdenv: error: --timeout 0.001: the interpreter check")
    assert "give each check more time" in line
    assert "not a working Python" not in line


# --------------------------------------------------------------------------- signals and leftovers


def sleeping_index(dest: Path) -> Path:
    """The sd stack with a diffusers whose import never ends: the proof hangs in its smoke."""
    stack = [d for d in sd_stack() if d.name != "diffusers"]
    hang = "import time\nwhile True:\n    time.sleep(1)\n"
    stack.append(Dist("diffusers", "0.35.2", ("torch",), {"diffusers/__init__.py": hang}))
    return build_index(stack, dest)


def children_running(tmp: Path) -> list[int]:
    """Processes whose command line names a file under ``tmp`` (the smoke checks' script)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if str(tmp) in cmdline and "target/smoke.py" in cmdline:
            found.append(int(proc.name))
    return found


def leftovers(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith("sdenv-") and p.is_dir())


@pytest.fixture
def hanging_lock(tmp_path: Path) -> Iterator[tuple[list[str], dict[str, str], Path]]:
    with serve(sleeping_index(tmp_path / "wheels")) as url:
        (tmp_path / "envs").mkdir()
        write_spec(tmp_path / "envs", url)
        tmp = tmp_path / "tmp"
        tmp.mkdir()
        env = dict(os.environ, TMPDIR=str(tmp), PYTHONPATH=str(SRC))
        env["SDENV_CACHE_DIR"] = str(tmp_path / "cache")
        cmd = [sys.executable, "-m", "sdenv", "lock", "demo", "--envs-dir", str(tmp_path / "envs")]
        yield [*cmd, "--lock-dir", str(tmp_path / "locks")], env, tmp


def start_until_smoke(cmd: list[str], env: dict[str, str], tmp: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not children_running(tmp):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the proof never reached its smoke checks"
        time.sleep(0.2)
    time.sleep(0.5)
    return proc


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_during_a_proving_lock_cleans_up(
    hanging_lock: tuple[list[str], dict[str, str], Path], sig: signal.Signals, code: int
) -> None:
    cmd, env, tmp = hanging_lock
    proc = start_until_smoke(cmd, env, tmp)
    assert any(n.startswith("sdenv-proof-demo-") for n in leftovers(tmp))
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=180)  # a hang guard, not a speed target
    assert proc.returncode == code, err
    line = one_error_line(err)
    assert f"interrupted by {sig.name}: stopped child processes and removed temp dirs" in line
    # Progress reached a pipe as lines: the install and the smoke steps were each announced.
    assert "installing the lock into a throwaway venv" in err
    assert "running the smoke checks in it" in err
    assert leftovers(tmp) == []
    assert children_running(tmp) == []
    assert not list((tmp.parent / "locks").glob("*.txt"))  # nothing half-written


@pytest.mark.slow
def test_sigkill_leftovers_are_removed_by_the_next_run(
    hanging_lock: tuple[list[str], dict[str, str], Path],
) -> None:
    cmd, env, tmp = hanging_lock
    proc = start_until_smoke(cmd, env, tmp)
    proc.kill()
    proc.communicate(timeout=30)
    # The children die with their parent (PR_SET_PDEATHSIG), SIGKILL or not.
    deadline = time.monotonic() + 10
    while children_running(tmp) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert children_running(tmp) == []
    left = leftovers(tmp)
    assert any(n.startswith("sdenv-proof-demo-") for n in left)
    assert all(f"-o{proc.pid}." in n for n in left)  # marked with the dead owner's pid
    # Any next run (here a quick usage error) removes what the dead one left.
    nxt = subprocess.run(
        [sys.executable, "-m", "sdenv", "lock", "--python", "3.99", "--check", *cmd[4:]],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert nxt.returncode == 2, nxt.stderr
    assert leftovers(tmp) == []


def test_reap_keeps_dirs_of_live_owners_and_unmarked_dirs(tmp_path: Path) -> None:
    with _cleanup.throwaway_dir("sdenv-test-", tmp_path) as mine:
        assert f"-{_cleanup.owner_mark()}-" in mine.name
        # A live owner (this process, or our parent) keeps its dir; an unmarked one is not ours.
        parent = tmp_path / f"sdenv-test-{_cleanup.owner_mark(os.getppid())}-x"
        parent.mkdir()
        unmarked = tmp_path / "sdenv-proof-old"
        unmarked.mkdir()
        # A dead owner: a pid that existed, started at another time (a reused pid) or is gone.
        dead = tmp_path / f"sdenv-test-o{os.getpid()}.1-x"
        dead.mkdir()
        gone = tmp_path / "sdenv-test-o999999999.5-x"
        gone.mkdir()
        removed = _cleanup.reap_stale([tmp_path])
        assert sorted(p.name for p in removed) == sorted([gone.name])
        assert mine.is_dir() and parent.is_dir() and unmarked.is_dir()
    assert not mine.exists()


def test_cleanup_run_kills_the_child_group_on_timeout(tmp_path: Path) -> None:
    marker = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, time; p = subprocess.Popen(['sleep', '60']); "
        f"open({str(marker)!r}, 'w').write(str(p.pid)); time.sleep(60)"
    )
    with pytest.raises(subprocess.TimeoutExpired):
        _cleanup.run([sys.executable, "-c", script], timeout=2)
    grandchild = int(marker.read_text())
    time.sleep(0.2)
    assert (
        not Path(f"/proc/{grandchild}").exists()
        or "Z" in (Path(f"/proc/{grandchild}/stat").read_text().split()[2])
    )


# --------------------------------------------------------------------------- audit


def publish(osv: OsvServer, *records: dict[str, object]) -> None:
    for record in records:
        (osv.advisory_dir / f"{record['id']}.json").write_text(json.dumps(record))


CU121_HEADER = [
    ("env", "sd35-fp8-cu121"),
    ("python", "3.11"),
    ("cuda", "cu121 (nvidia-cuda-runtime-cu12==12.1.105)"),
    ("constraint", "torch>=2.4,<2.5 (PyPI torch built for cu121: data/torch_cuda.toml)"),
    ("constraint", "transformers<5 (rule transformers5-needs-torch-2.6)"),
]


def test_one_slow_package_is_not_audited_not_an_outage(
    osv: OsvServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lock = write_lock(tmp_path / "l.txt", {"pillow": "10.0.0", "rich": "13.9.4"}, [])
    osv.delay["pillow"] = 3.0
    argv = ["audit", "--lock", str(lock), "--osv-url", osv.query_url, "--timeout", "1"]
    assert main(argv) == 3
    out = capsys.readouterr().out
    assert "Not audited" in out
    assert "no answer for pillow 10.0.0 within 1 s (--timeout)" in out
    assert "1 not audited" in out


def test_json_is_printed_on_a_usage_error_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The service-down case: tests/supply/test_audit.py::test_cli_unreachable_is_one_line_error.
    assert main(["audit", "--json", "--lock", str(tmp_path / "none.txt")]) == 2
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data == {"report": None, "error": data["error"], "exit_code": 2}
    assert one_error_line(captured.err) == f"sdenv: error: {data['error']}"
    assert "--lock" in data["error"] and "no such lockfile" in data["error"]


def test_fix_after_the_ignore_file(osv: OsvServer, tmp_path: Path) -> None:
    publish(
        osv,
        advisory("PYSEC-T-1", "torch", ranges=[("0", "2.6.0")]),
        advisory("PYSEC-T-2", "torch", ranges=[("0", "2.10.0")]),
        advisory("PYSEC-T-3", "torch", ranges=[("0", "2.10.0")]),
    )
    lock = write_lock(tmp_path / "l.txt", {"torch": "2.4.1"}, [])
    ignores = tmp_path / "ignore.toml"
    ignores.write_text(
        "".join(
            f'[[ignore]]\nid = "{i}"\nreason = "not reachable here"\nexpires = "2099-01-01"\n'
            for i in ("PYSEC-T-2", "PYSEC-T-3")
        )
    )
    report = supply.audit_locks(
        [lock], osv_url=osv.query_url, ignores=supply.load_ignore_file(ignores), fix=True
    )
    (fix,) = report.fixes
    assert fix.proposed == "2.6.0"  # not 2.10.0: the ignored advisories do not drive the bump
    assert fix.clears == ("PYSEC-T-1",)


@pytest.fixture
def two_envs(index: str, tmp_path: Path) -> tuple[Path, Path, Path]:
    """A cu121 env lock (its header records the CUDA line's torch range) and a cu124 env whose
    lock pins the torch that has the fix."""
    envs, locks = tmp_path / "envs", tmp_path / "locks"
    envs.mkdir()
    write_spec(envs, index, name="old")
    new = load_spec(write_spec(envs, index, name="new", cuda="cu124"))
    old = load_spec(envs / "old.toml")
    old_lock = write_lock(
        old.targets[0].lockfile(locks), {"torch": "2.4.1", "transformers": "4.57.6"}, CU121_HEADER
    )
    write_lock(new.targets[0].lockfile(locks), {"torch": "2.6.0"}, [("env", "new")])
    return envs, locks, old_lock


def test_fix_knows_the_cuda_line_and_names_the_env_with_the_fix(
    osv: OsvServer, two_envs: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    envs, locks, old_lock = two_envs
    publish(
        osv,
        advisory("PYSEC-T-1", "torch", ranges=[("0", "2.6.0")]),
        advisory("GHSA-TF-1", "transformers", ranges=[("0", "5.0.0")]),
    )
    argv = ["audit", "old", "--envs-dir", str(envs), "--lock-dir", str(locks)]
    argv += ["--osv-url", osv.query_url, "--fix"]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "Cannot be fixed inside the env" in out
    flat = " ".join(out.split())
    assert (
        "no fixed release fits sd35-fp8-cu121: fixed in torch 2.6.0, but torch>=2.4,<2.5 "
        "(PyPI torch built for cu121: data/torch_cuda.toml) holds on its cu121 line; "
        "fixed in env new (torch 2.6.0)"
    ) in flat
    assert "transformers<5 (rule transformers5-needs-torch-2.6)" in flat
    # No bump is proposed that the env cannot take (before: torch 2.10.0, then uv's refusal).
    assert "apply with" not in out
    report = supply.audit_locks(
        [old_lock], osv_url=osv.query_url, fix=True, lock_dir=locks, envs_dir=envs
    )
    assert {f.package: f.proposed for f in report.fixes} == {"torch": None, "transformers": None}


def test_plain_audit_says_which_advisories_cannot_be_fixed_in_the_env(
    osv: OsvServer, two_envs: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    envs, locks, _ = two_envs
    publish(
        osv,
        advisory("PYSEC-T-1", "torch", ranges=[("0", "2.6.0")]),
        advisory("PYSEC-T-9", "torch", ranges=[("2.4.0", "2.4.2")]),  # 2.4.2 is on the line
    )
    argv = ["audit", "old", "--envs-dir", str(envs), "--lock-dir", str(locks)]
    assert main([*argv, "--osv-url", osv.query_url]) == 1
    out = capsys.readouterr().out
    stuck = out.split("Cannot be fixed inside the env", 1)[1]
    assert "PYSEC-T-1" in stuck and "PYSEC-T-9" not in stuck


# --------------------------------------------------------------------------- output for people


def test_piped_tables_never_cut_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deep = tmp_path / ("a-long-directory-name-" * 4) / "sd35-fp8-cu121-py3.11-linux_x86_64.txt"
    lock = write_lock(deep, {"rich": "13.9.4"}, [])
    assert main(["sbom", "--lock", str(lock), "--out", str(tmp_path / "sbom")]) == 0
    out = capsys.readouterr().out
    assert str(lock) in out  # whole, on one line
    assert "…" not in out


def test_env_with_the_fix_named_from_its_cuda_line_before_it_is_locked(
    osv: OsvServer, tmp_path: Path
) -> None:
    envs = tmp_path / "envs"
    envs.mkdir()
    pypi = "https://pypi.org/simple"  # never contacted: the CUDA table says what it builds
    write_spec(envs, pypi, {"torch": ">=2.5"}, name="new", cuda="cu124")
    write_spec(envs, pypi, {"torch": ">=2.7"}, name="newest", cuda="cu128")
    lock = write_lock(tmp_path / "locks" / "old.txt", {"torch": "2.4.1"}, CU121_HEADER)
    publish(osv, advisory("PYSEC-T-1", "torch", ranges=[("0", "2.6.0")]))
    report = supply.audit_locks(
        [lock], osv_url=osv.query_url, lock_dir=tmp_path / "locks", envs_dir=envs
    )
    (finding,) = report.not_fixable_here
    # PyPI builds torch 2.5-2.6 for cu124 and 2.8-2.10 for cu128 (src/sdenv/data/torch_cuda.toml).
    assert finding.not_fixable_here.endswith(
        "fixed in env new (torch 2.5-2.6 on cu124, not locked yet), "
        "newest (torch 2.8-2.10 on cu128, not locked yet)"
    )


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["smoke", "--no-gpu"], id="smoke"),
        pytest.param(["verify", "--no-lock", "--no-gpu"], id="verify"),
        # Again where torch is installed: verify's model check then runs (making its tiny model in
        # an owner-marked temp dir) when the signal comes; without torch it ends at once.
        pytest.param(
            ["verify", "--no-lock", "--no-gpu"], id="verify-with-torch", marks=pytest.mark.runtime
        ),
    ],
)
def test_sigterm_stops_the_target_processes_and_removes_temp_dirs(
    argv: list[str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # A target interpreter whose smoke process for torch (the imports group, or torch alone) or
    # for xformers never ends; the others run for real. verify runs the imports group in its model
    # check's process: without torch there, torch fails and is asked again alone (and hangs);
    # with torch it passes there, and xformers, in a process of its own, hangs.
    wrapper = tmp_path / "python"
    wrapper.write_text(
        '#!/bin/sh\ncase "$*" in *"target/smoke.py torch"*|*"target/smoke.py xformers"*)'
        " exec sleep 3137;; esac\n"
        f'exec {sys.executable} "$@"\n'
    )
    wrapper.chmod(0o755)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONPATH=str(SRC))

    def sleepers() -> list[Path]:
        return [
            p
            for p in Path("/proc").iterdir()
            if p.name.isdigit() and _cmdline(p) == "sleep\x003137\x00"
        ]

    cmd = [sys.executable, "-m", "sdenv", *argv, "--python", str(wrapper)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    # With torch, wait until the model check has its tiny-model dir too: that is the leftover
    # the signal must take away.
    tiny = request.node.callspec.id == "verify-with-torch"
    while not sleepers() or (tiny and not any(n.startswith("sdenv-tiny-") for n in leftovers(tmp))):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert leftovers(tmp)
    proc.terminate()
    _out, err = proc.communicate(timeout=180)  # a hang guard, not a speed target
    assert proc.returncode == 143, err
    assert "interrupted by SIGTERM" in one_error_line(err)
    assert sleepers() == []
    assert leftovers(tmp) == []


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""
