"""``sdenv lock [ENV ...]``: pin a compatible, hashed set per target, proven to import."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sdenv.cli._args import add_dirs
from sdenv.lock.spec import DEFAULT_ENV


def register(sub: Any) -> None:
    p = sub.add_parser(
        "lock",
        help="resolve, check and prove-import the pinned set of env specs",
        description="Lock each (env, python, platform) target: resolve for the target, check the "
        "CUDA variant, xformers ABI, GPU coverage and known incompatibilities, install into a "
        "throwaway venv and run the smoke checks, then write lockfiles/<target>.txt.",
    )
    p.add_argument("envs", nargs="*", metavar="ENV", help=f"env name or spec path ({DEFAULT_ENV})")
    add_dirs(p)
    p.add_argument("--resolver", choices=("uv", "pip-tools"), default="uv")
    p.add_argument("--no-verify", action="store_true", help="skip the import proof")
    p.add_argument(
        "--search",
        action="store_true",
        help="when the proof fails, bisect the culprit and bound it",
    )
    p.add_argument("--check", action="store_true", help="exit 1 when a committed lock is stale")
    p.add_argument("--upgrade", action="store_true", help="let every pin move to the newest")
    p.add_argument(
        "--upgrade-package", action="append", default=[], metavar="NAME", help="let NAME move"
    )
    p.add_argument("--python", action="append", default=[], help="only these target Pythons")
    p.add_argument(
        "--rules",
        type=Path,
        metavar="FILE",
        help="known-incompatibility rules to apply instead of the shipped data/rules.toml "
        "(an empty file: none, e.g. to see what --search learns)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sdenv import lock as core
    from sdenv._fs import require_dir_arg
    from sdenv.cli._output import progress
    from sdenv.errors import UsageError
    from sdenv.lock.spec import load_spec

    require_dir_arg(args.lock_dir, "--lock-dir")
    names = args.envs or [DEFAULT_ENV]
    # Every spec is validated before anything runs: a bad one writes nothing at all.
    specs = [load_spec(n, args.envs_dir) for n in names]
    rules = None
    if args.rules is not None:
        from sdenv.lock.checks import RulesError, parse_rules

        try:
            rules = tuple(parse_rules(args.rules.read_text(encoding="utf-8"), str(args.rules)))
        except OSError as exc:
            raise RulesError(f"{args.rules}: cannot read the rules file ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise RulesError(f"{args.rules}: binary data, not a TOML rules file") from None
    # Which targets, per spec, decided before anything runs: checking or locking nothing is a
    # usage error, never an empty pass.
    planned = []
    for spec in specs:
        targets = [t for t in spec.targets if not args.python or t.python in args.python]
        if not targets:
            have = ", ".join(t.python for t in spec.targets)
            raise UsageError(
                f"--python {' '.join(args.python)}: {spec.name} has no target for it (its "
                f"Pythons: {have}); pick one of those or add it to {spec.path}"
            )
        planned.append((spec, targets))
    results: list[core.TargetResult] = []
    with progress("checking locks" if args.check else "locking") as status:
        opts = core.LockOptions(
            lock_dir=args.lock_dir,
            resolver=args.resolver,
            verify=not args.no_verify,
            search=args.search,
            upgrade=args.upgrade,
            upgrade_packages=tuple(args.upgrade_package),
            rules=rules,
            rules_source=str(args.rules) if args.rules is not None else None,
            progress=status,
        )
        for spec, targets in planned:
            if args.check:
                results += [core.check_target(spec, t, opts) for t in targets]
            else:
                with core.env_file_lock(opts.lock_dir, spec.name):
                    results += [core.lock_target(spec, t, opts) for t in targets]
        coverage = _torch_coverage(specs, args.envs_dir, status) if args.check else None
    if args.json:
        from sdenv.cli._output import print_json

        doc: dict[str, Any] = {"ok": all(r.ok for r in results), "targets": results}
        if coverage is not None:
            doc["uncovered_torch"] = [u for c in coverage for u in c.uncovered]
            doc["torch_index_errors"] = [c.error for c in coverage if c.error]
        print_json(doc)
    else:
        _render(results, check=args.check)
        if coverage is not None:
            _render_coverage(coverage)
    # A torch release no env covers is a warning: the committed locks are still what they say.
    return 0 if all(r.ok for r in results) else 1


def _torch_coverage(specs: list[Any], envs_dir: Path, status: Callable[[str], None]) -> list[Any]:
    from sdenv.lock.spec import load_specs
    from sdenv.lock.torch_releases import check_specs

    status("listing torch releases on the index")
    shipped, _broken = load_specs(envs_dir)  # a broken spec elsewhere is not this check's error
    return check_specs(specs, shipped)


def _render_coverage(coverage: list[Any]) -> None:
    from rich.markup import escape

    from sdenv.cli._output import err

    for c in coverage:
        if c.error:
            err.print(
                f"[yellow]warning:[/] torch releases not checked: {escape(c.error)}", soft_wrap=True
            )
        if not c.uncovered:
            continue
        err.print(
            f"[yellow]warning:[/] {len(c.uncovered)} torch release(s) on {escape(c.index)} that "
            "no shipped env covers:",
            soft_wrap=True,
        )
        for u in c.uncovered:
            err.print(f"  {u.reason}", markup=False, highlight=False, soft_wrap=True)


def _render(results: list[Any], *, check: bool) -> None:
    from rich.text import Text

    from sdenv.cli._output import error_line, out, status_style, table

    t = table(
        ("target", "status", "proof", "resolver", "pins", "lockfile"),
        title="sdenv lock --check" if check else "sdenv lock",
    )
    for r in results:
        proof = r.proof.status if not check else "-"
        t.add_row(
            r.target.slug,
            Text(r.status, style=status_style(_style(r.status))),
            Text(proof, style=status_style(_style(proof))),
            f"{r.resolver} {r.resolve_seconds:.1f}s" if r.resolver else "-",
            str(len(r.pins)),
            str(r.path),
        )
    out.print(t)
    for r in results:
        if r.changes:
            changes = table(("package", "old", "new"), title=f"{r.target.slug}: changes")
            for name, old, new in r.changes:
                changes.add_row(name, old or "-", new or "-")
            out.print(changes)
        if r.checks:
            out.print(Text(f"{r.target.slug}:", style="bold"))
        for c in r.checks:
            line = Text("  ")
            line.append(c.status, style=status_style(c.status))
            line.append(f" {c.name}: {c.detail}")
            out.print(line)
        if r.learned:
            out.print(f"  learned rules for {r.target.slug} (append to src/sdenv/data/rules.toml):")
            for text in r.learned:
                out.print(text, markup=False)
    for r in results:
        if not r.ok and r.message:
            error_line(r.message)


def _style(status: str) -> str:
    return {
        "written": "pass",
        "unchanged": "pass",
        "fresh": "pass",
        "passed": "pass",
        "planned": "skip",
        "failed": "fail",
        "stale": "fail",
    }.get(status, status)
