"""The openvino family on fake installations: finding OpenVINO and its version, the runtime a
tarball bundles, provisioning from the PyPI wheel (its download stood in for), versioned
toolchain names, and the target's resolved settings. The real build and smoke test on
OpenVINO's CPU device: tests/integration/test_openvino_build.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.version import Version

from buildtool import backends
from buildtool.backends import openvino
from buildtool.config.plan import portable_defines
from buildtool.config.resolve import resolve
from buildtool.grammar import ALL_PLATFORMS
from tests.unit.test_resolve import LOCK, PROJECT, host

VERSION_FILE = """set(PACKAGE_VERSION_MAJOR 2026)
set(PACKAGE_VERSION_MINOR 4)
set(PACKAGE_VERSION_PATCH 1)
set(PACKAGE_VERSION "${PACKAGE_VERSION_MAJOR}.${PACKAGE_VERSION_MINOR}.${PACKAGE_VERSION_PATCH}")
"""
LIBS = ("libopenvino.so.2641", "libopenvino_c.so.2641", "libopenvino_intel_cpu_plugin.so",
        "libopenvino_intel_gpu_plugin.so", "libopenvino_onnx_frontend.so.2641",
        "libtbb.so.12", "libtbbmalloc.so.2", "libtbbmalloc_proxy.so.2", "libhwloc.so.15",
        "cache.json", "tbb.pc")


def wheel_tree(prefix: Path, version: str = "2026.4.1") -> Path:
    """What the openvino wheel unpacks to (the parts a build looks at)."""
    cmake = prefix / "openvino" / "cmake"
    cmake.mkdir(parents=True)
    (cmake / "OpenVINOConfig.cmake").write_text("# OpenVINO\n")
    major, minor, patch = version.split(".")
    (cmake / "OpenVINOConfig-version.cmake").write_text(
        VERSION_FILE.replace("2026)", f"{major})").replace(" 4)", f" {minor})")
        .replace(" 1)", f" {patch})"))
    (prefix / "openvino" / "include" / "openvino").mkdir(parents=True)
    libs = prefix / "openvino" / "libs"
    libs.mkdir()
    for name in LIBS:
        (libs / name).write_bytes(b"\x7fELF " + name.encode())
    (prefix / "openvino" / "__init__.py").write_text("# bindings\n")
    (prefix / "openvino" / "runtime").mkdir()
    lic = prefix / f"openvino-{version}.dist-info" / "licenses"
    (lic / "licensing").mkdir(parents=True)
    (lic / "LICENSE").write_text("Apache License 2.0\n")
    (lic / "licensing" / "onetbb_third-party-programs.txt").write_text("notices\n")
    (prefix / f"openvino-{version}.dist-info" / "RECORD").write_text("")
    return prefix


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("BUILDTOOL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("OpenVINO_DIR", raising=False)
    monkeypatch.delenv("INTEL_OPENVINO_DIR", raising=False)
    from buildtool.toolchains import discovery

    discovery.find_all.cache_clear()
    yield tmp_path / "cache"
    getattr(discovery.find_all, "cache_clear", lambda: None)()  # fake_tools may replace it


def test_openvino_is_found_with_its_version(cache: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    old = wheel_tree(cache / "toolchains" / "openvino-2025.3.0", "2025.3.0")
    new = wheel_tree(cache / "toolchains" / "openvino-2026.4.1")
    found = list(openvino.find_openvino())
    assert [(p.path, p.version) for p in found] == [
        (new / "openvino" / "cmake", Version("2026.4.1")),
        (old / "openvino" / "cmake", Version("2025.3.0"))]
    # what the user points at comes first
    mine = wheel_tree(tmp_path / "mine", "2026.4.0")
    monkeypatch.setenv("OpenVINO_DIR", str(mine / "openvino" / "cmake"))
    assert next(openvino.find_openvino()).version == Version("2026.4.0")


def test_the_runtime_a_tarball_bundles(cache: Path) -> None:
    prefix = wheel_tree(cache / "toolchains" / "openvino-2026.4.1")
    bundle = openvino.runtime_bundle(next(openvino.find_openvino()))
    assert bundle.name == "openvino" and bundle.version == "2026.4.1"
    assert sorted(f.name for f in bundle.files) == [
        "cache.json", "libhwloc.so.15", "libopenvino.so.2641",
        "libopenvino_intel_cpu_plugin.so", "libopenvino_intel_gpu_plugin.so", "libtbb.so.12",
        "libtbbmalloc.so.2"]  # no model-format frontends, no C API, no malloc proxy
    lic = prefix / "openvino-2026.4.1.dist-info" / "licenses"
    assert bundle.licenses == (
        ("LICENSE", lic / "LICENSE"),
        ("licensing/onetbb_third-party-programs.txt",
         lic / "licensing" / "onetbb_third-party-programs.txt"))


def test_provisioning_keeps_what_a_build_needs(cache: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, ...]] = []

    def download(requirements: tuple[str, ...], dest: Path, **_: object) -> dict[str, str]:
        asked.append(requirements)
        wheel_tree(dest)
        return {"openvino": "2026.4.1"}

    monkeypatch.setattr(openvino, "pypi_wheels", download)
    toolchain = backends.toolchain("openvino-2026.4.1")
    assert toolchain is not None and toolchain.installed() is None
    prefix = toolchain.install(lambda _: None)
    assert asked == [("openvino==2026.4.1",)]
    assert prefix == cache / "toolchains" / "openvino-2026.4.1" == toolchain.installed()
    assert sorted(p.name for p in (prefix / "openvino").iterdir()) == ["cmake", "include",
                                                                       "libs"]
    assert sorted(p.name for p in (prefix / "openvino-2026.4.1.dist-info").iterdir()) == [
        "licenses"]
    assert [t.name for t in backends.REGISTRY["openvino"].toolchains()] == ["openvino-2026.4.1"]
    assert not list((cache / "toolchains").glob(".openvino-*"))  # no staging left behind


def test_a_failed_download_leaves_nothing(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from buildtool.errors import ToolchainError

    def download(requirements: tuple[str, ...], dest: Path, **_: object) -> dict[str, str]:
        (dest / "partial").write_text("half a wheel")
        raise ToolchainError("could not download openvino==2099.1.0")

    monkeypatch.setattr(openvino, "pypi_wheels", download)
    with pytest.raises(ToolchainError):
        openvino.install("2099.1.0")
    assert list((cache / "toolchains").iterdir()) == []


@pytest.mark.parametrize(("name", "known"), [
    ("openvino-2026.4.1", True), ("openvino-2026.4", True), ("openvino", False),
    ("openvino-latest", False), ("openvino-2026.4.1;rm", False)])
def test_versioned_toolchain_names(name: str, known: bool) -> None:
    assert (backends.toolchain(name) is not None) is known


def test_the_target_resolves_with_the_found_runtime(
        cache: Path, data: Path, fake_tools: dict[str, list[object]]) -> None:
    wheel_tree(cache / "toolchains" / "openvino-2026.4.1")
    fake_tools["openvino"] = list(openvino.find_openvino())  # as discovery finds it
    rt = resolve(PROJECT, "openvino", lock=LOCK, host_cpu=host(data),
                 host_platform="linux-x86_64", env={})
    assert rt.family == "openvino" and rt.recipe.gpu and rt.toolkit == "2026.4.1"
    assert rt.define("GGML_OPENVINO") == "ON"
    cmake = cache / "toolchains" / "openvino-2026.4.1" / "openvino" / "cmake"
    assert rt.define("OpenVINO_DIR") == str(cmake) and "OpenVINO_DIR" in rt.host_only
    assert [b.name for b in rt.runtime] == ["openvino"]
    assert rt.cpu_level == "x86-64-v2" and "sse4_2" in rt.cpu_features  # the floor
    assert any(a.file == "libopenvino_intel_cpu_plugin.so" for a in rt.audit_allow)
    assert rt.wheel_requires == ("openvino==2026.4.1",)
    assert rt.wheel_library_dirs == ("openvino/libs",)
    assert backends.family("openvino").toolchain_for(rt.toolkit) == "openvino-2026.4.1"
    # its smoke checks Q4_0 and the K-quant Q6_K: Q4_K/Q5_K batches abort in ggml-openvino
    assert rt.recipe.smoke_quantized is not None
    assert rt.recipe.smoke_quantized.types == ("Q4_0", "Q6_K")
    assert "shape mismatch" in rt.recipe.smoke_quantized.reason
    # the emitted project (CI, an image's build stage) finds OpenVINO its own way
    from buildtool.config.plan import make_plan
    from tests.unit.helpers import ROOT

    plan = make_plan(rt, root=ROOT, source_dir=ROOT / "vendor" / "llama.cpp",
                     tree_sha256="0" * 64, use_ccache=False)
    assert "OpenVINO_DIR" not in dict(portable_defines(plan))
    # planning elsewhere (CI matrices) probes nothing
    planned = resolve(PROJECT, "openvino", lock=LOCK, host_cpu=None,
                      host_platform="linux-x86_64", env={}, probe=False)
    assert planned.runtime == () and planned.define("OpenVINO_DIR") is None
    assert set(planned.platforms) <= set(ALL_PLATFORMS)


def test_containers_get_intel_devices_when_present() -> None:
    family = backends.family("openvino")
    assert family.container_devices(lambda p: p == "/dev/dri").paths == ("/dev/dri",)
    devices = family.container_devices(lambda p: False)
    assert devices.paths == () and devices.absent == ()  # its CPU device needs nothing
    assert family.image_args("2026.4.1", lambda _: None) == {"OPENVINO_VERSION": "2026.4.1"}
