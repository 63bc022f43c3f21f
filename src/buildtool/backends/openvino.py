"""Intel OpenVINO (openvino): ggml's OpenVINO backend, which hands the graph to OpenVINO's
runtime and its devices — Intel CPUs, GPUs and NPUs.

OpenVINO comes from PyPI: the ``openvino`` wheel carries the runtime libraries, the device
plugins, oneTBB and OpenVINO's CMake package and headers. `buildtool toolchain install
openvino-<version>` unpacks it into a private prefix; a build finds it there (or through
$OpenVINO_DIR / $INTEL_OPENVINO_DIR, or OpenVINO's archive under /opt/intel), and a tarball
bundles the runtime beside the programs (as llama.cpp's own OpenVINO releases do). A wheel
depends on the ``openvino`` wheel of the same version instead; its launcher puts
``openvino/libs`` on the loader's path. The OpenCL ICD loader (libOpenCL.so.1) comes from the
host, as it does for OpenVINO itself.

OpenVINO's CPU device needs no GPU, so this family is built and smoke-tested on any x86-64
host: layers are offloaded to the OpenVINO device, and the smoke verdict demands that.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import MappingProxyType

from packaging.version import InvalidVersion, Version

from buildtool.backends.base import (
    Backend,
    BackendContext,
    Bundle,
    Dynamic,
    Progress,
    Toolchain,
    find_tool,
)
from buildtool.toolchains.discovery import Program, ToolSpec, version_key
from buildtool.toolchains.engines import Devices
from buildtool.toolchains.provision import pypi_wheels, swap_in, toolchains_dir

NAME = "openvino"
_CONFIG = "OpenVINOConfig.cmake"
_VERSION_PART = re.compile(r"set\(PACKAGE_VERSION_(MAJOR|MINOR|PATCH) ([0-9]+)\)")
_TOOLCHAIN = re.compile(r"openvino-([0-9]+(?:\.[0-9]+){1,3})")
# what ggml-openvino loads at run time: the runtime, its device plugins, oneTBB and hwloc
# (the model-format frontends and the C API are left out)
RUNTIME = ("libopenvino.so.*", "libopenvino_*_plugin.so", "libtbb.so.*", "libtbbbind*.so.*",
           "libtbbmalloc.so.*", "libhwloc.so.*", "cache.json")
# the prefix keeps what a build and a tarball need of the wheel
_KEEP = ("openvino/cmake", "openvino/include", "openvino/libs")


def _cmake_dirs() -> Iterator[Path]:
    """Where OpenVINO's CMake package may lie, in order of preference: what the user set,
    the toolchains buildtool provisioned (newest first), OpenVINO's archive."""
    # CMake's own spelling of the package's variable: OpenVINO_DIR, not OPENVINO_DIR
    if user := os.environ.get("OpenVINO_DIR"):  # noqa: SIM112
        yield Path(user)
    if os.environ.get("INTEL_OPENVINO_DIR"):
        yield Path(os.environ["INTEL_OPENVINO_DIR"]) / "runtime" / "cmake"
    for prefix in sorted(toolchains_dir().glob(f"{NAME}-*"), key=version_key, reverse=True):
        yield prefix / "openvino" / "cmake"
    for archive in sorted(Path("/opt/intel").glob("openvino*"), key=version_key, reverse=True):
        yield archive / "runtime" / "cmake"


def find_openvino() -> Iterator[Program]:
    """OpenVINO installations: the CMake package's directory, its version from the package's
    version file."""
    seen: set[Path] = set()
    for cmake_dir in _cmake_dirs():
        if not (cmake_dir / _CONFIG).is_file() or cmake_dir.resolve() in seen:
            continue
        seen.add(cmake_dir.resolve())
        version: Version | None = None
        try:
            text = (cmake_dir / "OpenVINOConfig-version.cmake").read_text(errors="replace")
            parts = dict(_VERSION_PART.findall(text))
            if {"MAJOR", "MINOR", "PATCH"} <= parts.keys():
                version = Version(f"{parts['MAJOR']}.{parts['MINOR']}.{parts['PATCH']}")
        except (OSError, InvalidVersion):
            pass
        yield Program(NAME, cmake_dir, version)


def find_opencl() -> Iterator[Program]:
    """The OpenCL headers and ICD loader ggml-openvino links with (Debian's opencl-headers
    and ocl-icd-opencl-dev)."""
    include = Path("/usr/include/CL/cl.h")
    if not include.is_file():
        return
    for lib_dir in (Path("/usr/lib/x86_64-linux-gnu"), Path("/usr/lib/aarch64-linux-gnu"),
                    Path("/usr/lib64"), Path("/usr/lib")):
        if (lib_dir / "libOpenCL.so").exists():
            yield Program("opencl", lib_dir / "libOpenCL.so", None)
            return


