"""``sdenv smoke``: does an env import, compute and run FP8 for real (in any interpreter)."""

from __future__ import annotations

import argparse
from typing import Any

from sdenv.cli._output import err, out, print_json, styled
from sdenv.smoke import CHECK_NAMES, SmokeReport, run_smoke


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "smoke",
        help="import and run torch/xformers/diffusers/transformers and FP8 checks in an env",
        description=(
            "Run the checks in processes of the target interpreter (a segfault or an "
            "undefined symbol cannot take the run down: crash-prone checks run alone, the "
            "others share one process and any that fails there is re-run alone), classify "
            "failures with the "
            "distributions to blame and a fix hint. Exit 1 on any failure; skipped checks "
            "(no GPU) are listed as skipped, never passed."
        ),
    )
    p.add_argument(
        "--python",
        metavar="PATH",
        help="interpreter of the env to test (a venv's bin/python); default: this one",
    )
    p.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    gpu = p.add_mutually_exclusive_group()
    gpu.add_argument(
        "--gpu",
        dest="gpu",
        action="store_const",
        const=True,
        help="require the GPU checks (no usable GPU is a failure); default: auto-detect",
    )
    gpu.add_argument(
        "--no-gpu", dest="gpu", action="store_const", const=False, help="skip the GPU checks"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=180.0,
        metavar="S",
        help="limit for each check in seconds (default 180; a shared process: per check)",
    )
    p.add_argument(
        "--check",
        action="append",
        choices=CHECK_NAMES,
        metavar="NAME",
        help=f"run only this check and its prerequisites (repeatable): {', '.join(CHECK_NAMES)}",
    )
    p.set_defaults(func=run, gpu=None)


def run(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        from sdenv.errors import UsageError

        raise UsageError(f"--timeout {args.timeout:g}: must be a positive number of seconds")
    if not args.json:
        err.print("[dim]running smoke checks, one process each...[/]")
    report = run_smoke(args.python, gpu=args.gpu, timeout=args.timeout, checks=args.check)
    if args.json:
        print_json(report)
    else:
        render(report)
    return 0 if report.ok else 1


def render(report: SmokeReport) -> None:
    from rich.markup import escape
    from rich.table import Table

    facts = report.facts
    out.print(
        f"[bold]{escape(report.python)}[/]  Python {facts.get('python_version', '?')}  "
        f"GPU checks: {'on' if report.gpu else 'off'}  [dim]{report.seconds:.1f} s[/]"
    )
    table = Table(title_justify="left")
    for col in ("check", "status", "s", "detail"):
        table.add_column(col, overflow="fold")
    for c in report.checks:
        table.add_row(c.name, styled(c.status), f"{c.seconds:.1f}", escape(c.detail))
    out.print(table)
    for c in report.failures:
        f = c.failure
        if f is None:
            continue
        out.print(
            f"[bold red]{c.name}[/] [red]{f.kind}[/] culprit: [bold]{escape(', '.join(f.culprits))}"
            f"[/]\n  fix: {escape(f.hint)}\n  error: [dim]{escape(f.error)}[/]"
        )
    verdict = "[green]all checks passed[/]" if report.ok else "[bold red]smoke failed[/]"
    skipped = sum(c.status == "skip" for c in report.checks)
    out.print(
        f"{verdict} ({skipped} skipped)"
        + (f"; blame: {', '.join(report.culprits)}" if report.culprits else "")
    )
