"""A release from a directory of built artifacts: verified first, then written out.

``verify`` holds every artifact (tarball, wheel, OCI archive) to the same gate and collects
*every* problem before deciding, so one refusal names all offenders:

=====================  ============================================================
reason                 what failed
=====================  ============================================================
``manifest-missing``   no ``<artifact>.manifest.json`` beside it
``manifest-invalid``   the manifest beside it cannot be read or has the wrong shape
``manifest-mismatch``  the manifest describes another file
``checksum-mismatch``  the file's sha256 differs from its manifest or SHA256SUMS, or
                       a file inside it (tarball files, wheel RECORD, OCI blobs)
                       differs from what its manifest/index records
``smoke-missing``      no smoke result recorded
``smoke-invalid``      the smoke result beside it cannot be read or has the wrong shape
``smoke-failed``       the recorded smoke verdict is not "pass"
``smoke-stale``        the smoke result is for another file (its sha256) or target
``smoke-waived``       a check was waived (``--allow-cpu-fallback``)
``gpu-not-proven``     a GPU target whose smoke did not run on a GPU of its backend
                       (no device, nothing offloaded, or a software renderer)
``cpu-not-proven``     a portable artifact (all-variants or a named CPU level) with no
                       passing smoke run on the lowest emulated CPU model it claims
                       (tarballs and wheels; images run in a container engine)
``numerics-failed``    its outputs (logits) differed from the reference beyond the
                       tolerance of a model type, on its device or an emulated CPU
``numerics-missing``   its smoke compared no outputs with a reference (a smoke older
                       than the check, or an artifact without llama-results)
``mixed-source``       artifacts built from different llama.cpp commits (or patch queues)
=====================  ============================================================

``--allow NAME=REASON`` turns one artifact's problems into a recorded exception (release
notes, release.json, provenance). ``write`` then produces the release directory (atomically,
byte-identical on a second run): the artifacts (hard links) with their manifests and smoke
results, ``SHA256SUMS``, ``RELEASE_NOTES.md``, ``provenance.intoto.jsonl`` (one in-toto
Statement with a SLSA v1 provenance predicate per artifact) and ``sbom.cdx.json``
(CycloneDX 1.6, written and schema-validated by cyclonedx-python-lib).
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import tarfile
import uuid
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from buildtool import __version__, artifacts, backends, records
from buildtool.artifacts import KINDS, find, kind_of
from buildtool.cpudata import CPU
from buildtool.errors import BuildtoolError, DataError, ExitCode, UsageError
from buildtool.grammar import ArtifactKind
from buildtool.inputs import sha256_file
from buildtool.outputs import atomic_dir, format_sums, read_sums, sidecar
from buildtool.paths import source_date_epoch
from buildtool.records import (
    AbiVersions,
    Manifest,
    NumericsVerdict,
    ProblemRecord,
    ReleaseArtifact,
    ReleaseException,
    ReleaseRecord,
    ReleaseSmoke,
    SmokeRecord,
    SourceRecord,
    Speed,
)
from buildtool.text import md, md_code, md_url, redact
from buildtool.verify import numerics
from buildtool.verify.smoke import backend_names, best_speeds

R = TypeVar("R")

RELEASE_RECORD = artifacts.RELEASE_RECORD
PROVENANCE = "provenance.intoto.jsonl"
SBOM = "sbom.cdx.json"
NOTES = "RELEASE_NOTES.md"
SUMS = "SHA256SUMS"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://github.com/buildtool/buildtool/blob/main/README.md#build-v1"
REASONS = ("manifest-missing", "manifest-invalid", "manifest-mismatch", "checksum-mismatch",
           "smoke-missing", "smoke-invalid", "smoke-failed", "smoke-stale", "smoke-waived",
           "gpu-not-proven", "cpu-not-proven", "numerics-failed", "numerics-missing",
           "mixed-source")


class ReleaseRefused(BuildtoolError):
    exit_code = ExitCode.RELEASE_REFUSED

    def __init__(self, message: str, problems: list[Problem], *, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.problems = problems


@dataclass(frozen=True, kw_only=True)
class Problem:
    artifact: str
    reason: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"artifact": self.artifact, "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True, kw_only=True)
class Artifact:
    path: Path
    kind: ArtifactKind
    sha256: str
    size: int
    manifest: Manifest | None
    smoke: SmokeRecord | None
    unreadable: dict[str, str] = field(default_factory=dict)  # sidecar kind → why

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def target(self) -> str:
        return self.manifest.target if self.manifest else "?"

    def sidecars(self) -> list[Path]:
        return [p for p in (sidecar(self.path, "manifest"), sidecar(self.path, "smoke"))
                if p.is_file()]


@dataclass(frozen=True, kw_only=True)
class Verification:
    artifacts: tuple[Artifact, ...]
    problems: tuple[Problem, ...]
    allowed: dict[str, str] = field(default_factory=dict)  # artifact → recorded reason

    @property
    def blocking(self) -> list[Problem]:
        return [p for p in self.problems if p.artifact not in self.allowed]

    @property
    def exceptions(self) -> tuple[ReleaseException, ...]:
        return tuple(ReleaseException(
            artifact=name, reason=why,
            problems=tuple(ProblemRecord(artifact=p.artifact, reason=p.reason, detail=p.detail)
                           for p in self.problems if p.artifact == name))
            for name, why in sorted(self.allowed.items()))


def _sidecar(path: Path, which: str, tp: type[R], unreadable: dict[str, str]) -> R | None:
    side = sidecar(path, which)
    if not side.exists():
        return None
    try:
        return records.load(tp, side)
    except DataError as exc:
        unreadable[which] = exc.message
        return None


def load(path: Path) -> Artifact:
    kind = kind_of(path)
    assert kind is not None
    unreadable: dict[str, str] = {}
    manifest = _sidecar(path, "manifest", Manifest, unreadable)
    smoke = _sidecar(path, "smoke", SmokeRecord, unreadable)
    if smoke is None and "smoke" not in unreadable and manifest is not None:
        smoke = manifest.smoke
    return Artifact(path=path, kind=kind, sha256=sha256_file(path), size=path.stat().st_size,
                    manifest=manifest, smoke=smoke, unreadable=unreadable)


def contents_problems(a: Artifact) -> list[str]:
    """What inside the artifact differs from its record (its kind knows how to look)."""
    try:
        return KINDS[a.kind].contents(a.path, a.manifest)
    except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError, ValueError,
            NotImplementedError) as exc:
        return [f"unreadable: {exc}"]


def gpu_proof(a: Artifact) -> str | None:
    """Why a GPU artifact's smoke result does not prove it ran on a GPU of its backend."""
    assert a.manifest is not None and a.smoke is not None
    backend = a.manifest.backend
    on_backend = [t for t in a.smoke.tests if backend in backend_names([t])]
    if not on_backend:
        return f"no test ran with the {backend} backend"
    devices = sorted({(t.gpu_info or "").strip() for t in on_backend} - {""})
    if not devices:
        return f"no {backend} device: the smoke test ran on the CPU"
    software_names = backends.family(a.manifest.family).software_devices
    software = [d for d in devices if any(s in d.lower() for s in software_names)]
    if software:
        return f"ran on {', '.join(software)}, a software renderer, not a GPU"
    if any((t.n_gpu_layers or 0) <= 0 for t in on_backend):
        return "no layers were offloaded to the GPU"
    return None


