"""Host side of ``sdenv fleet verify``: turn ENV / --lock / --no-lock into the job each node runs.

Bad input fails here, before any node is contacted: an unknown env, a lock that does not parse,
an env with no lockfile at all (exit 2, one line). What each node then needs (spec texts and the
env's lockfiles for every Python) travels inside the job, so nodes need no checkout of the repo.
"""

from __future__ import annotations

from pathlib import Path

from sdenv.errors import UsageError
from sdenv.fleet.node import NodeJob
from sdenv.lock.lockfile import DEFAULT_LOCK_DIR, read_lockfile
from sdenv.lock.spec import DEFAULT_ENV, DEFAULT_ENVS_DIR, load_spec

DEFAULT_TIMEOUT_S = 900.0  # a cold verify on an H200 took 18-26 s; a sync of 2.9 GB of wheels 82 s


def _env_locks(env: str, lock_dir: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(lock_dir.glob(f"{env}-py*.txt"))}


def prepare_job(
    envs: list[str],
    *,
    lock: Path | None = None,
    no_lock: bool = False,
    envs_dir: Path = DEFAULT_ENVS_DIR,
    lock_dir: Path = DEFAULT_LOCK_DIR,
    venv: str | None = None,
    sync: bool = False,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> NodeJob:
    if len(envs) > 1:
        raise UsageError(f"fleet verify takes one ENV (or auto), got {len(envs)}: {' '.join(envs)}")
    env = envs[0] if envs else None
    if (env is not None) + (lock is not None) + no_lock > 1:
        raise UsageError("give one of ENV, --lock FILE and --no-lock")
    if timeout <= 0:
        raise UsageError(f"--timeout {timeout:g}: must be a positive number of seconds")
    if venv is not None and not Path(venv).is_absolute():
        raise UsageError(f"--venv {venv}: give an absolute path (it is a path on every node)")
    if lock is not None:
        parsed = read_lockfile(lock)  # a missing or malformed lock: its one-line error, exit 2
        if sync and not parsed.pins:
            raise UsageError(f"{lock}: pins nothing; --sync needs a lock made by `sdenv lock`")
        return NodeJob(
            env=parsed.get("env"),
            timeout=timeout,
            lock_name=lock.name,
            lock_text=lock.read_text(),
            venv=venv,
            sync=sync,
        )
    if no_lock:
        return NodeJob(env=None, timeout=timeout, no_lock=True, venv=venv, sync=sync)
    env = env or DEFAULT_ENV
    if env == "auto":
        paths = sorted(envs_dir.glob("*.toml")) if envs_dir.is_dir() else []
        if not paths:
            raise UsageError(f"{envs_dir}: no env specs for ENV auto; pass --envs-dir")
        specs = [load_spec(p, envs_dir) for p in paths]
    else:
        specs = [load_spec(env, envs_dir)]
        env = specs[0].name  # a spec given by path: nodes know it by name
    locks = {name: text for s in specs for name, text in _env_locks(s.name, lock_dir).items()}
    if env != "auto" and not locks:
        raise UsageError(f"{lock_dir}: no lockfile for env {env}; make one with `sdenv lock {env}`")
    return NodeJob(
        env=env,
        timeout=timeout,
        specs={s.name: s.path.read_text() for s in specs},
        locks=locks,
        venv=venv,
        sync=sync,
    )
