"""The machine buildtool runs on, detected once into a :class:`Host`: CPU, OS and platform,
GPUs, drivers, device nodes, Vulkan drivers, container engines and tools. Builds, the lab and
`buildtool detect` take it from here; the platform string is computed here only."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform as _platform
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from buildtool import cmd
from buildtool.abi import SystemAbi, system_abi
from buildtool.detect.cpu import (
    CpuInfo,
    from_flag_list,
    normalize_arch,
    parse_proc_cpuinfo,
    parse_sysctl,
)
from buildtool.errors import CommandError, ToolchainError
from buildtool.records import GpuRecord, HostCpu, HostFacts, clean
from buildtool.toolchains import discovery as toolchain

PCI_VENDORS = {"0x10de": "NVIDIA", "0x1002": "AMD", "0x8086": "Intel"}
# device nodes GPU and accelerator stacks open (NVIDIA, ROCm, DRM render nodes, accel: NPUs)
DEVICE_NODES = ("/dev/nvidiactl", "/dev/kfd", "/dev/dri", "/dev/accel")


def os_name() -> str:
    return {"linux": "linux", "darwin": "macos", "win32": "windows"}.get(sys.platform,
                                                                         sys.platform)


def platform_name(system: str, arch: str) -> str:
    """Platform strings follow each OS's convention: linux-aarch64 but macos-arm64."""
    if arch == "aarch64" and system in ("macos", "windows"):
        arch = "arm64"
    return f"{system}-{arch}"


def host_platform() -> str:
    """This machine's platform (linux-x86_64, macos-arm64, ...)."""
    return platform_name(os_name(), normalize_arch(_platform.machine()))


def read_system_file(path: Path) -> str:
    """A small system file (/proc, /sys, /etc) as text; empty when it cannot be read."""
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            return fh.read(1 << 20)
    except OSError:
        return ""


def vulkan_icds(root: Path = Path("/")) -> list[str]:
    """The Vulkan drivers installed (ICD manifests): ``lvp`` is Mesa's CPU implementation."""
    names = set()
    for d in ("usr/share/vulkan/icd.d", "etc/vulkan/icd.d"):
        for path in (root / d).glob("*.json"):
            names.add(clean(path.name.split(".")[0].removesuffix("_icd")))
    return sorted(names)


def detect_drivers(root: Path = Path("/")) -> dict[str, str]:
    """Kernel GPU drivers and their versions (amdgpu, nvidia)."""
    drivers = {}
    amd = read_system_file(root / "sys/module/amdgpu/version").strip()
    if amd:
        drivers["amdgpu"] = clean(amd)
    nvidia = read_system_file(root / "proc/driver/nvidia/version").splitlines()
    if nvidia:
        drivers["nvidia"] = clean(nvidia[0].strip())
    return drivers


@dataclass(frozen=True)
class Gpu:
    vendor: str
    name: str
    source: str
    driver: str | None = None
    memory: str | None = None
    compute_capability: str | None = None  # NVIDIA: 8.6 (nvidia-smi)

    def to_json(self) -> dict[str, Any]:
        return {"vendor": self.vendor, "name": self.name, "driver": self.driver,
                "memory": self.memory, "source": self.source,
                "compute_capability": self.compute_capability}

    def record(self) -> GpuRecord:
        """As results files record it (what a tool printed, cleaned of control characters)."""
        return GpuRecord(vendor=self.vendor, name=clean(self.name),
                         driver=clean(self.driver) if self.driver else None,
                         memory=clean(self.memory) if self.memory else None,
                         source=self.source, compute_capability=self.compute_capability)


NVIDIA_SMI = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
              "--format=csv,noheader"]


# asked on its own: drivers before 510 know no compute_cap field and refuse the whole query
NVIDIA_SMI_CC = ["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"]


def with_capabilities(gpus: list[Gpu], text: str) -> list[Gpu]:
    """``NVIDIA_SMI_CC``'s lines (one ``8.6`` per GPU, in the same order) onto ``gpus``."""
    caps = [line.strip() for line in text.splitlines() if line.strip()]
    if len(caps) != len(gpus) or not all(re.fullmatch(r"\d{1,2}\.\d{1,2}", c) for c in caps):
        return gpus
    return [dataclasses.replace(g, compute_capability=c) for g, c in zip(gpus, caps,
                                                                         strict=True)]


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """What ``NVIDIA_SMI`` prints: one ``name, driver, memory`` line per GPU."""
    out = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and parts[0]:
            out.append(Gpu("NVIDIA", parts[0], "nvidia-smi", driver=parts[1] or None,
                           memory=parts[2] if len(parts) > 2 and parts[2] else None))
    return out


@dataclass(frozen=True)
class Host:
    os: str
    arch: str
    platform: str
    cpu: CpuInfo
    gpus: tuple[Gpu, ...] = ()
    toolchains: dict[str, list[toolchain.Program]] = field(default_factory=dict)
    drivers: dict[str, str] = field(default_factory=dict)
    vulkan_icds: tuple[str, ...] = ()
    devices: dict[str, bool] = field(default_factory=dict)
    engines: tuple[str, ...] = ()  # container engines that work here
    system: SystemAbi | None = None  # the C library and C++ runtime (Linux)

    def to_json(self) -> dict[str, Any]:
        return {
            "os": self.os,
            "arch": self.arch,
            "platform": self.platform,
            "cpu": {
                "model": self.cpu.model,
                "vendor": self.cpu.vendor,
                "level": self.cpu.level,
                "ggml_features": list(self.cpu.ggml_features),
                "features": sorted(self.cpu.features),
            },
            "gpus": [g.to_json() for g in self.gpus],
            "drivers": dict(self.drivers),
            "vulkan_icds": list(self.vulkan_icds),
            "devices": dict(self.devices),
            "engines": list(self.engines),
            "system": {"glibc": self.system.shown.glibc,
                       "libstdcxx": self.system.shown.libstdcxx,
                       "cxxabi": self.system.shown.cxxabi} if self.system else None,
            "toolchains": {
                name: [{"path": str(p.path), "version": str(p.version) if p.version else None}
                       for p in progs]
                for name, progs in self.toolchains.items()
            },
        }


