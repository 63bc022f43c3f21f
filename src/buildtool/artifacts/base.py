"""What an artifact kind is: the protocol each kind module implements (as cibuildwheel's
platform modules do), and what they share — the job a build hands a kind, the subject a
smoke test runs, the base manifest of every kind, the host check before anything runs.

A kind module owns everything about its kind: how it is built from a plan (``build``, and
``begin``: what may start in the background once another kind's compile is done), the
key it is cached under (``key``), how a smoke test runs it (``subject``), the manifest it
carries (``own_manifest``), how the release gate checks what is inside (``contents``),
whether a lab host can run it (``host_fit``). The build pipeline, the smoke test, the
release gate and the lab call the kind; no kind imports another.
"""

from __future__ import annotations

import os
import platform as _platform
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote

from buildtool import __version__
from buildtool.abi import SystemAbi
from buildtool.archives import Deflated
from buildtool.config.naming import LIB_PATTERNS, left_out_files
from buildtool.config.plan import BuildPlan
from buildtool.config.resolve import ResolvedTarget
from buildtool.detect.cpu import CpuInfo, normalize_arch
from buildtool.errors import BuildtoolError, ExitCode, HostIncompatibleError
from buildtool.grammar import ArtifactKind
from buildtool.inputs import sha256_file
from buildtool.progress import Reporter
from buildtool.records import (
    AbiRecord,
    AuditRecord,
    BuildHost,
    CpuClaim,
    DeviceCodeRecord,
    HostFacts,
    Manifest,
    PatchRecord,
    SourceRecord,
    Tool,
)
from buildtool.source.vendor import Materialized

if TYPE_CHECKING:
    from buildtool.toolchains.engines import Engine

Note = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class Subject:
    """What a smoke test runs: an unpacked tarball, a wheel installed into a venv, or an
    image's programs run in containers."""

    kind: ArtifactKind
    manifest: Manifest
    bench: Path
    quantize: Path | None
    lib_dir: Path  # where the backend modules lie (to tell why one did not load)
    results: Path | None = None  # llama-results: the numerics check (verify.numerics)
    env: Mapping[str, str] | None = None  # what the programs run with (a wheel's launcher)
    # an image: argv, environment → the engine command that runs argv inside the container
    wrap: Callable[[list[str], Mapping[str, str]], list[str]] | None = None
    close: Callable[[], None] | None = None
    stage_models: bool = False  # models must lie in the work directory (mounted)
    # programs of another architecture run under its emulator: the root their C library and
    # C++ runtime come from (qemu -L; verify.emulate)
    emulator_root: Path | None = None
    # the C library and C++ runtime its programs load (this host's, a --root's or the
    # emulator's sysroot's), checked against the artifact's floor before anything runs
    system: SystemAbi | None = None

    def command(self, argv: list[str], env: Mapping[str, str]) -> list[str]:
        return self.wrap(argv, env) if self.wrap else argv


@dataclass(frozen=True, kw_only=True)
class Made:
    """What a kind's build produced: the file in the dist directory and its manifest."""

    kind: ArtifactKind
    path: Path
    manifest: Manifest


@dataclass(frozen=True, kw_only=True)
class Audits:
    """What the pipeline's audits say of the files an artifact ships: the instructions they
    use (ISA audit) and the C library / C++ runtime versions they need (ABI floor)."""

    isa: AuditRecord
    abi: AbiRecord
    device: DeviceCodeRecord | None = None  # GPU code compiled ahead of time (CUDA)


class Background(Protocol):
    """Work a kind's ``begin`` started once the compile was done; its ``build`` takes it
    from ``BuildJob.begun`` and waits for it, or the pipeline stops it (a build that failed
    or was interrupted first)."""

    def stop(self) -> None:
        ...


@dataclass(kw_only=True)
class BuildJob:
    """Everything a kind's build step gets from the pipeline. ``compile`` configures and
    builds the plan in its build directory (kinds that compile here call it; once it is
    done, every kind still to be built may ``begin``);
    ``audit`` runs the ISA audit and reads the ABI floor of shipped files, and fails the
    build on a violation (``own_runtime``: the artifact brings its C library, as an image
    does: its floor is recorded, not held against the platform's)."""

    plan: BuildPlan
    source: Materialized
    root: Path  # the project (recipes/ lives there)
    reporter: Reporter
    timings: dict[str, float]
    compile: Callable[[], None]
    audit: Callable[..., Audits]
    engine: Engine | None = None  # images
    build_args: Mapping[str, str] = field(default_factory=dict)  # images: --build-arg
    no_cache: bool = False  # images: --fresh
    # each shipped file deflated once for the tarball and the image layer (one per build)
    deflated: Deflated = field(default_factory=Deflated)
    begun: dict[ArtifactKind, Background] = field(default_factory=dict)  # by begin()


