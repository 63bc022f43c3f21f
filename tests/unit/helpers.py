from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from buildtool import records
from buildtool.records import Manifest

ROOT = Path(__file__).resolve().parents[2]


def copy_project(dest: Path) -> Path:
    """A scratch copy of the project's configuration (matrix, recipes, lock and its
    patches)."""
    shutil.copy(ROOT / "build_matrix.yaml", dest / "build_matrix.yaml")
    shutil.copytree(ROOT / "recipes", dest / "recipes")
    (dest / "vendor").mkdir()
    shutil.copy(ROOT / "vendor" / "llama.cpp.lock.json", dest / "vendor")
    if (ROOT / "vendor" / "patches").is_dir():
        shutil.copytree(ROOT / "vendor" / "patches", dest / "vendor" / "patches")
    return dest


def fake_cuda_tree(root: Path, *, lacking: tuple[str, ...] = ()) -> Path:
    """A CUDA toolkit on disk with NVIDIA's layout: one file for each part a build needs
    (buildtool.backends.cuda_toolkit.REQUIRED), except the parts named in ``lacking``."""
    from buildtool.backends.cuda_toolkit import REQUIRED

    for what, options in REQUIRED.items():
        if what in lacking:
            continue
        path = root / options[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    return root


def manifest_data(target: str = "cpu", **changes: Any) -> dict[str, Any]:
    """A complete manifest as JSON data (what `buildtool build` writes) with ``changes``."""
    from tests.unit.release_data import base_manifest

    data = {**base_manifest(target), "kind": "tarball",
            "artifact": f"llama.cpp-b11312-{target}-linux-x86_64"}
    data.update(changes)
    return data


def manifest(target: str = "cpu", **changes: Any) -> Manifest:
    """A typed manifest, read the way buildtool reads one."""
    return records.from_data(Manifest, manifest_data(target, **changes), "test manifest")


def run_cli(capsys: Any, *args: str) -> tuple[int, str, str]:
    """``buildtool ARGS`` in-process through cli.main (exit code as the shell sees it),
    with what it printed on stdout and stderr."""
    import pytest

    from buildtool import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(list(args))
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err
