"""Everything `buildtool detect` reports about the machine it runs on."""

from __future__ import annotations

import platform as _platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from buildtool import cmd, toolchain
from buildtool.detect.cpu import (
    CpuInfo,
    from_flag_list,
    normalize_arch,
    parse_proc_cpuinfo,
    parse_sysctl,
)
from buildtool.errors import CommandError, ToolchainError

PCI_VENDORS = {"0x10de": "NVIDIA", "0x1002": "AMD", "0x8086": "Intel"}


@dataclass(frozen=True)
class Gpu:
    vendor: str
    name: str
    source: str


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
            "gpus": [{"vendor": g.vendor, "name": g.name, "source": g.source} for g in self.gpus],
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
                gpus.append(Gpu(vendor, f"PCI {vendor_id}:{device_id}", str(card)))
    if cmd.which("nvidia-smi"):
        try:
            out = cmd.capture(["nvidia-smi", "--query-gpu=name,driver_version",
                               "--format=csv,noheader"], timeout=20)
            names = [line.strip() for line in out.splitlines() if line.strip()]
            gpus = [g for g in gpus if g.vendor != "NVIDIA"]
            gpus.extend(Gpu("NVIDIA", n, "nvidia-smi") for n in names)
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
