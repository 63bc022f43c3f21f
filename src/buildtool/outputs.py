"""Where results are written: atomically, and only where buildtool may.

* :func:`atomic_path` / :func:`atomic_dir`: a file or a whole directory appears under its
  final name only when complete (a failed or interrupted write leaves nothing that looks
  finished);
* :func:`check_owned`: a directory is replaced as a whole only when buildtool wrote it for
  the same purpose (its ``.buildtool-owner`` marker), or it is empty;
* sidecars (``X.manifest.json``, ``X.smoke.json``), ``SHA256SUMS`` and the input-keyed
  index of a dist directory (``.buildtool/index/<key>.json``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from buildtool import inputs, records
from buildtool.errors import DataError, UsageError
from buildtool.grammar import FileName
from buildtool.inputs import sha256_file
from buildtool.paths import writable_dir
from buildtool.schema import Match
from buildtool.text import redact

_UMASK = os.umask(0)
os.umask(_UMASK)


def make_parent(final: Path) -> None:
    """Create the directory ``final`` goes into; a path below a regular file or an
    unwritable directory is a usage error naming it, not a traceback."""
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        writable_dir(final.parent, "output")  # says which ancestor is in the way
        raise UsageError(f"cannot create {final.parent}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename onto it only on success."""
    make_parent(final)
    fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        tmp.chmod(0o666 & ~_UMASK)  # mkstemp makes 0600; artifacts are for everyone to read
        tmp.replace(final)
    finally:
        tmp.unlink(missing_ok=True)


OWNER_MARKER = ".buildtool-owner"


def check_owned(final: Path, owner: str) -> None:
    """A directory buildtool is about to replace as a whole must be one it wrote for the same
    purpose (its :data:`OWNER_MARKER` says ``owner``), or empty, or absent: a user's
    ``--out ~/Documents`` is refused, not deleted."""
    if final.is_symlink() or (final.exists() and not final.is_dir()):
        raise UsageError(f"{final} exists and is not a directory; refusing to replace it",
                         hint="choose another output directory")
    if not final.is_dir() or not any(final.iterdir()):
        return
    marker = final / OWNER_MARKER
    try:
        found = marker.read_text().strip() if marker.is_file() else None
    except OSError:
        found = None
    if found != owner:
        what = f"a {found} directory" if found else "not a directory buildtool wrote"
        raise UsageError(f"{final} exists and is {what}; refusing to replace it (it would "
                         f"be deleted as a whole)",
                         hint="choose another output directory, or empty it yourself")


def mark_owned(dest: Path, owner: str) -> Path:
    """Record that buildtool wrote ``dest`` for ``owner`` (so a later run may replace it)."""
    (dest / OWNER_MARKER).write_text(owner + "\n")
    return dest


@contextlib.contextmanager
def atomic_dir(final: Path, *, owner: str) -> Iterator[Path]:
    """Yield a temporary directory beside ``final``; on success it replaces ``final`` as a
    whole (files 0644, directories 0755), so a reader never sees half of it. Only a
    directory buildtool wrote for ``owner`` is ever replaced (see :func:`check_owned`)."""
    check_owned(final, owner)
    make_parent(final)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    try:
        (tmp / OWNER_MARKER).write_text(owner + "\n")
        yield tmp
        for path in [tmp, *tmp.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
        tmp.rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: Path, data: Any) -> None:
    """Atomically; a registered credential never reaches the file."""
    with atomic_path(path) as tmp:
        tmp.write_text(redact(json.dumps(data, indent=2, sort_keys=False)) + "\n")


def sidecar(artifact: Path, kind: str) -> Path:
    """``<name>.<kind>.json`` beside an artifact. An image keeps its ``.oci``
    (``X.oci.manifest.json``): the tarball and the image of one build share their name."""
    base = artifact.name.removesuffix(".tar.gz").removesuffix(".whl").removesuffix(".tar")
    return artifact.with_name(f"{base}.{kind}.json")


_SUMS_LINE = re.compile(r"([0-9a-f]{64}) [ *]([A-Za-z0-9_+-][A-Za-z0-9_.+-]*)")


def read_sums(directory: Path) -> dict[str, str]:
    """``directory/SHA256SUMS`` as name → sha256 (empty when there is none). A line that is
    not ``<sha256>  <file name>`` is a DataError naming the line."""
    path = directory / "SHA256SUMS"
    if not path.exists():
        return {}
    return parse_sums(inputs.read_text(path, limit=inputs.RECORD_LIMIT, error=DataError), path)


def parse_sums(text: str, where: Path | str) -> dict[str, str]:
    """A SHA256SUMS text (``where``: its file or URL, named in errors)."""
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _SUMS_LINE.fullmatch(line.strip())
        if m is None:
            raise DataError("not a '<sha256>  <file name>' line", path=where, line=number,
                            hint="SHA256SUMS lists the files of its own directory as "
                                 "`sha256sum` writes them")
        entries[m.group(2)] = m.group(1)
    return entries


def format_sums(entries: Mapping[str, str]) -> str:
    """name → sha256 in ``sha256sum -c`` format, sorted by name."""
    return "".join(f"{d}  {n}\n" for n, d in sorted(entries.items()))


def update_sums(dist: Path, name: str, digest: str) -> None:
    entries = read_sums(dist)
    entries[name] = digest
    with atomic_path(dist / "SHA256SUMS") as tmp:
        tmp.write_text(format_sums(entries))


def index_path(dist: Path, key: str) -> Path:
    return dist / ".buildtool" / "index" / f"{key}.json"


@dataclass(frozen=True, kw_only=True)
class IndexEntry:
    """dist/.buildtool/index/<key>.json: the artifact built from the inputs of that key."""

    artifact: FileName
    sha256: Annotated[str, Match(r"[0-9a-f]{64}", "a sha256")]


def record(dist: Path, key: str, artifact: Path, digest: str) -> None:
    write_json(index_path(dist, key), records.to_json(IndexEntry(artifact=artifact.name,
                                                                  sha256=digest)))


def lookup(dist: Path, key: str) -> Path | None:
    """A finished artifact built from exactly these inputs, if it is still intact (an entry
    that cannot be read means: build it again)."""
    path = index_path(dist, key)
    if not path.exists():
        return None
    try:
        entry = records.load(IndexEntry, path)
    except DataError:
        return None
    artifact = dist / entry.artifact
    if not artifact.is_file() or sha256_file(artifact) != entry.sha256:
        return None
    return artifact
