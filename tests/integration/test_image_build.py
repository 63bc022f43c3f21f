"""The cpu image, for real: the tarball and the image of one build — one compile; the image
is recipes/docker/cpu.Dockerfile's runtime stage on a local Debian base (debootstrap; nothing
can be pulled here), built by the engine buildtool picks, plus the files compiled for the
tarball (BUILT=prebuilt) as the last stage buildtool applies itself — compared with what
podman makes of the whole Dockerfile — saved as an OCI archive with its manifest, checked to
hold the tarball's bytes, and smoke-tested inside its container — with podman (the build's
engine here) and again with buildah (daemonless: `buildah from` + `buildah run`). The Dockerfile's
own build stage (BUILT=build, what `bake` and `--emit` hand to Docker) compiles in the slow
test below."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import BASE, ROOT, buildtool


@pytest.fixture(scope="module")
def built(engine_env: dict[str, str], work: Path) -> dict[str, Any]:
    # its own build directory, as deep under `work` as the cpu build test's: CCACHE_BASEDIR
    # makes the paths relative, so this compile is served by the objects that test compiled
    dist, build_root = work / "image-dist", work / "build-image"
    proc = buildtool("build", "--target", "cpu", "--artifact", "tarball", "--artifact",
                     "image", "--dist", str(dist), "--build-root", str(build_root),
                     "--no-smoke", "--build-arg",
                     f"BUILD_IMAGE={BASE}", "--build-arg", f"RUNTIME_IMAGE={BASE}", "--json",
                     env=engine_env, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-6000:]
    first, first_log = json.loads(proc.stdout), proc.stderr
    # the smoke in a second run: both artifacts are up to date, nothing is compiled again
    proc = buildtool("build", "--target", "cpu", "--artifact", "image", "--dist", str(dist),
                     "--build-root", str(build_root), "--build-arg", f"BUILD_IMAGE={BASE}",
                     "--build-arg",
                     f"RUNTIME_IMAGE={BASE}", "--json", env=engine_env, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-6000:]
    return {"first": first, "outcome": json.loads(proc.stdout), "dist": dist,
            "build_root": build_root, "log": proc.stderr, "first_log": first_log}


def test_one_compile_makes_the_tarball_and_the_image_with_the_same_bytes(
        built: dict[str, Any], tmp_path: Path) -> None:
    from buildtool.artifacts import oci

    tarball, img = built["first"]["artifacts"]
    assert (tarball["kind"], img["kind"]) == ("tarball", "image")
    timings = built["first"]["timings"]
    assert "build" in timings and "image" in timings  # compiled here once, then packaged
    t_manifest = _beside(Path(tarball["artifact"]), ".tar.gz")
    i_manifest = _beside(Path(img["artifact"]), ".oci.tar")
    files = t_manifest["files"]
    assert {"llama-server", "llama-bench", "libggml-cpu.so.0", "LICENSE"} <= set(files)
    assert i_manifest["files"] == files  # the image's manifest lists the tarball's files
    assert i_manifest["toolchain"] == t_manifest["toolchain"]  # compiled here, by these
    assert i_manifest["image"]["build_args"]["BUILT"] == "prebuilt"
    # and the archive holds them: every file of the tarball, byte for byte, in /opt/llama.cpp
    held = oci.digests(Path(img["artifact"]), "/opt/llama.cpp")
    assert {k: held.get(k) for k in files} == files
    with tarfile.open(tarball["artifact"]) as tf:
        for member in tf:
            rel = member.name.split("/", 1)[-1]
            if member.isfile() and rel in files:
                handle = tf.extractfile(member)
                assert handle is not None
                assert hashlib.sha256(handle.read()).hexdigest() == held[rel], rel


def _beside(artifact: Path, suffix: str) -> dict[str, Any]:
    name = artifact.name.removesuffix(suffix)
    manifest = artifact.with_name(name + (".oci" if suffix == ".oci.tar" else "")
                                  + ".manifest.json")
    return dict(json.loads(manifest.read_text()))


def test_cpu_image_builds_saves_and_passes_the_smoke_test_in_its_container(
        built: dict[str, Any]) -> None:
    outcome, dist = built["outcome"], built["dist"]
    (made,) = outcome["artifacts"]
    assert made["kind"] == "image" and made["cached"]
    archive = Path(made["artifact"])
    assert archive.name.endswith(".oci.tar") and archive.parent == dist
    assert "image localhost/llama.cpp:cpu-host-" in built["first_log"]
    assert "with podman" in built["first_log"]  # the engine used is said (no Docker daemon)
    assert "/opt/llama.cpp: the " in built["first_log"]  # and the bytes were checked
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


def test_the_last_stage_applied_here_is_what_the_engine_makes_of_the_dockerfile(
        built: dict[str, Any], engine_env: dict[str, str], tmp_path: Path) -> None:
    """buildtool applied the last stage (COPY, COPY, LABEL) to the runtime stage podman
    built; podman now builds the whole Dockerfile from the same build context with the same
    build arguments: the same settings, labels, runtime layers and /opt/llama.cpp."""
    from buildtool.artifacts import oci

    first = built["first"]
    ours = Path(first["artifacts"][1]["artifact"])
    manifest = _beside(ours, ".oci.tar")
    assert manifest["image"]["last_stage"] == "buildtool"
    assert manifest["image"]["runtime_base"].startswith("sha256:")
    assert "runtime stage: " in built["first_log"]  # built now, or kept from before
    context = Path(first["build_dir"]) / "image-context"
    argv = ["podman", "build", "--format", "docker", "--layers", "--file",
            str(context / "docker" / "cpu.Dockerfile"), "--tag", "localhost/llama.cpp:whole"]
    for key, value in manifest["image"]["build_args"].items():
        argv += ["--build-arg", f"{key}={value}"]
    env = {**os.environ, **engine_env}
    theirs = tmp_path / "whole.oci.tar"
    try:
        subprocess.run([*argv, str(context)], env=env, check=True, capture_output=True,
                       timeout=1800)
        subprocess.run(["podman", "save", "--quiet", "--format", "oci-archive", "--output",
                        str(theirs), "localhost/llama.cpp:whole"], env=env, check=True,
                       capture_output=True, timeout=1800)
    finally:  # vfs storage keeps a full copy per layer: leave none behind
        subprocess.run(["podman", "rmi", "--force", "localhost/llama.cpp:whole"], env=env,
                       check=False, capture_output=True, timeout=600)
    configs = []
    for archive in (ours, theirs):
        info = oci.inspect(archive)
        with tarfile.open(archive) as tf:
            handle = tf.extractfile("blobs/" + info.config_digest.replace(":", "/"))
            assert handle is not None
            configs.append(json.loads(handle.read()))
    mine, engine_made = configs
    for key in ("User", "Env", "WorkingDir", "Entrypoint", "ExposedPorts", "Labels"):
        assert mine["config"].get(key) == engine_made["config"].get(key), key
    # the runtime stage's layers are the engine's own (made by the same instructions on the
    # same base: its RUN layer's timestamps differ from build to build); the last two
    # layers hold the same files
    mine_ids, their_ids = mine["rootfs"]["diff_ids"], engine_made["rootfs"]["diff_ids"]
    assert len(mine_ids) == len(their_ids) and mine_ids[0] == their_ids[0]
    runtime = len(mine["history"]) - 3  # + COPY, COPY, LABEL
    assert [h.get("created_by") for h in mine["history"][:runtime]] == \
        [h.get("created_by") for h in engine_made["history"][:runtime]]
    assert oci.digests(ours, "/opt/llama.cpp") == oci.digests(theirs, "/opt/llama.cpp")


def test_the_archive_holds_only_the_runtime(built: dict[str, Any], tmp_path: Path) -> None:
    from buildtool.artifacts import oci

    archive = Path(built["outcome"]["artifacts"][0]["artifact"])
    files = set(oci.digests(archive, "/opt/llama.cpp"))  # the tarball's layout: links kept
    assert {"llama-server", "llama-cli", "llama-bench", "llama-quantize", "libllama.so.0",
            "libggml.so.0", "libggml-base.so.0", "libggml-cpu.so.0", "manifest.json"} <= files
    oci.extract(archive, "/opt/llama.cpp", tmp_path / "bin")
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
                     str(built["dist"]), "--build-root", str(built["build_root"]),
                     "--build-arg", f"BUILD_IMAGE={BASE}", "--build-arg",
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


@pytest.mark.slow
def test_the_emitted_context_compiles_in_the_image_build_stage(engine_env: dict[str, str],
                                                               work: Path) -> None:
    """What `bake` and `--emit` hand to users who only have Docker: the Dockerfile's build
    stage compiles (BUILT=build, written into the bake file) with the shared compile cache
    given as a build secret — a Redis server on loopback fills with its objects, and the
    URL is nowhere in the image — and the image passes the smoke. About 15 minutes on 2
    cores (a cold compile inside the container)."""
    import hcl2
    from scripts.bench_cache import free_port, start_redis

    dest = work / "image-context-compile"
    proc = buildtool("-q", "build", "--target", "cpu", "--cpu", "x86-64-v2", "--artifact",
                     "image", "--emit", str(dest), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = hcl2.loads((dest / "docker-bake.hcl").read_text())
    args = {k.strip('"'): v.strip('"') for block in doc["target"] for body in block.values()
            for k, v in body["args"].items()}
    args.pop("CREATED")  # ${timestamp()}: bake's
    assert args["BUILT"] == "build"
    assert not (dest / "prebuilt").exists() and (dest / "llama.cpp").is_dir()
    args.update(BUILD_IMAGE=BASE, RUNTIME_IMAGE=BASE, CREATED="2026-12-01T00:00:00Z")
    tag = "localhost/llama.cpp:compiled-in-stage"
    port = free_port()
    redis = start_redis(port, work)
    secret = work / "compile-cache.secret"
    secret.write_text(f"redis://127.0.0.1:{port}")  # RUN steps share the host's network
    # the build stage's local ccache (a cache mount, kept by buildah between builds) is
    # set aside, so that every object must come from the compile and go to the server
    mount = Path(os.environ.get("TMPDIR", "/var/tmp")) / "buildah-cache" / \
        "buildtool-ccache-cpu"
    aside = mount.with_name(mount.name + ".test-aside")
    if mount.exists() and not aside.exists():
        mount.rename(aside)
    try:
        argv = ["podman", "build", "--layers", "--no-cache", "--file",
                str(dest / "docker" / "cpu.Dockerfile"), "--tag", tag,
                "--secret", f"id=compile-cache,src={secret}",
                *[f"--build-arg={k}={v}" for k, v in args.items()], str(dest)]
        done = subprocess.run(argv, env={**os.environ, **engine_env}, capture_output=True,
                              text=True, timeout=3600, check=False)
        assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
        assert "cmake --build /build" in done.stdout + done.stderr  # it compiled in the stage
        keys = subprocess.run(["redis-cli", "-p", str(port), "dbsize"], capture_output=True,
                              text=True, check=False, timeout=60)
        assert int(keys.stdout.strip()) > 100, keys  # the build stage filled the cache
    finally:
        redis.terminate()
        redis.wait()
        if aside.exists():
            shutil.rmtree(mount, ignore_errors=True)
            aside.rename(mount)
    history = subprocess.run(["podman", "history", "--no-trunc", tag], capture_output=True,
                             text=True, env={**os.environ, **engine_env}, check=False)
    assert history.returncode == 0 and f"127.0.0.1:{port}" not in history.stdout
    proc = buildtool("smoke", tag, "--json", env=engine_env, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout)
    assert result["verdict"] == "pass" and result["kind"] == "image"
