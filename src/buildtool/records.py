"""The records buildtool writes and reads back: typed, validated at the boundary.

* :class:`Manifest` — what an artifact is (``manifest.json`` inside it, ``X.manifest.json``
  beside it): the contract between build, smoke, release, lab, the index and the wheel;
* :class:`SmokeRecord` — a smoke verdict (``X.smoke.json``), with :class:`BenchTest` rows;
* :class:`LabResults` — one lab machine's run (``lab-results/<host>.json``);
* :class:`ReleaseRecord` — a release directory's ``release.json``.

Each is a frozen dataclass: :func:`to_json` writes it (fields in declaration order) and a
``load_*`` function reads one, validating every field with :func:`buildtool.schema.convert`:
a record of the wrong shape is a :class:`DataError` (exit code 13) naming the file and the
key, never a ``KeyError`` three modules later. Fields added by a newer buildtool are ignored
when reading. ``schema/*.schema.json`` are generated from these classes and drift-tested.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeVar

from buildtool import inputs
from buildtool.errors import BuildtoolError, DataError
from buildtool.grammar import (
    ArtifactKind,
    EnvName,
    FeatureName,
    FileName,
    PathGlob,
    Platform,
    RelativePath,
    TargetName,
)
from buildtool.schema import CONTROL, Match, Range, convert, to_data

Sha256 = Annotated[str, Match(r"[0-9a-f]{64}", "a sha256 (64 lower-case hex digits)")]
FileDigest = Annotated[str, Match(r"[0-9a-f]{64}|symlink:[A-Za-z0-9_.+-]+",
                                  "a sha256 or symlink:<file name>")]
# a section only some records have: left out of the JSON while it is None
OPTIONAL = {"omit_none": True}
ModuleName = Annotated[str, Match(r"[A-Za-z_][A-Za-z0-9_]{0,99}", "a Python module name")]
Seconds = Annotated[float, Range(minimum=0)]
NonNegative = Annotated[int, Range(minimum=0)]

R = TypeVar("R")


class Verdict(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"


class LabStatus(enum.StrEnum):
    """``pass``: smoke passed and the benchmark ran; ``fail``: the smoke verdict failed;
    ``error``: it could not run (install, load or llama-bench broke); ``skipped``: it does
    not fit this host."""

    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"
    SKIPPED = "skipped"


# ------------------------------------------------------------------------------ manifest


@dataclass(frozen=True, kw_only=True)
class PatchRecord:
    """A patch of the lock's queue applied to the tree (vendor/patches)."""

    file: RelativePath
    sha256: Sha256
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class SourceRecord:
    """The llama.cpp tree an artifact was built from."""

    repository: str
    commit: Annotated[str, Match(r"[0-9a-f]{7,64}", "a git commit (hex)")]
    version: str
    source: str = ""
    source_sha256: Sha256 | None = None
    tree_sha256: Sha256 | None = field(default=None, metadata={
        "doc": "the tree that was built: the pinned commit with its patches applied"})
    patches: tuple[PatchRecord, ...] = field(default=(), metadata={
        "doc": "the lock's patches, in the order they were applied"})


@dataclass(frozen=True, kw_only=True)
class CpuClaim:
    """The CPU instructions an artifact needs."""

    policy: str
    level: str | None = None
    required_features: tuple[FeatureName, ...] = ()
    avoided_features: tuple[FeatureName, ...] = ()
    dropped_variants: tuple[FeatureName, ...] = ()
    linux_flags: dict[FeatureName, tuple[str, ...]] | None = field(default=None, metadata={
        **OPTIONAL, "doc": "wheels: the /proc/cpuinfo spellings of each required feature"})


@dataclass(frozen=True, kw_only=True)
class Tool:
    path: str | None = None
    version: str | None = None


@dataclass(frozen=True, kw_only=True)
class FileAuditRecord:
    allowed: tuple[str, ...] = ()
    used: tuple[str, ...] = ()
    violations: tuple[str, ...] = ()
    waived: dict[str, str] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class AuditRecord:
    """The ISA audit of the shipped files."""

    verdict: Literal["pass", "fail", "skipped"]
    reason: str | None = None
    files: dict[str, FileAuditRecord] = field(default_factory=dict)


