"""One build's stream: steps, cache hits and layer ids counted from the classic builder's output;
a failed build's message with the error at the end of the last output, and a full disk named."""

from __future__ import annotations

import io
from pathlib import Path

from sdenv.image.build import BuildOutcome, BuildStream, last_output, space_hint

RECORDED = Path(__file__).parent / "recorded"


def test_a_failed_build_keeps_the_error_at_the_end_of_its_last_output() -> None:
    # The end of a real pip run in the base build that died of a full disk: the progress bar
    # and the long package list used to fill the message and cut pip's own error off.
    tail = [
        "\x1b[?25l   \x1b[90m" + "━" * 40 + "\x1b[0m \x1b[32m99.1/99.1 kB\x1b[0m",
        "Installing collected packages: " + ", ".join(f"nvidia-pkg{i}-cu12" for i in range(30)),
        "ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device",
        "",
        "Removing intermediate container 0123456789ab",
    ]
    out = last_output(tail)
    assert out.endswith("[Errno 28] No space left on device")
    assert "━" not in out and len(out) <= 401
    assert "Removing" not in out

    class Engine:
        def info(self) -> dict[str, str]:
            return {"DockerRootDir": "/var/lib/sdenv-docker"}

    assert "/var/lib/sdenv-docker is full" in space_hint(tail, Engine())
    assert space_hint(tail[:2], Engine()) == ""


def test_the_stream_counts_steps_cache_hits_and_layer_ids() -> None:
    # The classic builder's output of a real CUDA base build (recorded on the build box; pip's
    # download lines cut): six steps from the cache, the install and the labels built anew.
    recorded = (RECORDED / "cuda-base-build.log").read_text(encoding="utf-8")
    log = io.StringIO()
    seen: list[str] = []
    stream = BuildStream(log, seen.append)
    # Chunks as the engine sends them: a line or a few per chunk, not aligned with steps.
    lines = recorded.splitlines(keepends=True)
    for i in range(0, len(lines), 3):
        stream.text("".join(lines[i : i + 3]))
    assert log.getvalue() == recorded
    assert [s.text.split(" ", 1)[0] for s in stream.steps] == [
        "FROM", "ARG", "ENV", "RUN", "COPY", "COPY", "RUN", "LABEL",
    ]  # fmt: skip
    assert [s.cached for s in stream.steps] == [False, *[True] * 5, False, False]
    assert stream.steps[6].image_id == "1238337de266"
    assert stream.steps[-1].image_id == "f4880810e41f"
    assert seen == [ln for ln in recorded.splitlines() if ln.startswith("Step ")]
    assert BuildOutcome("x", stream.steps, 1.0).cached_steps == 5
