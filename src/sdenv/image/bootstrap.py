"""The OS base without a registry: a Debian root made by debootstrap, imported as an image."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from typing import Any, TextIO

from sdenv import _cleanup
from sdenv._cleanup import throwaway_dir
from sdenv.image.errors import ImageError

BOOTSTRAP_TAG = "sdenv/base:bookworm"
BOOTSTRAP_SUITE = "bookworm"
BOOTSTRAP_MIRROR = "http://deb.debian.org/debian"
BOOTSTRAP_PACKAGES = ("python3", "python3-venv", "ca-certificates")


def bootstrap_os_image(
    client: Any,
    tag: str = BOOTSTRAP_TAG,
    suite: str = BOOTSTRAP_SUITE,
    mirror: str = BOOTSTRAP_MIRROR,
    packages: Sequence[str] = BOOTSTRAP_PACKAGES,
    log: TextIO | None = None,
) -> str:
    """Make ``tag`` from Debian packages: no registry involved. Returns the image id."""
    if shutil.which("debootstrap") is None:
        raise ImageError(
            "debootstrap not found; install it (scripts/docker-engine.sh start does) "
            "or pass --base IMAGE"
        )
    with throwaway_dir("sdenv-bootstrap-", "/var/tmp") as work:
        rootfs = work / "rootfs"
        cmd = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(packages)}",
            suite,
            str(rootfs),
            mirror,
        ]
        proc = _cleanup.run(cmd, capture_output=True, text=True)
        if log is not None:
            log.write(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise ImageError(f"debootstrap {suite} failed: {' | '.join(tail)}")
        # Package caches and lists are build leftovers, not part of the OS an image needs.
        for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (rootfs / sub).glob("*"):
                if item.is_file():
                    item.unlink()
        tarball = work / "rootfs.tar"
        _cleanup.run(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tarball), "."], check=True
        )
        repo, _, tagname = tag.partition(":")
        result = client.api.import_image_from_file(
            str(tarball),
            repository=repo,
            tag=tagname or "latest",
            changes=[
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "ENV LANG=C.UTF-8",
                'CMD ["/bin/bash"]',
            ],
        )
    status = json.loads(result.strip().splitlines()[-1]) if isinstance(result, str) else result
    return str(status.get("status", "")) if isinstance(status, dict) else str(status)
