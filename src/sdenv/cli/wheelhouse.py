"""``sdenv wheelhouse [ENV | --lock FILE] --out DIR``: the wheels of a lock target, for offline."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sdenv.cli._args import add_lock_target
from sdenv.cli._output import err, out, print_json


def register(sub: Any) -> None:
    p = sub.add_parser(
        "wheelhouse",
        help="download every wheel of one lock target (hash-checked) with the lock, for offline",
        description=(
            "Download the wheel of every pin that the lock target (its Python and platform) "
            "installs into DIR, check each file against the lock's sha256 and copy the lock in. "
            "`sdenv sync --wheelhouse DIR` installs it on a box with no network."
        ),
    )
    add_lock_target(p, verb="download")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="the wheelhouse folder")
    p.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sdenv.sync import select_lock
    from sdenv.wheelhouse import make_wheelhouse

    lock = select_lock(
        args.env,
        args.lock,
        python=args.python,
        envs_dir=args.envs_dir,
        lock_dir=args.lock_dir,
        this_machine=False,
    )
    if args.json:
        result = make_wheelhouse(lock, args.out, python=args.python)
        print_json(result)
        return 0
    with err.status(f"wheelhouse of {lock}") as status:
        result = make_wheelhouse(
            lock, args.out, python=args.python, progress=lambda msg: status.update(msg)
        )
    out.print(
        f"{result.out}: {len(result.wheels)} wheels for Python {result.python} "
        f"{result.platform}, {result.bytes / 2**20:.0f} MiB, each checked against the lock "
        f"({result.seconds:.1f} s); lock: {result.lock}",
        highlight=False,
    )
    out.print(f"install it offline: sdenv sync --wheelhouse {result.out}", highlight=False)
    return 0
