"""The CPU backend. Its ISA handling (``cpu_settings``) is shared by every family, since
every llama.cpp build carries the ggml CPU backend."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from buildtool.backends.base import Backend, Toolchain
from buildtool.cpudata import CPU
from buildtool.detect.cpu import CpuInfo
from buildtool.toolchains import cross

# llama-bench's names of the backends that run on the CPU
CPU_SIDE_BACKENDS = frozenset({"CPU", "BLAS"})


@dataclass(frozen=True)
class CpuSettings:
    defines: tuple[tuple[str, str], ...]
    required: tuple[str, ...]
    level: str | None


def cpu_settings(policy: str, arch: str, host: CpuInfo | None,
                 avoid: frozenset[str] = frozenset(), floor: str | None = None) -> CpuSettings:
    """Explicit GGML CPU options for a policy (the selection is the data file's: see
    :meth:`buildtool.cpudata.CpuData.select`); ``host`` is used by the 'host' policy.
    Features in ``avoid`` (known defects of the pinned llama.cpp) are never enabled.
    ``floor`` is the lowest level a bundled runtime runs on: the claim is raised to it."""
    settings = _settings(policy, arch, host, avoid)
    if floor is None:
        return settings
    levels = CPU.levels_of(arch)
    if floor not in levels:
        raise ValueError(f"CPU floor '{floor}' is no level of {arch}")
    required = tuple(dict.fromkeys([*sorted(CPU.level_features(floor)), *settings.required]))
    level = settings.level if settings.level in levels and \
        levels.index(settings.level) >= levels.index(floor) else floor
    return CpuSettings(settings.defines, required, level)


def _settings(policy: str, arch: str, host: CpuInfo | None,
              avoid: frozenset[str]) -> CpuSettings:
    levels = CPU.levels_of(arch)
    if not levels:
        raise ValueError(f"no CPU settings for architecture '{arch}'")
    if policy == "all-variants":
        return CpuSettings((("GGML_BACKEND_DL", "ON"), ("GGML_CPU_ALL_VARIANTS", "ON")),
                           tuple(sorted(CPU.level_features(levels[0]))), levels[0])
    if policy == "host":
        if host is None or host.arch != arch:
            raise ValueError(f"the 'host' CPU policy needs an {arch} host")
        features, level = host.features, host.level
    elif policy in levels:
        features, level = CPU.level_features(policy), policy
    else:
        raise ValueError(f"CPU policy '{policy}' does not apply to {arch}")
    chosen = CPU.select(arch, features, level, avoid)
    return CpuSettings(chosen.defines, chosen.required, level)


class CpuBackend(Backend):
    family = "cpu"
    wheel_oses = ("linux", "macos", "windows")
    cross_compiles = True

    def toolchains(self) -> tuple[Toolchain, ...]:
        # every build carries the CPU backend: the sysroots of cross builds are listed here
        return tuple(Toolchain(name=cp.sysroot_name, install=partial(cross.install_sysroot, cp),
                               installed=partial(cross.installed_sysroot, cp))
                     for cp in cross.PLATFORMS.values())

    def ran(self, reported: set[str], backend: str) -> tuple[bool, str]:
        # only CPU-side backends: a cpu build that silently picked up a GPU backend is no
        # cpu artifact
        return bool(reported) and reported <= CPU_SIDE_BACKENDS, "CPU only"


BACKEND = CpuBackend()