def cpu_proof(a: Artifact) -> str | None:
    """Why a portable artifact's smoke does not prove its CPU claim: no passing run on the
    lowest CPU model the claim covers that the emulator can execute."""
    assert a.manifest is not None and a.smoke is not None
    m = a.manifest
    if m.cpu.policy == "host" or KINDS[m.kind].CONTAINER:
        return None  # tuned to the machine that built it; images: not emulated
    arch = CPU.arch(m.platform.split("-", 1)[1])
    lowest = CPU.lowest_model(arch, m.cpu.required_features)
    if lowest is None:
        return None  # nothing the emulator can execute covers the claim (AVX-512)
    if lowest in a.smoke.proven_models():
        return None
    ran = ", ".join(f"{r.model} {r.verdict.value}" for r in a.smoke.emulated) or "none"
    return (f"its claim ({m.cpu.policy}) starts at CPU model {lowest}, which has no passing "
            f"run (emulated runs: {ran}); run `buildtool smoke {a.name} --cpu-model {lowest}`")


def check(a: Artifact, sums: Mapping[str, str]) -> list[Problem]:
    def problem(reason: str, detail: str) -> Problem:
        return Problem(artifact=a.name, reason=reason, detail=detail)

    if "manifest" in a.unreadable:
        return [problem("manifest-invalid", a.unreadable["manifest"])]
    if a.manifest is None:
        return [problem("manifest-missing", f"{sidecar(a.path, 'manifest').name} is missing")]
    out: list[Problem] = []
    m = a.manifest
    if m.artifact_file != a.name:
        out.append(problem("manifest-mismatch", f"the manifest describes {m.artifact_file!r}"))
    if m.artifact_sha256 != a.sha256:
        out.append(problem("checksum-mismatch", f"sha256 {a.sha256} but the manifest records "
                           f"{m.artifact_sha256}"))
    listed = sums.get(a.name)
    if listed is not None and listed != a.sha256:
        out.append(problem("checksum-mismatch",
                           f"sha256 {a.sha256} but {SUMS} lists {listed}"))
    bad = contents_problems(a)
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        out.append(problem("checksum-mismatch", f"contents differ from their record: {shown}"))
    s = a.smoke
    if "smoke" in a.unreadable:
        out.append(problem("smoke-invalid", a.unreadable["smoke"]))
        return out
    if s is None:
        out.append(problem("smoke-missing", "no smoke result: run `buildtool smoke "
                           f"{a.path}` on a machine that has its hardware"))
        return out
    if not s.passed:
        failed = [c.name for c in s.failures()]
        out.append(problem("smoke-failed", f"smoke verdict {s.verdict.value!r}"
                           + (f" ({', '.join(failed)})" if failed else "")))
    if s.artifact_sha256 != a.sha256:
        out.append(problem("smoke-stale", "the smoke result is for another file (sha256 "
                           f"{s.artifact_sha256 or 'not recorded'})"))
    if s.target != m.target:
        out.append(problem("smoke-stale", f"the smoke result is for target "
                           f"{s.target!r}, the artifact is {m.target!r}"))
    if s.waived:
        out.append(problem("smoke-waived", f"waived checks: {', '.join(s.waived)}"))
    if m.gpu:
        why = gpu_proof(a)
        if why:
            out.append(problem("gpu-not-proven", why))
    why = cpu_proof(a)
    if why:
        out.append(problem("cpu-not-proven", why))
    out.extend(problem(*p) for p in numerics_problems(s))
    return out


