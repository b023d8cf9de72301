from __future__ import annotations

from pathlib import Path

import pytest

from sdenv.lock.lockfile import (
    LockfileError,
    Pin,
    make_lockfile,
    parse_lockfile,
    read_lockfile,
    render_lockfile,
    write_lockfile,
)

H1 = "sha256:" + "a" * 64
H2 = "sha256:" + "b" * 64


def sample() -> str:
    lock = make_lockfile(
        [("env", "demo"), ("index", "https://a/simple"), ("index", "https://b/simple")],
        [Pin("Torch", "2.4.1+cu121", (H2, H1)), Pin("accelerate", "1.15.0", (H1,))],
    )
    return render_lockfile(lock)


def test_render_is_sorted_and_deterministic() -> None:
    text = sample()
    assert text == sample()
    body = [line for line in text.splitlines() if not line.startswith("#")]
    assert body[0] == "accelerate==1.15.0 \\"
    assert body[2:] == ["torch==2.4.1+cu121 \\", f"    --hash={H1} \\", f"    --hash={H2}"]


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    write_lockfile(path, parse_lockfile(sample()))
    lock = read_lockfile(path)
    assert lock.get("env") == "demo"
    assert lock.get_all("index") == ["https://a/simple", "https://b/simple"]
    torch = lock.pin("torch")
    assert torch is not None and torch.public_version == "2.4.1"
    assert lock.versions() == {"accelerate": "1.15.0", "torch": "2.4.1+cu121"}
    assert render_lockfile(lock) == sample()
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]  # no temp file left behind


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("# sdenv-lock: 1\ntorch>=2.4 --hash=" + H1 + "\n", "line 2: 'torch>=2.4' is not an exact"),
        ("# sdenv-lock: 1\ntorch==2.4.1\n", "line 2: torch has no --hash"),
        ("# sdenv-lock: 1\ntorch==2.4.1 --index-url x\n", "unexpected '--index-url'"),
        ("torch==2.4.1 --hash=" + H1 + "\n", "not an sdenv lock"),
        ("# sdenv-lock: 1\nfoo==1 \\\n", "dangling"),
        (
            f"# sdenv-lock: 1\nfoo==1 --hash={H1}\nFoo==2 --hash={H1}\n",
            "pins foo more than once",
        ),
    ],
)
def test_bad_lockfiles(text: str, expected: str) -> None:
    with pytest.raises(LockfileError, match=None) as info:
        parse_lockfile(text, Path("lockfiles/x.txt"))
    assert str(info.value).startswith("lockfiles/x.txt: ")
    assert expected in str(info.value)


def test_missing_lockfile(tmp_path: Path) -> None:
    with pytest.raises(LockfileError, match="no such lockfile; create it with `sdenv lock`"):
        read_lockfile(tmp_path / "nope.txt")


def test_written_files_follow_umask_not_mkstemp(tmp_path: Path) -> None:
    import os

    old = os.umask(0o022)
    try:
        write_lockfile(tmp_path / "x.txt", parse_lockfile(sample()))
    finally:
        os.umask(old)
    assert (tmp_path / "x.txt").stat().st_mode & 0o777 == 0o644
