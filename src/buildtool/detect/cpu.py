"""CPU feature detection from captured text: /proc/cpuinfo (Linux) and sysctl (macOS).

Parsing works on text so that it is tested on real dumps of many CPUs
(tests/data/cpuinfo), not only on the machine running the tests. Feature names are
canonicalised to the Linux kernel's spelling with an underscore where ggml's option has
one (``avx512_vbmi``), so that the manifest, the CMake mapping and the host check speak
the same language.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from buildtool.cpudata import CPU


def canonical(name: str) -> str:
    return CPU.canonical(name)


def normalize_arch(machine: str) -> str:
    return CPU.arch(machine)


@dataclass(frozen=True, kw_only=True)
class CpuInfo:
    arch: str
    model: str
    vendor: str = ""
    features: frozenset[str] = field(default_factory=frozenset)

    @property
    def ggml_features(self) -> tuple[str, ...]:
        return tuple(f for f in CPU.ggml_features(self.arch) if f in self.features)

    @property
    def level(self) -> str | None:
        return CPU.level_of(self.arch, self.features)

    def missing(self, required: Iterable[str]) -> list[str]:
        return [f for f in required if canonical(f) not in self.features]


def parse_proc_cpuinfo(text: str, machine: str) -> CpuInfo:
    """Parse Linux /proc/cpuinfo. Uses the first processor block (they agree on features)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    arch = normalize_arch(machine)
    flags = fields.get("flags") or fields.get("features") or ""
    features = frozenset(canonical(f) for f in flags.split())
    model = fields.get("model name") or fields.get("cpu model") or ""
    vendor = fields.get("vendor_id", "")
    if arch == "aarch64":
        implementer = fields.get("cpu implementer", "")
        part = fields.get("cpu part", "")
        vendor = CPU.arm_vendor(implementer)
        if not model:
            model = f"{vendor} {CPU.arm_part(implementer, part)}".strip()
    return CpuInfo(arch=arch, model=model, vendor=vendor, features=features)


def parse_sysctl(text: str, machine: str) -> CpuInfo:
    """Parse ``sysctl -a`` output from macOS (Intel, Apple silicon, or Rosetta 2)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            values[key.strip()] = value.strip()
    arch = normalize_arch(machine)
    features: set[str] = set()
    if arch == "x86_64":
        for key in ("machdep.cpu.features", "machdep.cpu.leaf7_features",
                    "machdep.cpu.extfeatures"):
            features.update(canonical(f) for f in values.get(key, "").split())
        for key, value in values.items():
            if key.startswith("hw.optional.") and not key.startswith("hw.optional.arm") \
                    and value.strip() == "1":
                features.add(canonical(key.removeprefix("hw.optional.")))
    else:
        for key, value in values.items():
            if value.strip() != "1":
                continue
            if key.startswith("hw.optional.arm."):
                features.add(canonical(key.removeprefix("hw.optional.arm.")))
            elif (feature := CPU.sysctl_feature(key)) is not None:
                features.add(feature)
    features.update(CPU.baseline(arch))
    model = values.get("machdep.cpu.brand_string", "")
    vendor = values.get("machdep.cpu.vendor", "Apple" if arch == "aarch64" else "")
    return CpuInfo(arch=arch, model=model, vendor=vendor,
                   features=frozenset(f for f in features if re.fullmatch(r"[a-z0-9_.]+", f)))


def from_flag_list(flags: Iterable[str], *, arch: str, model: str, vendor: str = "") -> CpuInfo:
    """Build from a flag list (py-cpuinfo on Windows, or a manifest)."""
    features = {canonical(f) for f in flags} | CPU.baseline(normalize_arch(arch))
    return CpuInfo(arch=normalize_arch(arch), model=model, vendor=vendor,
                   features=frozenset(features))

