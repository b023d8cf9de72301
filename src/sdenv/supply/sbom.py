"""CycloneDX SBOM (JSON, spec 1.6) of one lock target, built with cyclonedx-python-lib.

One component per pin: ``pkg:pypi/<name>@<version>`` and the lock's sha256 hashes (every
distribution file the lock accepts for that pin). The root component is the lock target and
depends on every pin; the lock header becomes ``sdenv:lock:*`` properties.

Deterministic: the same lock gives byte-identical output. The serial number is a UUID derived from
the lock's content, and there is no timestamp unless one is given (or ``SOURCE_DATE_EPOCH`` is
set, the reproducible-builds convention), since a wall-clock time would change every file.
cyclonedx is imported inside functions: CLI discovery imports this module where it is absent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

from sdenv import __version__
from sdenv._fs import write_atomic
from sdenv.errors import SdenvError, UsageError
from sdenv.lock.lockfile import Lockfile, read_lockfile, render_lockfile

SBOM_SUFFIX = ".cdx.json"
# A fixed namespace for serial numbers derived from lock content (uuid5 of the lock's sha256).
_SERIAL_NAMESPACE = uuid.UUID("3f1c1f2e-5d1b-4b8e-9a57-5f2b0c6d8e41")


class SbomError(SdenvError):
    """An SBOM that could not be made."""


def sbom_path(out_dir: Path, lockfile: Path) -> Path:
    """``lockfiles/sd35-...-linux_x86_64.txt`` -> ``OUT/sd35-...-linux_x86_64.cdx.json``."""
    return out_dir / f"{lockfile.stem}{SBOM_SUFFIX}"


def _timestamp_from_env() -> dt.datetime | None:
    raw = os.environ.get("SOURCE_DATE_EPOCH")
    if not raw:
        return None
    try:
        return dt.datetime.fromtimestamp(int(raw), tz=dt.timezone.utc)
    except ValueError:
        raise UsageError(
            f"SOURCE_DATE_EPOCH={raw!r}: not a number of seconds; unset it or fix it"
        ) from None


def purl(name: str, version: str) -> str:
    from packageurl import PackageURL

    return str(PackageURL(type="pypi", name=name, version=version).to_string())


def build_bom(
    lock: Lockfile,
    *,
    name: str | None = None,
    serial: uuid.UUID | None = None,
    timestamp: dt.datetime | None = None,
    content: bytes | None = None,
) -> Any:
    """The ``cyclonedx.model.bom.Bom`` of ``lock`` (see the module doc for what goes in).

    ``content``: the lockfile's bytes, whose sha256 identifies the lock; default: its rendering.
    """
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from packageurl import PackageURL

    content = content if content is not None else render_lockfile(lock).encode()
    digest = hashlib.sha256(content).hexdigest()
    label = name or (lock.path.stem if lock.path is not None else "sdenv-lock")
    root = Component(
        name=label,
        type=ComponentType.APPLICATION,
        bom_ref=f"sdenv-lock:{label}",
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=digest)],
        properties=[Property(name=f"sdenv:lock:{k}", value=v) for k, v in lock.header]
        + [Property(name="sdenv:lock:sha256", value=digest)],
    )
    tool = Component(name="sdenv", version=__version__, type=ComponentType.APPLICATION)
    components = []
    for pin in lock.pins:
        ref = purl(pin.name, pin.version)
        components.append(
            Component(
                name=pin.name,
                version=pin.version,
                type=ComponentType.LIBRARY,
                bom_ref=ref,
                purl=PackageURL.from_string(ref),
                hashes=[
                    HashType(alg=HashAlgorithm.SHA_256, content=h.split(":", 1)[1])
                    for h in pin.hashes
                ],
            )
        )
    metadata = BomMetaData(component=root, timestamp=timestamp)
    metadata.tools.components.add(tool)
    bom = Bom(
        components=components,
        metadata=metadata,
        serial_number=serial or uuid.uuid5(_SERIAL_NAMESPACE, digest),
    )
    bom.register_dependency(root, components)
    return bom


def render_sbom(
    lock: Lockfile,
    *,
    name: str | None = None,
    serial: uuid.UUID | None = None,
    timestamp: dt.datetime | None = None,
    content: bytes | None = None,
) -> str:
    """CycloneDX 1.6 JSON text for ``lock``, byte-identical for the same inputs."""
    from cyclonedx.output.json import JsonV1Dot6

    given = timestamp or _timestamp_from_env()
    bom = build_bom(lock, name=name, serial=serial, timestamp=given, content=content)
    data = json.loads(JsonV1Dot6(bom).output_as_string())
    if given is None:
        # The library always stamps "now"; the field is optional in the schema, so drop it.
        data["metadata"].pop("timestamp", None)
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def write_sbom(
    lockfile: Path,
    out_path: Path,
    *,
    name: str | None = None,
    timestamp: dt.datetime | None = None,
) -> Path:
    """Write the SBOM of ``lockfile`` to ``out_path`` atomically and return ``out_path``.

    The image builder calls this next to each build summary.
    """
    lock = read_lockfile(lockfile)  # a missing, binary or directory path: one line, exit 2
    content = lockfile.read_bytes()
    text = render_sbom(lock, name=name, timestamp=timestamp, content=content)
    write_atomic(out_path, text)
    return out_path
