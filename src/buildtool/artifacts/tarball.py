"""The tarball kind: the programs and libraries side by side, a manifest and SHA256SUMS.

Layout of ``llama.cpp-b<N>-<target>[-<cpu>]-<os>-<arch>.tar.gz``::

    <name>/llama-server, llama-cli, llama-bench, llama-quantize
    <name>/lib*.so*          (next to the executables: RPATH is $ORIGIN)
    <name>/LICENSE           (llama.cpp's)
    <name>/licenses/<runtime>/...  (a bundled vendor runtime's licenses, e.g. OpenVINO's)
    <name>/manifest.json     (see README "Manifest")
    <name>/SHA256SUMS        (every other file)

Beside it in the dist directory: ``<name>.manifest.json`` (the same manifest plus the
tarball's own sha256 and, once run, the smoke results) and ``SHA256SUMS`` for the directory.
Nothing appears under a final name until it is complete: files are written to temporary
names and renamed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import stat
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from buildtool import records
from buildtool.archives import Deflated, GzipTar, tar_info
from buildtool.artifacts.base import (
    Audits,
    BuildJob,
    Made,
    Note,
    Subject,
    base_manifest,
    check_host,
    foreign,
    shipped_files,
    stage_payload,
)
from buildtool.config.plan import BuildPlan
from buildtool.config.resolve import ResolvedTarget
from buildtool.detect.cpu import CpuInfo
from buildtool.errors import DataError, SmokeError
from buildtool.grammar import ArtifactKind
from buildtool.inputs import RECORD_LIMIT, read_text, sha256_file
from buildtool.outputs import atomic_path, record, sidecar, update_sums, write_json
from buildtool.records import HostFacts, Manifest
from buildtool.source.vendor import Materialized

KIND: ArtifactKind = "tarball"
SUFFIX = ".tar.gz"
TAKES_BUILD_ARGS = False
CONTAINER = False
INDEXED = False
INSTALLED_PROGRAMS = "."  # `install`: the unpacked directory
COMPILES_HERE = True
MANIFEST_SCHEMA = 1


def package(plan: BuildPlan, source: Materialized, audit: Audits | None = None,
            deflated: Deflated | None = None) -> tuple[Path, Manifest]:
    """Stage, checksum and tar the artifact; return its path and manifest. ``deflated``:
    the build's files deflated once for every kind that ships them."""
    name = plan.artifact_name
    plan.dist_dir.mkdir(parents=True, exist_ok=True)
    staging_root = Path(tempfile.mkdtemp(dir=plan.dist_dir, prefix=".staging-"))
    try:
        stage = staging_root / name
        stage.mkdir()
        files = stage_payload(plan, stage)
        sums = "".join(f"{digest}  {rel}\n" for rel, digest in sorted(files.items())
                       if not digest.startswith("symlink:"))
        (stage / "SHA256SUMS").write_text(sums)
        manifest = base_manifest(plan, source, files, audit)
        (stage / "manifest.json").write_text(json.dumps(records.to_json(manifest), indent=2)
                                             + "\n")
        final = plan.artifact_path
        with atomic_path(final) as tmp, tmp.open("wb") as out:
            # each file's compression is kept for the image that ships it too
            tar = GzipTar(out, deflated if deflated is not None else Deflated())
            for path, arcname in _walk(stage, name):
                info = _normalize(tar_info(path, arcname))
                tar.add(info, path.read_bytes() if info.isreg() else None)
            tar.close()
        digest = sha256_file(final)
        outer = dataclasses.replace(manifest, artifact_file=final.name, artifact_sha256=digest)
        write_json(sidecar(final, "manifest"), records.to_json(outer))
        update_sums(plan.dist_dir, final.name, digest)
        return final, outer
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)


def _walk(path: Path, arcname: str) -> Iterator[tuple[Path, str]]:
    """``path`` and, for a directory, everything below it in name order, depth first (the
    order tarfile's ``add`` gives)."""
    yield path, arcname
    if path.is_dir() and not path.is_symlink():
        for child in sorted(path.iterdir(), key=lambda c: c.name):
            yield from _walk(child, f"{arcname}/{child.name}")


