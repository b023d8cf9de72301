"""Benchmark `sdenv image build` of the default env: cold build, size, and a small-pin rebuild.

    DOCKER_HOST=unix:///tmp/sdenv-docker.sock .venv/bin/python scripts/bench_image.py

Needs the OS base (`sdenv image base --bootstrap`) and the committed default lock. Tags go to
``sdenv-bench/<env>`` (never the real tags) and are removed at the end. Steps:

1. cold: every step of the CUDA base and the app image runs again (no cache; wheels from PyPI);
2. size: image size against OS base + the installed venv measured inside the image (+5% budget);
3. warm: the same lock again (all cached);
4. small pin: the lock with diffusers moved to another release (its real wheel hashes, from
   PyPI), as `sdenv lock --upgrade-package` would; CUDA and torch layers must come from cache,
   the build must take < 60 s and add < 500 MB of layers.

Results: benchmarks/results/image.json (and a table on stdout).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from sdenv import image as im
from sdenv._fs import write_atomic
from sdenv.lock.lockfile import Pin, read_lockfile, write_lockfile
from sdenv.lock.spec import DEFAULT_ENV, load_spec

REPO = Path(__file__).resolve().parents[1]
BENCH_REPO = "sdenv-bench"


def _pin_from_pypi(name: str, ver: str, dest: Path) -> Pin:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--isolated",
            "-q",
            "--no-deps",
            "--only-binary",
            ":all:",
            "-d",
            str(dest),
            f"{name}=={ver}",
        ],
        check=True,
    )
    (whl,) = dest.glob(f"{name.replace('-', '_')}-{ver}-*.whl")
    return Pin(name, ver, ("sha256:" + hashlib.sha256(whl.read_bytes()).hexdigest(),))


def _payload_bytes(client: Any, image_id: str) -> int:
    out = client.containers.run(
        image_id,
        ["du", "-sb", "/opt/sdenv/venv"],
        entrypoint=[],
        network_mode="none",
        remove=True,
    )
    return int(out.decode().split()[0])


def _step_cached(log: str, part: str) -> bool:
    after = log.split(f"sdenv-install /opt/sdenv/lock/{part}", 1)[1]
    return "Using cache" in after.split("Step ", 1)[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("env", nargs="?", default=DEFAULT_ENV)
    ap.add_argument("--skip-cold", action="store_true", help="warm and small-pin steps only")
    ap.add_argument("--diffusers", default="0.35.1", help="the other diffusers release")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/image.json")
    args = ap.parse_args()

    client = im.connect()
    spec = load_spec(args.env, REPO / "envs")
    ca = os.environ.get("SSL_CERT_FILE")
    base_req = im.BuildRequest(
        env=args.env,
        envs_dir=REPO / "envs",
        lock_dir=REPO / "lockfiles",
        out_dir=REPO / "build/images-bench",
        transport=im.Transport(Path(ca) if ca else None),
        repository=f"{BENCH_REPO}/{spec.name}",
        # Freshness is `make image`'s job; here a hand-moved pin must build even mid-relock.
        check_lock=False,
    )
    results: dict[str, Any] = {
        "env": spec.name,
        "machine": f"{os.cpu_count()} CPUs, {platform.machine()}, "
        f"engine {client.version().get('Version')}",
    }

    def build(label: str, req: im.BuildRequest) -> im.ImageResult:
        started = time.monotonic()
        res = im.build_image(req, client)
        wall = time.monotonic() - started
        row = {
            "wall_s": round(wall, 1),
            "app_build_s": res.build_seconds,
            "smoke_s": round(res.smoke.seconds, 1),
            "steps": res.steps,
            "cached_steps": res.cached_steps,
            "new_layer_bytes": res.new_layer_bytes,
            "size_bytes": res.size,
            "smoke_passed": res.smoke.passed,
        }
        results[label] = row
        print(f"{label:10} {json.dumps(row)}", flush=True)
        return res

    if not args.skip_cold:
        cold = build("cold", replace(base_req, nocache=True))
    else:
        cold = build("warm0", base_req)
    base_size = int(client.images.get(cold.base_image).attrs["Size"])
    payload = _payload_bytes(client, cold.image_id)
    budget = (base_size + payload) * 1.05
    results["size"] = {
        "image_bytes": cold.size,
        "os_base_bytes": base_size,
        "venv_payload_bytes": payload,
        "budget_bytes": int(budget),
        "overhead_vs_base_plus_payload": round(cold.size / (base_size + payload) - 1, 4),
        "within_budget": cold.size <= budget,
    }
    print(f"size       {json.dumps(results['size'])}", flush=True)

    build("warm", base_req)

    lock = read_lockfile(Path(cold.lock))
    with tempfile.TemporaryDirectory() as tmp:
        new_pin = _pin_from_pypi("diffusers", args.diffusers, Path(tmp))
        pins = [new_pin if p.name == "diffusers" else p for p in lock.pins]
        small = Path(tmp) / Path(cold.lock).name  # same name: only the pin differs
        write_lockfile(small, replace(lock, pins=tuple(pins)))
        res = build("small_pin", replace(base_req, lock_path=small))
    log = Path(res.log).read_text()
    results["small_pin"].update(
        {
            "change": f"diffusers {lock.pin('diffusers').version} -> {args.diffusers}",  # type: ignore[union-attr]
            "cuda_layer_cached": _step_cached(log, "cuda.txt"),
            "torch_layer_cached": _step_cached(log, "torch.txt"),
            "deps_layer_cached": _step_cached(log, "deps.txt"),
            "under_60s": res.build_seconds < 60,
            "new_layers_under_500MB": res.new_layer_bytes < 500_000_000,
        }
    )
    print(f"small_pin  {json.dumps(results['small_pin'])}", flush=True)

    for image in client.images.list(name=f"{BENCH_REPO}/{spec.name}"):
        for tag in image.tags:
            client.images.remove(tag)
    client.images.prune(filters={"dangling": True})
    write_atomic(args.out, json.dumps(results, indent=2) + "\n")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
