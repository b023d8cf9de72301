"""The deployment loader on a real tiny SD3.5 pipeline, made here, run on CPU (off, emulated)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from sdenv.cli import main
from sdenv.errors import UsageError
from sdenv.runtime.errors import (
    Fp8Unavailable,
    InsufficientMemory,
    ModelLayoutError,
    PickleRefused,
)
from sdenv.runtime.generate import generate, load_pipeline, resolve_mode
from sdenv.runtime.memory import check_memory, plan_memory
from sdenv.runtime.modelfiles import check_model_dir

pytestmark = pytest.mark.runtime  # diffusers, transformers, torch: the runtime env's


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sdenv.runtime.tinymodel import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sd3")


@pytest.fixture
def copy(tiny: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "model"
    shutil.copytree(tiny, dest)
    return dest


def test_tiny_model_has_sd35_layout_and_classes(tiny: Path) -> None:
    index = json.loads((tiny / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusion3Pipeline"
    assert index["transformer"] == ["diffusers", "SD3Transformer2DModel"]
    assert index["text_encoder"][1] == index["text_encoder_2"][1] == "CLIPTextModelWithProjection"
    assert index["text_encoder_3"][1] == "T5EncoderModel"
    cfg = json.loads((tiny / "transformer" / "config.json").read_text())
    assert cfg["qk_norm"] == "rms_norm" and cfg["dual_attention_layers"] == [0]
    assert json.loads((tiny / "vae" / "config.json").read_text())["latent_channels"] == 16
    assert not list(tiny.rglob("*.bin")) and list(tiny.rglob("*.safetensors"))
    layout = check_model_dir(tiny)
    assert set(layout.components) == {
        "transformer",
        "vae",
        "text_encoder",
        "text_encoder_2",
        "text_encoder_3",
    }
    # Real tokenizers: the prompt is split into known pieces, not unknown tokens.
    from transformers import AutoTokenizer

    clip = AutoTokenizer.from_pretrained(str(tiny / "tokenizer"))
    ids = clip("a photograph of an astronaut")["input_ids"]
    assert ids[0] == clip.bos_token_id and ids[-1] == clip.eos_token_id
    assert clip.unk_token_id not in ids[1:-1]
    t5 = AutoTokenizer.from_pretrained(str(tiny / "tokenizer_3"))
    t5_ids = t5("a photograph of an astronaut")["input_ids"]
    assert t5_ids[-1] == 1 and t5.unk_token_id not in t5_ids


def test_pickle_checkpoint_refused_before_loading(copy: Path, tmp_path: Path) -> None:
    (copy / "transformer" / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    out = tmp_path / "x.png"
    with pytest.raises(PickleRefused, match=r"diffusion_pytorch_model\.bin: pickle checkpoint"):
        generate(copy, "a cat", out, mode="off", steps=1)
    assert not out.exists()
    # The CLI: one line naming the file, usage exit code.
    assert main(["generate", "--model", str(copy), "--prompt", "a", "--out", str(out)]) == 2
    assert not out.exists()


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda m: (m / "model_index.json").unlink(), r"model_index\.json: missing"),
        (lambda m: shutil.rmtree(m / "vae"), r"vae: missing component directory"),
        (lambda m: (m / "vae" / "config.json").unlink(), r"vae/config\.json: missing"),
        (
            lambda m: next((m / "transformer").glob("*.safetensors")).unlink(),
            r"transformer: no \.safetensors weights",
        ),
        (
            lambda m: (m / "tokenizer_3" / "tokenizer.json").unlink(),
            r"tokenizer_3: no tokenizer files",
        ),
    ],
)
def test_layout_errors_name_the_file(copy: Path, breakage: object, message: str) -> None:
    breakage(copy)  # type: ignore[operator]
    with pytest.raises(ModelLayoutError, match=message):
        check_model_dir(copy)


def test_truncated_weights_and_missing_shard(copy: Path) -> None:
    weights = next((copy / "vae").glob("*.safetensors"))
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # an interrupted download
    with pytest.raises(ModelLayoutError, match=r"truncated .* download it again"):
        check_model_dir(copy)
    weights.write_bytes(data)
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002.st"}}
    (copy / "text_encoder_3" / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ModelLayoutError, match="missing shard"):
        check_model_dir(copy)


def test_memory_checked_before_the_load(tiny: Path) -> None:
    layout = check_model_dir(tiny)
    off, fp8 = (
        plan_memory(layout.param_counts(), "off"),
        plan_memory(layout.param_counts(), "emulated"),
    )
    assert off.weights_bytes == 2 * layout.total_params()
    assert fp8.weights_bytes < off.weights_bytes  # transformer matrices in one byte
    check_memory(off, off.needed_bytes, "cuda")
    with pytest.raises(InsufficientMemory, match=r"try --fp8 native or --fp8 emulated"):
        check_memory(off, off.needed_bytes - 1, "cuda")
    with pytest.raises(InsufficientMemory, match=r"GiB free"):
        load_pipeline(tiny, "off", available_bytes=1 << 20)


def test_modes_resolve_and_native_needs_a_gpu(tiny: Path) -> None:
    assert resolve_mode("auto", lambda: "emulated") == "emulated"
    assert resolve_mode("off") == "off"
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(Fp8Unavailable, match="compute capability >= 8.9"):
            load_pipeline(tiny, "native")


@pytest.mark.parametrize("mode", ["off", "emulated"])
def test_generate_writes_png_with_metadata(tiny: Path, tmp_path: Path, mode: str) -> None:
    from PIL import Image

    out = tmp_path / f"{mode}.png"
    result = generate(tiny, "a red fox", out, mode=mode, steps=2, seed=7)
    assert result.finite and result.mode == mode
    fp8 = result.fp8
    if mode == "emulated":
        # Every attention/MLP matrix of the blocks is stored in float8_e4m3fn.
        assert fp8["block_linears"] > 0 and fp8["block_linears_fp8"] == fp8["block_linears"]
    else:
        assert fp8["fp8_linear_layers"] == 0
    assert result.fp8_ok()
    img = Image.open(out)
    assert img.size == (64, 64)
    meta = img.text  # type: ignore[attr-defined]
    assert meta["prompt"] == "a red fox" and meta["seed"] == "7" and meta["steps"] == "2"
    assert meta["fp8_mode"] == mode
    assert len(json.loads(meta["timings"])["steps_s"]) == 2


def test_generate_cli_json(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.png"
    argv = ["generate", "--model", str(tiny), "--prompt", "a boat", "--steps", "1"]
    assert main([*argv, "--fp8", "off", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["image"] == str(out) and summary["mode"] == "off" and out.exists()
    assert main([*argv, "--fp8", "off", "--out", str(tmp_path / "x.jpg")]) == 2


def test_model_check_on_a_given_model_dir(tiny: Path) -> None:
    from sdenv.runtime.check import model_check
    from sdenv.target.protocol import MARKER, last_result

    report = model_check("emulated", tiny, steps=1)
    assert report["ok"] and report["fp8_ok"] and report["model"] == str(tiny)
    assert report["timings"]["make_tiny_s"] == 0.0
    assert last_result(f'chatter\n{MARKER} {{"ok": true}}\n') == {"ok": True}
    assert last_result("Traceback ...\nKeyError: 'x'\n{\"ok\": true}\n") is None


def test_model_check_reads_its_mode_from_stdin_once_the_model_is_ready(tiny: Path) -> None:
    """``--mode -``, as verify starts it before the probe has answered: the mode arrives on stdin;
    an empty line means no run (exit 0, no result); a mode that is not one is the check's error."""
    import subprocess
    import sys

    from sdenv.target.protocol import last_result

    src = str(Path(__file__).resolve().parents[1] / "src")
    cmd = [sys.executable, "-m", "sdenv.runtime.check", "--mode", "-", "--model", str(tiny)]
    cmd += ["--steps", "1"]

    def check(line: str) -> tuple[int, dict[str, Any] | None]:
        env = {**os.environ, "PYTHONPATH": src}
        proc = subprocess.run(cmd, input=line, capture_output=True, text=True, env=env, timeout=300)
        return proc.returncode, last_result(proc.stdout)

    rc, report = check("emulated\n")
    assert rc == 0 and report is not None and report["ok"] and report["mode"] == "emulated"
    assert report["timings"]["mode_wait_s"] >= 0.0
    assert check("") == (0, None)
    rc, report = check("fast\n")
    assert rc == 1 and report is not None and "got 'fast' on stdin" in report["error"]


