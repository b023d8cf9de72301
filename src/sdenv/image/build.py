"""One ``docker build`` through the SDK, its output streamed to a log, its steps counted.

A failed build's message keeps what explains it: the step, the builder's error, the last lines of
output (pip's own error, progress bars dropped) and, for a full disk, the engine's data root.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from sdenv.image.errors import ImageError

_STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
_ID_RE = re.compile(r"^ ---> ([0-9a-f]{12,64})$")


@dataclass
class BuildStep:
    text: str
    cached: bool = False
    image_id: str | None = None


@dataclass
class BuildOutcome:
    image_id: str
    steps: list[BuildStep]
    seconds: float

    @property
    def cached_steps(self) -> int:
        return sum(s.cached for s in self.steps)


@dataclass
class BuildStream:
    """What the classic builder's output says so far: steps, cache hits, the last lines."""

    log: TextIO
    on_step: Callable[[str], None] | None
    steps: list[BuildStep] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)
    image_id: str | None = None

    def text(self, text: str) -> None:
        self.log.write(text)
        self.log.flush()  # the log is for watching a long build too
        for line in text.splitlines():
            self.line(line)

    def line(self, line: str) -> None:
        self.tail = [*self.tail[-19:], line]
        if m := _STEP_RE.match(line):
            self.steps.append(BuildStep(m.group(3)))
            if self.on_step:
                self.on_step(line)
        elif line.strip() == "---> Using cache" and self.steps:
            self.steps[-1].cached = True
        elif (m2 := _ID_RE.match(line)) and self.steps:
            self.steps[-1].image_id = m2.group(1)

    def failure(self, error: str, client: Any) -> ImageError:
        self.log.write(error + "\n")
        detail = _ANSI_RE.sub("", error).strip().splitlines()[-1]
        step = self.steps[-1].text[:80] if self.steps else "?"
        return ImageError(
            f"build failed at step {len(self.steps)} ({step}): {detail}; "
            f"last output: {last_output(self.tail)}{space_hint(self.tail, client)}"
        )


def run_build(
    client: Any,
    context: Path,
    buildargs: Mapping[str, str],
    log: TextIO,
    on_step: Callable[[str], None] | None = None,
    tag: str | None = None,
    nocache: bool = False,
) -> BuildOutcome:
    """``docker build`` through the SDK (classic builder), host network, output streamed.

    The image is left untagged unless ``tag`` is given: app images get their tag only after the
    smoke test.
    """
    from docker.errors import APIError

    started = time.monotonic()
    stream = BuildStream(log, on_step)
    try:
        chunks = client.api.build(
            path=str(context),
            tag=tag,
            nocache=nocache,
            rm=True,
            forcerm=True,
            decode=True,
            network_mode="host",
            buildargs=dict(buildargs),
            use_config_proxy=False,
        )
        for chunk in chunks:
            if "stream" in chunk:
                stream.text(chunk["stream"])
            elif "aux" in chunk and "ID" in chunk["aux"]:
                stream.image_id = chunk["aux"]["ID"]
            elif "error" in chunk:
                raise stream.failure(chunk["error"], client)
    except APIError as exc:
        raise ImageError(f"build failed: {exc.explanation or exc}") from None
    finally:
        log.flush()
    if stream.image_id is None:
        raise ImageError("build finished without an image id; see the build log")
    return BuildOutcome(stream.image_id, stream.steps, time.monotonic() - started)


def last_output(tail: list[str], limit: int = 400) -> str:
    """The build's last meaningful lines, cut from the front: the error is at the end.

    Download progress bars and intermediate-container notes say nothing about a failure and
    would push the error itself out of the message.
    """
    lines = [_ANSI_RE.sub("", t).strip() for t in tail]
    lines = [t for t in lines if t and "━" not in t and not t.startswith("Removing interm")]
    text = " | ".join(lines[-3:])
    return text if len(text) <= limit else "…" + text[-limit:]


def space_hint(tail: list[str], client: Any) -> str:
    """Name the full disk when the build died of it (errno 28), with the engine's data root."""
    if not any("No space left on device" in t or "Errno 28" in t for t in tail):
        return ""
    try:
        root = str(client.info().get("DockerRootDir") or "the engine's data root")
    except Exception:  # the hint is best effort; the build error itself is what matters
        root = "the engine's data root"
    return f"; the disk under {root} is full: free space there (docker system prune) and rerun"
