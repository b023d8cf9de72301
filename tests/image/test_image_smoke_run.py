"""The one line a failed smoke inside an image gives: from `sdenv smoke --json`'s report."""

from __future__ import annotations

from sdenv.image.smoke_run import classify_smoke_failure


def test_smoke_failure_line_comes_from_the_smoke_report() -> None:
    # The shape `sdenv smoke --json` prints (sdenv.smoke.SmokeReport).
    report = {
        "ok": False,
        "checks": [
            {"name": "torch", "status": "pass", "detail": "2.4.1"},
            {
                "name": "diffusers",
                "status": "fail",
                "detail": "module 'torch' has no attribute 'accelerator'",
                "failure": {
                    "kind": "api-mismatch",
                    "culprits": ["diffusers", "torch"],
                    "hint": "constrain diffusers<0.36",
                    "error": "AttributeError",
                },
            },
            {"name": "pipeline", "status": "fail", "detail": "blocked"},
        ],
    }
    assert classify_smoke_failure(report, "", 1) == (
        "diffusers: api-mismatch (diffusers, torch) - module 'torch' has no attribute "
        "'accelerator' - fix: constrain diffusers<0.36 (+1 more failed)"
    )
    assert classify_smoke_failure(None, "a\nboom\n", 2) == "exit 2: boom"
    assert classify_smoke_failure({"ok": True}, "", 137) == "exit 137, no output"
