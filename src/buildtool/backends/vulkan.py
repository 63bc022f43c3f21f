"""Vulkan (any GPU with a Vulkan driver; Mesa's lavapipe on CPU-only hosts)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import MappingProxyType

from packaging.version import Version

from buildtool.backends.base import (
    Backend,
    BackendContext,
    Dynamic,
    Problem,
    Progress,
    Toolchain,
    find_tool,
)
from buildtool.records import HostFacts
from buildtool.toolchains.discovery import Program, ToolSpec
from buildtool.toolchains.engines import Devices
from buildtool.toolchains.provision import debian_packages, swap_in, toolchains_dir

# bookworm's 1.3.239 headers fail ("'LayerSettingEXT' is not a member of 'vk'");
# trixie's 1.4.309 work. The requirement lives in recipes/vulkan.yaml.
HEADERS = "vulkan-headers"
SYSTEM_SPIRV_DIRS = [Path("/usr/share/cmake/SPIRV-Headers"),
                     Path("/usr/lib/x86_64-linux-gnu/cmake/SPIRV-Headers"),
                     Path("/usr/lib/aarch64-linux-gnu/cmake/SPIRV-Headers")]


def find_headers() -> Iterator[Program]:
    """Vulkan headers: $VULKAN_SDK, buildtool's provisioned copies, the system's."""
    roots: list[Path] = []
    if os.environ.get("VULKAN_SDK"):
        roots.append(Path(os.environ["VULKAN_SDK"]) / "include")
    roots += sorted(toolchains_dir().glob(f"{HEADERS}-*/usr/include"), reverse=True)
    roots.append(Path("/usr/include"))
    for root in roots:
        header = root / "vulkan" / "vulkan_core.h"
        try:
            text = header.read_text(errors="replace")
        except OSError:
            continue
        patch = re.search(r"#define VK_HEADER_VERSION (\d+)", text)
        complete = re.search(r"#define VK_HEADER_VERSION_COMPLETE VK_MAKE_API_VERSION\("
                             r"\s*\d+,\s*(\d+),\s*(\d+)", text)
        version = Version(f"{complete.group(1)}.{complete.group(2)}.{patch.group(1)}") \
            if patch and complete else None
        yield Program(HEADERS, root, version)


# Vulkan drivers that render on the CPU (ICD names as detection gives them): Mesa's lavapipe,
# Google's SwiftShader
SOFTWARE_ICDS = ("lvp", "vk_swiftshader")


class VulkanBackend(Backend):
    family = "vulkan"
    finders = MappingProxyType({
        "glslc": ToolSpec(("glslc",), version_pattern=r"glslang (\d+\.\d+)",
                          install="apt-get install glslc libvulkan-dev"),
        HEADERS: ToolSpec((), install="`buildtool toolchain install vulkan-headers` (Debian "
                          "trixie's libvulkan-dev, into a private prefix), or the LunarG "
                          "Vulkan SDK ($VULKAN_SDK)", find=find_headers),
    })
    tools = ("glslc",)
    module_file = "libggml-vulkan.so"
    # any vendor's GPU, after the vendor's own backend
    gpu_vendors = ("NVIDIA", "AMD", "Intel")
    gpu_preference = 1
    # llama-bench's gpu_info for devices that are CPUs behind the Vulkan API
    software_devices = ("llvmpipe", "lavapipe", "swiftshader", "softpipe")

    def dynamic(self, ctx: BackendContext) -> Dynamic:
        headers = find_tool(HEADERS, ctx.requirement(HEADERS)) if ctx.probe else None
        if headers is None or headers.path == Path("/usr/include"):
            return Dynamic()
        defines = [("Vulkan_INCLUDE_DIR", str(headers.path), f"Vulkan headers {headers.version}")]
        spirv = spirv_headers_dir(headers.path)
        if spirv is not None and spirv.parent.parent.parent != Path("/usr"):
            defines.append(("SPIRV-Headers_DIR", str(spirv), "SPIRV-Headers beside the headers"))
        return Dynamic(defines=tuple(defines), host_only=frozenset(k for k, _, _ in defines))

    def toolchains(self) -> tuple[Toolchain, ...]:
        return (Toolchain(name=HEADERS, install=install_headers, installed=installed_headers),)

    def toolchain_for(self, toolkit: str | None) -> str | None:
        return HEADERS

    def host_fit(self, host: HostFacts) -> str | None:
        return None if host.vulkan_icds else "no Vulkan driver (ICD)"

    def only_software(self, host: HostFacts) -> str | None:
        # Mesa installs the manifests of all its drivers (radeon, intel, ...) whether or not
        # such a GPU is there: without a GPU, what answers is a software renderer
        if host.vulkan_icds and not host.gpus:
            soft = [icd for icd in host.vulkan_icds if icd in SOFTWARE_ICDS]
            return ("no GPU here: its Vulkan device would be a software renderer"
                    + (f" ({', '.join(soft)})" if soft else ""))
        return None

    def container_devices(self, exists: Callable[[str], bool]) -> Devices:
        dri = exists("/dev/dri")
        return Devices(nvidia=exists("/dev/nvidiactl"), paths=("/dev/dri",) if dri else (),
                       absent=() if dri else ("/dev/dri",))

    def preflight(self, ctx: BackendContext) -> list[Problem]:
        headers = find_tool(HEADERS, ctx.requirement(HEADERS))
        if headers is not None and spirv_headers_dir(headers.path) is None:
            return [Problem("ggml-vulkan needs SPIRV-Headers' CMake package "
                            "(SPIRV-HeadersConfig.cmake): not found",
                            "apt-get install spirv-headers (Debian trixie, Ubuntu 24.04), or "
                            "`buildtool toolchain install vulkan-headers`")]
        return []


def spirv_headers_dir(include: Path) -> Path | None:
    """SPIRV-Headers' CMake package next to these headers, in $VULKAN_SDK, or the system's."""
    prefix = include.parent
    candidates = [prefix / "share/cmake/SPIRV-Headers", prefix / "lib/cmake/SPIRV-Headers"]
    if os.environ.get("VULKAN_SDK"):
        sdk = Path(os.environ["VULKAN_SDK"])
        candidates += [sdk / "share/cmake/SPIRV-Headers", sdk / "lib/cmake/SPIRV-Headers"]
    candidates += SYSTEM_SPIRV_DIRS
    return next((c for c in candidates if (c / "SPIRV-HeadersConfig.cmake").is_file()), None)


def install_headers(progress: Progress = lambda _: None) -> Path:
    """Debian trixie's libvulkan-dev headers (bookworm's 1.3.239 are too old for this
    llama.cpp) and spirv-headers (with the CMake package ggml-vulkan looks for), fetched with
    `apt-get download` under a private apt configuration and unpacked into
    ``~/.cache/buildtool/toolchains/vulkan-headers-<version>``."""
    base = toolchains_dir()
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".vulkan-headers-", dir=base))
    try:
        versions = debian_packages(("libvulkan-dev", "spirv-headers"), "trixie", staging,
                                   progress=progress)
        upstream = versions["libvulkan-dev"].split("-")[0].split(":")[-1]
        return swap_in(staging, base / f"{HEADERS}-{upstream}")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def installed_headers() -> Path | None:
    hits = sorted(toolchains_dir().glob(f"{HEADERS}-*"))
    return hits[-1] if hits else None


BACKEND = VulkanBackend()
