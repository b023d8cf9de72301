"""The host side of the host/target boundary: how sdenv runs ``sdenv.target`` code in another
interpreter, and the one environment every child process of a target gets.

``stage`` copies the target package into an empty directory (the target has no sdenv; the copy
shadows nothing and is shadowed by nothing), ``command`` runs one of its modules there, also
under ``-I``, and the child reports through ``sdenv.target.protocol``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

TARGET_PACKAGE = Path(__file__).with_name("target")

# Puts the staging directory first on sys.path and runs the module's file as __main__: the
# command line names the file, and works under -I (which ignores PYTHONPATH).
_BOOT = (
    "import runpy, sys; sys.path.insert(0, sys.argv[1]); del sys.argv[:2]; "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


def interpreter_path(python: str | os.PathLike[str]) -> str:
    """A target interpreter named so that it still runs from a staging dir: a bare name looked up
    on PATH, a path made absolute but not resolved (a venv's python is a symlink whose target
    would run outside the venv)."""
    text = os.fspath(python)
    if os.sep not in text:
        return shutil.which(text) or text
    return os.path.abspath(text)


def stage(dest: Path) -> Path:
    """Copy ``sdenv.target`` to ``dest/sdenv/target`` (with an empty ``sdenv/__init__.py``);
    return ``dest``, the directory to run from."""
    pkg = dest / "sdenv"
    (pkg / "target").mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text('"""sdenv.target, staged for a target interpreter."""\n')
    for source in TARGET_PACKAGE.glob("*.py"):
        shutil.copyfile(source, pkg / "target" / source.name)
    return dest


def command(
    python: str, root: Path, module: str, args: Sequence[str] = (), *, isolated: bool = False
) -> list[str]:
    """The command line running ``sdenv/target/<module>.py`` of the staging dir ``root``."""
    script = root / "sdenv" / "target" / f"{module}.py"
    return [python, *(["-I"] if isolated else []), "-c", _BOOT, str(root), str(script), *args]


def child_env(*, pythonpath: Sequence[str] = (), offline: bool = True) -> dict[str, str]:
    """The environment of a target process: ours, unbuffered (a result line is never stuck in a
    buffer when the process dies), a crash's Python stack on stderr (faulthandler), and with
    ``offline`` no model hub access (a check never downloads). ``pythonpath`` goes first."""
    env = dict(os.environ)
    env.update(
        PYTHONUNBUFFERED="1",
        PYTHONFAULTHANDLER="1",
        TOKENIZERS_PARALLELISM="false",
    )
    if offline:
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([*pythonpath, *filter(None, [env.get("PYTHONPATH")])])
    return env
