"""Developer sessions; `make` wraps them. They run in the venv of `make install`."""

from __future__ import annotations

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


@nox.session
def tests(session: nox.Session) -> None:
    session.run("pytest", "-q", *session.posargs)


@nox.session
def tests_online(session: nox.Session) -> None:
    session.run("pytest", "-q", "-m", "online", *session.posargs)


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
