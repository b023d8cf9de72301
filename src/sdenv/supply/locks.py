"""Which lockfiles a supply-chain command reads: every target lock of the named envs, or files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sdenv._fs import require_dir_arg, require_file_arg
from sdenv.errors import UsageError
from sdenv.lock.lockfile import DEFAULT_LOCK_DIR
from sdenv.lock.spec import DEFAULT_ENV, DEFAULT_ENVS_DIR, EnvSpec, Target, load_spec


@dataclass(frozen=True)
class LockTarget:
    """A lockfile to audit, and the env target it was made for when known."""

    path: Path
    spec: EnvSpec | None = None
    target: Target | None = None

    @property
    def label(self) -> str:
        return self.path.stem


def lockfiles_for(
    envs: Sequence[str],
    locks: Sequence[Path] = (),
    lock_dir: Path = DEFAULT_LOCK_DIR,
    envs_dir: Path = DEFAULT_ENVS_DIR,
) -> list[LockTarget]:
    """``ENV ...`` -> every target lock of those envs; ``--lock FILE`` -> those files.

    No ENV and no --lock means the default env. A missing env lock is a usage error naming the
    command that makes it, never an empty audit.
    """
    found: list[LockTarget] = []
    for path in locks:
        require_file_arg(path, "--lock", "lockfile", "check --lock or run `sdenv lock`")
        found.append(LockTarget(path))
    if envs or not locks:
        require_dir_arg(lock_dir, "--lock-dir")
    for name in envs or ([] if locks else [DEFAULT_ENV]):
        spec = load_spec(name, envs_dir)
        for target in spec.targets:
            path = target.lockfile(lock_dir)
            if not path.is_file():
                raise UsageError(
                    f"{path}: no lockfile for {target.slug}; "
                    f"create it with `sdenv lock {spec.name}`"
                )
            found.append(LockTarget(path, spec, target))
    labels = [t.label for t in found]
    dupes = sorted({n for n in labels if labels.count(n) > 1})
    if dupes:
        raise UsageError(f"lockfile {dupes[0]} given twice; name each lock once")
    return found
