"""The data a lock depends on is in its hash: edit any such file and `lock --check` says stale.

Two halves: editing each file of ``sdenv._data.LOCK_DATA`` (in a copy of the package data the
lookup is pointed at) makes a real lock stale; and a real `sdenv lock` (resolve, checks, import
proof) plus its `--check`, run in a fresh interpreter with an audit hook on ``open``, reads exactly
those files, so a table a lock starts to read cannot be left out of the hash.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sdenv import _data
from sdenv.cli import main

REPO = Path(__file__).resolve().parents[1]


def _edit(path: Path) -> None:
    """A real edit of one table: a changed row for JSON, an added rule-file comment for TOML."""
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        data["about"] = data.get("about", "") + " (edited)"
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    else:
        path.write_text(path.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")


@pytest.mark.parametrize("name", _data.LOCK_DATA)
def test_editing_a_lock_data_file_makes_the_lock_stale(
    name: str,
    locked: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    copy = tmp_path / "data"
    shutil.copytree(_data.data_dir(), copy)
    monkeypatch.setattr(_data, "data_dir", lambda: copy)
    spec = locked.parent.parent / "demo.toml"
    argv = ["lock", str(spec), "--lock-dir", str(locked.parent), "--check"]
    assert main(argv) == 0, capsys.readouterr().err  # the unedited copy: fresh
    _edit(copy / name)
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"{locked}: made with other rules/torch tables than this sdenv" in err


# Runs in a fresh interpreter: records every file under sdenv/data/ that the lock code opens,
# except the reads of data_sha256 itself (the hash reads every hashed file by construction):
# a lock with its import proof and its --check on the local index, and the resolve inputs of
# every shipped env (PyPI: the branch that bounds torch by data/torch_cuda.toml).
_RECORDER = """
import json, sys
from pathlib import Path

data_dir = Path(sys.argv[1]).resolve()
seen, hashing = set(), [False]


def hook(event, args):
    if event == "open" and not hashing[0] and isinstance(args[0], (str, bytes, Path)):
        path = Path(args[0] if not isinstance(args[0], bytes) else args[0].decode()).resolve()
        if path.is_relative_to(data_dir):
            seen.add(path.relative_to(data_dir).as_posix())


sys.addaudithook(hook)

from sdenv import lock as core
from sdenv.lock.spec import load_spec

real_hash = core.data_sha256


def data_sha256():
    hashing[0] = True
    try:
        return real_hash()
    finally:
        hashing[0] = False


core.data_sha256 = data_sha256
spec = load_spec(Path(sys.argv[2]))
opts = core.LockOptions(lock_dir=Path(sys.argv[3]), smoke_checks=tuple(sys.argv[4].split(",")))
written = core.lock_target(spec, spec.targets[0], opts)
checked = core.check_target(spec, spec.targets[0], opts)
# The shipped envs resolve against PyPI, which reads the torch/CUDA table (offline, no resolve).
for path in sorted(Path(sys.argv[5]).glob("*.toml")):
    shipped = load_spec(path, path.parent)
    core.base_inputs(shipped, shipped.targets[0], core.checks.default_rules())
print(json.dumps({"seen": sorted(seen), "lock": written.status, "proof": written.proof.status,
                  "check": checked.status, "message": checked.message}))
"""


@pytest.mark.slow
def test_the_lock_reads_exactly_the_data_files_it_hashes(index: str, tmp_path: Path) -> None:
    from helpers.specs import SMOKE, write_spec

    spec = write_spec(tmp_path, index)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(_RECORDER),
            *(str(_data.data_dir()), str(spec), str(tmp_path / "locks"), ",".join(SMOKE)),
            str(REPO / "envs"),
        ],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "SDENV_CACHE_DIR": str(tmp_path / "cache"),
            # The sdenv under test, not whichever one the interpreter would find first.
            "PYTHONPATH": str(_data.data_dir().parents[1]),
        },
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    # A lock made with the import proof (the smoke classifier is loaded) and a fresh --check.
    assert (out["lock"], out["proof"], out["check"]) == ("written", "passed", "fresh"), out
    assert set(out["seen"]) == set(_data.LOCK_DATA)