AbiVersion = Annotated[str, Match(r"[0-9]{1,4}(\.[0-9]{1,4}){0,3}", "a version such as 2.34")]
# CUDA's architecture numbers (86, 120a) and NVIDIA compute capabilities (8.6)
GpuArchNumber = Annotated[str, Match(r"[0-9]{2,3}[a-z]?", "a GPU architecture such as 86 or 120a")]
ComputeCapability = Annotated[str, Match(r"[0-9]{1,2}\.[0-9]{1,2}",
                                         "a compute capability such as 8.6")]


@dataclass(frozen=True, kw_only=True)
class AbiVersions:
    """The highest symbol version of each runtime family (None: not needed / not stated)."""

    glibc: AbiVersion | None = field(default=None, metadata={"doc": "GLIBC_x.y"})
    libstdcxx: AbiVersion | None = field(default=None, metadata={"doc": "GLIBCXX_3.4.n"})
    cxxabi: AbiVersion | None = field(default=None, metadata={"doc": "CXXABI_1.3.n"})
    libgcc: AbiVersion | None = field(default=None, metadata={"doc": "GCC_x.y (libgcc_s)"})


@dataclass(frozen=True, kw_only=True)
class AbiRecord:
    """The ABI floor of the shipped ELF files (README "What an artifact claims")."""

    verdict: Literal["pass", "fail", "recorded", "skipped"]
    reason: str | None = field(default=None, metadata=OPTIONAL)
    floor: AbiVersions = field(default_factory=AbiVersions, metadata={
        "doc": "what the artifact needs of the system: the highest version per family"})
    declared: AbiVersions | None = field(default=None, metadata={
        "doc": "the floor build_matrix.yaml declares for the platform (None: none declared)"})
    system_libraries: tuple[str, ...] = field(default=(), metadata={
        "doc": "libraries the binaries load that the artifact does not ship"})
    files: dict[str, AbiVersions] = field(default_factory=dict)
    violations: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class DeviceCode:
    """GPU architectures with native code and with PTX (CUDA: ``86``, ``120a``)."""

    sass: tuple[GpuArchNumber, ...] = field(default=(), metadata={
        "doc": "architectures with native code (a cubin: runs on that compute capability and, "
               "but for 'a' architectures, on later minors of its major)"})
    ptx: tuple[GpuArchNumber, ...] = field(default=(), metadata={
        "doc": "architectures with PTX (compiled by the driver for any later GPU)"})

    @staticmethod
    def ordered(archs: Iterable[str]) -> tuple[str, ...]:
        """Architectures, once each, by number (``75``, ``86``, ``120a``)."""
        def key(arch: str) -> tuple[int, str]:
            digits = "".join(c for c in arch if c.isdigit())
            return int(digits or 0), arch
        return tuple(sorted(set(archs), key=key))

    @classmethod
    def union(cls, codes: Iterable[DeviceCode]) -> DeviceCode:
        listed = list(codes)
        return cls(sass=cls.ordered(a for c in listed for a in c.sass),
                   ptx=cls.ordered(a for c in listed for a in c.ptx))


@dataclass(frozen=True, kw_only=True)
class DeviceCodeRecord:
    """The device code a GPU artifact carries (README "The smoke gate")."""

    verdict: Literal["pass", "fail", "skipped"]
    reason: str | None = field(default=None, metadata=OPTIONAL)
    tool: str = field(default="", metadata={
        "doc": "what listed it (cuobjdump, its version and path)"})
    toolkit: str | None = None
    min_driver: str | None = field(default=None, metadata={
        **OPTIONAL, "doc": "the oldest driver its native code runs on (minor-version "
                           "compatibility)"})
    min_driver_ptx: str | None = field(default=None, metadata={
        **OPTIONAL, "doc": "the oldest driver that can compile its PTX (the toolkit's)"})
    expected: DeviceCode = field(default_factory=DeviceCode, metadata={
        "doc": "what the target's gpu-archs asked for"})
    files: dict[FileName, DeviceCode] = field(default_factory=dict, metadata={
        "doc": "per shipped file that carries device code"})
    summary: str = field(default="", metadata={
        "doc": "what it carries and the GPUs that covers, for people (release notes)"})
    violations: tuple[str, ...] = ()

    @property
    def code(self) -> DeviceCode:
        """Everything the artifact carries, over its files."""
        return DeviceCode.union(self.files.values())


@dataclass(frozen=True, kw_only=True)
class BuildHost:
    platform: str
    machine: str = ""
    builder: str | None = field(default=None, metadata={
        **OPTIONAL, "doc": "a URI naming the build platform (SLSA builder.id)"})
    environment: str | None = field(default=None, metadata={
        **OPTIONAL, "doc": "the build environment the compile ran in (--build-env): its "
                           "distribution and root file system or image"})


