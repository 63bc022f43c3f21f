"""Zip archives unpacked without leaving their directory: the pinned source's zip and the
wheels a toolchain is assembled from (tar archives of sources: :mod:`buildtool.source.vendor`).
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path


def unzip(archive: Path, dest: Path, *, refuse: Callable[[str], Exception],
          name: Callable[[str], str | None] = lambda n: n, keep_modes: bool) -> None:
    """Extract a zip archive into ``dest``: ``name`` maps member names (None skips one),
    a member that would land outside ``dest`` raises ``refuse(member)``. Unix modes from the
    entries are kept as recorded (``keep_modes``) or normalized to 0755/0644 (installers)."""
    root = dest.resolve()
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            rel = name(info.filename)
            if rel is None:
                continue
            target = (dest / rel).resolve()
            if not target.is_relative_to(root):
                raise refuse(info.filename)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, target.open("wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            mode = (info.external_attr >> 16) & 0o777
            if keep_modes and mode:
                target.chmod(mode)
            elif not keep_modes:
                target.chmod(0o755 if mode & 0o111 else 0o644)