def numerics_problems(s: SmokeRecord) -> list[tuple[str, str]]:
    """``numerics-failed`` / ``numerics-missing`` of a smoke result (its main run and its
    emulated CPU models)."""
    n = s.numerics
    if n is None or n.verdict is NumericsVerdict.MISSING:
        why = n.reason if n is not None else "the smoke result has no numerics record"
        return [("numerics-missing", f"no outputs were compared with a reference ({why}); "
                                     "smoke it again with this buildtool")]
    out = []
    if n.verdict is NumericsVerdict.FAIL:
        out.append(("numerics-failed", f"{numerics.describe([r for r in n.runs if not r.ok])}"
                                       f" (against the {n.reference})"))
    out.extend(("numerics-failed", f"on CPU model {r.model}: "
                                   f"{numerics.describe([x for x in r.numerics if not x.ok])}")
               for r in s.emulated if any(not x.ok for x in r.numerics))
    return out


def parse_allow(values: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        pattern, sep, why = value.partition("=")
        if not sep or not pattern.strip() or not why.strip():
            raise UsageError(f"--allow {value!r}: an exception needs a reason",
                             hint="--allow ARTIFACT=REASON, e.g. --allow "
                                  "'*-hipblas-*=no ROCm machine in the lab this week'")
        out[pattern.strip()] = why.strip()
    return out


def verify(directory: Path, *, allow: Mapping[str, str] | None = None) -> Verification:
    paths = find(directory)
    if not paths:
        raise UsageError(f"no artifacts (*.tar.gz, *.whl, *.oci.tar) under {directory}",
                         hint="build some with `buildtool build`")
    artifacts = [load(p) for p in paths]
    sums: dict[Path, dict[str, str]] = {}
    problems: list[Problem] = []
    for d in sorted({a.path.parent for a in artifacts}):
        try:
            sums[d] = read_sums(d)
        except DataError as exc:
            sums[d] = {}
            problems.extend(Problem(artifact=a.name, reason="checksum-mismatch",
                                    detail=exc.message) for a in artifacts if a.path.parent == d)
    for a in artifacts:
        problems.extend(check(a, sums[a.path.parent]))
    def pin(m: Manifest) -> str:  # the commit and the patches applied to it
        src = m.llama_cpp
        return src.commit + "".join(f" + {p.file}" for p in src.patches)

    pins = {pin(a.manifest) for a in artifacts if a.manifest}
    if len(pins) > 1:
        first = sorted(pins)[0]
        problems.extend(Problem(artifact=a.name, reason="mixed-source",
                                detail=f"llama.cpp {pin(a.manifest)}; others are from {first}")
                        for a in artifacts if a.manifest and pin(a.manifest) != first)
    allowed: dict[str, str] = {}
    for pattern, why in (allow or {}).items():
        hits = [a.name for a in artifacts if fnmatch.fnmatchcase(a.name, pattern)]
        if not hits:
            raise UsageError(f"--allow {pattern!r} matches no artifact under {directory}",
                             hint="name an artifact file (or a glob): "
                                  + ", ".join(a.name for a in artifacts[:4]))
        allowed.update(dict.fromkeys(hits, why))
    return Verification(artifacts=tuple(artifacts), problems=tuple(problems), allowed=allowed)


def refusal(v: Verification) -> ReleaseRefused:
    blocking = v.blocking
    names = sorted({p.artifact for p in blocking})
    lines = [f"release refused: {len(names)} of {len(v.artifacts)} artifacts are not proven"]
    for name in names:
        lines.append(f"  {name}")
        lines.extend(f"    [{p.reason}] {p.detail}" for p in blocking if p.artifact == name)
    return ReleaseRefused("\n".join(lines), blocking,
                          hint="fix them (rebuild, re-run `buildtool smoke` on the right "
                               "hardware), leave them out of the directory, or record an "
                               "exception with --allow ARTIFACT=REASON")


# ---------------------------------------------------------------------------------------
# The release directory


def _source(v: Verification) -> SourceRecord | None:
    return next((a.manifest.llama_cpp for a in v.artifacts if a.manifest), None)


def default_tag(v: Verification) -> str:
    source = _source(v)
    return source.version if source else "release"


def released_at(v: Verification) -> str:
    """The newest build time among the artifacts (not now: a second run writes the same),
    or SOURCE_DATE_EPOCH."""
    epoch = source_date_epoch()
    if epoch is not None:
        return epoch.isoformat(timespec="seconds")
    times = sorted(a.manifest.built_at for a in v.artifacts if a.manifest)
    return times[-1] if times else "1970-01-01T00:00:00+00:00"


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _release_smoke(smoke: SmokeRecord | None) -> ReleaseSmoke:
    best = best_speeds(smoke.tests if smoke else ())
    return ReleaseSmoke(verdict=smoke.verdict if smoke else None,
                        ran_at=smoke.ran_at if smoke else None, pp=best.pp, tg=best.tg,
                        device=best.device,
                        cpu_models=smoke.proven_models() if smoke else (),
                        ran_on_glibc=smoke.system.glibc if smoke and smoke.system else None)


def record(v: Verification, tag: str) -> ReleaseRecord:
    return ReleaseRecord(
        tag=tag, released_at=released_at(v), buildtool_version=__version__,
        llama_cpp=_source(v),
        artifacts=tuple(ReleaseArtifact(
            file=a.name, kind=a.kind, target=a.target, size=a.size, sha256=a.sha256,
            platform=a.manifest.platform if a.manifest else None,
            abi_floor=a.manifest.abi.floor if a.manifest and a.manifest.abi else None,
            gpus=a.manifest.device_code.summary if a.manifest and a.manifest.device_code
            and a.manifest.device_code.verdict == "pass" else None,
            smoke=_release_smoke(a.smoke),
            tags=a.manifest.image.tags if a.manifest and a.manifest.image else ())
        for a in v.artifacts),
        exceptions=v.exceptions)


def notes(rec: ReleaseRecord) -> str:
    """RELEASE_NOTES.md; every value that came from an artifact or its records is escaped."""
    src = rec.llama_cpp
    commit = src.commit if src else ""
    repo = src.repository if src else "https://github.com/ggml-org/llama.cpp"
    lines = [f"# llama.cpp {md(rec.tag)}", "",
             f"Built from [ggml-org/llama.cpp@{md(commit[:9])}]"
             f"(<{md_url(repo)}/tree/{md_url(commit)}>) ({md(src.version if src else '?')}; "
             f"source sha256 {md_code(str(src.source_sha256 if src else '?'))}) by buildtool "
             f"{md(rec.buildtool_version)}. Every artifact below passed its smoke test "
             "(llama-bench on the hardware of its backend) unless listed under exceptions.", "",
             *([f"Patched: {'; '.join(f'{md_code(p.file)} ({md(p.reason)})' for p in src.patches)}"
                f" (applied in this order; sha256 in the lock).", ""]
               if src and src.patches else []),
             "| Target | Artifact | Kind | Size | Smoke | Prompt t/s | Generation t/s | Device "
             "| Needs | Proven on |",
             "|---|---|---|---:|---|---:|---:|---|---|---|"]

    def speed(x: Speed | None) -> str:
        return f"{x.avg_ts:.1f} ({md(x.test)})" if x and x.avg_ts else "-"

    for a in sorted(rec.artifacts, key=lambda a: (a.target, a.kind, a.file)):
        s = a.smoke
        lines.append(f"| {md(a.target)} | {md_code(a.file)} | {a.kind} | {human_size(a.size)} "
                     f"| {s.verdict.value if s.verdict else 'none'} | {speed(s.pp)} | "
                     f"{speed(s.tg)} | {md(s.device)} | {md(floor_text(a.abi_floor))} | "
                     f"{md(proven_text(s))} |")
    covering = [a for a in rec.artifacts if a.gpus]
    if covering:
        lines += ["", "## GPUs covered", "",
                  "The device code each GPU artifact carries (native code runs on its compute "
                  "capability and later minors of the same major; PTX is compiled by the "
                  "driver for newer GPUs):", ""]
        lines.extend(f"- {md_code(a.file)}: {md(a.gpus or '')}"
                     for a in sorted(covering, key=lambda a: a.file))
    if rec.exceptions:
        lines += ["", "## Exceptions", "",
                  "These artifacts ship without the proof the release gate asks for:", ""]
        for e in rec.exceptions:
            lines.append(f"- {md_code(e.artifact)}: {md(e.reason)}")
            lines.extend(f"  - [{p.reason}] {md(p.detail)}" for p in e.problems)
    images = [a for a in rec.artifacts if a.tags]
    if images:
        lines += ["", "## Images", ""]
        lines.extend(f"- {md_code(a.file)}: {', '.join(md_code(t) for t in a.tags)}"
                     for a in images)
    lines += ["", "## Verify", "", "```sh", "sha256sum -c SHA256SUMS", "```", "",
              f"`{PROVENANCE}` holds an in-toto statement (SLSA provenance v1) per artifact; "
              f"`{SBOM}` is a CycloneDX 1.6 SBOM of the release.", ""]
    return "\n".join(lines)


def floor_text(floor: AbiVersions | None) -> str:
    """What an artifact needs of the system, for the notes: "glibc 2.31, libstdc++ 3.4.28"."""
    if floor is None:
        return "-"
    parts = [f"glibc {floor.glibc}" if floor.glibc else "",
             f"libstdc++ {floor.libstdcxx}" if floor.libstdcxx else ""]
    return ", ".join(p for p in parts if p) or "-"


def proven_text(s: ReleaseSmoke) -> str:
    """Where the smoke passed: the system's glibc and the emulated CPU models."""
    parts = [f"glibc {s.ran_on_glibc}"] if s.ran_on_glibc else []
    parts += list(s.cpu_models)
    return ", ".join(parts) or "-"


def builder_id(m: Manifest) -> str:
    """SLSA's builder.id is a URI: the one the build recorded, else one naming its host."""
    if m.build_host.builder:
        return m.build_host.builder
    return "urn:buildtool:host:" + quote(m.build_host.machine or "unknown", safe="")


def statement(a: Artifact, exception: str | None) -> dict[str, Any]:
    m = a.manifest
    assert m is not None  # the gate lets no artifact without a manifest through
    src = m.llama_cpp
    deps: list[dict[str, Any]] = [{"uri": f"git+{src.repository}@{src.commit}",
                                   "digest": {"gitCommit": src.commit}}]
    if src.source_sha256:
        deps.append({"uri": f"buildtool-source:{src.source}",
                     "digest": {"sha256": src.source_sha256},
                     "annotations": {"tree_sha256": src.tree_sha256}})
    deps.extend({"uri": f"buildtool-patch:{p.file}", "digest": {"sha256": p.sha256},
                 "annotations": {"reason": p.reason}} for p in src.patches)
    smoke = records.to_json(_release_smoke(a.smoke))
    predicate: dict[str, Any] = {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {"target": m.target, "kind": a.kind,
                                   "llama_cpp": src.version, "platform": m.platform,
                                   "cpu": records.to_json(m.cpu),
                                   "toolkit": m.toolkit, "gpu_archs": list(m.gpu_archs)},
            "internalParameters": {"recipe": m.recipe, "cmake_defines": m.cmake_defines,
                                   "build_key": m.build_key},
            "resolvedDependencies": deps,
        },
        "runDetails": {
            "builder": {"id": builder_id(m),
                        "version": {"buildtool": m.buildtool_version, **{
                            k: str(t.version) for k, t in (m.toolchain or {}).items()
                            if t.version}}},
            "metadata": {"invocationId": m.build_key, "finishedOn": m.built_at},
            "byproducts": [{"name": "smoke", "annotations": {
                k: v for k, v in smoke.items() if v is not None}}],
        },
    }
    if m.image is not None:
        predicate["buildDefinition"]["externalParameters"]["build_args"] = m.image.build_args
    if exception:
        predicate["runDetails"]["byproducts"].append({"name": "release-exception",
                                                      "annotations": {"reason": exception}})
    return {"_type": STATEMENT_TYPE,
            "subject": [{"name": a.name, "digest": {"sha256": a.sha256}}],
            "predicateType": SLSA_PROVENANCE, "predicate": predicate}