@dataclass(frozen=True, kw_only=True)
class WheelRecord:
    distribution: str = ""
    version: str = ""
    module: ModuleName
    requires: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    library_dirs: tuple[PathGlob, ...] = field(default=(), metadata={
        "doc": "where the libraries of its dependencies lie below site-packages (globs): the "
               "launcher puts them on the loader's path"})


@dataclass(frozen=True, kw_only=True)
class ImageRecord:
    """What an image is: tags and build inputs, and once saved what its archive says."""

    tags: tuple[str, ...] = ()
    dockerfile: str | None = None
    dockerfile_sha256: Sha256 | None = None
    build_args: dict[str, str] = field(default_factory=dict)
    build_image: str | None = None
    runtime_image: str | None = None
    platform: str | None = None
    programs_dir: str | None = None
    engine: str | None = None
    engine_version: str | None = None
    # who made the last stage (COPY of the programs, LABEL): "buildtool" (applied to the
    # runtime stage the engine built, ``runtime_base``: its image ID) or the engine's name
    last_stage: str | None = None
    runtime_base: str | None = None
    ref: str | None = None
    manifest_digest: str | None = None
    id: str | None = None
    architecture: str | None = None
    os: str | None = None
    layers: NonNegative | None = None
    size: NonNegative | None = None
    labels: dict[str, str] = field(default_factory=dict)
    entrypoint: tuple[str, ...] | None = None
    user: str | None = None
    exposed_ports: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class RepairRecord:
    """What auditwheel said of a wheel."""

    tool: str | None = None
    tag: str | None = None
    excluded: tuple[str, ...] = ()
    show: str = ""
    note: str = ""
    cached: bool = field(default=False, metadata={
        "doc": "auditwheel's result for the same inputs, taken from the repair cache "
               "(README \"Wheels\")"})


@dataclass(frozen=True, kw_only=True)
class CheckRecord:
    name: str
    ok: bool
    detail: str = ""
    waived: bool = False  # failed, but explicitly allowed (--allow-cpu-fallback)


@dataclass(frozen=True, kw_only=True)
class BenchTest:
    """One llama-bench test as buildtool keeps it (llama-bench's JSON has more fields and
    they differ between versions: what is missing is None)."""

    test: str = ""
    model_type: str | None = None
    backends: str | None = None
    gpu_info: str | None = None
    cpu_info: str | None = None
    n_gpu_layers: int | None = None
    n_prompt: NonNegative | None = None
    n_gen: NonNegative | None = None
    n_threads: int | None = None
    avg_ts: float | None = None
    stddev_ts: float | None = None
    samples_ts: tuple[float, ...] | None = None
    build_commit: str | None = None
    build_number: int | None = None


class EmulatedVerdict(enum.StrEnum):
    """``pass``: it ran and the checks held; ``fail``: it ran and failed (SIGILL, a wrong
    variant); ``refused``: the model lacks features the artifact requires, so it was not run
    (``--run-anyway`` runs it); ``not-emulated``: the emulator cannot execute the model."""

    PASS = "pass"
    FAIL = "fail"
    REFUSED = "refused"
    NOT_EMULATED = "not-emulated"


class NumericsVerdict(enum.StrEnum):
    """``pass``: every run agreed with its reference within the tolerance of its type;
    ``fail``: one did not; ``missing``: nothing was compared (the artifact ships no
    llama-results, or a model has no reference here)."""

    PASS = "pass"
    FAIL = "fail"
    MISSING = "missing"


Deviation = Annotated[float, Range(minimum=0)]


@dataclass(frozen=True, kw_only=True)
class NumericsRun:
    """One model type's logits for the check prompt, held against its reference
    (:mod:`buildtool.verify.numerics`)."""

    model_type: str = field(metadata={"doc": "F32, Q4_0, Q4_K_M, or a --model's own type"})
    nmse: Deviation = field(metadata={
        "doc": "normalized mean squared error of the logits: sum((run-ref)^2) / sum(ref^2)"})
    kl: Deviation = field(metadata={
        "doc": "mean KL divergence KL(ref || run) of the next-token distributions, in nats"})
    kl_max: Deviation = 0.0
    top1: Annotated[float, Range(minimum=0, maximum=1)] = field(default=1.0, metadata={
        "doc": "share of positions whose most likely next token is the reference's"})
    max_nmse: Deviation = field(metadata={"doc": "the tolerance of this type"})
    max_kl: Deviation
    ok: bool
    nmse_f32: Deviation | None = field(default=None, metadata={
        **OPTIONAL, "doc": "against the F32 model's reference: what quantization costs "
                           "(informative; not judged)"})


