"""``StaticFP8Linear``: both weight granularities against the bf16 Linear they replace, where this
torch has an FP8 matmul on the CPU (torch 2.14 does; the default lock's 2.4 does not)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.runtime
torch = pytest.importorskip("torch")


@pytest.mark.parametrize("granularity", ["row", "tensor"])
def test_static_linear_matches_bf16_per_granularity(granularity: str) -> None:
    from sdenv.runtime.fp8_static import StaticFP8Linear, try_rowwise_scaled_mm

    runs, why = try_rowwise_scaled_mm("cpu")
    if not runs:
        pytest.skip(f"no FP8 matmul on this CPU torch: {why}")
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32).to(torch.bfloat16)
    x = torch.randn(3, 5, 64, dtype=torch.bfloat16)
    fp8 = StaticFP8Linear(linear, float(x.abs().max()), granularity)
    assert fp8.weight.dtype == torch.float8_e4m3fn
    assert fp8.weight_scale.shape == ((1, 32) if granularity == "row" else ())
    want, got = linear(x).float(), fp8(x).float()
    assert got.shape == want.shape
    assert float((got - want).norm() / want.norm()) < 0.1
    assert granularity in repr(fp8)


def test_static_linear_rejects_an_unknown_granularity() -> None:
    from sdenv.runtime.fp8_static import StaticFP8Linear

    with pytest.raises(ValueError, match="granularity 'block': choose row or tensor"):
        StaticFP8Linear(torch.nn.Linear(16, 16), 1.0, "block")
