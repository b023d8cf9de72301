"""`sdenv audit --fix`'s plan without the network: the spec's specifiers, and what is not re-locked.
(Re-locks against a real index: test_audit_fix.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sdenv.lock.spec import load_spec
from sdenv.supply.audit import FixProposal
from sdenv.supply.fixplan import check_fixes, spec_allows
from sdenv.supply.locks import LockTarget

if TYPE_CHECKING:
    from conftest import LockWriter


def test_spec_allows(repo: Path) -> None:
    spec = load_spec("sd35-fp8-cu121", repo / "envs")
    assert spec_allows(spec, "torch", "2.6.0")[0] == "ok"
    assert spec_allows(spec, "torch", "2.3.1")[0] == "fail"
    assert spec_allows(spec, "pillow", "99")[0] == "ok"  # transitive: spec is silent


def test_check_fixes_without_relock(repo: Path, tmp_path: Path, make_lock: LockWriter) -> None:
    """Bumps the spec excludes are not re-locked; locks given by path have no spec to check."""
    spec = load_spec("sd35-fp8-cu121", repo / "envs")
    lock = make_lock(tmp_path / "sd35-fp8-cu121-py3.11-linux_x86_64.txt", {"diffusers": "0.30.0"})
    fix = FixProposal("diffusers", "0.30.0", "0.30.3", ("PYSEC-9",), (lock.stem,))
    by_env = check_fixes([fix], [LockTarget(lock, spec, spec.targets[1])], tmp_path)
    (c,) = by_env.checks
    assert (c.env, c.spec_status, c.lock_status) == ("sd35-fp8-cu121", "fail", "skip")
    assert "diffusers>=0.31 excludes 0.30.3" in c.spec_note
    assert by_env.sets == ()
    by_path = check_fixes([fix], [LockTarget(lock)], tmp_path)
    assert [(c.spec_status, c.lock_status) for c in by_path.checks] == [("skip", "skip")]