@dataclass(frozen=True, kw_only=True)
class NumericsRecord:
    """Whether an artifact computes the right thing: its logits for a fixed prompt, per
    model type, against a reference computed without it."""

    verdict: NumericsVerdict
    reference: str = field(default="", metadata={"doc": "what the runs were held against"})
    tokens: NonNegative = 0
    runs: tuple[NumericsRun, ...] = ()
    reason: str = ""
    note: str = field(default="", metadata={
        "doc": "why other quantized types than Q4_0 and Q4_K_M were checked (the recipe)"})


@dataclass(frozen=True, kw_only=True)
class EmulatedRun:
    """The smoke on one emulated CPU model (QEMU user mode)."""

    model: str
    emulator: str = ""
    level: str | None = None
    verdict: EmulatedVerdict
    reason: str = ""
    variant: str | None = field(default=None, metadata={
        "doc": "the libggml-cpu variant the loader chose (all-variants builds)"})
    expected_variant: str | None = None
    tests: tuple[BenchTest, ...] = ()
    duration_s: Seconds = 0.0
    numerics: tuple[NumericsRun, ...] = field(default=(), metadata={
        "doc": "the logits on this model against the smoke's references"})

    @property
    def passed(self) -> bool:
        return self.verdict is EmulatedVerdict.PASS


@dataclass(frozen=True, kw_only=True)
class SystemRecord:
    """The C library and C++ runtime the smoke ran on (a root file system, or this host)."""

    root: str = "/"
    glibc: str | None = None
    libstdcxx: str | None = None


@dataclass(frozen=True, kw_only=True)
class SmokeRecord:
    """A smoke verdict: llama-bench's figures and every check, for one artifact file."""

    artifact: str
    target: str
    kind: ArtifactKind = "tarball"
    verdict: Verdict
    checks: tuple[CheckRecord, ...] = ()
    waived: tuple[str, ...] = ()
    tests: tuple[BenchTest, ...] = ()
    command: tuple[str, ...] = ()
    duration_s: Seconds = 0.0
    model: str = ""
    artifact_sha256: Sha256 | None = field(default=None, metadata={
        "doc": "the file that ran (a release proves it is the same)"})
    ran_at: str = ""
    system: SystemRecord | None = field(default=None, metadata={
        **OPTIONAL, "doc": "the glibc and libstdc++ it ran on (images: their own)"})
    emulated: tuple[EmulatedRun, ...] = field(default=(), metadata={
        "doc": "the runs on emulated CPU models (smoke --cpu-model, the matrix's cpu-models)"})
    numerics: NumericsRecord | None = field(default=None, metadata={
        **OPTIONAL, "doc": "the outputs against a reference (None: a smoke older than the "
                           "check)"})

    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.PASS

    def proven_models(self) -> tuple[str, ...]:
        return tuple(r.model for r in self.emulated if r.passed)

    def failures(self) -> list[CheckRecord]:
        return [c for c in self.checks if not c.ok]


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """What an artifact is and how it was made (README "Manifest")."""

    schema: Literal[1] = 1
    artifact: FileName
    kind: ArtifactKind
    target: TargetName
    description: str = ""
    recipe: str
    family: str
    backend: str
    gpu: bool = False
    platform: Platform
    llama_cpp: SourceRecord
    cpu: CpuClaim
    toolkit: str | None = None
    gpu_archs: tuple[str, ...] = ()
    cmake_defines: dict[str, str] = field(default_factory=dict)
    build_targets: tuple[FileName, ...] = ()
    smoke_env: dict[EnvName, str] = field(default_factory=dict)
    smoke_quantized: tuple[str, ...] = field(default=(), metadata={
        "doc": "the quantized types its smoke checks instead of Q4_0 and Q4_K_M (the "
               "recipe's smoke-quantized)"})
    toolchain: dict[str, Tool] | None = field(default=None, metadata={
        **OPTIONAL, "doc": "the compilers and tools that built it (not for images)"})
    files: dict[RelativePath, FileDigest] | None = field(default=None, metadata={
        **OPTIONAL, "doc": "tarballs: every shipped file's sha256 (or symlink:<target>), by "
                           "its path in the tarball's directory"})
    isa_audit: AuditRecord | None = None
    abi: AbiRecord | None = field(default=None, metadata={
        **OPTIONAL, "doc": "the glibc/libstdc++ floor of the shipped ELF files"})
    device_code: DeviceCodeRecord | None = field(default=None, metadata={
        **OPTIONAL, "doc": "GPU artifacts (CUDA): the SASS and PTX per shipped library"})
    buildtool_version: str
    build_key: str
    built_at: str
    build_host: BuildHost
    wheel: WheelRecord | None = field(default=None, metadata={**OPTIONAL, "doc": "wheels"})
    image: ImageRecord | None = field(default=None, metadata={**OPTIONAL, "doc": "images"})
    repair: RepairRecord | None = field(default=None, metadata={
        **OPTIONAL, "doc": "wheels: what auditwheel said"})
    artifact_file: FileName | None = field(default=None, metadata={
        **OPTIONAL, "doc": "beside the artifact: its file name"})
    artifact_sha256: Sha256 | None = field(default=None, metadata={
        **OPTIONAL, "doc": "beside the artifact: its sha256"})
    smoke: SmokeRecord | None = field(default=None, metadata={
        **OPTIONAL, "doc": "beside the artifact: the last smoke result"})
    adopted: str | None = field(default=None, metadata={
        **OPTIONAL,
        "doc": "an image archive built elsewhere whose manifest `buildtool smoke` wrote"})


