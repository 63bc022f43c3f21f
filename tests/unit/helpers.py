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


def fake_cuda_tree(root: Path, *, lacking: tuple[str, ...] = ()) -> Path:
    """A CUDA toolkit on disk with NVIDIA's layout: one file for each part a build needs
    (buildtool.cuda_toolkit.REQUIRED), except the parts named in ``lacking``."""
    from buildtool.cuda_toolkit import REQUIRED

    for what, options in REQUIRED.items():
        if what in lacking:
            continue
        path = root / options[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    return root
