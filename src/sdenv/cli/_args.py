"""Arguments several commands share, declared once so their names, defaults and help agree."""

from __future__ import annotations

import argparse
from pathlib import Path

from sdenv.lock.lockfile import DEFAULT_LOCK_DIR
from sdenv.lock.spec import DEFAULT_ENV, DEFAULT_ENVS_DIR


def add_dirs(p: argparse.ArgumentParser, *, locks: bool = True) -> None:
    """``--envs-dir`` (and ``--lock-dir``): where env specs and their lockfiles live."""
    p.add_argument(
        "--envs-dir", type=Path, default=DEFAULT_ENVS_DIR, help="where env specs live (envs/)"
    )
    if locks:
        p.add_argument(
            "--lock-dir",
            type=Path,
            default=DEFAULT_LOCK_DIR,
            help="where lockfiles live (lockfiles/)",
        )


def add_lock_selection(p: argparse.ArgumentParser, *, lock_help: str) -> None:
    """Envs to act on, or explicit ``--lock`` files instead of the envs' lockfiles."""
    p.add_argument("envs", nargs="*", metavar="ENV", help="env names or spec paths (default env)")
    p.add_argument("--lock", action="append", type=Path, default=[], metavar="FILE", help=lock_help)
    add_dirs(p)


def add_lock_target(p: argparse.ArgumentParser, *, verb: str) -> None:
    """One lock target: ENV (or ``auto``) or ``--lock FILE``, and ``--python X.Y``."""
    p.add_argument(
        "env",
        nargs="?",
        metavar="ENV",
        help=f"env name or spec path, or 'auto': the env `sdenv probe` recommends for this box "
        f"(default: {DEFAULT_ENV})",
    )
    p.add_argument(
        "--lock",
        type=Path,
        metavar="FILE",
        help=f"{verb} this lockfile (a .txt lock or its pylock.*.toml) instead of ENV's",
    )
    p.add_argument(
        "--python", metavar="X.Y", help="the target's Python (default: the one running sdenv)"
    )
    add_dirs(p)