# ------------------------------------------------------------------------------ lab


@dataclass(frozen=True, kw_only=True)
class HostCpu:
    model: str | None = None
    vendor: str | None = None
    arch: str
    level: str | None = None
    cores: NonNegative | None = None
    ggml_features: tuple[str, ...] = ()
    features: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class GpuRecord:
    vendor: str
    name: str
    driver: str | None = None
    memory: str | None = None
    source: str = ""
    compute_capability: ComputeCapability | None = field(default=None, metadata={
        **OPTIONAL, "doc": "NVIDIA: the GPU's compute capability (nvidia-smi), e.g. 8.6"})


@dataclass(frozen=True, kw_only=True)
class HostFacts:
    """What a lab machine is."""

    id: str
    hostname: str = ""
    os: str = ""
    kernel: str = ""
    platform: str = ""
    cpu: HostCpu
    memory_bytes: NonNegative | None = None
    gpus: tuple[GpuRecord, ...] = ()
    drivers: dict[str, str] = field(default_factory=dict)
    vulkan_icds: tuple[str, ...] = ()
    devices: dict[str, bool] = field(default_factory=dict)
    engines: tuple[str, ...] = ()
    python: str = ""
    system: SystemRecord | None = field(default=None, metadata={
        **OPTIONAL, "doc": "its glibc and libstdc++ (Linux)"})


@dataclass(frozen=True, kw_only=True)
class LabSettings:
    n_prompt: tuple[Annotated[int, Range(minimum=1)], ...]
    n_gen: tuple[Annotated[int, Range(minimum=1)], ...]
    repetitions: Annotated[int, Range(minimum=1)]
    model: str
    threads: Annotated[int, Range(minimum=1)] | None = None
    cpu_models: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class LabEntry:
    """One artifact on one lab machine."""

    artifact: str
    kind: ArtifactKind | None = None
    target: str | None = None
    backend: str | None = None
    family: str | None = None
    sha256: Sha256 | None = None
    status: LabStatus
    reason: str | None = None
    detail: str | None = field(default=None, metadata=OPTIONAL)
    smoke: SmokeRecord | None = None
    bench: tuple[BenchTest, ...] = ()
    duration_s: Seconds = 0.0


LAB_SCHEMA: Final = "buildtool-lab/1"


@dataclass(frozen=True, kw_only=True)
class LabResults:
    """``buildtool lab run``'s result file."""

    schema: Literal["buildtool-lab/1"] = LAB_SCHEMA
    buildtool_version: str
    host: HostFacts
    settings: LabSettings
    started_at: str
    finished_at: str | None = None
    results: tuple[LabEntry, ...] = ()


# ------------------------------------------------------------------------------ release


@dataclass(frozen=True, kw_only=True)
class Speed:
    test: str
    avg_ts: float | None = None


@dataclass(frozen=True, kw_only=True)
class ReleaseSmoke:
    verdict: Verdict | None = None
    ran_at: str | None = None
    pp: Speed | None = None
    tg: Speed | None = None
    device: str = "CPU"
    cpu_models: tuple[str, ...] = field(default=(), metadata={
        "doc": "the emulated CPU models it passed on"})
    ran_on_glibc: str | None = field(default=None, metadata={
        "doc": "the glibc of the system the smoke ran on"})


