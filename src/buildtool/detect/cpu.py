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

# The x86 features that matter to ggml, in the order `detect` prints them.
X86_GGML_FEATURES: tuple[str, ...] = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "bmi2", "avx512f", "avx512bw", "avx512_vbmi",
    "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16",
)
ARM_GGML_FEATURES: tuple[str, ...] = ("neon", "dotprod", "fp16", "i8mm", "bf16", "sve", "sve2",
                                      "sme")

# x86-64 micro-architecture levels (System V psABI). Each level includes the previous.
X86_LEVEL_FEATURES: dict[str, tuple[str, ...]] = {
    "x86-64": ("sse2",),
    "x86-64-v2": ("cx16", "lahf_lm", "popcnt", "sse3", "ssse3", "sse4_1", "sse4_2"),
    "x86-64-v3": ("avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "lzcnt", "movbe", "xsave"),
    "x86-64-v4": ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"),
}
X86_LEVELS: tuple[str, ...] = tuple(X86_LEVEL_FEATURES)

ARM_LEVEL_FEATURES: dict[str, tuple[str, ...]] = {
    "armv8.0": ("neon",),
    "armv8.2": ("dotprod", "fp16"),
    "armv8.6": ("i8mm",),
}
ARM_LEVELS: tuple[str, ...] = tuple(ARM_LEVEL_FEATURES)

# Kernel / sysctl spellings that differ from the canonical name.
_ALIASES: dict[str, str] = {
    "pni": "sse3", "abm": "lzcnt", "avx512vbmi": "avx512_vbmi", "avx512vnni": "avx512_vnni",
    "avx512bf16": "avx512_bf16", "avxvnni": "avx_vnni", "lahf": "lahf_lm",
    "sse4.1": "sse4_1", "sse4.2": "sse4_2", "supplementalsse3": "ssse3", "avx1.0": "avx",
    "avx2_0": "avx2", "avx1_0": "avx", "amxtile": "amx_tile", "amxint8": "amx_int8",
    "amxbf16": "amx_bf16", "cmpxchg16b": "cx16", "osxsave": "xsave", "lzcnt": "lzcnt",
    # ARM (Linux hwcaps and Apple FEAT_* names)
    "asimd": "neon", "asimddp": "dotprod", "asimdhp": "fp16", "fphp": "fp16",
    "feat_dotprod": "dotprod",
    "feat_i8mm": "i8mm", "feat_bf16": "bf16", "feat_fp16": "fp16", "feat_sme": "sme",
    "feat_sve": "sve", "feat_sve2": "sve2", "svei8mm": "i8mm", "neon_fp16": "fp16",
    "adv_simd": "neon", "advsimd": "neon",
}


def canonical(name: str) -> str:
    key = name.strip().lower()
    return _ALIASES.get(key, key)


def spellings(feature: str) -> list[str]:
    """Every name that means ``feature`` (its canonical name and the kernel's or sysctl's
    other spellings, e.g. pni for sse3)."""
    return sorted({feature, *(k for k, v in _ALIASES.items() if v == feature)})


def normalize_arch(machine: str) -> str:
    m = machine.lower()
    if m in ("x86_64", "amd64", "x64", "i86pc"):
        return "x86_64"
    if m in ("aarch64", "arm64", "armv8l", "armv8"):
        return "aarch64"
    return m


@dataclass(frozen=True, kw_only=True)
class CpuInfo:
    arch: str
    model: str
    vendor: str = ""
    features: frozenset[str] = field(default_factory=frozenset)

    @property
    def ggml_features(self) -> tuple[str, ...]:
        wanted = X86_GGML_FEATURES if self.arch == "x86_64" else ARM_GGML_FEATURES
        return tuple(f for f in wanted if f in self.features)

    @property
    def level(self) -> str | None:
        return isa_level(self.arch, self.features)

    def missing(self, required: Iterable[str]) -> list[str]:
        return [f for f in required if canonical(f) not in self.features]


def isa_level(arch: str, features: frozenset[str]) -> str | None:
    levels = X86_LEVEL_FEATURES if arch == "x86_64" else ARM_LEVEL_FEATURES \
        if arch == "aarch64" else {}
    best: str | None = None
    for name, needs in levels.items():
        if all(f in features for f in needs):
            best = name
        else:
            break
    return best


def level_features(level: str) -> frozenset[str]:
    """All features a level implies (cumulative)."""
    table = X86_LEVEL_FEATURES if level.startswith("x86-64") else ARM_LEVEL_FEATURES
    if level not in table:
        raise KeyError(level)
    out: set[str] = set()
    for name, needs in table.items():
        out.update(needs)
        if name == level:
            break
    return frozenset(out)


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
    if arch == "x86_64" and "sse2" in features:
        features |= {"sse2"}
    model = fields.get("model name") or fields.get("cpu model") or ""
    vendor = fields.get("vendor_id", "")
    if arch == "aarch64":
        implementer = fields.get("cpu implementer", "")
        part = fields.get("cpu part", "")
        vendor = _ARM_IMPLEMENTERS.get(implementer.lower(), implementer)
        if not model:
            model = f"{vendor} {_ARM_PARTS.get((implementer.lower(), part.lower()), part)}".strip()
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
            elif key in _APPLE_ARM_KEYS:
                features.add(_APPLE_ARM_KEYS[key])
        features.add("neon")
    if arch == "x86_64":
        features.add("sse2")
    model = values.get("machdep.cpu.brand_string", "")
    vendor = values.get("machdep.cpu.vendor", "Apple" if arch == "aarch64" else "")
    return CpuInfo(arch=arch, model=model, vendor=vendor,
                   features=frozenset(f for f in features if re.fullmatch(r"[a-z0-9_.]+", f)))


def from_flag_list(flags: Iterable[str], *, arch: str, model: str, vendor: str = "") -> CpuInfo:
    """Build from a flag list (py-cpuinfo on Windows, or a manifest)."""
    features = {canonical(f) for f in flags}
    if normalize_arch(arch) == "x86_64":
        features.add("sse2")
    return CpuInfo(arch=normalize_arch(arch), model=model, vendor=vendor,
                   features=frozenset(features))


_APPLE_ARM_KEYS = {"hw.optional.neon": "neon", "hw.optional.AdvSIMD": "neon",
                   "hw.optional.neon_fp16": "fp16", "hw.optional.neon_hpfp": "fp16"}
_ARM_IMPLEMENTERS = {"0x41": "ARM", "0x61": "Apple", "0x51": "Qualcomm", "0x48": "HiSilicon",
                     "0xc0": "Ampere", "0x46": "Fujitsu", "0x4e": "NVIDIA"}
_ARM_PARTS = {("0x41", "0xd0c"): "Neoverse-N1", ("0x41", "0xd49"): "Neoverse-N2",
              ("0x41", "0xd40"): "Neoverse-V1", ("0x41", "0xd4f"): "Neoverse-V2",
              ("0x41", "0xd08"): "Cortex-A72", ("0x41", "0xd0b"): "Cortex-A76"}
