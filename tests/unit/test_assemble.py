"""An image's last stage applied without a container build (artifacts/assemble.py): what the
Dockerfiles' last stages say, read for a build context and its build arguments; what is
left to the engine and why; the archive written — the runtime base's blobs as they were,
a layer per COPY with its diff_id, the labels — read back with the same reader the release
gate uses. No process is started."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from buildtool.artifacts import assemble, oci
from tests.unit.helpers import ROOT
from tests.unit.test_image import _archive

DOCKER = ROOT / "recipes" / "docker"
ARGS = {"BUILT": "prebuilt", "BUILD_IMAGE": "debian:12", "RUNTIME_IMAGE": "debian:12",
        "BUILDTOOL_TARGET": "cpu", "LLAMA_CPP_VERSION": "b11312", "LLAMA_CPP_COMMIT": "c" * 40,
        "BUILD_KEY": "k" * 64, "CREATED": "2026-12-02T00:00:00Z"}


def _context(tmp: Path, target: str = "cpu") -> Path:
    ctx = tmp / "ctx"
    (ctx / "prebuilt" / "bin" / "sub").mkdir(parents=True)
    (ctx / "prebuilt" / "licenses" / "runtime").mkdir(parents=True)
    (ctx / "prebuilt" / "licenses" / "runtime" / "LICENSE").write_text("runtime license\n")
    bench = ctx / "prebuilt" / "bin" / "llama-bench"
    bench.write_bytes(b"\x7fELF bench")
    bench.chmod(0o755)
    (ctx / "prebuilt" / "bin" / "libggml.so.0.9.0").write_bytes(b"\x7fELF ggml")
    (ctx / "prebuilt" / "bin" / "libggml.so.0").symlink_to("libggml.so.0.9.0")
    (ctx / "prebuilt" / "bin" / "sub" / "data.bin").write_bytes(b"data")
    (ctx / "targets" / target).mkdir(parents=True)
    (ctx / "targets" / target / "manifest.json").write_text('{"kind": "image"}\n')
    return ctx


@pytest.mark.parametrize("name", ["cpu", "cuda", "intel", "openvino", "vulkan"])
def test_the_last_stage_of_each_dockerfile_is_read_for_its_context(name: str,
                                                                   tmp_path: Path) -> None:
    target = {"cuda": "cublas12"}.get(name, name)
    ctx = _context(tmp_path, target)
    args = {**ARGS, "BUILDTOOL_TARGET": target}
    stage = assemble.last_stage((DOCKER / f"{name}.Dockerfile").read_text(), args, ctx)
    dests = [c.dest for c in stage.copies]
    assert dests[0] == "/opt/llama.cpp/" and dests[-1] == "/opt/llama.cpp/manifest.json"
    assert stage.copies[0].sources == (ctx / "prebuilt" / "bin",)
    assert stage.copies[-1].sources == (ctx / "targets" / target / "manifest.json",)
    if name == "openvino":  # its runtime's licenses beside the programs
        assert "/opt/llama.cpp/licenses/" in dests
    labels = stage.labels
    assert labels["org.opencontainers.image.title"] == f"llama.cpp ({target})"
    assert labels["org.opencontainers.image.version"] == "b11312"
    assert labels["org.opencontainers.image.revision"] == "c" * 40
    assert labels["org.opencontainers.image.created"] == "2026-12-02T00:00:00Z"
    assert labels["org.opencontainers.image.base.name"] == "debian:12"
    assert labels["dev.buildtool.build-key"] == "k" * 64
    assert labels["dev.buildtool.manifest"] == "/opt/llama.cpp/manifest.json"
    # what the runtime stage is made of: the last stage's arguments are no part of it
    again = assemble.last_stage((DOCKER / f"{name}.Dockerfile").read_text(),
                                {**args, "BUILD_KEY": "x", "LLAMA_CPP_VERSION": "b1"}, ctx)
    assert again.runtime_key == stage.runtime_key
    other = assemble.last_stage((DOCKER / f"{name}.Dockerfile").read_text(),
                                {**args, "RUNTIME_IMAGE": "ubuntu:24.04"}, ctx)
    assert other.runtime_key != stage.runtime_key


def test_rocm_derives_its_files_in_a_stage_so_the_engine_builds_it(tmp_path: Path) -> None:
    ctx = _context(tmp_path, "hipblas")
    with pytest.raises(assemble.NotHere, match="built stage derives files"):
        assemble.last_stage((DOCKER / "rocm.Dockerfile").read_text(),
                            {**ARGS, "BUILDTOOL_TARGET": "hipblas"}, ctx)


def _dockerfile(last: str) -> str:
    text = (DOCKER / "cpu.Dockerfile").read_text()
    return text[:text.index("\nFROM runtime\n")] + "\nFROM runtime\n" + last


@pytest.mark.parametrize(("last", "why"), [
    ("COPY --from=built /out/bin/ /opt/llama.cpp/\nRUN strip /opt/llama.cpp/*\n",
     r"line \d+: RUN in the last stage"),
    ("ENV X=1\n", r"ENV in the last stage"),
    ("COPY --chown=1:1 --from=built /out/bin/ /opt/llama.cpp/\n", "only COPY"),
    ("COPY --from=build /out/bin/ /opt/llama.cpp/\n", "only COPY"),
    ("COPY ../../etc/passwd /etc/\n", "not in the build context"),
    ("COPY --from=built /etc/passwd /etc/\n", "its files are in /out"),
    ("COPY targets/*/manifest.json /opt/\n", "wildcard"),
    ("COPY targets/${TARGET}/manifest.json /opt/\n", r"\$TARGET is not an ARG"),
    ("ARG X\nLABEL a=${X:-b}\n", "variable form"),
    ("LABEL single\n", "without key=value"),
    ('LABEL a="unterminated\n', "line"),
])
def test_a_last_stage_that_does_more_is_left_to_the_engine(last: str, why: str,
                                                          tmp_path: Path) -> None:
    with pytest.raises(assemble.NotHere, match=why):
        assemble.last_stage(_dockerfile(last), ARGS, _context(tmp_path))


def test_a_runtime_stage_that_copies_files_in_is_left_to_the_engine(tmp_path: Path) -> None:
    text = (DOCKER / "cpu.Dockerfile").read_text().replace(
        "USER 10001\n", "COPY targets/cpu/manifest.json /etc/x\nUSER 10001\n")
    with pytest.raises(assemble.NotHere, match="the runtime stage copies files in"):
        assemble.last_stage(text, ARGS, _context(tmp_path))


def test_the_build_stage_compiling_is_left_to_the_engine(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    with pytest.raises(assemble.NotHere, match="BUILT is not prebuilt"):
        assemble.last_stage((DOCKER / "cpu.Dockerfile").read_text(),
                            {**ARGS, "BUILT": "build"}, ctx)
    text = (DOCKER / "cpu.Dockerfile").read_text().replace("FROM runtime\n", "FROM debian\n")
    with pytest.raises(assemble.NotHere, match="last stage is not FROM runtime"):
        assemble.last_stage(text, ARGS, ctx)


def _blob(archive: Path, digest: str) -> bytes:
    with tarfile.open(archive) as tf:
        handle = tf.extractfile("blobs/" + digest.replace(":", "/"))
        assert handle is not None
        return handle.read()


def test_the_archive_is_the_base_plus_a_layer_per_copy_and_the_labels(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    base = _archive(tmp_path / "base.oci.tar", [{"usr/bin/bash": b"bash"},
                                                 {"opt/llama.cpp/old": b"base's"}])
    base_info = oci.inspect(base)
    stage = assemble.last_stage((DOCKER / "cpu.Dockerfile").read_text(), ARGS, ctx)
    out = tmp_path / "image.oci.tar"
    assemble.apply(stage, base, out, ref="localhost/llama.cpp:cpu-b11312",
                   created="2026-12-02T00:00:00Z")
    info = oci.inspect(out)
    assert info.ref == "localhost/llama.cpp:cpu-b11312"
    assert info.layers[:2] == base_info.layers  # the base's blobs, as they were
    for _, digest in base_info.layers:
        assert hashlib.sha256(_blob(out, digest)).hexdigest() == digest.split(":")[1]
    assert len(info.layers) == 4  # + the programs' and the manifest's
    assert info.config.user == "10001"  # the runtime base's settings stay
    assert info.config.entrypoint == ("/opt/llama.cpp/llama-server",)
    assert info.labels["dev.buildtool.target"] == "cpu"  # the base's, and the stage's
    assert info.labels["dev.buildtool.build-key"] == "k" * 64
    held = oci.digests(out, "/opt/llama.cpp")
    assert held == {
        "old": hashlib.sha256(b"base's").hexdigest(),
        "llama-bench": hashlib.sha256(b"\x7fELF bench").hexdigest(),
        "libggml.so.0.9.0": hashlib.sha256(b"\x7fELF ggml").hexdigest(),
        "libggml.so.0": "symlink:libggml.so.0.9.0",
        "sub/data.bin": hashlib.sha256(b"data").hexdigest(),
        "manifest.json": hashlib.sha256(b'{"kind": "image"}\n').hexdigest()}
    oci.extract(out, "/opt/llama.cpp", tmp_path / "x")
    assert (tmp_path / "x" / "llama-bench").stat().st_mode & 0o777 == 0o755  # modes kept
    # one reading says which layers hold nothing there; a later one given them skips them
    # (a layer is its content): told that the base layer holding "old" is empty, it is not
    # read, so "old" is not seen
    tree = oci.tree(out, "/opt/llama.cpp")
    base_layers = {digest for _, digest in base_info.layers}
    assert tree.digests() == held and len(tree.empty) == 1 and tree.empty < base_layers
    assert oci.tree(out, "/opt/llama.cpp", empty=tree.empty).digests() == held
    (holder,) = base_layers - tree.empty
    assert "old" not in oci.tree(out, "/opt/llama.cpp", empty=frozenset({holder})).digests()
    # each new layer: the manifest's digest is the blob's, the config's diff_id the tar's
    config = json.loads(_blob(out, info.config_digest))
    manifest = json.loads(_blob(out, info.manifest_digest))
    assert config["created"] == "2026-12-02T00:00:00Z"
    for desc, diff_id in zip(manifest["layers"][2:], config["rootfs"]["diff_ids"][-2:],
                             strict=True):
        blob = _blob(out, desc["digest"])
        assert desc["size"] == len(blob) and desc["mediaType"].endswith("tar+gzip")
        assert f"sha256:{hashlib.sha256(blob).hexdigest()}" == desc["digest"]
        assert f"sha256:{hashlib.sha256(gzip.decompress(blob)).hexdigest()}" == diff_id
    with tarfile.open(fileobj=io.BytesIO(
            gzip.decompress(_blob(out, manifest["layers"][2]["digest"])))) as layer:
        members = {m.name: m for m in layer.getmembers()}
    assert list(members)[:2] == ["opt", "opt/llama.cpp"]  # parents first, as COPY makes them
    assert all(m.uid == 0 and m.gid == 0 for m in members.values())  # no --chown: root
    assert members["opt/llama.cpp/libggml.so.0"].issym()
    history = [h["created_by"] for h in config["history"]]
    assert history[-3:-1] == ["COPY --from=built /out/bin/ /opt/llama.cpp/",
                              "COPY targets/${BUILDTOOL_TARGET}/manifest.json "
                              "/opt/llama.cpp/manifest.json"]
    assert history[-1].startswith("LABEL ")
    # the same inputs make the same image (the layers' gzip carries no time)
    again = tmp_path / "again.oci.tar"
    assemble.apply(stage, base, again, ref="localhost/llama.cpp:cpu-b11312",
                   created="2026-12-02T00:00:00Z")
    assert oci.inspect(again).manifest_digest == info.manifest_digest


def test_source_date_epoch_clamps_the_layers_times(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    os.utime(ctx / "prebuilt" / "bin" / "llama-bench", (2_000_000_000, 2_000_000_000))
    base = _archive(tmp_path / "base.oci.tar", [{"usr/bin/bash": b"bash"}])
    stage = assemble.last_stage((DOCKER / "cpu.Dockerfile").read_text(), ARGS, ctx)
    out = tmp_path / "image.oci.tar"
    assemble.apply(stage, base, out, ref="r", created="2026-12-02T00:00:00Z",
                   clamp_mtime=1_700_000_000)
    manifest = json.loads(_blob(out, oci.inspect(out).manifest_digest))
    with tarfile.open(fileobj=io.BytesIO(
            gzip.decompress(_blob(out, manifest["layers"][1]["digest"])))) as layer:
        assert max(m.mtime for m in layer.getmembers()) <= 1_700_000_000


def test_a_damaged_runtime_base_is_named(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    stage = assemble.last_stage((DOCKER / "cpu.Dockerfile").read_text(), ARGS, ctx)
    (tmp_path / "base.oci.tar").write_bytes(b"not an archive")
    with pytest.raises(oci.OciError, match=r"base\.oci\.tar is not a readable OCI archive"):
        assemble.apply(stage, tmp_path / "base.oci.tar", tmp_path / "out.oci.tar", ref="r",
                       created="2026-12-02T00:00:00Z")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.oci.tar", "ctx"]
