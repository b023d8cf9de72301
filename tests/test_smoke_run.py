"""The smoke's process plan with a small real target: grouped checks share one process, and what
the group cannot answer for sure (a failure, checks left when it crashed or hung) runs alone."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from sdenv import _target
from sdenv._smoke_run import Node, Raw, run_graph

# A stand-in for sdenv/target/smoke.py: "crash" segfaults, "hang" sleeps, "bad" fails; each
# result says how many checks its process was given, so the test sees where it ran.
FAKE = """
import ctypes, sys, time
from sdenv.target.protocol import emit

names = [a for a in sys.argv[1:] if not a.startswith("--")]
for name in names:
    if name == "crash":
        ctypes.string_at(0)
    if name == "hang":
        time.sleep(60)
    status = "fail" if name == "bad" else "pass"
    emit({"check": name, "status": status, "detail": f"{len(names)} in process",
          "error": "ValueError: bad" if status == "fail" else "", "facts": {}})
"""


def _run(tmp_path: Path, nodes: list[Node], timeout: float = 30) -> dict[str, Raw]:
    root = _target.stage(tmp_path)
    (root / "sdenv" / "target" / "smoke.py").write_text(textwrap.dedent(FAKE))
    got: dict[str, Raw] = {}
    run_graph(sys.executable, root, nodes, False, timeout, 2, {}, got.__setitem__)
    return got


def test_passes_come_from_the_group_and_a_failure_is_rerun_alone(tmp_path: Path) -> None:
    nodes = [Node("a", (), "g"), Node("bad", ("a",), "g"), Node("c", ("a",), "g")]
    nodes.append(Node("solo", ("a",), None))
    got = _run(tmp_path, nodes)
    assert got["a"].detail == got["c"].detail == "3 in process"
    assert (got["bad"].status, got["bad"].detail) == ("fail", "1 in process")
    assert got["solo"].detail == "1 in process"


def test_a_crash_in_the_group_is_classified_as_a_lone_run(tmp_path: Path) -> None:
    nodes = [Node("a", (), "g"), Node("crash", ("a",), "g"), Node("c", ("a",), "g")]
    got = _run(tmp_path, nodes)
    assert got["a"].detail == "3 in process"  # answered before the crash: kept
    assert (got["crash"].status, got["crash"].error) == ("fail", "crashed: killed by SIGSEGV")
    assert "Segmentation fault" in got["crash"].log  # the lone run's faulthandler report
    assert (got["c"].status, got["c"].detail) == ("pass", "1 in process")  # left: re-run alone


def test_a_hang_in_the_group_times_out_alone(tmp_path: Path) -> None:
    nodes = [Node("a", (), "g"), Node("hang", ("a",), "g"), Node("c", ("a",), "g")]
    got = _run(tmp_path, nodes, timeout=2)
    assert got["hang"].detail == "timed out after 2 s"
    assert (got["c"].status, got["c"].detail) == ("pass", "1 in process")


def test_dependents_of_a_failure_are_skipped(tmp_path: Path) -> None:
    nodes = [Node("bad", (), "g"), Node("a", ("bad",), "g"), Node("c", ("a",), None)]
    got = _run(tmp_path, nodes)
    assert got["bad"].status == "fail"
    assert (got["a"].status, got["a"].detail) == ("skip", "needs bad (failed)")
    assert got["c"].detail == "needs a (skipped: needs bad (failed))"


def test_each_group_has_its_own_process(tmp_path: Path) -> None:
    """The imports and the CUDA-kernel checks form two groups that run side by side; a group of
    one is a lone run."""
    nodes = [Node("a", (), "imports"), Node("c", ("a",), "imports"), Node("d", ("a",), "gpu")]
    nodes += [Node("e", ("a",), "gpu"), Node("f", ("a",), "gpu"), Node("solo", ("a",), "only")]
    got = _run(tmp_path, nodes)
    assert got["a"].detail == got["c"].detail == "2 in process"
    assert got["d"].detail == got["e"].detail == got["f"].detail == "3 in process"
    assert got["solo"].detail == "1 in process"
