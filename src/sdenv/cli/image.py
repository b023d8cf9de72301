"""``sdenv image``: CUDA base and app images from a lock, smoke-tested before they are tagged."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.table import Table

from sdenv import image as core
from sdenv.cli._args import add_dirs
from sdenv.cli._output import out, print_json, progress, styled
from sdenv.errors import UsageError
from sdenv.lock.spec import DEFAULT_ENV


def _transport_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ca-bundle",
        type=Path,
        default=None,
        metavar="FILE",
        help="PEM bundle pip trusts inside the build, e.g. an inspecting proxy's CA (default: "
        "$SDENV_CA_BUNDLE, $PIP_CERT or $SSL_CERT_FILE when set); it never enters a layer",
    )
    p.add_argument(
        "--index-url",
        default=None,
        metavar="URL",
        help="package index for the build (default: the env's first [[indexes]] url); may carry "
        "credentials, which stay out of every layer and of the image history",
    )
    p.add_argument(
        "--extra-index-url",
        action="append",
        default=[],
        metavar="URL",
        help="another index (repeatable; default: the env's other [[indexes]])",
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "image",
        help="build CUDA base and app images from the env locks (Docker)",
        description=(
            "Build images with the Docker engine in $DOCKER_HOST (scripts/docker-engine.sh starts "
            "one). Builds and runs use the host network only."
        ),
    )
    isub = p.add_subparsers(dest="image_command", metavar="SUBCOMMAND", required=True)

    b = isub.add_parser(
        "base",
        help="make the OS base (--bootstrap: from Debian, no registry) and the env's CUDA base",
        description=(
            "The CUDA base holds OS, Python, the NVIDIA container environment and the nvidia-* "
            "wheels the env lock pins; every app image of that CUDA variant shares it."
        ),
    )
    b.add_argument("env", nargs="?", default=DEFAULT_ENV, metavar="ENV", help="env name or path")
    b.add_argument(
        "--bootstrap",
        action="store_true",
        help=f"make {core.BOOTSTRAP_TAG} with debootstrap + import when missing (no registry)",
    )
    b.add_argument(
        "--base",
        default=None,
        metavar="IMAGE",
        help="OS base image with python3 (default: python:X.Y-slim-bookworm, or "
        f"{core.BOOTSTRAP_TAG} when present); an nvidia/cuda image is accepted",
    )
    b.add_argument("--python", default=None, metavar="X.Y", help="lock target Python")
    add_dirs(b)
    _transport_args(b)
    b.add_argument("--json", action="store_true", help="print the result as JSON")
    b.set_defaults(func=run_base)

    a = isub.add_parser(
        "build",
        help="build the app image of an env lock target, smoke-test it inside, then tag it",
        description=(
            "Installs only from the lock (--require-hashes --no-deps --only-binary :all:): torch, "
            "the rest, then sdenv. Runs `sdenv smoke --json` inside with no network; the tag moves "
            "only when it passes. Log and summary (with the smoke report) go to build/images/."
        ),
    )
    a.add_argument("env", nargs="?", default=DEFAULT_ENV, metavar="ENV", help="env name or path")
    a.add_argument("--python", default=None, metavar="X.Y", help="lock target Python")
    a.add_argument("--base", default=None, metavar="IMAGE", help="OS base image (see image base)")
    a.add_argument(
        "--lock", type=Path, default=None, metavar="FILE", help="lockfile (default: the env lock)"
    )
    add_dirs(a)
    a.add_argument("--out-dir", type=Path, default=core.DEFAULT_OUT_DIR)
    a.add_argument(
        "--sdenv-wheel",
        type=Path,
        default=None,
        metavar="FILE",
        help="the sdenv wheel the image installs (default: built from the source checkout this "
        "sdenv runs from; an installed sdenv has none, so pass one)",
    )
    a.add_argument(
        "--gpus",
        action="store_true",
        help="smoke with the GPUs (device request) when the engine has the NVIDIA runtime",
    )
    _transport_args(a)
    a.add_argument("--json", action="store_true", help="print the build summary as JSON")
    a.set_defaults(func=run_build)


def _transport(args: argparse.Namespace) -> core.Transport:
    ca = args.ca_bundle
    if ca is None:
        env_ca = next(
            (
                os.environ[k]
                for k in ("SDENV_CA_BUNDLE", "PIP_CERT", "SSL_CERT_FILE")
                if k in os.environ
            ),
            None,
        )
        ca = Path(env_ca) if env_ca else None
    if ca is not None and not ca.is_file():
        raise UsageError(f"--ca-bundle {ca}: no such file; pass a PEM bundle")
    return core.Transport(ca, args.index_url, tuple(args.extra_index_url))


@contextmanager
def _progress(quiet: bool) -> Iterator[Callable[[str], None] | None]:
    if quiet:
        yield None
        return
    with progress("building…") as on_step:
        yield on_step


def run_base(args: argparse.Namespace) -> int:
    with _progress(args.json) as on_step:
        result = core.build_base(
            args.env,
            bootstrap=args.bootstrap,
            base=args.base,
            python=args.python,
            lock_dir=args.lock_dir,
            envs_dir=args.envs_dir,
            transport=_transport(args),
            on_step=on_step,
        )
    if args.json:
        print_json(result)
        return 0
    made = "bootstrapped" if result.bootstrapped else "present"
    out.print(f"OS base  {result.os_image} ({made}, Python {result.python})")
    if result.cuda_base:
        size = f"{(result.size or 0) / 1e9:.2f} GB"
        out.print(f"CUDA base {result.cuda_base} {size} in {result.seconds:.0f}s")
    else:
        out.print("CUDA base not built: the env has no lock yet; run `sdenv lock` first")
    return 0


def run_build(args: argparse.Namespace) -> int:
    from sdenv._fs import require_dir_arg, require_file_arg

    require_dir_arg(args.out_dir, "--out-dir")
    if args.lock is not None:
        from sdenv.lock.lockfile import read_lockfile

        require_file_arg(args.lock, "--lock", "lockfile", "pass a lockfile made by `sdenv lock`")
        read_lockfile(args.lock)  # binary or malformed: one line now, before the engine starts
    if args.sdenv_wheel is not None:
        require_file_arg(args.sdenv_wheel, "--sdenv-wheel", "wheel", "pass an sdenv-*.whl file")
        if not re.fullmatch(r"sdenv-[^-]+-.+\.whl", args.sdenv_wheel.name):
            raise UsageError(
                f"--sdenv-wheel {args.sdenv_wheel}: not an sdenv wheel's file name; pass the "
                "sdenv-*.whl that `uv build` made"
            )
    req = core.BuildRequest(
        env=args.env,
        python=args.python,
        base=args.base,
        lock_path=args.lock,
        lock_dir=args.lock_dir,
        envs_dir=args.envs_dir,
        out_dir=args.out_dir,
        transport=_transport(args),
        gpu=args.gpus,
        sdenv_wheel=args.sdenv_wheel,
    )
    with _progress(args.json) as on_step:
        result = core.build_image(req, on_step=on_step)
    if args.json:
        print_json(result)
        return 0
    table = Table(title=f"sdenv image {result.target}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("image", result.image_id)
    table.add_row("tags", ", ".join(result.tags))
    table.add_row("size", f"{result.size / 1e9:.2f} GB, {result.layers} layers")
    table.add_row(
        "CUDA base",
        f"{result.cuda_base} ({'cached' if result.cuda_base_cached else 'built'}, "
        f"{result.cuda_base_seconds:.0f}s)",
    )
    table.add_row(
        "build",
        f"{result.build_seconds:.0f}s, {result.cached_steps}/{result.steps} steps cached, "
        f"new layers {result.new_layer_bytes / 1e6:.0f} MB",
    )
    smoke = "pass" if result.smoke.passed else "fail"
    table.add_row("smoke", f"{styled(smoke)} in {result.smoke.seconds:.0f}s")
    table.add_row("summary", result.summary)
    table.add_row("log", result.log)
    out.print(table)
    return 0
