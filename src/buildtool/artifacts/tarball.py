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

import dataclasses
import json
import os
import platform as _platform
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from buildtool import __version__, records
from buildtool.config.naming import LIB_PATTERNS, left_out_files
from buildtool.config.plan import BuildPlan
from buildtool.errors import BuildtoolError, ExitCode
from buildtool.inputs import sha256_file
from buildtool.outputs import atomic_path, sidecar, update_sums, write_json
from buildtool.records import AuditRecord, BuildHost, CpuClaim, Manifest, SourceRecord, Tool
from buildtool.source.vendor import Lock, Materialized

MANIFEST_SCHEMA = 1


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


