"""``sdenv generate``: load a local SD3.5 pipeline in an FP8 mode and write one PNG."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sdenv.cli._output import out, print_json


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "generate",
        help="one image from a local SD3.5 diffusers directory, FP8 native/emulated/off",
        description=(
            "Load a local diffusers-format SD3.5 directory (safetensors only, no hub access) "
            "and write a PNG with prompt, seed, steps, FP8 mode and timings in its metadata. "
            "--fp8 native: torchao FP8 matmuls (compute capability >= 8.9); static: FP8 "
            "matmuls with activation scales calibrated once and stored beside the model (no "
            "torchao); emulated: FP8 weight storage, bf16 compute; off: bf16; auto: what "
            "`sdenv probe` chose."
        ),
    )
    p.add_argument("--model", type=Path, required=True, metavar="DIR")
    p.add_argument("--prompt", required=True, metavar="TEXT")
    p.add_argument("--steps", type=int, default=28, metavar="N")
    p.add_argument("--seed", type=int, default=0, metavar="S")
    p.add_argument("--out", type=Path, default=Path("out.png"), metavar="FILE")
    p.add_argument(
        "--fp8",
        choices=("auto", "native", "emulated", "static", "off"),
        default="auto",
        help="FP8 mode",
    )
    p.add_argument(
        "--fp8-scales",
        type=Path,
        metavar="FILE",
        help="static: the calibrated scales (default: transformer/fp8_static_scales.safetensors "
        "in the model; made on first use from this prompt and three built-in ones)",
    )
    p.add_argument("--height", type=int, metavar="PX", help="default: the model's")
    p.add_argument("--width", type=int, metavar="PX", help="default: the model's")
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the transformer (FP8 pays only compiled; slow first call)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable summary on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sdenv.runtime.generate import generate

    result = generate(
        args.model,
        args.prompt,
        args.out,
        mode=args.fp8,
        steps=args.steps,
        seed=args.seed,
        compile=args.compile,
        height=args.height,
        width=args.width,
        scales=args.fp8_scales,
    )
    if args.json:
        print_json(result)
        return 0
    t = result.timings
    fp8 = result.fp8
    out.print(
        f"wrote {result.image}: {result.width}x{result.height}, {result.steps} steps, "
        f"seed {result.seed}, fp8 {result.mode} on {result.device}",
        highlight=False,
    )
    out.print(
        f"  load {t['load_s']:.2f} s, fp8 transform {t['fp8_s']:.2f} s, denoise "
        f"{t['denoise_s']:.2f} s, decode {t['decode_s']:.2f} s; FP8 linear layers "
        f"{fp8['fp8_linear_layers']}/{fp8['linear_layers']}"
        + (
            f"; peak {result.peak_memory_bytes / 2**30:.2f} GiB" if result.peak_memory_bytes else ""
        ),
        highlight=False,
    )
    return 0
