"""The llama.cpp pin: read the lock, fetch a source, verify it, extract it safely.

The lock (``vendor/llama.cpp.lock.json``) names the upstream commit and several sources,
tried in order; the first that can be fetched *and* verified wins:

* ``archive`` sources (the upstream GitHub tarball, the llama-cpp-python sdist on PyPI)
  are verified by the sha256 of the archive bytes;
* a ``local`` source (``--source PATH`` or ``$BUILDTOOL_LLAMA_SOURCE``) may be an archive —
  then its sha256 must equal one pinned in the lock — or a directory, verified by the
  lock's ``tree_sha256``: a digest of every file's path, mode and content. GitHub's
  archives are not byte-stable over the years; a tree digest is, and it is also what lets
  an air-gapped lab hand us an unpacked tree.

A source that fails verification is refused (and the next one tried); if none is left,
:class:`SourceError` says what each one answered. Extraction refuses absolute paths, ``..``
and links that leave the tree (``tarfile``'s ``data`` filter), goes to a temporary
directory, and is renamed into place only when complete.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from buildtool import inputs
from buildtool.archives import unzip
from buildtool.errors import ConfigError, SourceError
from buildtool.grammar import BUILD_TAG, EnvName, OneLine, RelativePath, TargetName
from buildtool.inputs import sha256_file
from buildtool.paths import cache_dir
from buildtool.schema import Match, Range, convert

MARKER = ".buildtool-source.json"
KEPT_PREFIX = "llama.cpp-"  # a kept lock: llama.cpp-<version>.lock.json beside the default
KEPT_SUFFIX = ".lock.json"
EXCLUDED_TOP = {".git"}
CHUNK = 1 << 20
MAX_DOWNLOAD = 4 << 30  # no source archive of llama.cpp comes near this

Progress = Callable[[str], None]


Sha256 = Annotated[str, Match(r"[0-9a-f]{64}", "a sha256 (64 lower-case hex digits)")]
Commit = Annotated[str, Match(r"[0-9a-f]{40}", "a full git commit (40 lower-case hex digits)")]
Url = Annotated[str, Match(r"https?://[A-Za-z0-9.\[\]:-]+(?:/[^\s]*)?|file:///[^\s]*",
                           "an http(s) or file:/// URL")]


@dataclass(frozen=True, kw_only=True)
class Upstream:
    """Where the pinned tree comes from."""

    repository: Url
    commit: Commit
    build_number: Annotated[int, Range(minimum=0)]


@dataclass(frozen=True, kw_only=True)
class SourceEntry:
    """One way to get the pinned tree, tried in the lock's order."""

    name: TargetName
    kind: Literal["archive", "local"]
    url: Url | None = None
    sha256: Sha256 | None = None
    subdir: RelativePath | None = None
    path_env: EnvName | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.kind == "archive" and not (self.url and self.sha256):
            raise ValueError(f"source '{self.name}': an archive needs 'url' and 'sha256'")


@dataclass(frozen=True, kw_only=True)
class PatchEntry:
    """A fix the pinned commit lacks, applied (``patch -p1``) after extraction, in order."""

    file: RelativePath = field(metadata={"doc": "the patch, relative to the lock's directory "
                                                "(vendor/patches/0001-….patch)"})
    sha256: Sha256
    reason: OneLine = field(metadata={"doc": "why it is needed: the upstream report or fix"})

    @property
    def pinned(self) -> str:
        return f"{self.file}:{self.sha256}"


