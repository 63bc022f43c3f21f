"""The wheel repair cache: what ``auditwheel repair`` and ``show`` made of a wheel, kept by
everything their result depends on.

auditwheel reads every symbol of every library in the wheel with pyelftools: 8 of the 13
seconds a warm cpu wheel takes, minutes for a CUDA wheel. Its result depends only on

* the raw wheel's members — names, modes and bytes — less the package's ``manifest.json``
  and the RECORD that lists it (buildtool stamps the manifest after the repair: it carries
  the build time),
* the repair's options (``--plat``, ``--exclude``), auditwheel's and patchelf's versions and
  ``SOURCE_DATE_EPOCH`` (the repaired wheel's file times),
* and the libraries outside the wheel its programs load, with what those load in turn: the
  ones no manylinux policy allows are copied into the wheel. Each one's every candidate on
  the loader's search path (``LD_LIBRARY_PATH``, ``/etc/ld.so.conf``, the system's library
  directories) is hashed: a changed ``libgomp.so.1`` is a new key.

The key hashes all of that. An entry is the repaired wheel and what auditwheel said
(``CACHE/repairs/<key>/``); it is checked against the sha256 recorded with it before use,
and one that is damaged is dropped and made again. The most recently used entries are kept
(``KEEP``); a wheel's repair is the same as auditwheel's own, member for member.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from buildtool import abi, records
from buildtool.errors import DataError
from buildtool.inputs import sha256_file
from buildtool.paths import cache_dir
from buildtool.records import RepairRecord

KEEP = 6  # entries kept, most recently used first
RECORD_FILE = "repair.json"
SCHEMA = 1


@dataclass(frozen=True, kw_only=True)
class Entry:
    """``repair.json``: the repaired wheel beside it and what auditwheel said of it."""

    schema: int
    wheel: str
    sha256: str
    repair: RepairRecord


def root() -> Path:
    return cache_dir() / "repairs"


# ---------------------------------------------------------------------------------- key

def members(wheel: Path, *, skip: Iterable[str]) -> list[tuple[str, int, str]]:
    """Each member of ``wheel`` but ``skip`` and the RECORD: name, mode, sha256."""
    left_out = set(skip)
    out = []
    with zipfile.ZipFile(wheel) as zf:
        for info in sorted(zf.infolist(), key=lambda i: i.filename):
            if info.filename in left_out or info.filename.endswith(".dist-info/RECORD"):
                continue
            digest = hashlib.sha256()
            with zf.open(info) as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
            out.append((info.filename, info.external_attr >> 16, digest.hexdigest()))
    return out


def search_dirs(root_dir: Path = Path("/"),
                env: Mapping[str, str] | None = None) -> list[Path]:
    """Where the loader (and auditwheel's lddtree) looks for a library: LD_LIBRARY_PATH,
    the directories /etc/ld.so.conf names (its includes followed), the system's library
    directories of every architecture buildtool knows."""
    env = os.environ if env is None else env
    dirs = [Path(d) for d in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if d]
    dirs += _ld_so_conf(root_dir / "etc/ld.so.conf", root_dir, depth=0)
    dirs += [root_dir / d for arch_dirs in abi.LIB_DIRS.values() for d in arch_dirs]
    return list(dict.fromkeys(dirs))


def _ld_so_conf(path: Path, root_dir: Path, *, depth: int) -> list[Path]:
    if depth > 8:
        return []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    out: list[Path] = []
    for raw_line in lines:
        line = raw_line.split("#", 1)[0].strip()
        if line.startswith("include "):
            pattern = line.removeprefix("include ").strip()
            where = root_dir / pattern.lstrip("/") if pattern.startswith("/") \
                else path.parent / pattern  # a wildcard in the last part only, as glibc's
            for conf in sorted(where.parent.glob(where.name)):
                out += _ld_so_conf(conf, root_dir, depth=depth + 1)
        elif line.startswith("/"):
            out.append(root_dir / line.lstrip("/"))
    return out


def libraries(names: Iterable[str], dirs: list[Path]) -> dict[str, list[str]]:
    """Every candidate of each library in ``names`` and of what those load in turn: name →
    the sha256 of each file of that name on the search path, in its order."""
    out: dict[str, list[str]] = {}
    todo = sorted(set(names))
    while todo:
        name = todo.pop()
        if name in out or "/" in name:
            continue
        found = [d / name for d in dirs if (d / name).is_file()]
        out[name] = [_digest(f) for f in found]
        for f in found:
            todo += [n for n in abi.needed(f) if n not in out]
    return dict(sorted(out.items()))


def _digest(path: Path) -> str:
    """A candidate's sha256; one that cannot be read is named so (the key stays what it is
    while it stays unreadable)."""
    try:
        return sha256_file(path)
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def key(raw: Path, *, manifest_member: str, argv: list[str], system_libraries: Iterable[str],
        patchelf: Path | None, env: Mapping[str, str] | None = None,
        dirs: list[Path] | None = None) -> str:
    """The repair cache's key for ``raw`` repaired with ``argv`` (auditwheel's options,
    without the file names): see the module's docstring."""
    env = os.environ if env is None else env
    dirs = search_dirs(env=env) if dirs is None else dirs
    facts = {
        "schema": SCHEMA,
        "wheel": raw.name,
        "members": members(raw, skip=[manifest_member]),
        "argv": argv,
        "auditwheel": _version("auditwheel"),
        "patchelf": sha256_file(patchelf) if patchelf is not None else None,
        "source_date_epoch": env.get("SOURCE_DATE_EPOCH"),
        "dirs": [str(d) for d in dirs],
        "libraries": libraries(system_libraries, dirs),
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


# ------------------------------------------------------------------------ get and put

def lookup(key_: str) -> tuple[Path, RepairRecord] | None:
    """The repaired wheel and its record for ``key_``, or None (an entry that cannot be
    read or whose wheel is not the one recorded is removed)."""
    entry_dir = root() / key_
    record_file = entry_dir / RECORD_FILE
    if not record_file.is_file():
        return None
    try:
        entry = records.from_text(Entry, record_file.read_text(), str(record_file))
        wheel = entry_dir / entry.wheel
        if (entry.schema != SCHEMA or Path(entry.wheel).name != entry.wheel
                or not wheel.is_file() or sha256_file(wheel) != entry.sha256):
            raise DataError(f"{entry_dir}: the wheel is not the one recorded")
    except (DataError, OSError):
        shutil.rmtree(entry_dir, ignore_errors=True)
        return None
    os.utime(entry_dir)  # recently used
    return wheel, entry.repair


def store(key_: str, wheel: Path, repair: RepairRecord) -> None:
    """Keep ``wheel`` (auditwheel's output) and ``repair`` under ``key_``: written beside
    the entries, then renamed into place; then only the KEEP most recently used stay."""
    base = root()
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=base, prefix=".new-"))
    try:
        shutil.copyfile(wheel, tmp / wheel.name)
        entry = Entry(schema=SCHEMA, wheel=wheel.name, sha256=sha256_file(tmp / wheel.name),
                      repair=repair)
        (tmp / RECORD_FILE).write_text(json.dumps(records.to_json(entry), indent=2) + "\n")
        final = base / key_
        if final.exists():
            shutil.rmtree(final, ignore_errors=True)
        # another build may have stored the same result meanwhile: theirs stays
        with contextlib.suppress(OSError):
            tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    prune(base)


def prune(base: Path, keep: int = KEEP) -> None:
    entries = sorted((p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[keep:]:
        shutil.rmtree(old, ignore_errors=True)
