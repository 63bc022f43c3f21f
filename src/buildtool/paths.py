"""Where things live: the project root (the directory holding build_matrix.yaml) and caches."""

from __future__ import annotations

import os
from pathlib import Path

MATRIX_FILE = "build_matrix.yaml"


def find_root(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` that holds build_matrix.yaml."""
    env = os.environ.get("BUILDTOOL_ROOT")
    if env:
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / MATRIX_FILE).is_file():
            return candidate
    return here


def cache_dir() -> Path:
    env = os.environ.get("BUILDTOOL_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "buildtool"
