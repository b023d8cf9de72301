"""Developer sessions; `make` wraps them. They run in the venv of `make install`."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "types", "tests"]


@nox.session
def lint(session: nox.Session) -> None:
    session.run("ruff", "check", "src", "tests", "noxfile.py", "scripts")
    session.run("ruff", "format", "--check", "src", "tests", "noxfile.py", "scripts")


@nox.session
def types(session: nox.Session) -> None:
    session.run("mypy")


# What the default addopts leave out besides `runtime`; the runtime pass keeps them out too.
NOT_ONLINE = "not online and not docker and not gpu"


def runtime_python() -> Path:
    """The interpreter of the default env's synced runtime (`make install` runs `sdenv sync`)."""
    from sdenv.lock.pylock import read_any_lock
    from sdenv.lock.spec import DEFAULT_ENV
    from sdenv.sync import default_venv, lock_for_env

    lock = lock_for_env(os.environ.get("RUNTIME_ENV", DEFAULT_ENV))
    return default_venv(read_any_lock(lock), lock) / "bin" / "python"


@nox.session
def tests(session: nox.Session) -> None:
    """Offline tests: in .venv, then those marked `runtime` in the runtime env (torch & co)."""
    # `nox -s tests -- FILE` may select tests of one pass only: the other then has none (exit 5).
    codes = [0, 5] if session.posargs else [0]
    session.run("pytest", "-q", *session.posargs, success_codes=codes)
    python = runtime_python()
    if not python.exists():
        session.error(f"{python}: no runtime env; run `make install` (it runs `sdenv sync`)")
    dev_site = sysconfig.get_path("purelib")  # .venv's: pytest and sdenv's own deps
    session.run(
        str(python), "tests/runtime_pytest.py", dev_site, "-q", "-m", f"runtime and {NOT_ONLINE}",
        *session.posargs, success_codes=codes,
    )  # fmt: skip


@nox.session
def tests_online(session: nox.Session) -> None:
    session.run("pytest", "-q", "-m", "online or ray", *session.posargs)


@nox.session
def lock_check(session: nox.Session) -> None:
    """Fails when a committed lock is stale against its spec."""
    session.run("sdenv", "lock", "--check", *session.posargs)


@nox.session
def audit(session: nox.Session) -> None:
    """pip-audit over every lock pin; `nox -s audit -- --service pypi` etc. passes options on."""
    session.run("sdenv", "audit", *session.posargs)


@nox.session
def image(session: nox.Session) -> None:
    """Lock check, bases, the default env's app image and its smoke (DOCKER_HOST: the engine)."""
    session.run("sdenv", "lock", "--check")
    session.run("sdenv", "image", "base", "--bootstrap", *session.posargs)
    session.run("sdenv", "image", "build", *session.posargs)


@nox.session
def tests_docker(session: nox.Session) -> None:
    session.run("pytest", "-q", "-m", "docker", *session.posargs)