@dataclass(frozen=True, kw_only=True)
class LockFile:
    """vendor/llama.cpp.lock.json: the pinned llama.cpp commit and its verified sources."""

    upstream: Upstream
    tree_sha256: Sha256
    sources: tuple[SourceEntry, ...]
    patches: tuple[PatchEntry, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Lock:
    path: Path
    repository: str
    commit: str
    build_number: int
    tree_sha256: str
    sources: tuple[SourceEntry, ...]
    patches: tuple[PatchEntry, ...] = ()

    @property
    def version(self) -> str:
        return f"b{self.build_number}"

    @property
    def short_commit(self) -> str:
        return self.commit[:9]

    @property
    def tree(self) -> Path:
        """Where its tree is materialized: ``llama.cpp`` beside the default lock,
        ``llama.cpp-<version>`` beside a kept one (``llama.cpp-<version>.lock.json``)."""
        name = self.path.name
        if name.startswith(KEPT_PREFIX) and name.endswith(KEPT_SUFFIX):
            return self.path.parent / name.removesuffix(KEPT_SUFFIX)
        return self.path.parent / "llama.cpp"

    def archive_hashes(self) -> dict[str, SourceEntry]:
        return {s.sha256: s for s in self.sources if s.kind == "archive" and s.sha256}


@dataclass(frozen=True, kw_only=True)
class Materialized:
    """What `vendor/llama.cpp` was made from (stored in its marker file)."""

    tree: Path
    source: str
    archive_sha256: str | None
    tree_sha256: str  # after the lock's patches: what the build key and the manifest carry
    commit: str
    fetched_at: str
    patches: tuple[str, ...] = ()  # "file:sha256" of each patch applied, in order

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "archive_sha256": self.archive_sha256,
                "tree_sha256": self.tree_sha256, "commit": self.commit,
                "fetched_at": self.fetched_at, "patches": list(self.patches)}


def load_lock(path: Path) -> Lock:
    doc = inputs.load_json(path, limit=inputs.CONFIG_LIMIT, error=ConfigError, keys="kebab",
                           strict_keys=True)
    data: LockFile = convert(LockFile, doc.data, doc)
    if not data.sources:
        raise ConfigError("sources: the lock names no source", path=path,
                          hint="see README 'Pinned source' for the lock format")
    up = data.upstream
    return Lock(path=path, repository=up.repository, commit=up.commit,
                build_number=up.build_number, tree_sha256=data.tree_sha256,
                sources=data.sources, patches=data.patches)


def kept_lock_path(default: Path, version: str) -> Path:
    """Where the lock of ``version`` is kept beside the default lock ``default``."""
    return default.parent / f"{KEPT_PREFIX}{version}{KEPT_SUFFIX}"


@dataclass(frozen=True)
class LockSet:
    """The versions a build may choose (``--llama-cpp``, the matrix's ``llama-cpp``): the
    default lock and every lock kept beside it as ``llama.cpp-<version>.lock.json``, each
    verified as the default is."""

    default_path: Path
    _loaded: dict[Path, Lock] = field(default_factory=dict, compare=False, repr=False)

    @functools.cached_property
    def default(self) -> Lock:
        return load_lock(self.default_path)

    def kept(self) -> dict[str, Path]:
        """Each kept lock's version (from its file name) and path, in version order."""
        found = {}
        pattern = f"{KEPT_PREFIX}b*{KEPT_SUFFIX}"
        for path in self.default_path.parent.glob(pattern):
            version = path.name.removeprefix(KEPT_PREFIX).removesuffix(KEPT_SUFFIX)
            if re.fullmatch(BUILD_TAG, version) and path != self.default_path:
                found[version] = path
        return dict(sorted(found.items(), key=lambda kv: int(kv[0][1:])))

    def versions(self) -> list[str]:
        return sorted({self.default.version, *self.kept()}, key=lambda v: int(v[1:]))

    def get(self, version: str | None) -> Lock:
        """The lock of ``version`` (None: the default); a kept lock whose content names
        another version than its file name is a ConfigError naming the file."""
        if version is None or version == self.default.version:
            return self.default
        path = self.kept().get(version)
        if path is None:
            raise KeyError(version)
        if path not in self._loaded:
            self._loaded[path] = _kept(path, version)
        return self._loaded[path]


def _kept(path: Path, version: str) -> Lock:
    lock = load_lock(path)
    if lock.version != version:
        raise ConfigError(f"upstream.build-number: the lock is named for {version} but pins "
                          f"{lock.version}", path=path,
                          hint=f"rename it {kept_lock_path(path, lock.version).name} or "
                               "write it again with `buildtool vendor lock --keep`")
    return lock


