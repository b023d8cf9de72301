"""A failed build's message: the error at the end of the last output, and a full disk named."""

from __future__ import annotations

from sdenv.image.build import last_output, space_hint


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