class ArtifactModule(Protocol):
    """A kind module (``artifacts/tarball.py``, ``wheel.py``, ``image.py``)."""

    KIND: ArtifactKind
    COMPILES_HERE: bool  # builds in the plan's build directory (an image builds in a stage)
    TAKES_BUILD_ARGS: bool  # --build-arg means something to it
    CONTAINER: bool  # runs in a container engine (a lab host needs one); pushed to a registry
    INDEXED: bool  # published in a package index (`buildtool index`, publish --index)
    INSTALLED_PROGRAMS: str  # where `install` puts llama-server, relative to its directory

    def accepts(self, rt: ResolvedTarget) -> None:
        """Refuse (UsageError) a target this kind cannot be made of."""
        ...

    def owns(self, name: str) -> bool:
        """Whether a file name is an artifact of this kind."""
        ...

    def key(self, job: BuildJob) -> str:
        """What the artifact is cached under in the dist directory."""
        ...

    def begin(self, job: BuildJob) -> None:
        """Start in the background what needs only the compiled build directory (put in
        ``job.begun``), while the kind before it audits and packages; ``build`` finishes it.
        Called once the compile is done, for each kind not built yet."""
        ...

    def build(self, job: BuildJob) -> Made:
        ...

    def subject(self, artifact: Path | str, work: Path, host: CpuInfo,
                engine: Engine | str | None, note: Note) -> Subject:
        """The artifact made runnable in ``work`` for a smoke test (checked against the host
        before anything runs or is installed)."""
        ...

    def install(self, artifact: Path, dest: Path, manifest: Manifest,
                engine: Engine | None) -> Path | str:
        """Install a verified artifact for a user at ``dest`` (absent; it is made where it
        stays): what `buildtool install` does — a tarball unpacked, a wheel in a virtual
        environment, an image loaded into the engine with a launcher. Returns what the smoke
        test then runs (the directory, or the image's reference); ``dest/INSTALLED_PROGRAMS``
        holds ``llama-server``."""
        ...

    def own_manifest(self, path: Path) -> Manifest | None:
        """The manifest the artifact carries, where it is read without unpacking (a
        wheel's); None for kinds whose manifest lives beside them."""
        ...

    def adopt(self, path: Path, inner: Manifest, digest: str | None) -> Manifest | None:
        """A manifest for an artifact built elsewhere without one beside it (an image
        archive from `docker buildx bake`); None where a kind has no such case."""
        ...

    def contents(self, path: Path, manifest: Manifest | None) -> list[str]:
        """What inside the artifact differs from its record (the release gate)."""
        ...

    def host_fit(self, name: str, host: HostFacts) -> str | None:
        """Why a lab host cannot run this kind of artifact (None: it can)."""
        ...


def foreign(manifest: Manifest, host: CpuInfo) -> bool:
    """Whether the artifact is built for another architecture than ``host``'s (it runs under
    an emulator here, or not at all)."""
    return normalize_arch(manifest.platform.split("-", 1)[1]) != host.arch


def check_host(manifest: Manifest, host: CpuInfo) -> None:
    """Refuse, before anything runs, an artifact built for another architecture or needing
    CPU features this host lacks (exit code 9 instead of SIGILL)."""
    platform = manifest.platform
    arch = normalize_arch(platform.split("-", 1)[1])
    if arch != host.arch:
        raise HostIncompatibleError(
            f"artifact {manifest.artifact} is built for {platform}; this host is "
            f"{host.arch}")
    missing = host.missing(list(manifest.cpu.required_features))
    if missing:
        raise HostIncompatibleError(
            f"artifact {manifest.artifact} needs CPU features this host lacks: "
            f"{', '.join(missing)} (host CPU: {host.model or 'unknown'})",
            hint="use an artifact built with `--cpu all-variants` or a lower x86-64 level, "
                 "or run it on a CPU that has these features")


def check_system(manifest: Manifest, system: SystemAbi | None) -> None:
    """Refuse, before anything runs, an artifact whose binaries need a newer glibc or
    libstdc++ than ``system`` has (exit code 9 instead of the dynamic loader's "version
    `GLIBC_2.34' not found")."""
    if system is None or manifest.abi is None or not manifest.platform.startswith("linux-"):
        return
    missing = system.missing(manifest.abi.floor)
    if missing:
        where = "this host" if system.root == Path("/") else str(system.root)
        raise HostIncompatibleError(
            f"artifact {manifest.artifact} needs a newer C library or C++ runtime than "
            f"{where} has: {'; '.join(missing)} ({where}: {system.describe()})",
            hint="use an artifact built for a lower ABI floor (README: \"What an artifact "
                 "claims\"), or run it on a newer distribution")


def builder_uri(env: Mapping[str, str] | None = None) -> str:
    """A URI for the build platform: GitHub's runner URIs in GitHub Actions (as GitHub's own
    build provenance names them), else this host."""
    env = os.environ if env is None else env
    if env.get("GITHUB_ACTIONS") == "true":
        kind = "self-hosted" if env.get("RUNNER_ENVIRONMENT") == "self-hosted" \
            else "github-hosted"
        return f"https://github.com/actions/runner/{kind}"
    return "urn:buildtool:host:" + quote(_platform.node() or "unknown", safe="")