def tree_digest(root: Path) -> str:
    """sha256 over (relative path, executable bit, content sha256 or link target), sorted."""
    h = hashlib.sha256()
    entries: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        names = filenames
        if rel_dir == Path():
            dirnames[:] = [d for d in dirnames if d not in EXCLUDED_TOP]
            names = [f for f in filenames if f not in EXCLUDED_TOP and f != MARKER]
        dirnames.sort()
        for name in names:
            p = Path(dirpath) / name
            rel = (rel_dir / name).as_posix()
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                entries.append((rel, f"link:{p.readlink()}"))
            elif stat.S_ISREG(st.st_mode):
                mode = "x" if st.st_mode & 0o111 else "-"
                entries.append((rel, mode + sha256_file(p)))
    for rel, value in sorted(entries):
        h.update(f"{rel}\0{value}\n".encode())
    return h.hexdigest()


@dataclass(frozen=True, kw_only=True)
class Marker:
    """vendor/llama.cpp/.buildtool-source.json: what the tree was made from."""

    source: OneLine
    archive_sha256: Sha256 | None = None
    tree_sha256: Sha256
    commit: Commit
    fetched_at: OneLine
    patches: tuple[OneLine, ...] = ()


def read_marker(tree: Path) -> Materialized | None:
    """The tree's marker, or None when it has none or an unreadable one (then the tree is
    made again)."""
    try:
        doc = inputs.load_json(tree / MARKER, limit=inputs.CONFIG_LIMIT, error=SourceError)
        m: Marker = convert(Marker, doc.data, doc)
    except SourceError:
        return None
    return Materialized(tree=tree, source=m.source, archive_sha256=m.archive_sha256,
                        tree_sha256=m.tree_sha256, commit=m.commit, fetched_at=m.fetched_at,
                        patches=m.patches)


def current(lock: Lock, tree: Path) -> Materialized | None:
    """The materialized tree if its marker says it was made from this lock's pin (its commit
    and its patches)."""
    marker = read_marker(tree)
    if marker is None or marker.commit != lock.commit or \
            marker.patches != tuple(p.pinned for p in lock.patches):
        return None
    return marker


def patch_file(lock: Lock, entry: PatchEntry) -> Path:
    """A patch of the lock, checked: a regular file below the lock's directory with the
    pinned sha256."""
    base = lock.path.parent.resolve()
    path = (base / entry.file).resolve()
    if not path.is_relative_to(base) or not path.is_file():
        raise SourceError(f"patch {entry.file} (in {lock.path.name}) is not a file below "
                          f"{base}")
    digest = sha256_file(path)
    if digest != entry.sha256:
        raise SourceError(f"patch {entry.file} has sha256 {digest}, {lock.path.name} pins "
                          f"{entry.sha256}; refused",
                          hint="if you changed it on purpose, put its new sha256 in the lock")
    return path


def apply_patches(lock: Lock, tree: Path, progress: Progress) -> tuple[str, ...]:
    """Apply the lock's patches in order; a patch that does not apply is a SourceError naming
    it and its failed hunks (nothing of it is applied)."""
    from buildtool.source import patches

    applied = []
    for entry in lock.patches:
        path = patch_file(lock, entry)
        try:
            patches.apply(tree, path, name=entry.file)
        except patches.PatchError as exc:
            raise SourceError(f"patch {entry.file} does not apply to llama.cpp {lock.version} "
                              f"({lock.short_commit}): {exc.message}",
                              hint="rebase the patch on this version, or remove it from "
                                   f"{lock.path.name} if the fix is upstream (`buildtool "
                                   "vendor lock` checks each patch)") from exc
        progress(f"applied {entry.file} ({entry.reason})")
        applied.append(entry.pinned)
    return tuple(applied)


