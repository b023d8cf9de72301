"""sdenv: reproducible Stable Diffusion 3.5 FP8 environments."""

__version__ = "0.1.0"
