"""Whether an artifact fits a host: platform, CPU features, the C library and C++ runtime,
a device of its backend with a driver new enough, its GPU code covering the GPU, the engine
an image needs. One answer for `lab run` (what to run on a lab machine) and `install` (what
to rank)."""

from __future__ import annotations

from pathlib import Path

from buildtool import backends, records
from buildtool.abi import SystemAbi
from buildtool.artifacts import KINDS
from buildtool.detect.cpu import CpuInfo, normalize_arch
from buildtool.grammar import ArtifactKind
from buildtool.outputs import sidecar
from buildtool.records import HostFacts, Manifest


def artifact_manifest(path: Path, kind: ArtifactKind) -> Manifest | None:
    """The artifact's manifest (beside it, or the one its kind carries inside); None when it
    has none. A malformed one is a DataError naming it."""
    side = sidecar(path, "manifest")
    if side.exists():
        return records.load(Manifest, side)
    return KINDS[kind].own_manifest(path)


def unfit(kind: ArtifactKind, name: str, manifest: Manifest, host: HostFacts,
          cpu: CpuInfo, system: SystemAbi | None = None) -> str | None:
    """Why an artifact cannot run on this host, or None when it fits (``system``: this
    host's C library and C++ runtime, held against the artifact's ABI floor; an image
    brings its own)."""
    plat = manifest.platform
    os_name, _, arch = plat.partition("-")
    here = host.platform.partition("-")[0]
    if os_name and here and os_name != here:
        return f"built for {plat}; this host is {here}"
    if arch and normalize_arch(arch) != cpu.arch:
        return f"built for {arch}; this host is {cpu.arch}"
    missing = cpu.missing(list(manifest.cpu.required_features))
    if missing:
        return f"needs CPU features this host lacks: {', '.join(missing)}"
    if system is not None and manifest.abi is not None and not KINDS[kind].CONTAINER:
        old = system.missing(manifest.abi.floor)
        if old:
            return f"needs a newer C library or C++ runtime: {'; '.join(old)}"
    family = backends.family(manifest.family)
    return family.host_fit(host) or family.device_fit(manifest.device_code, host.gpus) or \
        KINDS[kind].host_fit(name, host)