def test_static_fp8_calibrates_once_stores_beside_the_model_and_checks_the_file(
    copy: Path, tmp_path: Path
) -> None:
    """--fp8 static where torch has a row-wise FP8 matmul on this device (the CPU kernel is in
    torch 2.14, not in the default lock's 2.4): the first run calibrates and writes the scales
    beside the transformer, the next one reuses them; elsewhere one line says why it cannot run."""

    from sdenv.runtime.fp8_static import load_scales, try_rowwise_scaled_mm

    runs, why = try_rowwise_scaled_mm("cpu")
    if not runs:
        with pytest.raises(Fp8Unavailable, match=r"--fp8 static needs a row-wise FP8 matmul"):
            generate(copy, "a red fox", tmp_path / "s.png", mode="static", steps=1)
        assert why and not (tmp_path / "s.png").exists()
        return
    first = generate(copy, "a red fox", tmp_path / "a.png", mode="static", steps=2, seed=7)
    scales = copy / "transformer" / "fp8_static_scales.safetensors"
    assert first.finite and first.fp8_ok() and first.fp8["calibrated_now"] is True
    assert first.fp8["scales"] == str(scales)
    stored = load_scales(scales)
    assert len(stored) == first.fp8["fp8_layers"] == first.fp8["fp8_linear_layers"]
    assert all(v > 0 for v in stored.values())
    again = generate(copy, "a red fox", tmp_path / "b.png", mode="static", steps=2, seed=7)
    assert again.fp8["calibrated_now"] is False and again.finite
    # Scales of another model (names that do not match) and a broken file: one line each.
    other = tmp_path / "other.safetensors"
    from sdenv.runtime.fp8_static import save_scales

    save_scales(other, {"not.a.layer": 1.0}, {})
    with pytest.raises(UsageError, match=r"made for another model"):
        generate(copy, "x", tmp_path / "c.png", mode="static", steps=1, scales=other)
    other.write_bytes(b"not safetensors")
    with pytest.raises(UsageError, match=r"unreadable"):
        generate(copy, "x", tmp_path / "d.png", mode="static", steps=1, scales=other)
    assert not (tmp_path / "c.png").exists() and not (tmp_path / "d.png").exists()