def sbom(v: Verification, tag: str, sums_text: str) -> str:
    """CycloneDX 1.6 JSON: the release, each artifact (file, sha256) depending on the llama.cpp
    source and its toolchain; validated against the schema before it is written."""
    from cyclonedx.model import (
        ExternalReference,
        ExternalReferenceType,
        HashAlgorithm,
        HashType,
        Property,
        XsUri,
    )
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    src = _source(v)
    bom = Bom(serial_number=uuid.uuid5(uuid.NAMESPACE_URL, "buildtool-release:" + sums_text))
    bom.metadata.timestamp = datetime.fromisoformat(released_at(v))
    root = Component(name="llama.cpp", version=tag, type=ComponentType.APPLICATION,
                     bom_ref=f"release:{tag}", description="buildtool release of llama.cpp")
    bom.metadata.component = root
    repo = src.repository if src else "https://github.com/ggml-org/llama.cpp"
    source = Component(
        name="llama.cpp-source", version=src.commit if src else "unknown",
        type=ComponentType.LIBRARY, bom_ref="source", licenses=[],
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=src.source_sha256)]
        if src and src.source_sha256 else [],
        external_references=[ExternalReference(type=ExternalReferenceType.VCS,
                                               url=XsUri(repo))],
        properties=[Property(name="buildtool:version", value=src.version if src else "?"),
                    Property(name="buildtool:source", value=src.source if src else "?")])
    bom.components.add(source)
    tools: dict[str, Component] = {}
    files = []
    for a in v.artifacts:
        m = a.manifest
        used = []
        for name, t in sorted((m.toolchain or {}).items() if m else ()):
            if not t.version:
                continue
            ref = f"tool:{name}@{t.version}"
            if ref not in tools:
                tools[ref] = Component(name=name, version=t.version,
                                       type=ComponentType.APPLICATION, bom_ref=ref)
                bom.components.add(tools[ref])
            used.append(tools[ref])
        comp = Component(
            name=a.name, type=ComponentType.FILE, bom_ref=f"artifact:{a.name}",
            version=src.version if src else tag,
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=a.sha256)],
            properties=[Property(name="buildtool:target", value=a.target),
                        Property(name="buildtool:kind", value=a.kind),
                        Property(name="buildtool:platform", value=str(m.platform if m else None)),
                        Property(name="buildtool:smoke",
                                 value=a.smoke.verdict.value if a.smoke else "None")])
        bom.components.add(comp)
        bom.register_dependency(comp, [source, *used])
        files.append(comp)
    bom.register_dependency(root, files)
    text = JsonV1Dot6(bom).output_as_string(indent=2)
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if error is not None:
        raise BuildtoolError(f"the SBOM does not validate against CycloneDX 1.6: {error}")
    return text + "\n"


