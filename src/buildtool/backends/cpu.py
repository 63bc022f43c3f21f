"""The CPU backend. Its ISA handling (``cpu_settings``) is shared by every family, since
every llama.cpp build carries the ggml CPU backend."""

from __future__ import annotations

from dataclasses import dataclass

from buildtool.backends.base import Backend
from buildtool.detect.cpu import ARM_LEVELS, X86_LEVELS, CpuInfo, level_features

# llama-bench's names of the backends that run on the CPU
CPU_SIDE_BACKENDS = frozenset({"CPU", "BLAS"})

# GGML option → the CPU features the compiler flags it adds require (ggml-cpu/CMakeLists.txt).
X86_GGML_OPTIONS: dict[str, tuple[str, ...]] = {
    "GGML_SSE42": ("sse4_2",),
    "GGML_AVX": ("avx",),
    "GGML_AVX2": ("avx2",),
    "GGML_BMI2": ("bmi2",),
    "GGML_FMA": ("fma",),
    "GGML_F16C": ("f16c",),
    "GGML_AVX_VNNI": ("avx_vnni",),
    "GGML_AVX512": ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"),
    "GGML_AVX512_VBMI": ("avx512_vbmi",),
    "GGML_AVX512_VNNI": ("avx512_vnni",),
    "GGML_AVX512_BF16": ("avx512_bf16",),
    "GGML_AMX_TILE": ("amx_tile",),
    "GGML_AMX_INT8": ("amx_int8",),
    "GGML_AMX_BF16": ("amx_bf16",),
}
# -march extensions for GGML_CPU_ARM_ARCH, in the order they are appended.
ARM_EXTENSIONS: tuple[tuple[str, str], ...] = (("dotprod", "dotprod"), ("fp16", "fp16"),
                                               ("i8mm", "i8mm"), ("sve", "sve"))


@dataclass(frozen=True)
class CpuSettings:
    defines: tuple[tuple[str, str], ...]
    required: tuple[str, ...]
    level: str | None


def cpu_settings(policy: str, arch: str, host: CpuInfo | None,
                 avoid: frozenset[str] = frozenset()) -> CpuSettings:
    """Explicit GGML CPU options for a policy; ``host`` is used by the 'host' policy.
    Features in ``avoid`` (known defects of the pinned llama.cpp) are never enabled."""
    if policy == "all-variants":
        baseline = ("sse2",) if arch == "x86_64" else ("neon",) if arch == "aarch64" else ()
        return CpuSettings((("GGML_BACKEND_DL", "ON"), ("GGML_CPU_ALL_VARIANTS", "ON")),
                           baseline, "x86-64" if arch == "x86_64" else "armv8.0")
    if arch == "x86_64":
        if policy == "host":
            if host is None or host.arch != "x86_64":
                raise ValueError("the 'host' CPU policy needs an x86-64 host")
            features = host.features
            level = host.level
        elif policy in X86_LEVELS:
            features = level_features(policy)
            level = policy
        else:
            raise ValueError(f"CPU policy '{policy}' does not apply to x86-64")
        defines: list[tuple[str, str]] = []
        required: list[str] = []
        for option, needs in X86_GGML_OPTIONS.items():
            on = all(f in features and f not in avoid for f in needs)
            defines.append((option, "ON" if on else "OFF"))
            if on:
                required.extend(f for f in needs if f not in required)
        return CpuSettings(tuple(defines), tuple(required), level)
    if arch == "aarch64":
        if policy == "host":
            if host is None or host.arch != "aarch64":
                raise ValueError("the 'host' CPU policy needs an arm64 host")
            features = host.features
            level = host.level
        elif policy in ARM_LEVELS:
            features = level_features(policy)
            level = policy
        else:
            raise ValueError(f"CPU policy '{policy}' does not apply to arm64")
        base = {"armv8.0": "armv8-a", "armv8.2": "armv8.2-a", "armv8.6": "armv8.6-a"}.get(
            level or "armv8.0", "armv8-a")
        exts = [ext for feat, ext in ARM_EXTENSIONS if feat in features]
        march = "+".join([base, *exts])
        arm_required = ("neon", *(feat for feat, _ in ARM_EXTENSIONS if feat in features))
        return CpuSettings((("GGML_CPU_ARM_ARCH", march),), arm_required, level)
    raise ValueError(f"no CPU settings for architecture '{arch}'")


class CpuBackend(Backend):
    family = "cpu"
    wheel_oses = ("linux", "macos", "windows")

    def ran(self, reported: set[str], backend: str) -> tuple[bool, str]:
        # only CPU-side backends: a cpu build that silently picked up a GPU backend is no
        # cpu artifact
        return bool(reported) and reported <= CPU_SIDE_BACKENDS, "CPU only"
