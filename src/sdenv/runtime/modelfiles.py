"""A local SD3/SD3.5 diffusers directory checked from its files alone, before any load.

Layout (model_index.json and each component), no pickle checkpoints (safetensors only: a pickle
can run code when loaded), complete safetensors files (headers parsed, sizes checked, sharded
indexes complete), parameter counts from the headers (for the memory check) and the image size
the model accepts. Standard library only.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdenv.errors import UsageError
from sdenv.runtime.errors import ModelLayoutError, PickleRefused

PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth", ".pkl", ".pickle")
_MODEL_COMPONENTS = ("transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3")
_REQUIRED: tuple[str, ...] = ("transformer", "vae", "scheduler", "text_encoder", "text_encoder_2")
_REQUIRED += ("tokenizer", "tokenizer_2")
# SD3 can run without T5 (tokenizer_3/text_encoder_3 null in model_index.json).
_OPTIONAL = ("text_encoder_3", "tokenizer_3")
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8}
_DTYPE_BYTES |= {"I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


# --------------------------------------------------------------------------- checks from files


@dataclass(frozen=True)
class TensorStats:
    params: int = 0
    matrix_params: int = 0  # 2-D weights: what FP8 modes store in one byte
    file_bytes: int = 0


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file, checking the file is as long as it says."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(8)
            if len(raw) != 8:
                raise ModelLayoutError(f"{path}: truncated safetensors file; download it again")
            (n,) = struct.unpack("<Q", raw)
            if n > 100 << 20:
                raise ModelLayoutError(f"{path}: not a safetensors file (header length {n})")
            header = json.loads(fh.read(n))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ModelLayoutError(
            f"{path}: unreadable safetensors header; download it again"
        ) from None
    if not isinstance(header, dict):
        raise ModelLayoutError(f"{path}: unreadable safetensors header; download it again")
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    size = path.stat().st_size
    if size < 8 + n + end:
        raise ModelLayoutError(
            f"{path}: truncated ({size} bytes, header says {8 + n + end}); download it again"
        )
    return header


def _stats(files: list[Path]) -> TensorStats:
    params = matrix = nbytes = 0
    for f in files:
        for name, info in read_safetensors_header(f).items():
            if name == "__metadata__":
                continue
            count = 1
            for d in info["shape"]:
                count *= int(d)
            params += count
            if len(info["shape"]) == 2:
                matrix += count
            nbytes += count * _DTYPE_BYTES.get(info["dtype"], 4)
    return TensorStats(params, matrix, nbytes)


def _weight_files(comp_dir: Path, model_dir: Path) -> list[Path]:
    indexes = sorted(comp_dir.glob("*.safetensors.index.json"))
    if indexes:
        files: list[Path] = []
        for index in indexes:
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ModelLayoutError(
                    f"{index}: unreadable shard index; download it again"
                ) from None
            missing = [s for s in shards if not (comp_dir / s).is_file()]
            if missing:
                raise ModelLayoutError(
                    f"{comp_dir / missing[0]}: missing shard ({len(missing)} of {len(shards)} "
                    f"listed in {index.name}); finish the download"
                )
            files += [comp_dir / s for s in shards]
        return files
    files = sorted(comp_dir.glob("*.safetensors"))
    if not files:
        raise ModelLayoutError(
            f"{comp_dir}: no .safetensors weights; download the safetensors files of "
            f"{model_dir.name}/{comp_dir.name}"
        )
    return files


def find_pickles(model_dir: Path) -> list[Path]:
    return sorted(
        p for p in model_dir.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES and p.is_file()
    )


@dataclass(frozen=True)
class ModelLayout:
    path: Path
    pipeline_class: str
    components: dict[str, TensorStats]  # model components only

    def total_params(self) -> int:
        return sum(s.params for s in self.components.values())

    def param_counts(self) -> dict[str, tuple[int, int]]:
        """component -> (parameters, parameters in matrices): what the memory model reads."""
        return {name: (s.params, s.matrix_params) for name, s in self.components.items()}


def check_model_dir(model_dir: Path) -> ModelLayout:
    """Everything about ``model_dir`` that files can tell, before any import of torch."""
    index_path, index = _read_index(model_dir)
    cls = str(index.get("_class_name", ""))
    if not cls.startswith("StableDiffusion3"):
        raise ModelLayoutError(
            f"{index_path}: _class_name is {cls!r}, not a StableDiffusion3 pipeline"
        )
    components: dict[str, TensorStats] = {}
    for name in (*_REQUIRED, *_OPTIONAL):
        entry = index.get(name)
        if entry is None or entry == [None, None]:
            if name in _REQUIRED:
                raise ModelLayoutError(f"{index_path}: component {name!r} missing; re-download it")
            continue
        comp_dir = model_dir / name
        _check_component_files(name, comp_dir)
        if name in _MODEL_COMPONENTS:
            components[name] = _stats(_weight_files(comp_dir, model_dir))
    return ModelLayout(model_dir, cls, components)


def _read_index(model_dir: Path) -> tuple[Path, dict[str, Any]]:
    """``model_index.json``, after the directory and its pickles are checked."""
    if not model_dir.is_dir():
        what = (
            "is a file, not a model directory" if model_dir.exists() else "no such model directory"
        )
        raise ModelLayoutError(
            f"{model_dir}: {what}; pass a local diffusers-format SD3.5 directory"
        )
    pickles = find_pickles(model_dir)
    if pickles:
        raise PickleRefused(
            f"{pickles[0]}: pickle checkpoint refused (loading a pickle can run arbitrary code); "
            "use the model's .safetensors files and delete the pickle files"
        )
    index_path = model_dir / "model_index.json"
    if not index_path.is_file():
        single = sorted(model_dir.glob("*.safetensors"))
        hint = (
            f" ({single[0].name} is a single-file checkpoint: use the diffusers-format repo)"
            if single
            else ""
        )
        raise ModelLayoutError(f"{index_path}: missing; not a diffusers pipeline directory{hint}")
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLayoutError(f"{index_path}: invalid JSON ({exc}); download it again") from None
    return index_path, index


def _check_component_files(name: str, comp_dir: Path) -> None:
    """The files a component's loader opens first: a half-finished download is named."""
    if not comp_dir.is_dir():
        raise ModelLayoutError(f"{comp_dir}: missing component directory; finish the download")
    if name.startswith("tokenizer"):
        if not any(
            (comp_dir / f).is_file() for f in ("tokenizer.json", "vocab.json", "spiece.model")
        ):
            raise ModelLayoutError(
                f"{comp_dir}: no tokenizer files (tokenizer.json, vocab.json or spiece.model)"
            )
        return
    needed = "scheduler_config.json" if name == "scheduler" else "config.json"
    if not (comp_dir / needed).is_file():
        raise ModelLayoutError(f"{comp_dir / needed}: missing; finish the download")


def size_multiple(model_dir: Path) -> int:
    """Height and width must be multiples of the VAE's downscale times the transformer's patch
    size (8 x 2 = 16 for SD3.5), read from the model's own config files."""

    def config(sub: str) -> dict[str, Any]:
        try:
            data = json.loads((model_dir / sub / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    blocks = config("vae").get("block_out_channels") or [0, 0, 0, 0]
    patch = config("transformer").get("patch_size") or 2
    return int(2 ** (len(blocks) - 1) * int(patch))


def check_size(model_dir: Path, height: int | None, width: int | None) -> None:
    multiple = size_multiple(model_dir)
    for option, value in (("--height", height), ("--width", width)):
        if value is not None and (value < multiple or value % multiple):
            near = max(multiple, round(value / multiple) * multiple)
            raise UsageError(
                f"{option} {value}: must be a positive multiple of {multiple} for this model "
                f"(VAE downscale x patch size); e.g. {near}"
            )
