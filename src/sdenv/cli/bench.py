"""``sdenv bench``: per-step latency, memory and error of bf16 / FP8 modes on this box."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sdenv._fs import write_atomic
from sdenv._json import dumps
from sdenv.cli._output import out, print_json, styled
from sdenv.errors import UsageError


def register(subparsers: Any) -> None:
    from sdenv.runtime.bench import ATTENTION_BACKENDS, MODES

    p = subparsers.add_parser(
        "bench",
        help="does FP8 pay on this GPU? time bf16 / FP8 modes of the SD3.5 transformer",
        description=(
            "Build the SD3.5 Large or Medium transformer (random weights from its architecture "
            "config, or a local model folder), apply each mode in its own process and time one "
            "denoising step at 1024x1024 with CFG batch 2: median and spread, compile time, peak "
            "memory, weight bytes, output error against bf16, and which mode to deploy."
        ),
    )
    p.add_argument(
        "--model",
        default="large",
        metavar="large|medium|DIR",
        help="architecture to build with random weights, or a diffusers model/pipeline folder",
    )
    p.add_argument(
        "--modes",
        default=",".join(MODES),
        help=f"comma-separated modes (default: {','.join(MODES)}); bf16 is the baseline",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile each mode")
    p.add_argument(
        "--compile-scope",
        choices=("regional", "full"),
        default="regional",
        help="regional: each transformer block (fast to compile); full: the whole model",
    )
    p.add_argument("--steps", type=int, default=10, help="timed steps per mode (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls first (default 3)")
    p.add_argument("--resolution", type=int, default=1024, help="image side in pixels")
    p.add_argument(
        "--fp8-granularity",
        choices=("row", "tensor"),
        default="row",
        help="fp8-native and fp8-static weight scaling: per row (default) or per tensor",
    )
    p.add_argument(
        "--no-fast-accum",
        dest="fast_accum",
        action="store_false",
        help="fp8-native: accumulate FP8 matmuls at full precision (torchao's default is fast)",
    )
    p.add_argument(
        "--inductor-tuning",
        action="store_true",
        help="with --compile: torchao's recommended inductor settings (coordinate descent "
        "tuning) for every mode; slower to compile",
    )
    p.add_argument(
        "--attention",
        choices=ATTENTION_BACKENDS,
        default="auto",
        help="scaled-dot-product attention backend for every mode",
    )
    p.add_argument(
        "--profile", action="store_true", help="GPU time per kernel category (CUDA only)"
    )
    p.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds allowed per mode (default 1800)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    p.add_argument("--output", type=Path, metavar="FILE", help="also write the JSON report here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sdenv.runtime.bench import BenchConfig, run_bench

    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    if args.output is not None and args.output.is_dir():
        raise UsageError(f"--output {args.output}: is a directory; give a file name")
    config = BenchConfig(
        model=args.model,
        modes=modes,
        compile=args.compile,
        compile_scope=args.compile_scope,
        steps=args.steps,
        warmup=args.warmup,
        resolution=args.resolution,
        fp8_granularity=args.fp8_granularity,
        fast_accum=args.fast_accum,
        inductor_tuning=args.inductor_tuning,
        attention=args.attention,
        profile=args.profile,
        timeout_s=args.timeout,
    )
    report = run_bench(config)
    if args.output is not None:
        write_atomic(args.output, dumps(report) + "\n")
    if args.json:
        print_json(report)
    else:
        render(report)
    failed = any(r.status == "error" for r in report.results)
    return 1 if failed else 0


def _gib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**30:.2f}"


def _x(v: float | None, pct: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:.0%}" if pct else f"{v:.2f}x"


def render(report: Any) -> None:
    from rich.table import Table

    env = report.environment
    cfg = report.config
    how = f"compiled ({cfg['compile_scope']})" if cfg["compile"] else "eager"
    out.print(
        f"[bold]{env.get('device_name')}[/]  torch {env.get('torch')}  diffusers "
        f"{env.get('diffusers')}  torchao {env.get('torchao') or '-'}  FP8 verdict: "
        f"{env.get('fp8_verdict') or 'n/a'}",
        highlight=False,
    )
    out.print(
        f"SD3.5 {cfg['model']} transformer, {cfg['resolution']}x{cfg['resolution']}, batch "
        f"{cfg['batch']} (CFG), {cfg['text_tokens']} text tokens, {how}, "
        f"{cfg['steps']} timed steps after {cfg['warmup']} warm-up",
        highlight=False,
    )
    table = Table(show_lines=False, pad_edge=False)
    for col in (
        "mode",
        "status",
        "ms/step",
        "IQR",
        "speed-up",
        "weights GiB",
        "peak GiB",
        "compile s",
        "rel.L2",
    ):
        table.add_column(col, justify="left" if col in ("mode", "status") else "right")
    for r in report.results:
        status = styled(r.status)
        if r.status != "ok":
            table.add_row(r.mode, status)
            continue
        table.add_row(
            r.mode,
            status,
            f"{r.median_ms:.1f}",
            f"{r.q1_ms:.1f}-{r.q3_ms:.1f}",
            _x(r.speedup_vs_bf16),
            f"{_gib(r.weight_bytes)} ({_x(r.weight_ratio_vs_bf16, pct=True)})",
            f"{_gib(r.peak_bytes)} ({_x(r.peak_ratio_vs_bf16, pct=True)})",
            "-" if r.compile_s is None else f"{r.compile_s:.0f}",
            "-" if r.rel_l2_vs_bf16 is None else f"{r.rel_l2_vs_bf16:.4f}",
        )
    out.print(table)
    for r in report.results:
        if r.status != "ok":
            out.print(f"{r.mode} {r.status}: {r.reason}", highlight=False)
    for r in report.results:
        if r.profile:
            shares = ", ".join(
                f"{cat} {ms:.1f} ms ({r.profile['share'][cat]:.0%})"
                for cat, ms in r.profile["ms_per_step"].items()
            )
            out.print(f"profile {r.mode}: {shares}", highlight=False)
    rec = report.recommendation
    out.print(f"[bold]Recommendation:[/] {rec.reason}", highlight=False)
    if rec.memory_fallback:
        out.print(f"Memory fallback: {rec.memory_fallback}", highlight=False)
