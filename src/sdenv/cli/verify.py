"""``sdenv verify``: probe -> drift -> smoke -> model check; one verdict, every reason."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sdenv.cli._args import add_dirs
from sdenv.cli._output import err, out, print_json, styled


def register(subparsers: Any) -> None:
    from sdenv.verify import DEFAULT_LOCK_PATTERN

    p = subparsers.add_parser(
        "verify",
        help="one verdict for this box/image: probe, drift vs the lock, smoke, tiny-model FP8 run",
        description=(
            "Probe the GPU and FP8 verdict, compare installed packages (and their files) with "
            "the lock, run the smoke checks, then load a tiny SD3.5 pipeline made on the spot "
            "in the FP8 mode the probe chose and run two steps. Exit 0 only when every required "
            "part passes; parts skipped for a reason (no GPU, no lock) fail only with "
            "--fail-on-skip."
        ),
    )
    p.add_argument(
        "--lock",
        type=Path,
        metavar="FILE",
        help=(
            "lockfile to check the installed set against (default: the target's Python's lock, "
            f"{DEFAULT_LOCK_PATTERN.format(python='X.Y')})"
        ),
    )
    p.add_argument(
        "--no-lock", action="store_true", help="skip the drift part (a box not built from a lock)"
    )
    p.add_argument(
        "--python",
        metavar="PY",
        help="verify another interpreter (a venv's bin/python); default: this one",
    )
    p.add_argument(
        "--model",
        type=Path,
        metavar="DIR",
        help="model check on this local diffusers SD3.5 directory instead of the tiny model",
    )
    p.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    p.add_argument(
        "--fail-on-skip", action="store_true", help="a skipped part (e.g. no GPU) fails the verdict"
    )
    hashing = p.add_mutually_exclusive_group()
    hashing.add_argument(
        "--no-hash", action="store_true", help="drift: versions only, do not hash files"
    )
    hashing.add_argument(
        "--rehash",
        action="store_true",
        help="drift: hash every file, also those unchanged (inode, size, times) since they last "
        "matched their RECORD in this venv",
    )
    gpu = p.add_mutually_exclusive_group()
    gpu.add_argument(
        "--gpu", dest="gpu", action="store_const", const=True, help="smoke: GPU required"
    )
    gpu.add_argument(
        "--no-gpu", dest="gpu", action="store_const", const=False, help="smoke: CPU only"
    )
    add_dirs(p, locks=False)  # the specs name the env that runs native FP8 on this box
    p.set_defaults(func=run, gpu=None)


def run(args: argparse.Namespace) -> int:
    from sdenv.lock.spec import load_specs
    from sdenv.verify import Part, verify

    def progress(part: Part) -> None:
        if not args.json:
            err.print(
                f"  {part.name}: {styled(part.status)} ({part.seconds:.1f} s)",
                highlight=False,
            )

    def start(python: str) -> None:
        if not args.json:  # after the inputs passed: a usage error stays one line
            err.print(
                f"verifying {python}: probe, then drift, smoke and the model check "
                "(each part is listed as it ends)",
                highlight=False,
                markup=False,
            )

    result = verify(
        python=args.python,
        lock=args.lock,
        no_lock=args.no_lock,
        model=args.model,
        fail_on_skip=args.fail_on_skip,
        gpu=args.gpu,
        check_files=not args.no_hash,
        rehash=args.rehash,
        on_part=progress,
        envs=load_specs(args.envs_dir)[0],
        on_start=start,
    )
    if args.json:
        print_json(result)
    else:
        render(result)
    return 0 if result.ok else 1


def render(result: Any) -> None:
    from sdenv.cli._output import table as new_table

    table = new_table(
        ("part", "status", "required", "time", "reasons"),
        title=f"sdenv verify: {result.python}",
        title_justify="left",
    )
    for p in result.parts:
        reasons = list(p.reasons)
        table.add_row(
            p.name,
            styled(p.status),
            "yes" if p.required else "no",
            f"{p.seconds:.1f} s",
            "\n".join(reasons) or "-",
        )
    out.print(table)
    out.print(
        f"verdict: {styled(result.verdict)} in {result.seconds:.1f} s "
        f"(fp8 mode {result.fp8_mode}, model ran {result.model_mode or 'not at all'}"
        f"{', skips fail' if result.fail_on_skip else ''})"
    )
    if result.advisory:
        out.print(f"[yellow]advisory:[/] {result.advisory}", highlight=False)
    for line in result.failed:
        out.print(f"  [bold red]x[/] {line}", highlight=False)
