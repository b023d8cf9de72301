"""``sdenv probe``: will FP8 run natively here, emulated, or not at all; which env fits this box."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sdenv._fs import write_atomic
from sdenv.cli._args import add_dirs
from sdenv.cli._output import err, out, print_json, styled
from sdenv.errors import UsageError
from sdenv.gpu.decide import ProbeReport, decide
from sdenv.gpu.facts import MachineFacts


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "probe",
        help="GPU, driver, torch and FP8 facts of this box, with verdicts and env fit",
        description=(
            "Report NVIDIA driver, GPUs, torch and the FP8 verdict per GPU (native / emulated / "
            "unsupported), driver and arch fit of each env, and an SD3.5 memory estimate. "
            "No GPU is a normal answer (exit 0)."
        ),
    )
    p.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    p.add_argument(
        "--no-torch", action="store_true", help="skip importing torch (fast; hardware facts only)"
    )
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME",
        help="check only this env (repeatable); default: every spec in --envs-dir",
    )
    add_dirs(p, locks=False)
    p.add_argument(
        "--facts",
        type=Path,
        metavar="FILE",
        help="decide from a recorded fact set (e.g. src/sdenv/data/machines/t4.json)",
    )
    p.add_argument("--save-facts", type=Path, metavar="FILE", help="write the raw facts as JSON")
    p.set_defaults(func=run)


def _load_envs(args: argparse.Namespace) -> list[Any]:
    from sdenv.lock.spec import load_spec, load_specs

    if args.env:
        return [load_spec(name, args.envs_dir) for name in args.env]
    specs, errors = load_specs(args.envs_dir)
    for exc in errors:
        err.print(f"[yellow]skipped env:[/] {exc}", markup=True, highlight=False)
    return specs


def run(args: argparse.Namespace) -> int:
    envs = _load_envs(args)
    if args.facts:
        try:
            facts = MachineFacts.from_json(args.facts.read_text(encoding="utf-8"), str(args.facts))
        except OSError as exc:
            raise UsageError(f"{args.facts}: cannot read: {exc.strerror}; check the path") from exc
        except UnicodeDecodeError:
            raise UsageError(
                f"{args.facts}: binary data, not a JSON fact set; record one with "
                "`sdenv probe --save-facts FILE`"
            ) from None
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
    else:
        from sdenv.gpu.probe import collect_facts

        facts = collect_facts(with_torch=not args.no_torch)
    if args.save_facts:
        write_atomic(args.save_facts, facts.to_json())
    report = decide(facts, envs)
    if args.json:
        print_json(report)
    else:
        render(report)
    return 0


def render(report: ProbeReport) -> None:
    from rich.table import Table

    facts = report.facts
    d = facts.driver
    torch = facts.torch
    if torch is None:
        torch_text = "not checked (--no-torch)"
    elif not torch.installed:
        torch_text = f"not importable ({torch.import_error})"
    else:
        torch_text = f"{torch.version} (CUDA build {torch.cuda_build or 'none'})"
    out.print(
        f"[bold]{facts.label}[/]  driver {d.version or 'none'}"
        + (f" (CUDA <= {d.cuda}, via {d.source})" if d.version else "")
        + f"  torch {torch_text}  python {facts.python}  [dim]{facts.seconds:.2f} s[/]"
    )
    if report.gpus:
        t = Table(title="GPUs and FP8", title_justify="left")
        for col in ("#", "GPU", "cc", "free / total MiB", "MIG", "hardware", "stack", "FP8", "why"):
            t.add_column(col, overflow="fold")
        for g in report.gpus:
            t.add_row(
                str(g.index),
                g.name,
                g.cc or "?",
                f"{g.memory_free_mib} / {g.memory_total_mib}",
                g.mig_mode or "-",
                styled(g.hardware.verdict) if g.hardware else "-",
                styled(g.stack.verdict) if g.stack else "-",
                styled(g.fp8.verdict),
                g.fp8.reason,
            )
        out.print(t)
    t = Table(title="Checks", title_justify="left")
    for col in ("check", "on", "status", "reason"):
        t.add_column(col, overflow="fold")
    for c in report.checks:
        t.add_row(c.name, "" if c.gpu is None else f"GPU {c.gpu}", styled(c.status), c.reason)
    out.print(t)
    if report.envs:
        t = Table(title="Env fit", title_justify="left")
        for col in ("env", "cuda", "status", "reason"):
            t.add_column(col, overflow="fold")
        for e in report.envs:
            mark = " *" if e.env == report.recommended_env else ""
            t.add_row(e.env + mark, e.cuda, styled(e.status), e.reason)
        out.print(t)
        out.print(
            f"[bold]env:[/] {report.recommended_env or 'none'}  ({report.recommended_env_reason})"
        )
    out.print(f"[bold]FP8 mode:[/] {styled(report.fp8_mode)}  ({report.fp8_mode_reason})")
    if report.fp8_advisory:
        out.print(f"[yellow]advisory:[/] {report.fp8_advisory}", highlight=False)
    out.print(f"[bold]memory:[/] {report.memory.advice}")