def _normalize(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if info.isfile() or info.isdir():
        info.mode = 0o755 if info.isdir() or info.mode & stat.S_IXUSR else 0o644
    return info




# ---------------------------------------------------------------------------- the kind


def accepts(rt: ResolvedTarget) -> None:
    return None


def owns(name: str) -> bool:
    return name.endswith(SUFFIX) and not name.endswith(".oci.tar.gz")


def key(job: BuildJob) -> str:
    return job.plan.key


def begin(job: BuildJob) -> None:
    return None  # everything it does reads the compiled files: nothing to start early


def build(job: BuildJob) -> Made:
    """Compile, audit what ships, package and record it."""
    plan = job.plan
    job.compile()
    report = job.audit(shipped_files(plan))
    t = time.monotonic()
    job.reporter.step("packaging")
    artifact, manifest = package(plan, job.source, audit=report, deflated=job.deflated)
    assert manifest.artifact_sha256 is not None
    record(plan.dist_dir, key(job), artifact, manifest.artifact_sha256)
    job.timings["package"] = time.monotonic() - t
    job.reporter.info(f"{artifact} ({artifact.stat().st_size / 1e6:.1f} MB)")
    return Made(kind=KIND, path=artifact, manifest=manifest)


def unpack(artifact: Path, dest: Path) -> tuple[Path, Manifest]:
    """Unpack a tarball (or accept an unpacked directory); return its dir and manifest."""
    if artifact.is_dir():
        root = artifact
    else:
        if not artifact.is_file():
            raise DataError(f"{artifact} is not a regular file")
        try:
            with tarfile.open(artifact) as tf:
                tf.extractall(dest, filter="data")
        except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
            raise DataError(f"cannot unpack {artifact}: {exc}",
                            hint="the file is damaged or not a tarball: download or build it "
                                 "again") from None
        tops = [p for p in dest.iterdir() if p.is_dir()]
        if len(tops) != 1:
            raise DataError(f"{artifact} is not a buildtool tarball (expected one top "
                            "directory)")
        root = tops[0]
    inner = root / "manifest.json"
    if not inner.exists():
        raise DataError(f"{artifact} has no manifest.json",
                        hint="only artifacts made by `buildtool build` can be smoke-tested")
    where = f"{artifact}:{inner.relative_to(dest) if inner.is_relative_to(dest) else inner}"
    text = read_text(inner, limit=RECORD_LIMIT, error=DataError)
    return root, records.from_text(Manifest, text, where)


def install(artifact: Path, dest: Path, manifest: Manifest, engine: object) -> Path:
    """Unpack into ``dest`` (beside it first, then one rename)."""
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        root, _ = unpack(artifact, tmp)
        root.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def subject(artifact: Path | str, work: Path, host: CpuInfo, engine: object,
            note: Note) -> Subject:
    root, manifest = unpack(Path(artifact), work)
    if not foreign(manifest, host):  # another architecture's is checked on its emulated CPU
        check_host(manifest, host)
    bench = root / "llama-bench"
    if not bench.exists():
        raise SmokeError(f"{artifact} contains no llama-bench")
    quantize, results = root / "llama-quantize", root / "llama-results"
    return Subject(kind=KIND, manifest=manifest, bench=bench,
                   quantize=quantize if quantize.exists() else None, lib_dir=root,
                   results=results if results.exists() else None)


def own_manifest(path: Path) -> Manifest | None:
    return None  # beside the tarball (X.manifest.json)


def adopt(path: Path, inner: Manifest, digest: str | None) -> Manifest | None:
    return None


def contents(path: Path, manifest: Manifest | None) -> list[str]:
    """Files inside the tarball whose sha256 differs from the manifest's ``files``."""
    files: Mapping[str, str] = dict(manifest.files or {}) if manifest else {}
    bad: list[str] = []
    seen: set[str] = set()
    with tarfile.open(path) as tf:
        for member in tf:
            parts = member.name.split("/", 1)
            if len(parts) != 2 or parts[1] not in files:
                continue
            rel = parts[1]
            want = files[rel]
            seen.add(rel)
            if want.startswith("symlink:"):
                if not member.issym() or member.linkname != want.removeprefix("symlink:"):
                    bad.append(f"{rel} (link)")
                continue
            handle = tf.extractfile(member)
            if handle is None or hashlib.sha256(handle.read()).hexdigest() != want:
                bad.append(rel)
    bad.extend(f"{rel} (missing)" for rel in sorted(set(files) - seen))
    return bad


def host_fit(name: str, host: HostFacts) -> str | None:
    return None
