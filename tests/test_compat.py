from __future__ import annotations

import pytest

from sdenv import _data
from sdenv.gpu.compat import (
    DRIVER_FLOORS,
    MINOR_COMPAT_FLOORS,
    TORCH_ARCH_LISTS,
    XFORMERS_ARCH_LISTS,
    arch_coverage,
    driver_fit,
    parse_arch_list,
)


@pytest.mark.parametrize(
    ("arch_list", "cc", "covered", "how"),
    [
        (TORCH_ARCH_LISTS["cu121"], "9.0", True, "sm_90 SASS"),
        (TORCH_ARCH_LISTS["cu121"], "8.9", True, "sm_86 SASS runs on 8.9"),  # Ada, never listed
        (TORCH_ARCH_LISTS["cu121"], "12.0", False, "no kernel for 12.0"),  # RTX 5090 on cu121
        (TORCH_ARCH_LISTS["cu128"], "12.0", True, "sm_120 SASS"),
        (TORCH_ARCH_LISTS["cu128"], "7.0", False, "no kernel for 7.0"),
        (TORCH_ARCH_LISTS["cu132"], "12.0", True, "sm_120 SASS"),  # torch 2.15 on an RTX 5090
        (TORCH_ARCH_LISTS["cu132"], "8.9", True, "sm_86 SASS runs on 8.9"),
        (XFORMERS_ARCH_LISTS["cu126"], "8.6", True, "sm_80 SASS runs on 8.6"),  # 0.0.31.post1
        (XFORMERS_ARCH_LISTS["cu126"], "10.0", True, "PTX compute_80 JIT"),
        ("6.0+PTX 7.0 7.5 8.0+PTX 9.0a", "9.0", True, "sm_90a SASS"),  # xformers 0.0.28 list
        ("6.0+PTX 7.0 7.5 8.0+PTX 9.0a", "8.9", True, "sm_80 SASS runs on 8.9"),
        ("6.0+PTX 7.0 7.5 8.0+PTX 9.0a", "12.0", True, "PTX compute_80 JIT"),
        ("7.5 8.0 9.0a", "10.0", False, "no kernel for 10.0"),  # 9.0a is Hopper-only
        (["sm_90a"], "9.1", False, "no kernel"),
    ],
)
def test_arch_coverage(arch_list: object, cc: str, covered: bool, how: str) -> None:
    result = arch_coverage(arch_list, cc)  # type: ignore[arg-type]
    assert result.covered is covered
    assert how in result.how


def test_parse_arch_list_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not a CUDA arch"):
        parse_arch_list("sm_90 banana")


@pytest.mark.parametrize(
    ("driver", "cuda", "status"),
    [
        ("580.159.04", (13, 0), "full"),  # the H200 box (docs/evidence.md#E-h200-box)
        ("580.159.04", (12, 1), "full"),
        ("535.104.05", (12, 4), "minor-compat"),
        ("525.60.13", (12, 8), "minor-compat"),
        ("520.61.05", (12, 1), "too-old"),
        ("570.26", (13, 0), "too-old"),
        # torch 2.15 (CUDA 13.2) on the H200's R580 driver: runs, but below the 13.2 GA floor.
        ("580.159.04", (13, 2), "minor-compat"),
        ("595.45.04", (13, 2), "full"),
        ("590.44.01", (13, 1), "full"),
        ("575.57.08", (13, 2), "too-old"),
    ],
)
def test_driver_fit(driver: str, cuda: tuple[int, int], status: str) -> None:
    assert driver_fit(driver, cuda).status == status


@pytest.mark.parametrize(
    ("name", "rows"),
    [
        ("driver_floors.json", ("full", "minor_compat")),
        ("torch_arch_lists.json", ("builds",)),
        ("xformers_arch_lists.json", ("builds",)),
        ("xformers_for_torch.json", ("pairs",)),
        ("sd35_params.json", ("transformers", "shared")),
    ],
)
def test_every_table_row_carries_its_evidence(name: str, rows: tuple[str, ...]) -> None:
    data = _data.load_json(name)
    assert data["schema"] == 1 and data["about"]
    for key in rows:
        assert data[key]
        for row in data[key]:
            assert len(row["evidence"]) > 40, row  # a source a reader can re-check


def test_the_tables_are_what_the_data_files_say() -> None:
    floors = {r["cuda"]: r["driver"] for r in _data.load_json("driver_floors.json")["full"]}
    assert {f"{k[0]}.{k[1]}": v for k, v in DRIVER_FLOORS.items()} == floors
    assert MINOR_COMPAT_FLOORS[12] == "525.60.13"  # NVIDIA's CUDA 12.x minor-version floor
    assert driver_fit("530.30.02", (12, 1)).status == "full"
    assert driver_fit("530.30.01", (12, 1)).status == "minor-compat"
    builds = _data.load_json("torch_arch_lists.json")["builds"]
    assert {r["cuda"]: tuple(r["archs"]) for r in builds} == dict(TORCH_ARCH_LISTS)
    assert "cu130" not in XFORMERS_ARCH_LISTS  # no xformers on PyPI is built for CUDA 13