@dataclass(frozen=True, kw_only=True)
class ReleaseArtifact:
    file: FileName
    kind: ArtifactKind
    target: str
    size: NonNegative
    sha256: Sha256
    platform: str | None = None
    abi_floor: AbiVersions | None = field(default=None, metadata={
        "doc": "what it needs of the system (glibc, libstdc++ symbol versions)"})
    gpus: str | None = field(default=None, metadata={
        **OPTIONAL, "doc": "GPU artifacts: the device code it carries and the GPUs it covers"})
    smoke: ReleaseSmoke
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ProblemRecord:
    artifact: str
    reason: str
    detail: str


@dataclass(frozen=True, kw_only=True)
class ReleaseException:
    artifact: str
    reason: str
    problems: tuple[ProblemRecord, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ReleaseRecord:
    """A release directory's ``release.json``."""

    schema: Literal[1] = 1
    tag: str
    released_at: str
    buildtool_version: str
    llama_cpp: SourceRecord | None = None
    artifacts: tuple[ReleaseArtifact, ...] = ()
    exceptions: tuple[ReleaseException, ...] = ()


InstallStage = Literal["fit", "download", "verify", "unpack", "install", "smoke"]


@dataclass(frozen=True, kw_only=True)
class InstallRejection:
    artifact: FileName
    stage: InstallStage
    reason: str


@dataclass(frozen=True, kw_only=True)
class InstallRecord:
    """``PREFIX/install.json``: what `buildtool install` put into a prefix, from which
    release, and what it rejected on the way (with the stage and the reason)."""

    schema: Literal[1] = 1
    artifact: FileName
    kind: ArtifactKind = field(default="tarball", metadata={
        "doc": "tarball: PREFIX/current is the unpacked directory; wheel: a virtual "
               "environment it is installed in"})
    sha256: Sha256
    target: str
    release: str = field(metadata={
        "doc": "the release's tag, or the wheel's version when it came from a PEP 503 index"})
    source: str
    installed_at: str
    llama_server: str
    smoke: Verdict | None = None
    rejected: tuple[InstallRejection, ...] = ()


# ------------------------------------------------------------------------------ reading

ErrorFactory = Callable[..., BuildtoolError]
SCHEMAS: dict[str, type[Any]] = {
    "manifest.schema.json": Manifest, "smoke-result.schema.json": SmokeRecord,
    "lab-results.schema.json": LabResults, "release.schema.json": ReleaseRecord,
    "install.schema.json": InstallRecord,
}


def from_data(tp: type[R], data: Any, where: Path | str, *,
              error: ErrorFactory = DataError) -> R:
    """A record from parsed JSON data (``where`` names it in errors)."""
    doc = inputs.json_doc(data, where, error=error)
    record: R = convert(tp, data, doc)
    return record


def from_text(tp: type[R], text: str, where: Path | str, *,
              error: ErrorFactory = DataError) -> R:
    return from_data(tp, inputs.parse_json(text, where, error=error), where, error=error)


def load(tp: type[R], path: Path, *, error: ErrorFactory = DataError) -> R:
    """Read and validate one record file."""
    doc = inputs.load_json(path, limit=inputs.RECORD_LIMIT, error=error)
    record: R = convert(tp, doc.data, doc)
    return record


def to_json(record: Any) -> dict[str, Any]:
    """The record as JSON data — checked against its own schema first: what buildtool writes,
    it can read back (a record that is not is a bug, exit code 1)."""
    data = to_data(record)
    assert isinstance(data, dict)
    try:
        from_data(type(record), data, f"{type(record).__name__} being written",
                  error=BuildtoolError)
    except BuildtoolError as exc:
        raise BuildtoolError(f"internal error: {exc.message}",
                             hint="this is a bug in buildtool: please report it") from None
    return data


def clean(text: str) -> str:
    """Text from the world (a device name, an OS name) made safe to record: control
    characters become U+FFFD."""
    return CONTROL.sub("\ufffd", text)


def cleaned(value: Any) -> Any:
    """``clean`` over every string of parsed JSON data."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, list):
        return [cleaned(v) for v in value]
    if isinstance(value, dict):
        return {clean(str(k)): cleaned(v) for k, v in value.items()}
    return value
