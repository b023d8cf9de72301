"""``sdenv sync [ENV | --lock FILE]``: a venv exactly as one lock target pins it."""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import Any

from sdenv.cli._args import add_lock_target
from sdenv.cli._output import err, out, print_json, status_style, styled


def register(sub: Any) -> None:
    p = sub.add_parser(
        "sync",
        help="make or refresh a venv exactly to one lock target (hash-checked, nothing resolved)",
        description=(
            "Install exactly what the lock pins into a venv (default .envs/<lock target>): "
            "hashes enforced, no dependency resolution, everything the lock does not pin "
            "removed; then check the result for drift. A changed venv is built beside the old "
            "one and swapped in, so a failed sync leaves the previous venv working. A re-sync "
            "of an unchanged lock is a no-op."
        ),
    )
    add_lock_target(p, verb="sync")
    p.add_argument("--venv", type=Path, metavar="DIR", help="the venv to make or refresh")
    p.add_argument(
        "--wheelhouse",
        type=Path,
        metavar="DIR",
        help="install from this `sdenv wheelhouse` directory with no network at all "
        "(without ENV/--lock: the lock it carries)",
    )
    p.add_argument(
        "--no-hash",
        action="store_true",
        help="drift check of the new venv: versions only, do not hash its files",
    )
    p.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sdenv import sync as core

    lock = core.select_lock(
        args.env,
        args.lock,
        python=args.python,
        wheelhouse=args.wheelhouse,
        envs_dir=args.envs_dir,
        lock_dir=args.lock_dir,
    )
    sync = functools.partial(
        core.sync,
        lock,
        venv=args.venv,
        python=args.python,
        wheelhouse=args.wheelhouse,
        check_files=not args.no_hash,
    )
    if args.json:
        result = sync()
    else:
        with err.status(f"syncing {lock}") as status:
            result = sync(progress=lambda msg: status.update(msg))
    if args.json:
        print_json(result)
    else:
        drift = result.drift
        checked = f"{drift.checked_files} files hashed" if drift.checked_files else "versions"
        out.print(
            f"{result.venv}: [{status_style('pass')}]{result.status.value}[/] "
            f"({result.pins} pins from {result.lock}, {result.source}; "
            f"drift check: {styled('pass' if drift.ok else 'fail')}, {checked}; "
            f"{result.seconds:.1f} s)",
            highlight=False,
        )
        out.print(f"python: {result.python}", highlight=False)
    return 0
