"""The lock's header: what a lock records about how it was made, and reading that back.

The header names the env, spec and data hashes, target, CUDA line, resolver, every constraint with
its why, every check and the proof. A re-lock reads the constraints back (what the checks and
``--search`` found is kept); ``--check`` compares the target fields before any resolve.
"""

from __future__ import annotations

from sdenv.lock import checks
from sdenv.lock.checked import Checked, Constraint
from sdenv.lock.inputs import data_sha256, runtime_requirements
from sdenv.lock.lockfile import Lockfile, make_lockfile
from sdenv.lock.proof import Proof
from sdenv.lock.spec import EnvSpec, Target


def build_lockfile(
    spec: EnvSpec, target: Target, checked: Checked, proof: Proof, rules_source: str | None = None
) -> Lockfile:
    res = checked.resolution
    pins = res.versions()
    cuda = checks.cuda_of_pins(pins)
    header: list[tuple[str, str]] = [
        ("env", spec.name),
        ("spec", spec.path.name),
        ("spec-sha256", spec.sha256),
        ("data-sha256", data_sha256()),
        ("python", target.python),
        ("platform", f"{target.platform} ({target.uv_platform})"),
        ("cuda", f"{spec.cuda}" + (f" ({cuda[1]})" if cuda else "")),
        ("compute-capabilities", " ".join(spec.compute_capabilities)),
        ("fp8", spec.fp8),
        ("resolver", res.resolver),
        *((("rules", rules_source),) if rules_source else ()),
    ]
    header += [("index", i.url) for i in spec.indexes]
    header += [("constraint", f"{c} ({why})") for c, why in checked.constraints]
    header.append(
        (
            "extra",
            "sdenv runtime ("
            + ", ".join(r.split(">")[0] for r in runtime_requirements(target.python))
            + ")",
        )
    )
    header += [("check", f"{c.status} {c.name}: {c.detail}") for c in checked.checks]
    header.append(("proof", f"{proof.status}: {proof.detail}"))
    return make_lockfile(header, res.pins)


def constraints_from_header(lock: Lockfile) -> list[Constraint]:
    out = []
    for value in lock.get_all("constraint"):
        c, _, why = value.partition(" (")
        out.append((c, why.rstrip(")")))
    return out


def header_mismatch(lock: Lockfile, spec: EnvSpec, target: Target) -> str:
    """What in the lock's header says it is not ``target``'s lock of ``spec`` ("" if nothing).

    Compared field by field before any resolve: a lock whose header was edited to another
    Python, platform or CUDA line is not fresh, whatever its pins say.
    """
    expected = {
        "env": spec.name,
        "python": target.python,
        "platform": f"{target.platform} ({target.uv_platform})",
        "compute-capabilities": " ".join(spec.compute_capabilities),
        "fp8": spec.fp8,  # verify holds the box to this promise
    }
    for key, want in expected.items():
        if lock.get(key) != want:
            return f"header {key} is {lock.get(key)!r}, {target.slug} needs {want!r}"
    cuda = (lock.get("cuda") or "").split(" ", 1)[0]
    if cuda != spec.cuda:
        return f"header cuda is {lock.get('cuda')!r}, {spec.name} is built for {spec.cuda}"
    indexes = [i.url for i in spec.indexes]
    if lock.get_all("index") != indexes:
        return f"header index is {lock.get_all('index')}, {spec.name} uses {indexes}"
    return ""
