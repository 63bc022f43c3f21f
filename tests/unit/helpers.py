from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def copy_project(dest: Path) -> Path:
    """A scratch copy of the project's configuration (matrix, recipes, lock)."""
    shutil.copy(ROOT / "build_matrix.yaml", dest / "build_matrix.yaml")
    shutil.copytree(ROOT / "recipes", dest / "recipes")
    (dest / "vendor").mkdir()
    shutil.copy(ROOT / "vendor" / "llama.cpp.lock.json", dest / "vendor")
    return dest
