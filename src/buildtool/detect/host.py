"""Everything `buildtool detect` reports about the machine it runs on."""

from __future__ import annotations

import platform as _platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from buildtool import cmd
from buildtool.detect.cpu import (
    CpuInfo,
    from_flag_list,
    normalize_arch,
    parse_proc_cpuinfo,
    parse_sysctl,
)
from buildtool.errors import CommandError, ToolchainError
from buildtool.toolchains import discovery as toolchain

PCI_VENDORS = {"0x10de": "NVIDIA", "0x1002": "AMD", "0x8086": "Intel"}


@dataclass(frozen=True)
class Gpu:
    vendor: str
    name: str
    source: str
    driver: str | None = None
    memory: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"vendor": self.vendor, "name": self.name, "driver": self.driver,
                "memory": self.memory, "source": self.source}


NVIDIA_SMI = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
              "--format=csv,noheader"]


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
class HostInfo:
    os: str
    arch: str
    platform: str
    cpu: CpuInfo
    gpus: tuple[Gpu, ...] = ()
    toolchains: dict[str, list[toolchain.Program]] = field(default_factory=dict)

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
            gpus = [g for g in gpus if g.vendor != "NVIDIA"] + found
        except (CommandError, ToolchainError):
            pass
    return tuple(gpus)


def detect_host(*, with_toolchains: bool = True) -> HostInfo:
    cpu = detect_cpu()
    os_name = {"linux": "linux", "darwin": "macos", "win32": "windows"}.get(sys.platform,
                                                                           sys.platform)
    return HostInfo(
        os=os_name, arch=cpu.arch, platform=toolchain.platform_name(os_name, cpu.arch), cpu=cpu,
        gpus=detect_gpus(),
        toolchains=toolchain.inventory() if with_toolchains else {},
    )
