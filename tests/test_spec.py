from __future__ import annotations

from pathlib import Path

import pytest

from sdenv.cli import main
from sdenv.lock import checks
from sdenv.lock.spec import CUDA_VARIANTS, SpecError, load_spec

GOOD = """\
[env]
name = "{name}"
pythons = ["3.10", "3.11"]
platforms = ["linux_x86_64"]
cuda = "cu121"
compute_capabilities = ["8.9", "9.0"]

[[indexes]]
name = "pypi"
url = "https://pypi.org/simple/"

[requirements]
torch = ">=2.4"
Diffusers = ">= 0.31"
xformers = ""
"""


def write(tmp_path: Path, text: str, name: str = "demo") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text.format(name=name) if "{name}" in text else text)
    return path


def test_shipped_specs_load(repo: Path) -> None:
    specs = {p.stem: load_spec(p, repo / "envs") for p in sorted((repo / "envs").glob("*.toml"))}
    # One env per CUDA line of PyPI torch (data/torch_cuda.toml), none left out.
    lines = {row.cuda for row in checks.torch_cuda_table()}
    assert {s.cuda for s in specs.values()} == lines
    default = specs["sd35-fp8-cu121"]
    assert default.cuda == "cu121" and default.cuda_version == (12, 1)
    assert default.pythons == ("3.10", "3.11", "3.12")
    assert default.fp8 == "emulated" and "torchao" not in default.requirements
    assert {"torch", "xformers", "diffusers", "transformers"} <= set(default.requirements)
    for spec in specs.values():
        # Every env's torch range meets PyPI releases of its own CUDA line (raises otherwise).
        checks.pypi_torch_bound(spec.cuda, spec.requirements["torch"])
        if spec.name != "sd35-fp8-cu121":
            assert spec.fp8 == "native" and "torchao" in spec.requirements, spec.name
    # No xformers release is built for a CUDA 13 torch: those envs leave it out.
    assert {n for n, s in specs.items() if "xformers" not in s.requirements} == {
        "sd35-fp8-cu130",
        "sd35-fp8-cu132",
    }
    assert "12.0" in specs["sd35-fp8-cu128"].compute_capabilities


def test_parse_normalises(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, GOOD))
    assert spec.requirements["diffusers"] == ">=0.31"
    assert spec.indexes[0].url == "https://pypi.org/simple"
    assert [t.slug for t in spec.targets] == [
        "demo-py3.10-linux_x86_64",
        "demo-py3.11-linux_x86_64",
    ]
    assert spec.targets[0].uv_platform == "x86_64-manylinux_2_28"
    assert len(spec.sha256) == 64


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('cuda = "cu121"', 'cuda = "cu122"', "env.cuda: unknown CUDA variant 'cu122'; use one of"),
        ('torch = ">=2.4"', 'torch = "=>2.4"', "requirements.torch: malformed version range"),
        ('["linux_x86_64"]', '["win_amd64"]', "env.platforms[0]: unsupported platform 'win_amd64'"),
        ('["3.10", "3.11"]', '["3.9"]', "env.pythons[0]: '3.9' is not a supported Python"),
        ('["8.9", "9.0"]', '["sm_90"]', "env.compute_capabilities[0]: 'sm_90' is not a compute"),
        ('torch = ">=2.4"', 'pytorch = ">=2.4"', "requirements.torch: missing"),
        ("cuda =", "cudaa =", "env.cudaa: unknown field"),
        ("https://pypi.org", "https://u:p@pypi.org", "indexes[0].url: contains credentials"),
        ('xformers = ""', "xformers = 1", "requirements.xformers: must be a version range"),
    ],
)
def test_bad_spec_names_file_field_and_fix(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    text = GOOD.format(name="demo")
    assert old in text
    path = write(tmp_path, text.replace(old, new))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


def test_toml_syntax_error_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.format(name="demo").replace('cuda = "cu121"', "cuda = cu121"))
    with pytest.raises(SpecError, match=r"demo\.toml: invalid TOML: .*line 5"):
        load_spec(path)


def test_name_must_match_file(tmp_path: Path) -> None:
    path = tmp_path / "other.toml"
    path.write_text(GOOD.format(name="demo"))
    with pytest.raises(SpecError, match=r"env.name: 'demo' differs from the file name"):
        load_spec(path)


def test_unknown_env_lists_known(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    with pytest.raises(SpecError, match=r"no env named 'nope'; known envs in .*: demo"):
        load_spec("nope", tmp_path)


def test_cuda_table_is_ordered_by_version() -> None:
    versions = list(CUDA_VARIANTS.values())
    assert versions == sorted(versions)


def test_cli_bad_spec_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Any command that takes an env reports a bad spec the same way; `lock` is the first.
    path = write(tmp_path, GOOD.format(name="demo").replace("cu121", "cu999"))
    code = main(["lock", str(path), "--lock-dir", str(tmp_path / "locks"), "--no-verify"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.strip().count("\n") == 0
    assert "env.cuda: unknown CUDA variant 'cu999'" in captured.err
    assert not (tmp_path / "locks").exists()
