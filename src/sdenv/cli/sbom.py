"""``sdenv sbom``: a CycloneDX SBOM (JSON) per lock target."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from sdenv import supply as core
from sdenv._fs import require_dir_arg
from sdenv.cli._args import add_lock_selection
from sdenv.cli._output import out, print_json


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sbom",
        help="write a CycloneDX SBOM per lock target",
        description=(
            "Write OUT/<lock target>.cdx.json (CycloneDX 1.6 JSON) for every lock of the envs: "
            "one component per pin with its purl and the lock's sha256 hashes. The output is "
            "deterministic; set SOURCE_DATE_EPOCH to stamp a time."
        ),
    )
    add_lock_selection(
        p, lock_help="make the SBOM of this lockfile (repeatable) instead of the env locks"
    )
    p.add_argument("--out", type=Path, default=Path("sbom"), metavar="DIR", help="output folder")
    p.add_argument("--json", action="store_true", help="list what was written as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    require_dir_arg(args.out, "--out")
    targets = core.lockfiles_for(args.envs, args.lock, args.lock_dir, args.envs_dir)
    written = []
    for t in targets:
        path = core.write_sbom(t.path, core.sbom_path(args.out, t.path))
        written.append({"lock": str(t.path), "sbom": str(path)})
    if args.json:
        print_json(written)
    else:
        table = Table(title="SBOMs (CycloneDX 1.6 JSON)", title_justify="left")
        table.add_column("lock")
        table.add_column("sbom")
        for row in written:
            table.add_row(row["lock"], row["sbom"])
        out.print(table)
    return 0
