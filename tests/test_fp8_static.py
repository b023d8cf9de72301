"""``StaticFP8Linear``: both weight granularities against the bf16 Linear they replace, where this
torch has an FP8 matmul on the CPU (torch 2.14 does; the default lock's 2.4 does not)."""

from __future__ import annotations

from typing import Any

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


def test_input_groups_are_chains_of_layers_on_one_input() -> None:
    from sdenv.runtime.fp8_static import input_groups

    shares = {"a.q": None, "a.k": "a.q", "a.v": "a.k", "a.out": None, "b.q": None, "b.k": "b.q"}
    assert input_groups(shares) == [["a.q", "a.k", "a.v"], ["b.q", "b.k"]]
    assert input_groups({"x": None, "y": None}) == []


class _Attention(torch.nn.Module):
    """q, k and v read one input; out reads another, as in diffusers' attention processors."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v = (torch.nn.Linear(32, 32) for _ in range(3))
        self.out = torch.nn.Linear(32, 32)

    def forward(self, x: Any) -> Any:
        return self.out(self.q(x) * self.k(x) + self.v(x))


def test_layers_reading_one_input_get_one_shared_scale() -> None:
    """Calibration finds q/k/v reading the same tensor and gives them its largest amax; the swap
    hands them one scale tensor (the compiler can then quantize that input once)."""
    from sdenv.runtime.fp8_static import StaticFP8Linear, apply_static, calibrate

    torch.manual_seed(0)
    model = _Attention()
    with torch.no_grad():
        model.k.weight.mul_(3.0)  # out's input differs per layer; q/k/v share theirs
    amax = calibrate(model, lambda: [model(torch.randn(4, 32) * s) for s in (1.0, 2.0)])
    assert amax["q"] == amax["k"] == amax["v"]
    assert amax["out"] != amax["q"]
    apply_static(model, amax)
    layers = [model.q, model.k, model.v, model.out]
    assert all(isinstance(m, StaticFP8Linear) for m in layers)
    assert model.q.input_scale is model.k.input_scale is model.v.input_scale
    assert model.out.input_scale is not model.q.input_scale
