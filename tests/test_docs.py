"""The repository stands alone and its docs stay true.

- No file cites a facts file or a path outside the repository: facts live in docs/evidence.md.
- Every ``evidence.md#<id>`` reference names an anchor that exists there.
- Every relative link in README.md and docs/ resolves: the file, and the heading or anchor.
- README.md is at most 12 KB; docs/index.md links every page; no placeholders.
- docs/design.md's module map names every module of src/sdenv, and nothing else.

The checkers are plain functions, each also run on a small tree made in the test, so a checker
that stopped finding anything would fail here too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO

README_MAX_BYTES = 12 * 1024

# Built from pieces so this file does not match itself.
FORBIDDEN = {
    "a citation of the facts file outside the repository (cite docs/evidence.md#<id>)": re.compile(
        r"\bFA" + r"CTS\b"
    ),
    "a path outside the repository (restate the fact in docs/evidence.md)": re.compile(
        r"\.\./" + r"shared\b|/" + r"work/"
    ),
    "a machine named by the tool used to reach it (say what it is, e.g. an H200 box without "
    "index access)": re.compile(r"\bdevice" + r" tool\b"),
}
# .ci/ describes the CI runner's own layout (what sits beside the clone); it cites no fact.
SCAN_EXCLUDED = (".ci/",)
EVIDENCE_REF = re.compile(r"evidence\.md#([A-Za-z0-9_-]+)")
ANCHOR_ID = re.compile(r"""<a\s+(?:id|name)=["']([^"']+)["']""")
MD_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
PLACEHOLDER = re.compile(r"\b(TODO|TBD|FIXME)\b")


def repo_files(root: Path) -> list[Path]:
    """The files of the repository as git sees them (tracked, plus new files not ignored)."""
    git = shutil.which("git")
    if git is None or not (root / ".git").exists():
        pytest.skip("not a git checkout: the file list comes from git")
    out = subprocess.run(
        [git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sorted({root / p for p in out.split("\0") if p and (root / p).is_file()})


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None  # binary: nothing to cite


def forbidden_citations(root: Path, files: list[Path]) -> list[str]:
    found = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        if rel.startswith(SCAN_EXCLUDED) or (text := read_text(path)) is None:
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            for what, pattern in FORBIDDEN.items():
                if pattern.search(line):
                    found.append(f"{rel}:{lineno}: {what}: {line.strip()[:120]}")
    return found


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*|_(?=\W)|(?<=\W)_", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(md: Path) -> set[str]:
    text = md.read_text(encoding="utf-8")
    found = set(ANCHOR_ID.findall(text))
    seen: dict[str, int] = {}
    in_fence = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
        elif not in_fence and (m := re.match(r"#{1,6}\s+(.*)", line)):
            slug = github_slug(m.group(1))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def missing_evidence_anchors(root: Path, files: list[Path]) -> list[str]:
    evidence = root / "docs" / "evidence.md"
    have = anchors(evidence) if evidence.is_file() else set()
    bad = []
    for path in files:
        if (text := read_text(path)) is None:
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            for anchor in EVIDENCE_REF.findall(line):
                if anchor not in have:
                    rel = path.relative_to(root).as_posix()
                    bad.append(f"{rel}:{lineno}: no anchor {anchor!r} in docs/evidence.md")
    return bad


def markdown_links(md: Path) -> list[tuple[int, str]]:
    links, in_fence = [], False
    for lineno, line in enumerate(md.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            in_fence = not in_fence
            continue
        if not in_fence:
            # Code spans are not links: `[[indexes]]`, `a[i](x)`.
            links += [(lineno, t) for t in MD_LINK.findall(re.sub(r"`[^`]*`", "", line))]
    return links


def broken_links(root: Path, docs: list[Path]) -> list[str]:
    bad = []
    for md in docs:
        rel = md.relative_to(root).as_posix()
        for lineno, target in markdown_links(md):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):
                continue  # https:, mailto: ...
            path_part, _, fragment = target.partition("#")
            dest = (md.parent / path_part).resolve() if path_part else md
            if root.resolve() not in dest.parents and dest != root.resolve():
                bad.append(f"{rel}:{lineno}: {target} leaves the repository")
            elif not dest.exists():
                bad.append(f"{rel}:{lineno}: {target}: no such file")
            elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
                bad.append(f"{rel}:{lineno}: {target}: no heading or anchor {fragment!r}")
    return bad


def doc_pages(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def module_map_gaps(root: Path) -> list[str]:
    text = (root / "docs" / "design.md").read_text(encoding="utf-8")
    section = text.split("## Module map", 1)[1].split("\n## ", 1)[0]
    table = section.split("\n\n| ", 1)[1].split("\n\n", 1)[0]  # the first table only
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    named = {p for row in rows for p in re.findall(r"`([\w/]+\.py)`", row.split(" | ")[0])}
    pkg = root / "src" / "sdenv"
    actual = {p.relative_to(pkg).as_posix() for p in pkg.rglob("*.py")}
    return [
        f"src/sdenv/{m}: not in docs/design.md's module map" for m in sorted(actual - named)
    ] + [f"docs/design.md names {m}, which src/sdenv does not have" for m in sorted(named - actual)]


# ---------------------------------------------------------------------------- the repository


def test_no_file_cites_anything_outside_the_repository() -> None:
    assert forbidden_citations(REPO, repo_files(REPO)) == []


def test_every_evidence_reference_names_an_existing_anchor() -> None:
    files = repo_files(REPO)
    assert any(EVIDENCE_REF.search(read_text(p) or "") for p in files if p.suffix == ".py")
    assert missing_evidence_anchors(REPO, files) == []


def test_every_relative_link_in_readme_and_docs_resolves() -> None:
    assert broken_links(REPO, doc_pages(REPO)) == []


def test_readme_is_at_most_12_kb() -> None:
    size = (REPO / "README.md").stat().st_size
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes: move detail to docs/"


def test_docs_index_links_every_page_and_nothing_is_a_placeholder() -> None:
    index = REPO / "docs" / "index.md"
    linked = {(index.parent / t.partition("#")[0]).resolve() for _, t in markdown_links(index)}
    pages = {p.resolve() for p in (REPO / "docs").glob("*.md")} - {index.resolve()}
    assert sorted(p.name for p in pages - linked) == []
    for md in doc_pages(REPO):
        assert not PLACEHOLDER.search(md.read_text(encoding="utf-8")), md


def test_design_module_map_matches_src() -> None:
    assert module_map_gaps(REPO) == []


# ---------------------------------------------------------------------------- the checkers


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_checkers_find_citations_missing_anchors_and_broken_links(tmp_path: Path) -> None:
    cite = "FA" + "CTS 3"
    ev = "docs/evidence" + ".md"  # split so this file cites no anchor itself
    root = _tree(
        tmp_path,
        {
            "docs/evidence.md": '<a id="E-real"></a>\n## Real one\n',
            "src/a.py": f"# ({cite})\n# {ev}#E-real\n# {ev}#E-gone\n",
            "src/b.toml": "# see ../" + "shared/notes.md\n",
            ".ci/run": "# ../" + "shared beside the clone\n",
            "README.md": f"[ok]({ev}#E-real) [slug]({ev}#real-one)\n"
            f"[gone](docs/nope.md) [frag]({ev}#nope) [out](../x.md) "
            "[web](https://example.org/x) `[[indexes]](not-a-link)`\n",
        },
    )
    files = sorted(p for p in root.rglob("*") if p.is_file())
    cites = forbidden_citations(root, files)
    assert [c.split(":")[0] for c in cites] == ["src/a.py", "src/b.toml"]
    assert missing_evidence_anchors(root, files) == [
        "README.md:2: no anchor 'nope' in docs/evidence.md",
        "src/a.py:3: no anchor 'E-gone' in docs/evidence.md",
    ]
    assert broken_links(root, [root / "README.md"]) == [
        "README.md:2: docs/nope.md: no such file",
        f"README.md:2: {ev}#nope: no heading or anchor 'nope'",
        "README.md:2: ../x.md leaves the repository",
    ]


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("sdenv lock", "sdenv-lock"),
        ("make image", "make-image"),
        ("`sdenv probe`: FP8, before the model", "sdenv-probe-fp8-before-the-model"),
        (
            "Which CUDA each PyPI torch release is built for",
            "which-cuda-each-pypi-torch-release-is-built-for",
        ),
    ],
)
def test_github_slug(heading: str, slug: str) -> None:
    assert github_slug(heading) == slug


def test_module_map_gaps_name_both_directions(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "src/sdenv/a.py": "",
            "src/sdenv/cli/b.py": "",
            "docs/design.md": "## Module map\n\n| module | role |\n|---|---|\n"
            "| `a.py`, `gone.py` | x |\n\n## Next\n| `cli/b.py` | outside the section |\n",
        },
    )
    assert module_map_gaps(root) == [
        "src/sdenv/cli/b.py: not in docs/design.md's module map",
        "docs/design.md names gone.py, which src/sdenv does not have",
    ]
