"""Packaging: tarball layout, manifest, checksums, atomicity, the input-keyed index."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from buildtool import outputs, records
from buildtool.artifacts import base
from buildtool.artifacts import tarball as package
from buildtool.config.plan import make_plan
from buildtool.config.project import load_project
from buildtool.config.resolve import resolve
from buildtool.detect.cpu import parse_proc_cpuinfo
from buildtool.records import Manifest
from buildtool.source.vendor import Materialized, load_lock
from tests.unit.helpers import ROOT

LOCK = load_lock(ROOT / "vendor" / "llama.cpp.lock.json")


@pytest.fixture
def plan(tmp_path: Path, data: Path, fake_tools: object):  # type: ignore[no-untyped-def]
    cpu = parse_proc_cpuinfo((data / "cpuinfo" / "linux-x86_64-ryzen9-5950x-zen3.txt")
                             .read_text(), "x86_64")
    rt = resolve(load_project(ROOT), "cpu", lock=LOCK, host_cpu=cpu,
                 host_platform="linux-x86_64", env={})
    src = tmp_path / "src"
    src.mkdir()
    (src / "LICENSE").write_text("MIT License\n")
    p = make_plan(rt, root=tmp_path, source_dir=src, tree_sha256="7" * 64, use_ccache=False)
    bin_dir = p.build_dir / "bin"
    bin_dir.mkdir(parents=True)
    for exe in rt.build_targets:
        (bin_dir / exe).write_bytes(b"\x7fELF " + exe.encode())
        (bin_dir / exe).chmod(0o755)
    (bin_dir / "libllama.so.0.5.0").write_bytes(b"\x7fELF lib")
    (bin_dir / "libllama.so.0").symlink_to("libllama.so.0.5.0")
    (bin_dir / "libllama.so").symlink_to("libllama.so.0")
    (bin_dir / "not-shipped.txt").write_text("x")
    return p


SOURCE = Materialized(tree=Path("/x"), source="pypi-sdist", archive_sha256="a" * 64,
                      tree_sha256="7" * 64, commit=LOCK.commit, fetched_at="2026-11-21T00:00:00")


def test_tarball_layout_manifest_and_sums(plan) -> None:  # type: ignore[no-untyped-def]
    artifact, outer = package.package(plan, SOURCE)
    assert artifact.name == "llama.cpp-b11312-cpu-host-x86-64-v3-linux-x86_64.tar.gz"
    name = artifact.name.removesuffix(".tar.gz")
    with tarfile.open(artifact) as tf:
        members = {m.name: m for m in tf.getmembers()}
        manifest = json.load(tf.extractfile(f"{name}/manifest.json"))  # type: ignore[arg-type]
        sums = tf.extractfile(f"{name}/SHA256SUMS").read().decode()  # type: ignore[union-attr]
        bench = tf.extractfile(f"{name}/llama-bench").read()  # type: ignore[union-attr]
    assert {f"{name}/{f}" for f in ("llama-server", "llama-cli", "llama-bench", "llama-quantize",
                                    "libllama.so", "libllama.so.0", "libllama.so.0.5.0",
                                    "LICENSE", "manifest.json", "SHA256SUMS")} <= set(members)
    assert f"{name}/not-shipped.txt" not in members
    assert members[f"{name}/libllama.so"].issym()
    assert members[f"{name}/llama-bench"].mode == 0o755
    assert manifest["target"] == "cpu" and manifest["recipe"] == "cpu"
    assert manifest["llama_cpp"]["commit"] == LOCK.commit
    assert manifest["llama_cpp"]["source_sha256"] == "a" * 64
    assert manifest["cpu"]["required_features"] == ["sse2", "sse4_2", "avx", "avx2", "bmi2",
                                                    "fma", "f16c"]
    assert manifest["cmake_defines"]["GGML_AVX2"] == "ON"
    assert set(manifest["toolchain"]) >= {"cmake", "ninja", "cc", "cxx"}
    assert manifest["files"]["llama-bench"] == hashlib.sha256(bench).hexdigest()
    assert f"{hashlib.sha256(bench).hexdigest()}  llama-bench" in sums.splitlines()
    assert manifest["files"]["libllama.so"] == "symlink:libllama.so.0"
    assert outer.artifact_sha256 == hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert records.load(Manifest, outputs.sidecar(artifact, "manifest")) == outer
    assert (plan.dist_dir / "SHA256SUMS").read_text() == \
        f"{outer.artifact_sha256}  {artifact.name}\n"
    assert sorted(p.name for p in plan.dist_dir.iterdir()) == sorted([
        "SHA256SUMS", artifact.name, outputs.sidecar(artifact, "manifest").name])


def test_failure_leaves_no_artifact(plan) -> None:  # type: ignore[no-untyped-def]
    (plan.build_dir / "bin" / "llama-quantize").unlink()
    with pytest.raises(base.PackageError, match="no 'llama-quantize'"):
        package.package(plan, SOURCE)
    assert list(plan.dist_dir.iterdir()) == []


def test_interrupt_while_writing_leaves_no_artifact(plan, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from buildtool.archives import GzipTar

    calls: list[object] = []

    def add_then_boom(self: GzipTar, info: tarfile.TarInfo, data: bytes | None = None) -> None:
        calls.append(info.name)
        if len(calls) == 3:  # part of the archive is written already
            raise KeyboardInterrupt
        real_add(self, info, data)

    real_add = GzipTar.add
    monkeypatch.setattr(GzipTar, "add", add_then_boom)
    with pytest.raises(KeyboardInterrupt):
        package.package(plan, SOURCE)
    assert len(calls) == 3
    assert list(plan.dist_dir.iterdir()) == []


def test_index_lookup_checks_integrity(plan) -> None:  # type: ignore[no-untyped-def]
    artifact, outer = package.package(plan, SOURCE)
    assert outputs.lookup(plan.dist_dir, plan.key) is None
    assert outer.artifact_sha256 is not None
    outputs.record(plan.dist_dir, plan.key, artifact, outer.artifact_sha256)
    assert outputs.lookup(plan.dist_dir, plan.key) == artifact
    assert outputs.lookup(plan.dist_dir, "0" * 64) is None
    artifact.write_bytes(b"corrupted")
    assert outputs.lookup(plan.dist_dir, plan.key) is None


def test_update_sums_keeps_other_entries(tmp_path: Path) -> None:
    outputs.update_sums(tmp_path, "b.tar.gz", "2" * 64)
    outputs.update_sums(tmp_path, "a.tar.gz", "1" * 64)
    outputs.update_sums(tmp_path, "b.tar.gz", "3" * 64)
    assert (tmp_path / "SHA256SUMS").read_text() == \
        f"{'1' * 64}  a.tar.gz\n{'3' * 64}  b.tar.gz\n"
