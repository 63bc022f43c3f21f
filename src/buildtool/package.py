"""Binary tarballs with a manifest and SHA256SUMS, written atomically.

Layout of ``llama.cpp-b<N>-<target>[-<cpu>]-<os>-<arch>.tar.gz``::

    <name>/llama-server, llama-cli, llama-bench, llama-quantize
    <name>/lib*.so*          (next to the executables: RPATH is $ORIGIN)
    <name>/LICENSE           (llama.cpp's)
    <name>/manifest.json     (see README "Manifest")
    <name>/SHA256SUMS        (every other file)

Beside it in the dist directory: ``<name>.manifest.json`` (the same manifest plus the
tarball's own sha256 and, once run, the smoke results) and ``SHA256SUMS`` for the directory.
Nothing appears under a final name until it is complete: files are written to temporary
names and renamed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform as _platform
import re
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from buildtool import __version__, inputs, records
from buildtool.errors import BuildtoolError, DataError, ExitCode, UsageError
from buildtool.grammar import FileName
from buildtool.naming import LIB_PATTERNS, left_out_files
from buildtool.paths import writable_dir
from buildtool.plan import BuildPlan
from buildtool.records import AuditRecord, BuildHost, CpuClaim, Manifest, SourceRecord, Tool
from buildtool.schema import Match
from buildtool.text import redact
from buildtool.vendor import Lock, Materialized, sha256_file

MANIFEST_SCHEMA = 1
_UMASK = os.umask(0)
os.umask(_UMASK)


class PackageError(BuildtoolError):
    exit_code = ExitCode.BUILD


def collect(plan: BuildPlan) -> list[Path]:
    """The files the artifact ships, from the build's bin/ directory."""
    bin_dir = plan.build_dir / "bin"
    files: list[Path] = []
    for target in plan.target.build_targets:
        candidates = [bin_dir / target, bin_dir / f"{target}.exe"]
        exe = next((c for c in candidates if c.exists()), None)
        if exe is None:
            raise PackageError(f"the build produced no '{target}' in {bin_dir}",
                               hint="is it a CMake target of this llama.cpp version?")
        files.append(exe)
    libs = {p for pattern in LIB_PATTERNS for p in bin_dir.glob(pattern)}
    # all-variants libraries left out because of a known defect (recipes/common.yaml)
    dropped = set(left_out_files(plan.target))
    files.extend(sorted(p for p in libs if p.name not in dropped))
    return files


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


def build_manifest(plan: BuildPlan, lock: Lock, source: Materialized,
                   files: dict[str, str], audit: AuditRecord | None = None) -> Manifest:
    rt = plan.target
    return Manifest(
        artifact=plan.artifact_name, kind="tarball", target=rt.name,
        description=rt.description, recipe=rt.recipe_name, family=rt.family,
        backend=rt.backend, gpu=rt.recipe.gpu, platform=rt.platform,  # type: ignore[arg-type]
        llama_cpp=SourceRecord(repository=lock.repository, commit=lock.commit,
                               version=lock.version, source=source.source,
                               source_sha256=source.archive_sha256,
                               tree_sha256=source.tree_sha256),
        cpu=CpuClaim(policy=rt.cpu_policy, level=rt.cpu_level,
                     required_features=rt.cpu_features,
                     avoided_features=tuple(sorted({f for a in rt.avoided
                                                    for f in a.features})),
                     dropped_variants=rt.dropped_variants),
        toolkit=rt.toolkit, gpu_archs=rt.gpu_archs, cmake_defines=dict(rt.defines),
        build_targets=rt.build_targets, smoke_env=dict(rt.recipe.smoke_env),
        toolchain={name: Tool(path=t["path"], version=t["version"])
                   for name, t in plan.toolchain.items()},
        files=files, isa_audit=audit, buildtool_version=__version__, build_key=plan.key,
        built_at=datetime.now(UTC).isoformat(timespec="seconds"),
        build_host=BuildHost(platform=rt.host_platform, machine=_platform.node(),
                             builder=builder_uri()))


def builder_uri(env: Mapping[str, str] | None = None) -> str:
    """A URI for the build platform: GitHub's runner URIs in GitHub Actions (as GitHub's own
    build provenance names them), else this host."""
    env = os.environ if env is None else env
    if env.get("GITHUB_ACTIONS") == "true":
        kind = "self-hosted" if env.get("RUNNER_ENVIRONMENT") == "self-hosted" \
            else "github-hosted"
        return f"https://github.com/actions/runner/{kind}"
    return "urn:buildtool:host:" + quote(_platform.node() or "unknown", safe="")


def package(plan: BuildPlan, lock: Lock, source: Materialized,
            audit: AuditRecord | None = None) -> tuple[Path, Manifest]:
    """Stage, checksum and tar the artifact; return its path and manifest."""
    name = plan.artifact_name
    plan.dist_dir.mkdir(parents=True, exist_ok=True)
    staging_root = Path(tempfile.mkdtemp(dir=plan.dist_dir, prefix=".staging-"))
    try:
        stage = staging_root / name
        stage.mkdir()
        files: dict[str, str] = {}
        for src in collect(plan):
            dst = stage / src.name
            if src.is_symlink():
                link = src.readlink()
                dst.symlink_to(link)
                files[src.name] = f"symlink:{link}"
            else:
                shutil.copy2(src, dst)
                files[src.name] = sha256_file(dst)
        license_file = plan.source_dir / "LICENSE"
        if license_file.is_file():
            shutil.copy2(license_file, stage / "LICENSE")
            files["LICENSE"] = sha256_file(stage / "LICENSE")
        sums = "".join(f"{digest}  {rel}\n" for rel, digest in sorted(files.items())
                       if not digest.startswith("symlink:"))
        (stage / "SHA256SUMS").write_text(sums)
        manifest = build_manifest(plan, lock, source, files, audit)
        (stage / "manifest.json").write_text(json.dumps(records.to_json(manifest), indent=2)
                                             + "\n")
        final = plan.artifact_path
        with atomic_path(final) as tmp, tarfile.open(tmp, "w:gz", compresslevel=6) as tf:
            tf.add(stage, arcname=name, filter=_normalize)
        digest = sha256_file(final)
        outer = dataclasses.replace(manifest, artifact_file=final.name, artifact_sha256=digest)
        write_json(sidecar(final, "manifest"), records.to_json(outer))
        update_sums(plan.dist_dir, final.name, digest)
        return final, outer
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)


def _normalize(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if info.isfile() or info.isdir():
        info.mode = 0o755 if info.isdir() or info.mode & stat.S_IXUSR else 0o644
    return info


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
    entries: dict[str, str] = {}
    if not path.exists():
        return entries
    text = inputs.read_text(path, limit=inputs.RECORD_LIMIT, error=DataError)
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _SUMS_LINE.fullmatch(line.strip())
        if m is None:
            raise DataError("not a '<sha256>  <file name>' line", path=path, line=number,
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