def base_manifest(plan: BuildPlan, source: Materialized,
                  files: dict[str, str] | None = None,
                  audit: Audits | None = None) -> Manifest:
    """The manifest every kind starts from: what the target is and how it was made."""
    rt = plan.target
    lock = rt.lock
    return Manifest(
        artifact=plan.artifact_name, kind="tarball", target=rt.name,
        description=rt.description, recipe=rt.recipe_name, family=rt.family,
        backend=rt.backend, gpu=rt.recipe.gpu, platform=rt.platform,
        llama_cpp=SourceRecord(repository=lock.repository, commit=lock.commit,
                               version=lock.version, source=source.source,
                               source_sha256=source.archive_sha256,
                               tree_sha256=source.tree_sha256,
                               patches=tuple(PatchRecord(file=p.file, sha256=p.sha256,
                                                         reason=p.reason)
                                             for p in lock.patches)),
        cpu=CpuClaim(policy=rt.cpu_policy, level=rt.cpu_level,
                     required_features=rt.cpu_features,
                     avoided_features=tuple(sorted({f for a in rt.avoided
                                                    for f in a.features})),
                     dropped_variants=rt.dropped_variants),
        toolkit=rt.toolkit, gpu_archs=rt.gpu_archs, cmake_defines=dict(rt.defines),
        build_targets=rt.build_targets, smoke_env=dict(rt.recipe.smoke_env),
        smoke_quantized=rt.recipe.smoke_quantized.types if rt.recipe.smoke_quantized
        else (),
        toolchain={name: Tool(path=t["path"], version=t["version"])
                   for name, t in plan.toolchain.items()},
        files=files, isa_audit=audit.isa if audit else None,
        abi=audit.abi if audit else None, device_code=audit.device if audit else None,
        buildtool_version=__version__, build_key=plan.key,
        built_at=datetime.now(UTC).isoformat(timespec="seconds"),
        build_host=BuildHost(platform=rt.host_platform, machine=_platform.node(),
                             builder=builder_uri(),
                             environment=plan.build_env.describe() if plan.build_env
                             else None))


# ------------------------------------------------------------------- the compiled output


class PackageError(BuildtoolError):
    exit_code = ExitCode.BUILD


def shipped_files(plan: BuildPlan) -> list[Path]:
    """The files a target ships, from the build's bin/ directory: its programs, every shared
    library beside them (less the all-variants libraries left out for a known defect) and a
    bundled vendor runtime."""
    bin_dir = plan.build_dir / "bin"
    files: list[Path] = []
    for target in plan.target.build_targets:
        candidates = [bin_dir / target, bin_dir / f"{target}.exe"]
        exe = next((c for c in candidates if c.exists()), None)
        if exe is None:
            raise PackageError(f"the build produced no '{target}' in {bin_dir}",
                               hint="is it a CMake target of this llama.cpp version?")
        files.append(exe)
    libs = {p for pattern in LIB_PATTERNS for p in bin_dir.glob(pattern)}
    # all-variants libraries left out because of a known defect (recipes/common.yaml)
    dropped = set(left_out_files(plan.target))
    files.extend(sorted(p for p in libs if p.name not in dropped))
    # a vendor runtime the backend module loads (the family's Bundle: e.g. OpenVINO's)
    for bundle in plan.target.runtime:
        files.extend(f for f in bundle.files if f.name not in {p.name for p in files})
    return files


LICENSES_DIR = "licenses"  # a bundled runtime's licenses: licenses/<runtime>/...


def stage_payload(plan: BuildPlan, dest: Path) -> dict[str, str]:
    """Copy the compiled output every kind built here ships into ``dest`` (an existing,
    empty directory): the shipped files side by side (symbolic links kept), llama.cpp's
    LICENSE and ``licenses/<runtime>/`` of a bundled runtime. Returns each relative path's
    sha256, or ``symlink:<target>`` — the manifest's ``files``, by which the tarball and the
    image are checked to hold the same bytes."""
    files: dict[str, str] = {}
    for src in shipped_files(plan):
        dst = dest / src.name
        if src.is_symlink():
            link = src.readlink()
            dst.symlink_to(link)
            files[src.name] = f"symlink:{link}"
        else:
            shutil.copy2(src, dst)
            files[src.name] = sha256_file(dst)
    license_file = plan.source_dir / "LICENSE"
    if license_file.is_file():
        shutil.copy2(license_file, dest / "LICENSE")
        files["LICENSE"] = sha256_file(dest / "LICENSE")
    for bundle in plan.target.runtime:
        for rel, src in bundle.licenses:
            where = f"{LICENSES_DIR}/{bundle.name}/{rel}"
            (dest / where).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest / where)
            files[where] = sha256_file(dest / where)
    return files
