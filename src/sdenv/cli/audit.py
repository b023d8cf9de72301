"""``sdenv audit``: known vulnerabilities in every pin of the env locks, through pip-audit."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from sdenv import supply as core
from sdenv.cli._args import add_lock_selection
from sdenv.cli._output import err, out, print_json, status_style, styled, table
from sdenv.errors import SdenvError, UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "audit",
        help="check every pinned package of the env locks against a vulnerability service",
        description=(
            "Audit each lockfile with pip-audit's vulnerability services without installing "
            "anything. Exit 0: clean; 1: an un-ignored vulnerability; 3: no finding but some "
            "packages could not be audited. An unreachable service is an error (exit 1)."
        ),
    )
    add_lock_selection(p, lock_help="audit this lockfile (repeatable) instead of the env locks")
    p.add_argument(
        "--service",
        choices=core.SERVICES,
        default=core.DEFAULT_SERVICE,
        help="vulnerability service (default: osv)",
    )
    p.add_argument(
        "--osv-url",
        default=None,
        metavar="URL",
        help="OSV-compatible query URL or base URL of a mirror "
        f"(default: $PIP_AUDIT_OSV_URL or {core.DEFAULT_OSV_URL})",
    )
    p.add_argument(
        "--ignore-file",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"TOML [[ignore]] entries: id, reason, expires (default: {core.DEFAULT_IGNORE_FILE} "
        "if present)",
    )
    p.add_argument("--timeout", type=int, default=core.DEFAULT_TIMEOUT, help="seconds per request")
    p.add_argument(
        "--fix",
        action="store_true",
        help="propose the smallest bumps that clear the findings and re-lock with them",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.json:
        return _run(args)
    # --json: stdout always holds one JSON object, also when the audit cannot run (a usage
    # error, an unreachable service); the one-line error still goes to stderr.
    try:
        return _run(args)
    except SdenvError as exc:
        print_json({"report": None, "error": str(exc), "exit_code": exc.exit_code})
        raise


def _run(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise UsageError(f"--timeout {args.timeout}: must be a positive number of seconds")
    targets = core.lockfiles_for(args.envs, args.lock, args.lock_dir, args.envs_dir)
    ignore_path = args.ignore_file
    if ignore_path is None and core.DEFAULT_IGNORE_FILE.is_file():
        ignore_path = core.DEFAULT_IGNORE_FILE
    ignores = core.load_ignore_file(ignore_path) if ignore_path else core.NO_IGNORES
    if not args.json:
        err.print(f"auditing {len(targets)} lockfile(s) with the {args.service} service…")
    report = core.audit_locks(
        [t.path for t in targets],
        service=args.service,
        osv_url=args.osv_url,
        ignores=ignores,
        fix=args.fix,
        timeout=args.timeout,
        lock_dir=args.lock_dir,
        envs_dir=args.envs_dir,
    )
    plan = core.FixPlan()
    if args.fix and report.fixes:
        if not args.json:
            err.print(f"checking {len(report.fixes)} proposed bump(s) with dry-run re-locks…")
        plan = core.check_fixes(report.fixes, targets, lock_dir=args.lock_dir)
    if args.json:
        print_json({"report": report, "fix_plan": plan, "exit_code": report.exit_code})
    else:
        _render(report, plan)
    return report.exit_code


def _render(report: core.AuditReport, plan: core.FixPlan) -> None:
    for rule in report.expired_ignores:
        err.print(
            f"[yellow]warning:[/] {report.ignore_file}: ignore of {rule.id} expired on "
            f"{rule.expires}; it no longer applies (review it, then extend or remove it)",
            markup=True,
            highlight=False,
        )
    if report.findings:
        out.print(_findings(report))
    if report.not_fixable_here:
        out.print(_not_fixable(report))
    if report.unaudited:
        out.print(_unaudited(report))
    if report.fixes:
        out.print(_fixes(report, plan))
        _fix_sets(plan)
    active = len(report.active)
    ignored = len(report.findings) - active
    line = (
        f"{report.status}: {report.packages} pinned packages in {len(report.locks)} lock(s); "
        f"{active} vulnerable, {ignored} ignored, {len(report.unaudited)} not audited "
        f"({report.service}: {report.url})"
    )
    style = status_style(
        {"pass": "pass", "vulnerable": "fail", "incomplete": "warn"}[report.status]
    )
    out.print(line, style=style)


def _findings(report: core.AuditReport) -> Table:
    vulns = table(
        ("package", "version", "advisory", "fixed in", "locks", "status"),
        title="Vulnerabilities",
        title_justify="left",
    )
    for f in report.findings:
        status = "ignored" if f.ignored else "vulnerable"
        note = (
            f"{status} ({escape(f.ignored.reason)}; until {f.ignored.expires})"
            if f.ignored
            else status
        )
        version = f.version
        if f.audited_version != f.version:
            version += f" (as {f.audited_version})"
        advisory = f.id + (f" ({', '.join(f.aliases)})" if f.aliases else "")
        vulns.add_row(
            f.package,
            version,
            advisory,
            ", ".join(f.fix_versions) or "none yet",
            "\n".join(f.locks),
            note,
            style=status_style("warn" if f.ignored else "fail"),
        )
    return vulns


def _not_fixable(report: core.AuditReport) -> Table:
    stuck = table(
        ("package", "advisory", "why no fix fits this env"),
        title="Cannot be fixed inside the env (its CUDA line or a known incompatibility)",
        title_justify="left",
    )
    for f in report.not_fixable_here:
        stuck.add_row(f.package, f.id, escape(f.not_fixable_here), style=status_style("fail"))
    return stuck


def _unaudited(report: core.AuditReport) -> Table:
    missed = table(
        ("package", "version", "reason", "locks"),
        title="Not audited (not counted as clean)",
        title_justify="left",
    )
    for u in report.unaudited:
        missed.add_row(u.package, u.version, escape(u.reason), "\n".join(u.locks), style="yellow")
    return missed


def _fixes(report: core.AuditReport, plan: core.FixPlan) -> Table:
    fixes = table(
        ("package", "from", "to", "clears", "env", "spec", "re-lock (dry run)"),
        title="Proposed fixes",
        title_justify="left",
    )
    for p in report.fixes:
        rows: list[core.FixCheck | None] = [
            c for c in plan.checks if (c.package, c.version) == (p.package, p.version)
        ]
        for c in rows or [None]:
            fixes.add_row(
                p.package,
                p.version,
                p.proposed or f"no fix: {escape(p.note)}",
                ", ".join(p.clears),
                c.env if c else "-",
                _cell(c.spec_status, c.spec_note) if c else "-",
                _cell(c.lock_status, c.lock_note) if c else "-",
            )
    return fixes


def _fix_sets(plan: core.FixPlan) -> None:
    for s in plan.sets:
        if s.command:
            out.print(f"apply with: {s.command}", highlight=False, markup=False)
        elif len(s.pins) > 1:
            out.print(
                f"{s.env}: the bumps pass one by one but not together: {s.lock_note}",
                style=status_style("fail"),
                highlight=False,
                markup=False,
            )


def _cell(status: str, note: str) -> str:
    # Notes quote specifiers and resolver output: escape them so '[' is not read as markup.
    return styled(status) + (f": {escape(note)}" if note else "")
