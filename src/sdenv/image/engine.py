"""The Docker engine through docker-py: the client, and the few image queries the builds need.

``docker`` is imported inside functions: the CLI imports this package where docker-py is absent.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from sdenv.image.errors import EngineUnreachable


def engine_address() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def connect(timeout: int = 600) -> Any:
    """A docker-py client for ``DOCKER_HOST`` (or the default socket) that answered a ping."""
    from docker.client import DockerClient
    from docker.errors import DockerException

    where = engine_address()
    try:
        client = DockerClient.from_env(timeout=timeout)
        client.ping()
    except DockerException as exc:
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise EngineUnreachable(
            f"Docker engine not reachable at {where} ({reason}); start it with "
            "`scripts/docker-engine.sh start` and export the DOCKER_HOST it prints"
        ) from None
    return client


def image_exists(client: Any, ref: str) -> bool:
    return image_id_or_none(client, ref) is not None


def image_id_or_none(client: Any, ref: str) -> str | None:
    from docker.errors import ImageNotFound

    try:
        return str(client.images.get(ref).id)
    except ImageNotFound:
        return None


def remove_if_untagged(client: Any, image_id: str) -> None:
    """The image a moved tag left behind, when no other tag holds it: it would only pile up.
    Layers it shares with other images stay; one still used by a container stays too."""
    from docker.errors import DockerException

    with contextlib.suppress(DockerException):
        if not client.images.get(image_id).tags:
            client.images.remove(image_id)


def engine_has_gpu(client: Any) -> bool:
    runtimes = client.info().get("Runtimes") or {}
    return "nvidia" in runtimes


def history(client: Any, image_id: str) -> list[dict[str, Any]]:
    """The image's layers, newest first: id (``<missing>`` for layers built elsewhere), the
    instruction that made it, its size."""
    return [
        {"id": h.get("Id"), "created_by": h.get("CreatedBy", ""), "size": int(h.get("Size", 0))}
        for h in client.api.history(image_id)
    ]


def short_id(image_id: str) -> str:
    """``sha256:0123...`` -> ``0123456789ab``, the form the classic builder prints."""
    return image_id.split(":", 1)[-1][:12]