def _place(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def write(v: Verification, out: Path, tag: str) -> ReleaseRecord:
    """Write the release directory ``out`` (replaced as a whole, and only if it is one that
    buildtool wrote); return its record."""
    if v.blocking:
        raise refusal(v)
    names = [a.name for a in v.artifacts]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UsageError(f"two artifacts share a file name: {', '.join(dupes)}",
                         hint="publish one of each; keep the other out of the directory")
    rec = record(v, tag)
    with atomic_dir(out, owner="release") as tmp:
        for a in v.artifacts:
            _place(a.path, tmp / a.name)
            for extra in a.sidecars():
                shutil.copyfile(extra, tmp / extra.name)
        sums = format_sums({a.name: a.sha256 for a in v.artifacts})
        (tmp / SUMS).write_text(sums)
        # redact: no registered credential reaches a file, whatever an artifact's records say
        (tmp / NOTES).write_text(redact(notes(rec)))
        (tmp / PROVENANCE).write_text(redact("".join(
            json.dumps(statement(a, v.allowed.get(a.name)), sort_keys=True) + "\n"
            for a in sorted(v.artifacts, key=lambda a: a.name))))
        (tmp / SBOM).write_text(redact(sbom(v, tag, sums)))
        (tmp / RELEASE_RECORD).write_text(redact(json.dumps(records.to_json(rec), indent=2,
                                                            sort_keys=True)) + "\n")
    return rec


def files(out: Path) -> list[Path]:
    """What a release directory holds, in upload order (artifacts last: the notes first);
    hidden files (buildtool's ownership marker) are not part of a release."""
    meta = [out / n for n in (NOTES, SUMS, PROVENANCE, SBOM, RELEASE_RECORD)]
    rest = sorted(p for p in out.iterdir() if p.is_file() and p not in meta
                  and not p.name.startswith("."))
    return [p for p in meta if p.is_file()] + rest
