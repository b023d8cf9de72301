"""The GPU concern: compatibility facts (``compat``), the probe, and the pure decision.

``compat`` and ``probe`` run inside target envs too: this package imports nothing at import time.
"""
