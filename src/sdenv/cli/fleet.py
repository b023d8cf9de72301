"""``sdenv fleet``: verify a Ray cluster's nodes in parallel; render Kubernetes manifests."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sdenv.cli._args import add_dirs
from sdenv.cli._output import err, out, print_json, styled


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "fleet",
        help="verify every node of a Ray cluster; render Kubernetes manifests for GPU nodes",
        description="Fleet-wide verification: on Ray now, or as Kubernetes DaemonSets.",
    )
    sub = p.add_subparsers(dest="fleet_command", metavar="ACTION", required=True)
    _register_verify(sub)
    _register_k8s(sub)


def _register_verify(sub: Any) -> None:
    from sdenv.fleet.job import DEFAULT_TIMEOUT_S
    from sdenv.fleet.node import VENV_VAR

    p = sub.add_parser(
        "verify",
        help="one task pinned to each alive Ray node: probe, [sync], verify; one row per node",
        description=(
            "Run on every alive node of a Ray cluster, in parallel: the probe, the env choice "
            "(ENV auto: the env the probe recommends on that node), optionally `sdenv sync`, "
            "then `sdenv verify` against the env's lock for the node's Python. One row per node; "
            "exit 0 only when every node passes. A node that dies or times out is a failed row."
        ),
    )
    p.add_argument(
        "env", nargs="?", metavar="ENV", help="env name, spec path or auto (default: default env)"
    )
    p.add_argument("--ray", required=True, metavar="ADDRESS", help="the Ray cluster (host:port)")
    p.add_argument("--lock", type=Path, metavar="FILE", help="verify every node against this lock")
    p.add_argument("--no-lock", action="store_true", help="skip the drift part on every node")
    p.add_argument(
        "--venv",
        metavar="DIR",
        help=f"the deployment venv on every node (default: ${VENV_VAR} where the node's "
        "`ray start` ran, else the Python Ray runs)",
    )
    p.add_argument("--sync", action="store_true", help="`sdenv sync` the venv to the lock first")
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"seconds per node before its row fails (default {DEFAULT_TIMEOUT_S:.0f})",
    )
    p.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    add_dirs(p)
    p.set_defaults(func=run_verify)


def _register_k8s(sub: Any) -> None:
    p = sub.add_parser(
        "k8s",
        help="Kubernetes manifests: a verify DaemonSet per env, node labels, least-privilege RBAC",
        description=(
            "Render a DaemonSet per env that runs `sdenv verify` in that env's image on the GPU "
            "nodes it fits (GPU Feature Discovery labels: compute capability, driver version) "
            "and publishes the verdict as node labels sdenv.io/fp8, sdenv.io/env and "
            "sdenv.io/verify; with a ServiceAccount allowed only to get and patch nodes."
        ),
    )
    p.add_argument("envs", nargs="*", metavar="ENV", help="env names or spec paths (default env)")
    p.add_argument(
        "--image",
        required=True,
        metavar="REPO",
        help="registry prefix: each env's image is REPO/ENV:pyX.Y, as `sdenv image build` tags",
    )
    p.add_argument("--python", metavar="X.Y", help="the images' Python (default: each env's first)")
    p.add_argument("--namespace", default="sdenv", help="namespace for the DaemonSets (sdenv)")
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="write here (default stdout)")
    add_dirs(p, locks=False)
    p.set_defaults(func=run_k8s)


def run_verify(args: argparse.Namespace) -> int:
    from sdenv.fleet.job import prepare_job
    from sdenv.fleet.ray_fanout import verify_fleet
    from sdenv.fleet.rows import NodeRow

    job = prepare_job(
        [args.env] if args.env else [],
        lock=args.lock,
        no_lock=args.no_lock,
        envs_dir=args.envs_dir,
        lock_dir=args.lock_dir,
        venv=args.venv,
        sync=args.sync,
        timeout=args.timeout,
    )

    def progress(row: NodeRow) -> None:
        if not args.json:
            err.print(
                f"  {row.node} {row.node_id[:8]}: {styled(row.verdict)} ({row.seconds:.1f} s)",
                highlight=False,
            )

    result = verify_fleet(args.ray, job, on_row=progress)
    if args.json:
        print_json(result)
    else:
        render_verify(result)
    return 0 if result.ok else 1


def render_verify(result: Any) -> None:
    from rich.table import Table

    table = Table(title=f"sdenv fleet verify: {result.address}", title_justify="left")
    for col in ("node", "GPUs", "driver", "FP8 hw", "FP8 stack", "env", "sync", "verdict", "time"):
        table.add_column(col, overflow="fold", justify="right" if col == "time" else "left")
    for r in result.rows:
        table.add_row(
            f"{r.node}\n{r.node_id[:8]}",
            "\n".join(r.gpus) or "none",
            r.driver or "-",
            styled(r.fp8_hardware),
            styled(r.fp8_stack) if r.fp8_stack else "-",
            r.env or "-",
            styled(r.sync) if r.sync else "-",
            styled(r.verdict),
            f"{r.seconds:.1f} s",
        )
    out.print(table)
    for r in result.rows:
        for reason in r.reasons:
            mark = "[bold red]x[/]" if not r.ok else "[yellow]-[/]"
            out.print(f"  {mark} {r.node} {r.node_id[:8]}: {reason}", highlight=False)
    for reason in result.reasons:
        out.print(f"  [bold red]x[/] {reason}", highlight=False)
    out.print(
        f"fleet: {styled('pass' if result.ok else 'fail')}: {result.passed}/{result.nodes} "
        f"nodes pass in {result.seconds:.1f} s"
    )


def run_k8s(args: argparse.Namespace) -> int:
    from sdenv._fs import write_atomic
    from sdenv.fleet.k8s import render_manifests, to_text
    from sdenv.lock.spec import DEFAULT_ENV, load_spec

    specs = [load_spec(e, args.envs_dir) for e in (args.envs or [DEFAULT_ENV])]
    objects = render_manifests(
        specs, image=args.image, namespace=args.namespace, python=args.python
    )
    text = to_text(objects)
    if args.output:
        write_atomic(args.output, text)
        err.print(f"wrote {len(objects)} objects to {args.output}", highlight=False)
    else:
        out.file.write(text)
    return 0