def verify(lock: Lock, dest: Path) -> Materialized:
    """The tree at ``dest`` as it was materialized for ``lock``, re-hashed: a SourceError
    when it is missing, from another lock, or modified since."""
    marker = current(lock, dest)
    if marker is None:
        raise SourceError(f"{dest} is missing or not from this lock",
                          hint="run `buildtool vendor`")
    digest = tree_digest(dest)
    if digest != marker.tree_sha256:
        raise SourceError(f"{dest} was modified since it was fetched (tree sha256 "
                          f"{digest} != {marker.tree_sha256})",
                          hint="run `buildtool vendor --force` to restore it")
    return marker


def materialize(lock: Lock, dest: Path, *, local: Path | None = None,
                progress: Progress = lambda _: None, force: bool = False) -> Materialized:
    """Make ``dest`` hold the pinned tree, from the first source that works."""
    if not force and (done := current(lock, dest)) is not None:
        return done
    check_replaceable(dest)
    failures: list[str] = []
    for entry in lock.sources:
        if entry.kind == "local":
            candidate = local or (Path(os.environ[entry.path_env])
                                  if entry.path_env and os.environ.get(entry.path_env) else None)
            if candidate is None:
                via = f" or ${entry.path_env}" if entry.path_env else ""
                failures.append(f"{entry.name}: not given (--source PATH{via})")
                continue
            try:
                return _from_local(lock, entry, candidate, dest, progress)
            except SourceError as exc:
                failures.append(f"{entry.name} ({candidate}): {exc.message}")
                continue
        try:
            archive = _fetch(entry, progress)
            return _install_archive(lock, entry.name, archive, entry.sha256 or "",
                                    entry.subdir or "", dest, progress)
        except SourceError as exc:
            failures.append(f"{entry.name}: {exc.message}")
    raise SourceError(
        "no source of llama.cpp could be fetched and verified:\n    "
        + "\n    ".join(failures),
        hint="give a local copy with --source PATH (a directory or an archive of the pinned "
             "tree), or check the network",
    )


def _fetch(entry: SourceEntry, progress: Progress) -> Path:
    assert entry.url and entry.sha256
    return download(entry.url, entry.name, progress, expect=entry.sha256)[0]


