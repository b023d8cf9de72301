"""The errors of loading and running SD3.5 pipelines: one place, so every runtime module raises
the same types and the CLI maps them to the same exit codes."""

from __future__ import annotations

from sdenv.errors import SdenvError, UsageError


class GenerateError(SdenvError):
    """Loading or running the pipeline failed."""


class ModelLayoutError(UsageError):
    """The model directory is not a complete diffusers SD3 pipeline; the message names the file."""


class PickleRefused(ModelLayoutError):
    """A pickle checkpoint (.ckpt/.bin/.pt...) in the model directory: refused, safetensors only."""


class InsufficientMemory(GenerateError):
    """The model cannot fit the device in the requested mode; found before loading."""


class Fp8Unavailable(GenerateError):
    """The requested FP8 mode cannot run on this box (GPU, torch or torchao missing)."""
