"""The cpu image, for real: built from recipes/docker/cpu.Dockerfile on a local Debian base
(debootstrap; nothing can be pulled here) by the engine buildtool picks, saved as an OCI
archive with its manifest, and smoke-tested inside its container — with podman (the build's
engine here) and again with buildah (daemonless: `buildah from` + `buildah run`)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import BASE, ROOT, buildtool


@pytest.fixture(scope="module")
def built(engine_env: dict[str, str], work: Path) -> dict[str, Any]:
    dist = work / "image-dist"
    proc = buildtool("build", "--target", "cpu", "--artifact", "image", "--dist", str(dist),
                     "--build-arg", f"BUILD_IMAGE={BASE}", "--build-arg",
                     f"RUNTIME_IMAGE={BASE}", "--json", env=engine_env, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-6000:]
    return {"outcome": json.loads(proc.stdout), "dist": dist, "log": proc.stderr}


def test_cpu_image_builds_saves_and_passes_the_smoke_test_in_its_container(
        built: dict[str, Any]) -> None:
    outcome, dist = built["outcome"], built["dist"]
    (made,) = outcome["artifacts"]
    assert made["kind"] == "image" and not made["cached"]
    archive = Path(made["artifact"])
    assert archive.name.endswith(".oci.tar") and archive.parent == dist
    assert "image localhost/llama.cpp:cpu-host-" in built["log"]
    assert "with podman" in built["log"]  # the engine used is said (docker has no daemon here)
    smoke = made["smoke"]
    assert smoke["verdict"] == "pass", smoke
    assert smoke["kind"] == "image"
    assert smoke["command"][0].endswith("podman") and "--entrypoint" in smoke["command"]
    assert {t["test"] for t in smoke["tests"]} >= {"pp32", "tg16"}
    assert any("Q4_0" in str(t["model_type"]) for t in smoke["tests"])
    assert all(t["backends"] == "CPU" for t in smoke["tests"])

    manifest = json.loads(archive.with_name(
        archive.name.removesuffix(".tar") + ".manifest.json").read_text())
    img = manifest["image"]
    assert manifest["kind"] == "image" and manifest["target"] == "cpu"
    assert manifest["isa_audit"]["verdict"] == "pass"
    assert img["engine"] == "podman" and img["ref"] == img["tags"][0]
    assert img["build_args"]["BUILD_IMAGE"] == BASE
    assert img["user"] == "10001"
    assert img["entrypoint"] == ["/opt/llama.cpp/llama-server"]
    assert img["exposed_ports"] == ["8080/tcp"]
    labels = img["labels"]
    assert labels["org.opencontainers.image.version"] == "b11312"
    assert labels["org.opencontainers.image.revision"] == manifest["llama_cpp"]["commit"]
    assert labels["org.opencontainers.image.source"] == "https://github.com/ggml-org/llama.cpp"
    assert labels["org.opencontainers.image.created"].endswith("Z")
    assert labels["dev.buildtool.target"] == "cpu"
    assert labels["dev.buildtool.build-key"] == manifest["build_key"]
    sums = (dist / "SHA256SUMS").read_text()
    assert f"{manifest['artifact_sha256']}  {archive.name}" in sums
    assert manifest["smoke"]["verdict"] == "pass"


def test_the_archive_holds_only_the_runtime(built: dict[str, Any], tmp_path: Path) -> None:
    from buildtool.artifacts import oci

    archive = Path(built["outcome"]["artifacts"][0]["artifact"])
    files = {p.name for p in oci.extract(archive, "/opt/llama.cpp", tmp_path / "bin")}
    assert {"llama-server", "llama-cli", "llama-bench", "llama-quantize", "libllama.so.0",
            "libggml.so.0", "libggml-base.so.0", "libggml-cpu.so.0", "manifest.json"} <= files
    usr = {p.name for p in oci.extract(archive, "/usr", tmp_path / "usr")}
    assert "bash" in usr and "libgomp.so.1.0.0" in usr  # the runtime base and libgomp1
    assert not {"cmake", "ninja", "ccache", "cc1plus", "g++", "x86_64-linux-gnu-g++-12",
                "ld"} & usr  # nothing of the toolchain
    apt = oci.extract(archive, "/var/cache/apt/archives", tmp_path / "apt")
    assert not [p.name for p in apt if p.suffix == ".deb"]  # apt-get clean
    inner = json.loads((tmp_path / "bin" / "manifest.json").read_text())
    assert inner["kind"] == "image" and inner["cpu"]["policy"] == "host"


def test_smoke_the_archive_with_buildah(built: dict[str, Any],
                                        engine_env: dict[str, str]) -> None:
    archive = built["outcome"]["artifacts"][0]["artifact"]
    proc = buildtool("smoke", archive, "--engine", "buildah", "--json", env=engine_env,
                     timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout)
    assert result["verdict"] == "pass" and result["kind"] == "image"
    assert result["command"][0].endswith("buildah") and result["command"][1] == "run"


def test_a_second_build_is_cached_and_a_missing_image_fails_the_smoke(
        built: dict[str, Any], engine_env: dict[str, str]) -> None:
    proc = buildtool("build", "--target", "cpu", "--artifact", "image", "--dist",
                     str(built["dist"]), "--build-arg", f"BUILD_IMAGE={BASE}", "--build-arg",
                     f"RUNTIME_IMAGE={BASE}", "--json", env=engine_env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (made,) = json.loads(proc.stdout)["artifacts"]
    assert made["cached"] and made["smoke"]["verdict"] == "pass"
    proc = buildtool("smoke", "localhost/llama.cpp:no-such-tag", env=engine_env, timeout=300)
    assert proc.returncode == 8, proc.stderr
    assert "cannot run localhost/llama.cpp:no-such-tag with podman" in proc.stderr


def test_emit_writes_a_context_and_bake_file(work: Path) -> None:
    import hcl2

    dest = work / "image-context"
    proc = buildtool("-q", "build", "--target", "cpu", "--cpu", "all-variants", "--artifact",
                     "image", "--emit", str(dest), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (dest / "docker" / "cpu.Dockerfile").is_file()
    assert (dest / "llama.cpp" / "ggml" / "CMakeLists.txt").is_file()
    assert not (dest / "llama.cpp" / "models").exists()
    defines = (dest / "targets" / "cpu" / "defines.cmake").read_text()
    assert 'set(GGML_CPU_ALL_VARIANTS "ON"' in defines
    doc = hcl2.loads((dest / "docker-bake.hcl").read_text())
    assert [k.strip('"') for block in doc["target"] for k in block] == ["cpu"]


@pytest.mark.slow
def test_vulkan_image_runs_on_mesa_inside_its_container(engine_env: dict[str, str],
                                                        work: Path) -> None:
    """The vulkan image on a Debian 13 base (Vulkan headers >= 1.4): Mesa's lavapipe in the
    runtime stage is a Vulkan device even without a GPU. About 30 minutes on 2 cores."""
    base = "localhost/debian:trixie-minbase"
    done = subprocess.run(["bash", str(ROOT / "scripts" / "local-base-image.sh"), "trixie",
                           base], env={**os.environ, **engine_env}, capture_output=True,
                          text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    proc = buildtool("build", "--target", "vulkan", "--cpu", "host", "--artifact", "image",
                     "--dist", str(work / "vulkan-image-dist"), "--build-arg",
                     f"BUILD_IMAGE={base}", "--build-arg", f"RUNTIME_IMAGE={base}", "--json",
                     env=engine_env, timeout=5400)
    assert proc.returncode == 0, proc.stderr[-6000:]
    (made,) = json.loads(proc.stdout)["artifacts"]
    smoke = made["smoke"]
    assert smoke["verdict"] == "pass" and not smoke["waived"], smoke
    assert all(t["backends"] == "Vulkan" for t in smoke["tests"])
    assert all("llvmpipe" in str(t["gpu_info"]) for t in smoke["tests"])
    assert all(t["n_gpu_layers"] == 99 for t in smoke["tests"])