def download(url: str, name: str, progress: Progress, *,
             expect: str | None = None) -> tuple[Path, str]:
    """``url`` in the source cache (``~/.cache/buildtool/sources/<sha256>``) and its sha256;
    ``expect``: the sha256 it must have (a cached copy is used, a mismatch refused)."""
    store = cache_dir() / "sources"
    if expect is not None:
        target = store / expect
        if target.is_file():
            if sha256_file(target) == expect:
                progress(f"using cached {name} archive {target}")
                return target, expect
            target.unlink()
    store.mkdir(parents=True, exist_ok=True)
    if url.startswith("file:"):
        local = Path(urllib.request.url2pathname(url.removeprefix("file://")))
        if local.exists() and not local.is_file():
            raise SourceError(f"download failed: {url} is not a regular file")
    progress(f"downloading {name}: {url}")
    fd, tmp_name = tempfile.mkstemp(dir=store, prefix=".part-")
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, \
                urllib.request.urlopen(url, timeout=60) as resp:
            length = str(resp.headers.get("Content-Length") or "")
            total = int(length) if length.isdigit() else 0
            done = 0
            last = -1
            while chunk := resp.read(CHUNK):
                out.write(chunk)
                h.update(chunk)
                done += len(chunk)
                if done > MAX_DOWNLOAD:
                    raise SourceError(f"download larger than {MAX_DOWNLOAD >> 30} GiB: refused")
                if total and (pct := done * 10 // total) != last:
                    last = pct
                    progress(f"  {done / 1e6:.0f}/{total / 1e6:.0f} MB")
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        tmp.unlink(missing_ok=True)
        raise SourceError(f"download failed: {getattr(exc, 'reason', exc)}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    digest = h.hexdigest()
    if expect is not None and digest != expect:
        tmp.unlink(missing_ok=True)
        raise SourceError(f"checksum mismatch: expected sha256 {expect}, got {digest}; "
                          "refused")
    target = store / digest
    tmp.replace(target)
    return target, digest


def _from_local(lock: Lock, entry: SourceEntry, path: Path, dest: Path,
                progress: Progress) -> Materialized:
    if not path.exists():
        raise SourceError(f"{path} does not exist")
    if not path.is_dir() and not path.is_file():
        raise SourceError(f"{path} is neither a directory nor a regular file (an archive)")
    if path.is_dir() and path.resolve() == dest.resolve():
        raise SourceError(f"{path} is where the tree is materialized; pass a copy elsewhere")
    if path.is_dir():
        progress(f"verifying local tree {path}")
        digest = tree_digest(path)
        if digest != lock.tree_sha256:
            raise SourceError(f"tree digest mismatch: expected {lock.tree_sha256}, got {digest}; "
                              "refused (is it the pinned commit, unmodified?)")
        tmp = _tmp_sibling(dest)
        try:
            shutil.copytree(path, tmp, symlinks=True, dirs_exist_ok=True,
                            ignore=lambda d, names: [n for n in names if Path(d) == path
                                                     and n in EXCLUDED_TOP | {MARKER}])
            return _finish(lock, tmp, dest, f"{entry.name}:{path}", None, digest, progress)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    digest = sha256_file(path)
    known = lock.archive_hashes().get(digest)
    if known is None:
        raise SourceError(f"archive sha256 {digest} matches no source pinned in {lock.path.name}; "
                          "refused")
    return _install_archive(lock, f"{entry.name}:{path}", path, digest, known.subdir or "",
                            dest, progress)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_replaceable(dest: Path) -> None:
    """Refuse to replace a directory buildtool did not make (a user's own checkout)."""
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise SourceError(f"{dest} exists and is not a directory buildtool made",
                          hint="move it away; buildtool materializes the pinned tree there")
    if dest.is_dir() and not (dest / MARKER).is_file() and any(dest.iterdir()):
        raise SourceError(f"{dest} exists and was not made by buildtool (it has no {MARKER}); "
                          "refusing to replace it",
                          hint="move it elsewhere and pass it with --source PATH (it is "
                               "verified against the lock), or delete it")


def _tmp_sibling(dest: Path) -> Path:
    check_replaceable(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))


def _install_archive(lock: Lock, name: str, archive: Path, sha: str, subdir: str, dest: Path,
                     progress: Progress) -> Materialized:
    progress(f"extracting {archive.name} ({name})")
    tmp = _tmp_sibling(dest)
    try:
        extract(archive, tmp, subdir)
        digest = tree_digest(tmp)
        return _finish(lock, tmp, dest, name, sha, digest, progress)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _finish(lock: Lock, tmp: Path, dest: Path, source: str, archive_sha: str | None,
            digest: str, progress: Progress) -> Materialized:
    if not (tmp / "CMakeLists.txt").is_file() or not (tmp / "ggml").is_dir():
        raise SourceError("the extracted tree does not look like llama.cpp (no CMakeLists.txt "
                          "and ggml/)")
    patches = apply_patches(lock, tmp, progress)
    if patches:
        digest = tree_digest(tmp)  # what was built: the pin and its patches
    made = Materialized(tree=dest, source=source, archive_sha256=archive_sha, tree_sha256=digest,
                        commit=lock.commit,
                        fetched_at=datetime.now(UTC).isoformat(timespec="seconds"),
                        patches=patches)
    (tmp / MARKER).write_text(json.dumps(made.to_json(), indent=2) + "\n")
    tmp.chmod(0o777 & ~_umask())  # mkdtemp made it 0700: the tree is for everyone to read
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        dest.rename(old)
        tmp.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(dest)
    return made


def _strip(name: str, prefix: str) -> str | None:
    if name.startswith("/") or ".." in Path(name).parts or "\0" in name:
        raise SourceError(f"unsafe path in archive refused: {name}")
    name = posixpath.normpath(name.removeprefix("./")) if name.strip("./") else ""
    if prefix:
        if not name.startswith(prefix.rstrip("/") + "/"):
            return None
        name = name[len(prefix.rstrip("/")) + 1:]
    top = name.split("/", 1)[0]
    if not name or top in EXCLUDED_TOP:
        return None
    return name


def _check_link(rel: str, linkname: str) -> None:
    """A symbolic link in a source tree may only point inside it (judged on the normalized
    names: tarfile's own filter is fooled by a trailing slash in older Pythons)."""
    target = posixpath.normpath(posixpath.join(posixpath.dirname(rel), linkname))
    if linkname.startswith("/") or target == ".." or target.startswith("../"):
        raise SourceError(f"unsafe symbolic link in archive refused: {rel} -> {linkname}")


def _through_link(dest: Path, rel: str) -> bool:
    """Whether ``rel`` would be written through a symbolic link extracted earlier."""
    parts = rel.split("/")[:-1]
    return any((dest / Path(*parts[:i])).is_symlink() for i in range(1, len(parts) + 1))


def extract(archive: Path, dest: Path, subdir: str = "") -> None:
    """Extract ``subdir`` of a .tar.* or .zip archive into ``dest``, refusing unsafe members."""
    if zipfile.is_zipfile(archive):
        unzip(archive, dest, name=lambda n: _strip(n, subdir),
              refuse=lambda n: SourceError(f"unsafe path in archive: {n}"), keep_modes=True)
        return
    try:
        with tarfile.open(archive) as tf:
            if not subdir:
                subdir = _single_top(tf)
            for member in tf:
                rel = _strip(member.name, subdir)
                if rel is None:
                    continue
                changes: dict[str, Any] = {"name": rel}
                if _through_link(dest, rel):
                    raise SourceError(f"archive member {member.name} lies below a symbolic "
                                      "link: refused")
                if member.issym():
                    _check_link(rel, member.linkname)
                if member.islnk():
                    link = _strip(member.linkname, subdir)
                    if link is None:
                        raise SourceError(f"unsafe hard link in archive: {member.name}")
                    changes["linkname"] = link
                try:
                    tf.extract(member.replace(**changes), dest, filter="data")
                except tarfile.FilterError as exc:
                    raise SourceError(f"unsafe member in archive refused: {exc}") from exc
    except (tarfile.TarError, EOFError, OSError, KeyError, ValueError) as exc:
        # KeyError: a hard link to a member that is not in the archive (or to itself)
        if isinstance(exc, tarfile.FilterError):
            raise SourceError(f"unsafe member in archive refused: {exc}") from exc
        raise SourceError(f"cannot read archive {archive}: {exc}") from exc


def _single_top(tf: tarfile.TarFile) -> str:
    names = [m.name.removeprefix("./") for m in tf.getmembers()]
    tops = {n.split("/", 1)[0] for n in names if n and n != "."}
    if len(tops) == 1:
        (top,) = tops
        if any(n.startswith(top + "/") for n in names):
            return top
    return ""


# What a copy of the tree for building elsewhere (an emitted wheel project, an image's build
# context) leaves out: top-level directories a build does not read (src/models and
# tools/mtmd/models are sources and stay), and model files
TREE_EXCLUDES = ("models", "docs", "examples", "tests", "media", "gguf-py", "grammars",
                 "prompts", "benches", ".github", ".devops")


def copy_build_tree(source_dir: Path, dest: Path) -> None:
    """Copy the llama.cpp tree without what no build reads (TREE_EXCLUDES, *.gguf)."""
    top = str(source_dir)

    def leave_out(directory: str, names: list[str]) -> set[str]:
        dropped = {n for n in names if n.endswith(".gguf")}
        if directory == top:
            dropped |= set(TREE_EXCLUDES).intersection(names)
        return dropped

    shutil.copytree(source_dir, dest, symlinks=True, ignore=leave_out)