def libs_dir(cmake_dir: Path) -> Path:
    """The runtime libraries of an installation: the wheel's openvino/libs, or the archive's
    runtime/lib/intel64."""
    wheel_libs = cmake_dir.parent / "libs"
    return wheel_libs if wheel_libs.is_dir() else cmake_dir.parent / "lib" / "intel64"


def runtime_bundle(found: Program) -> Bundle:
    libs = libs_dir(found.path)
    files = sorted({p for pattern in RUNTIME for p in libs.glob(pattern)
                    if p.is_file() and not p.is_symlink()})
    root = found.path.parent.parent  # the prefix: its dist-info holds the licenses
    licenses = [(str(p.relative_to(lic)), p)
                for lic in sorted(root.glob(f"{NAME}-*.dist-info/licenses"))
                for p in sorted(lic.rglob("*")) if p.is_file()]
    return Bundle(name=NAME, version=str(found.version or ""), files=tuple(files),
                  licenses=tuple(licenses))


def install(version: str, progress: Progress = lambda _: None) -> Path:
    """The ``openvino`` wheel of ``version`` from PyPI, unpacked into
    ``~/.cache/buildtool/toolchains/openvino-<version>`` (its CMake package, headers,
    libraries and licenses; not its Python bindings)."""
    base = toolchains_dir()
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{NAME}-", dir=base))
    try:
        pypi_wheels((f"{NAME}=={version}",), staging, progress=progress)
        for entry in staging.iterdir():
            if entry.name.endswith(".dist-info"):
                for part in entry.iterdir():
                    if part.name != "licenses":
                        _remove(part)
            elif entry.name != NAME:
                _remove(entry)
        for entry in (staging / NAME).iterdir():
            if f"{NAME}/{entry.name}" not in _KEEP:
                _remove(entry)
        return swap_in(staging, base / f"{NAME}-{version}")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _toolchain(version: str) -> Toolchain:
    name = f"{NAME}-{version}"

    def installed() -> Path | None:
        prefix = toolchains_dir() / name
        return prefix if (prefix / NAME / "cmake" / _CONFIG).is_file() else None

    def run(progress: Progress) -> Path:
        return install(version, progress)
    return Toolchain(name=name, install=run, installed=installed)


class OpenVinoBackend(Backend):
    family = NAME
    finders = MappingProxyType({
        NAME: ToolSpec((), install="`buildtool toolchain install openvino` (the openvino wheel "
                       "from PyPI, into a private prefix), or OpenVINO's archive with "
                       "OpenVINO_DIR set", find=find_openvino),
        "opencl": ToolSpec((), install="apt-get install opencl-headers ocl-icd-opencl-dev "
                           "(Debian/Ubuntu), dnf install opencl-headers ocl-icd-devel (Fedora)",
                           find=find_opencl),
    })
    tools = (NAME,)
    module_file = "libggml-openvino.so"
    # Intel's GPUs and NPUs; SYCL (oneAPI) is the first choice for an Intel GPU
    gpu_vendors = ("Intel",)
    gpu_preference = 1

    def dynamic(self, ctx: BackendContext) -> Dynamic:
        found = find_tool(NAME, ctx.requirement(NAME)) if ctx.probe else None
        if found is None:
            return Dynamic()
        return Dynamic(
            defines=(("OpenVINO_DIR", str(found.path), f"OpenVINO {found.version}"),),
            host_only=frozenset({"OpenVINO_DIR"}),
            runtime=(runtime_bundle(found),))

    def toolchains(self) -> tuple[Toolchain, ...]:
        installed = sorted(toolchains_dir().glob(f"{NAME}-*"), key=version_key)
        return tuple(_toolchain(m.group(1)) for p in installed
                     if (m := _TOOLCHAIN.fullmatch(p.name)))

    def toolchain(self, name: str) -> Toolchain | None:
        match = _TOOLCHAIN.fullmatch(name)
        return _toolchain(match.group(1)) if match else None

    def toolchain_for(self, toolkit: str | None) -> str | None:
        return f"{NAME}-{toolkit}" if toolkit else None

    def image_args(self, toolkit: str | None,
                   define: Callable[[str], str | None]) -> dict[str, str]:
        return {"OPENVINO_VERSION": toolkit or ""}

    def container_devices(self, exists: Callable[[str], bool]) -> Devices:
        # Intel GPUs and NPUs when present; OpenVINO's CPU device needs nothing
        return Devices(paths=tuple(d for d in ("/dev/dri", "/dev/accel") if exists(d)))


BACKEND = OpenVinoBackend()