def test_on_cpu_the_vae_decodes_the_bf16_latents_in_float32(tiny: Path) -> None:
    """bf16 convolutions on a CPU without bf16 instructions are ~50x slower
    (docs/evidence.md#E-cpu-bf16-conv): on CPU the VAE is float32 and takes the transformer's bf16
    latents as they come; the transformer keeps the mode's dtypes."""
    import torch

    loaded = load_pipeline(tiny, "emulated", probe_fn=lambda: "emulated")
    if loaded.device != "cpu":
        pytest.skip("a CUDA device: the VAE stays bf16 there")
    vae, transformer = loaded.pipe.vae, loaded.pipe.transformer
    assert vae.dtype == torch.float32
    assert any(p.dtype == torch.float8_e4m3fn for p in transformer.parameters())
    latents = torch.zeros(1, vae.config.latent_channels, 8, 8, dtype=torch.bfloat16)
    assert vae.decode(latents).sample.dtype == torch.float32


def test_verify_runs_the_smokes_import_checks_in_the_model_checks_process() -> None:
    """verify of this runtime env: the model check's process gives the probe's facts and runs the
    smoke's pure-import checks too (one torch, diffusers and transformers import instead of
    three); they pass there as in a process of their own, and the model check then runs."""
    from sdenv._smoke_run import IMPORTS, _group
    from sdenv.smoke_checks import _SPECS
    from sdenv.verify import verify

    result = verify(no_lock=True, gpu=False)
    parts = {p.name: p for p in result.parts}
    assert parts["probe"].detail["collected_in"] == "the model check's process"
    assert parts["smoke"].status == "pass", parts["smoke"].reasons
    assert parts["model"].status == "pass", parts["model"].reasons
    here = parts["model"].detail["smoke_checks_run_here"]
    imports = [name for name, spec in _SPECS.items() if _group(spec, False) == IMPORTS]
    assert {"torch", "diffusers", "transformers"} <= set(here) <= set(imports)
