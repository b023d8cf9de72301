"""`sdenv lock --search` (`sdenv.lock.search`): the bisection and the rule it learns, and a real
search on the local index (tests/pypi_index.py) that bounds both culprits of the naive set."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.version import Version

from helpers.specs import lock_options, write_spec
from sdenv import lock as core
from sdenv.lock.checks import parse_rules
from sdenv.lock.lockfile import read_lockfile
from sdenv.lock.proof import ProofFailure
from sdenv.lock.search import learned_rule, newest_passing
from sdenv.lock.spec import load_spec

pytestmark = pytest.mark.usefixtures("private_cache")

VERSIONS = [Version(v) for v in ("0.31.0", "0.32.2", "0.33.1", "0.34.0", "0.35.2", "0.36.0")]


@pytest.mark.parametrize("first_bad", range(len(VERSIONS) + 1))
def test_newest_passing_finds_the_last_good_release_in_log_probes(first_bad: int) -> None:
    probed: list[Version] = []

    def passes(v: Version) -> bool:
        probed.append(v)
        return VERSIONS.index(v) < first_bad

    assert newest_passing(VERSIONS, passes) == first_bad - 1  # -1: none passes
    assert len(probed) <= 3 and len(set(probed)) == len(probed)  # ceil(log2(7)), none twice


def test_learned_rule_bounds_the_culprit_on_this_torch_series_with_clean_evidence() -> None:
    failing = ProofFailure(
        "diffusers",
        "import diffusers: AttributeError: torch has no attribute 'accelerator' "
        "(/tmp/sdenv-proof-x/venv/lib/python3.11/site-packages/diffusers/__init__.py)",
        ("diffusers",),
    )
    pins = {"torch": "2.4.1", "diffusers": "0.42.1"}
    rule = learned_rule(
        "diffusers", Version("0.35.2"), Version("0.36.0"), pins, failing, "demo-py3.11"
    )
    (parsed,) = parse_rules(rule.to_toml())  # valid rules.toml, read back the same
    assert parsed.id == "learned-diffusers-0.36.0"
    assert parsed.constraints() == ["diffusers<0.36.0"]
    assert parsed == rule  # every compared field: id, when, require, reason, evidence
    assert parsed.holds_for({"torch": "2.4.1"}) and not parsed.holds_for({"torch": "2.6.0"})
    assert "/tmp/" not in rule.evidence and "diffusers 0.35.2 passes" in rule.evidence
    # No torch in the set: bounded from the first bad release on.
    no_torch = learned_rule("a", Version("1.0"), Version("2.0"), {"a": "3.0"}, failing, "x")
    assert no_torch.when == {"a": ">=2.0"}


def test_search_bisects_culprits_and_learns_rules(index: str, tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, index))
    result = core.lock_target(
        spec, spec.targets[0], lock_options(tmp_path / "l", rules=(), search=True)
    )
    assert result.status == "written", result.message
    assert result.pins["diffusers"] == "0.35.2"
    assert result.pins["transformers"] == "4.57.6"
    learned = "\n".join(result.learned)
    assert 'require = { diffusers = "<0.36.0" }' in learned
    assert 'require = { transformers = "<5.23.0" }' in learned
    assert 'when = { torch = "==2.4.*" }' in learned
    assert len(parse_rules(learned)) == 2  # valid rules.toml syntax
    assert any("learned by --search" in c for c in read_lockfile(result.path).get_all("constraint"))
