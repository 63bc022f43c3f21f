"""Where things live — the project root, caches — and checks on the places buildtool writes.

Every output location a command will write (``--dist``, ``--build-root``, ``--out``, the
cache) is checked with :func:`writable_dir` *before* any long work: a path below a regular
file, an unwritable directory or a cache variable pointing at a file is a usage error at
once, not a traceback after a 20-minute compile.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from buildtool.errors import UsageError

MATRIX_FILE = "build_matrix.yaml"
MAX_EPOCH = 253402300799  # 9999-12-31T23:59:59Z


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


def cache_source() -> str:
    """Which setting names the cache (for messages)."""
    if os.environ.get("BUILDTOOL_CACHE"):
        return "BUILDTOOL_CACHE"
    if os.environ.get("XDG_CACHE_HOME"):
        return "XDG_CACHE_HOME"
    return "the home directory's .cache"


def writable_dir(path: Path, what: str) -> Path:
    """``path`` is, or can be made, a directory this process may write: the first existing
    ancestor must be a directory and writable. Nothing is created."""
    probe = path
    while not probe.exists():
        if probe.is_symlink():  # a dangling link
            raise UsageError(f"{what} {path}: {probe} is a broken symbolic link")
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"{what} {path}: {probe} is not a directory",
                         hint="choose a location that is not below a regular file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {path}: {probe} is not writable",
                         hint="choose a location this user may write")
    return path


def writable_file(path: Path, what: str) -> Path:
    """``path`` can be written as a regular file (it is not a directory, its directory is
    writable)."""
    if path.is_dir():
        raise UsageError(f"{what} {path} is a directory", hint="name a file")
    if path.exists() and not path.is_file():
        raise UsageError(f"{what} {path} is not a regular file")
    writable_dir(path.parent, what)
    return path


def check_cache() -> Path:
    return writable_dir(cache_dir(), f"the cache ({cache_source()})")


def source_date_epoch() -> datetime | None:
    """SOURCE_DATE_EPOCH (reproducible builds) as a time, None when unset; a value that is
    not a Unix time between 1970 and 9999 is a usage error."""
    raw = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) > MAX_EPOCH:
        raise UsageError(f"SOURCE_DATE_EPOCH={raw[:40]!r} is not a Unix time between 0 and "
                         f"{MAX_EPOCH}", hint="unset it, or set it to `git log -1 --format=%ct`")
    return datetime.fromtimestamp(int(raw), UTC)