def detect_cpu() -> CpuInfo:
    machine = _platform.machine()
    if sys.platform.startswith("linux"):
        try:
            return parse_proc_cpuinfo(Path("/proc/cpuinfo").read_text(), machine)
        except OSError:
            pass
    if sys.platform == "darwin":
        try:
            return parse_sysctl(cmd.capture(["sysctl", "-a"], check=False), machine)
        except (CommandError, ToolchainError):
            pass
    import cpuinfo  # py-cpuinfo: Windows and anything else

    info = cpuinfo.get_cpu_info()
    return from_flag_list(info.get("flags", []), arch=info.get("arch_string_raw", machine),
                          model=info.get("brand_raw", ""), vendor=info.get("vendor_id_raw", ""))


def detect_gpus(sys_root: Path = Path("/")) -> tuple[Gpu, ...]:
    gpus: list[Gpu] = []
    if sys.platform == "darwin" and normalize_arch(_platform.machine()) == "aarch64":
        gpus.append(Gpu("Apple", "Apple silicon GPU", "platform"))
    try:
        amdgpu: str | None = (sys_root / "sys/module/amdgpu/version").read_text().strip() or None
    except OSError:
        amdgpu = None
    drm = sys_root / "sys/class/drm"
    if drm.is_dir():
        for card in sorted(drm.glob("card[0-9]*")):
            if "-" in card.name:
                continue
            try:
                vendor_id = (card / "device/vendor").read_text().strip().lower()
                device_id = (card / "device/device").read_text().strip().lower()
            except OSError:
                continue
            vendor = PCI_VENDORS.get(vendor_id)
            if vendor:
                gpus.append(Gpu(vendor, f"PCI {vendor_id}:{device_id}", str(card),
                                driver=amdgpu if vendor == "AMD" else None))
    if cmd.which("nvidia-smi"):
        try:
            found = parse_nvidia_smi(cmd.capture(NVIDIA_SMI, timeout=20))
            # an old driver: the capability stays unknown
            with contextlib.suppress(CommandError, ToolchainError):
                found = with_capabilities(found, cmd.capture(NVIDIA_SMI_CC, timeout=20))
            gpus = [g for g in gpus if g.vendor != "NVIDIA"] + found
        except (CommandError, ToolchainError):
            pass
    return tuple(gpus)


def detect_host(*, with_toolchains: bool = True, sys_root: Path = Path("/")) -> Host:
    from buildtool.toolchains import engines

    cpu = detect_cpu()
    system = os_name()
    return Host(
        os=system, arch=cpu.arch, platform=platform_name(system, cpu.arch), cpu=cpu,
        gpus=detect_gpus(sys_root),
        toolchains=toolchain.inventory() if with_toolchains else {},
        drivers=detect_drivers(sys_root), vulkan_icds=tuple(vulkan_icds(sys_root)),
        devices={d: (sys_root / d.lstrip("/")).exists() for d in DEVICE_NODES},
        engines=tuple(e.name for e in engines.detect() if e.usable),
        system=host_system(system, cpu.arch, sys_root),
    )


def host_system(os_name: str, arch: str, root: Path = Path("/")) -> SystemAbi | None:
    """The versions of the C library and C++ runtime of a Linux system (None elsewhere)."""
    return system_abi(root, arch) if os_name == "linux" else None


# ------------------------------------------------------------------- the host's record


def parse_os_release(text: str) -> str:
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return clean(values.get("PRETTY_NAME", values.get("NAME", "")).strip().strip('"'))


def parse_meminfo(text: str) -> int | None:
    m = re.search(r"^MemTotal:\s+(\d{1,15})\s*kB", text, re.M)
    return int(m.group(1)) * 1024 if m else None


def host_facts(host: Host, *, sys_root: Path = Path("/")) -> HostFacts:
    """The lab's record of the host detection found (:func:`buildtool.detect.host.
    detect_host`), with what a report shows besides: OS release, kernel, memory, Python."""
    cpu = host.cpu
    return HostFacts(
        id=_platform.node() or "unknown-host", hostname=_platform.node(),
        os=parse_os_release(read_system_file(sys_root / "etc/os-release")) or _platform.system(),
        kernel=_platform.release(), platform=host.platform,
        cpu=HostCpu(model=clean(cpu.model) if cpu.model else None,
                    vendor=cpu.vendor, arch=cpu.arch, level=cpu.level,
                    cores=os.cpu_count(), ggml_features=tuple(cpu.ggml_features),
                    features=tuple(sorted(cpu.features))),
        memory_bytes=parse_meminfo(read_system_file(sys_root / "proc/meminfo")),
        gpus=tuple(g.record() for g in host.gpus),
        drivers=dict(host.drivers), vulkan_icds=host.vulkan_icds, devices=dict(host.devices),
        engines=host.engines, python=_platform.python_version(),
        system=host.system.record() if host.system else None)
