"""Run pytest inside the runtime env: torch, diffusers and transformers exactly as the default
lock pins them (``sdenv sync`` made the env; ``make test`` runs this for tests marked ``runtime``).

The env has no pytest and must not get one (``sdenv sync`` removes what the lock does not pin), so
the dev venv's site-packages (pytest, sdenv's own deps, sdenv's editable path) are appended after
the env's own: a package both have is always the locked one. Subprocesses of this interpreter get
sdenv's source on PYTHONPATH and nothing else, as in an image (sdenv plus the lock).

Usage: .envs/<target>/bin/python tests/runtime_pytest.py DEV_SITE_PACKAGES [pytest args]
"""

from __future__ import annotations

import os
import site
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")

if __name__ == "__main__":
    site.addsitedir(sys.argv[1])
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))
    import pytest

    sys.exit(pytest.main(sys.argv[2:]))
