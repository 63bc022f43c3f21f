"""A release from a directory of built artifacts: verified first, then written out.

``verify`` holds every artifact (tarball, wheel, OCI archive) to the same gate and collects
*every* problem before deciding, so one refusal names all offenders:

=====================  ============================================================
reason                 what failed
=====================  ============================================================
``manifest-missing``   no ``<artifact>.manifest.json`` beside it (or unreadable)
``manifest-mismatch``  the manifest describes another file
``checksum-mismatch``  the file's sha256 differs from its manifest or SHA256SUMS, or
                       a file inside it (tarball files, wheel RECORD, OCI blobs)
                       differs from what its manifest/index records
``smoke-missing``      no smoke result recorded
``smoke-failed``       the recorded smoke verdict is not "pass"
``smoke-stale``        the smoke result is for another file (its sha256) or target
``smoke-waived``       a check was waived (``--allow-cpu-fallback``)
``gpu-not-proven``     a GPU target whose smoke did not run on a GPU of its backend
                       (no device, nothing offloaded, or a software renderer)
``mixed-source``       artifacts built from different llama.cpp commits
=====================  ============================================================

``--allow NAME=REASON`` turns one artifact's problems into a recorded exception (release
notes, release.json, provenance). ``write`` then produces the release directory (atomically,
byte-identical on a second run): the artifacts (hard links) with their manifests and smoke
results, ``SHA256SUMS``, ``RELEASE_NOTES.md``, ``provenance.intoto.jsonl`` (one in-toto
Statement with a SLSA v1 provenance predicate per artifact) and ``sbom.cdx.json``
(CycloneDX 1.6, written and schema-validated by cyclonedx-python-lib).
"""

from __future__ import annotations

import base64
import csv
import fnmatch
import hashlib
import io
import json
import os
import shutil
import tarfile
import uuid
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from buildtool import __version__
from buildtool.errors import BuildtoolError, ExitCode, UsageError
from buildtool.package import atomic_dir, format_sums, read_json, read_sums, sidecar
from buildtool.vendor import sha256_file

RELEASE_RECORD = "release.json"
PROVENANCE = "provenance.intoto.jsonl"
SBOM = "sbom.cdx.json"
NOTES = "RELEASE_NOTES.md"
SUMS = "SHA256SUMS"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://github.com/buildtool/buildtool/blob/main/README.md#build-v1"
# llama-bench's gpu_info for devices that are CPUs under a GPU API
SOFTWARE_DEVICES = ("llvmpipe", "lavapipe", "swiftshader", "softpipe")
REASONS = ("manifest-missing", "manifest-mismatch", "checksum-mismatch", "smoke-missing",
           "smoke-failed", "smoke-stale", "smoke-waived", "gpu-not-proven", "mixed-source")


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
    kind: str
    sha256: str
    size: int
    manifest: dict[str, Any] | None
    smoke: dict[str, Any] | None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def target(self) -> str:
        return str((self.manifest or {}).get("target") or "?")

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
    def exceptions(self) -> list[dict[str, Any]]:
        return [{"artifact": name, "reason": why,
                 "problems": [p.to_json() for p in self.problems if p.artifact == name]}
                for name, why in sorted(self.allowed.items())]


def kind_of(path: Path) -> str | None:
    name = path.name
    if name.endswith(".oci.tar"):
        return "image"
    if name.endswith(".whl"):
        return "wheel"
    if name.endswith(".tar.gz"):
        return "tarball"
    return None


def find(directory: Path) -> list[Path]:
    """The artifacts under ``directory`` (sub-directories too: CI downloads one per job),
    not counting release directories written by an earlier publish."""
    found = []
    for path in sorted(directory.rglob("*")):
        if not path.is_file() or kind_of(path) is None or path.name.startswith("."):
            continue
        rel = path.relative_to(directory)
        parents = [directory / Path(*rel.parts[:i]) for i in range(1, len(rel.parts))]
        if any((p / RELEASE_RECORD).is_file() or p.name.startswith(".") for p in parents):
            continue
        found.append(path)
    return found


def load(path: Path) -> Artifact:
    kind = kind_of(path)
    assert kind is not None
    smoke = read_json(sidecar(path, "smoke"))
    manifest = read_json(sidecar(path, "manifest"))
    if smoke is None and manifest is not None and isinstance(manifest.get("smoke"), dict):
        smoke = manifest["smoke"]
    return Artifact(path=path, kind=kind, sha256=sha256_file(path), size=path.stat().st_size,
                    manifest=manifest, smoke=smoke)


def _tarball_contents(path: Path, files: Mapping[str, str]) -> list[str]:
    """Files inside a tarball whose sha256 differs from the manifest's ``files``."""
    bad: list[str] = []
    seen: set[str] = set()
    with tarfile.open(path) as tf:
        for member in tf:
            parts = member.name.split("/", 1)
            if len(parts) != 2 or parts[1] not in files:
                continue
            rel = parts[1]
            want = files[rel]
            seen.add(rel)
            if want.startswith("symlink:"):
                if not member.issym() or member.linkname != want.removeprefix("symlink:"):
                    bad.append(f"{rel} (link)")
                continue
            handle = tf.extractfile(member)
            if handle is None or hashlib.sha256(handle.read()).hexdigest() != want:
                bad.append(rel)
    bad.extend(f"{rel} (missing)" for rel in sorted(set(files) - seen))
    return bad


def _wheel_contents(path: Path) -> list[str]:
    """Files inside a wheel whose hash differs from its RECORD."""
    bad: list[str] = []
    with zipfile.ZipFile(path) as zf:
        record = next((n for n in zf.namelist() if n.endswith(".dist-info/RECORD")), None)
        if record is None:
            return ["RECORD (missing)"]
        for row in csv.reader(io.StringIO(zf.read(record).decode())):
            if len(row) < 2 or not row[1]:
                continue
            algo, _, want = row[1].partition("=")
            try:
                data = zf.read(row[0])
            except KeyError:
                bad.append(f"{row[0]} (missing)")
                continue
            got = base64.urlsafe_b64encode(hashlib.new(algo, data).digest()).rstrip(b"=")
            if got.decode() != want:
                bad.append(row[0])
    return bad


def _image_contents(path: Path) -> list[str]:
    """Blobs of an OCI archive whose content does not hash to their name."""
    bad: list[str] = []
    with tarfile.open(path) as tf:
        for member in tf:
            name = member.name.removeprefix("./")
            if not member.isfile() or not name.startswith("blobs/"):
                continue
            _, algo, hexdigest = name.split("/", 2)
            handle = tf.extractfile(member)
            h = hashlib.new(algo)
            while handle is not None and (chunk := handle.read(1 << 20)):
                h.update(chunk)
            if h.hexdigest() != hexdigest:
                bad.append(name)
    return bad


def contents_problems(a: Artifact) -> list[str]:
    try:
        if a.kind == "tarball":
            return _tarball_contents(a.path, dict((a.manifest or {}).get("files") or {}))
        if a.kind == "wheel":
            return _wheel_contents(a.path)
        return _image_contents(a.path)
    except (OSError, tarfile.TarError, zipfile.BadZipFile, ValueError) as exc:
        return [f"unreadable: {exc}"]


def gpu_proof(a: Artifact) -> str | None:
    """Why a GPU artifact's smoke result does not prove it ran on a GPU of its backend."""
    assert a.manifest is not None and a.smoke is not None
    from buildtool.smoke import backend_names

    backend = str(a.manifest.get("backend") or "")
    tests = list(a.smoke.get("tests") or [])
    on_backend = [t for t in tests if backend in backend_names([t])]
    if not on_backend:
        return f"no test ran with the {backend} backend"
    devices = sorted({str(t.get("gpu_info") or "").strip() for t in on_backend} - {""})
    if not devices:
        return f"no {backend} device: the smoke test ran on the CPU"
    software = [d for d in devices if any(s in d.lower() for s in SOFTWARE_DEVICES)]
    if software:
        return f"ran on {', '.join(software)}, a software renderer, not a GPU"
    if any(int(t.get("n_gpu_layers") or 0) <= 0 for t in on_backend):
        return "no layers were offloaded to the GPU"
    return None


def check(a: Artifact, sums: Mapping[str, str]) -> list[Problem]:
    def problem(reason: str, detail: str) -> Problem:
        return Problem(artifact=a.name, reason=reason, detail=detail)

    if a.manifest is None:
        return [problem("manifest-missing",
                        f"{sidecar(a.path, 'manifest').name} is missing or unreadable")]
    out: list[Problem] = []
    m = a.manifest
    if m.get("artifact_file") != a.name:
        out.append(problem("manifest-mismatch",
                           f"the manifest describes {m.get('artifact_file')!r}"))
    if m.get("artifact_sha256") != a.sha256:
        out.append(problem("checksum-mismatch", f"sha256 {a.sha256} but the manifest records "
                           f"{m.get('artifact_sha256')}"))
    listed = sums.get(a.name)
    if listed is not None and listed != a.sha256:
        out.append(problem("checksum-mismatch",
                           f"sha256 {a.sha256} but {SUMS} lists {listed}"))
    bad = contents_problems(a)
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        out.append(problem("checksum-mismatch", f"contents differ from their record: {shown}"))
    s = a.smoke
    if s is None:
        out.append(problem("smoke-missing", "no smoke result: run `buildtool smoke "
                           f"{a.path}` on a machine that has its hardware"))
        return out
    if s.get("verdict") != "pass":
        failed = [c["name"] for c in s.get("checks", []) if not c.get("ok")]
        out.append(problem("smoke-failed", f"smoke verdict {s.get('verdict')!r}"
                           + (f" ({', '.join(failed)})" if failed else "")))
    if s.get("artifact_sha256") != a.sha256:
        out.append(problem("smoke-stale", "the smoke result is for another file (sha256 "
                           f"{s.get('artifact_sha256') or 'not recorded'})"))
    if s.get("target") != m.get("target"):
        out.append(problem("smoke-stale", f"the smoke result is for target "
                           f"{s.get('target')!r}, the artifact is {m.get('target')!r}"))
    if s.get("waived"):
        out.append(problem("smoke-waived", f"waived checks: {', '.join(s['waived'])}"))
    if m.get("gpu"):
        why = gpu_proof(a)
        if why:
            out.append(problem("gpu-not-proven", why))
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
    sums = {d: read_sums(d) for d in {a.path.parent for a in artifacts}}
    problems: list[Problem] = []
    for a in artifacts:
        problems.extend(check(a, sums[a.path.parent]))
    commits = {str(a.manifest.get("llama_cpp", {}).get("commit"))
               for a in artifacts if a.manifest}
    if len(commits) > 1:
        first = sorted(commits)[0]
        problems.extend(Problem(artifact=a.name, reason="mixed-source",
                                detail=f"llama.cpp {a.manifest['llama_cpp'].get('commit')}; "
                                       f"others are from {first}")
                        for a in artifacts if a.manifest
                        and a.manifest.get("llama_cpp", {}).get("commit") != first)
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


def _source(v: Verification) -> dict[str, Any]:
    for a in v.artifacts:
        if a.manifest and a.manifest.get("llama_cpp"):
            return dict(a.manifest["llama_cpp"])
    return {}


def default_tag(v: Verification) -> str:
    return str(_source(v).get("version") or "release")


def released_at(v: Verification) -> str:
    """The newest build time among the artifacts (not now: a second run writes the same)."""
    times = sorted(str(a.manifest.get("built_at")) for a in v.artifacts
                   if a.manifest and a.manifest.get("built_at"))
    if os.environ.get("SOURCE_DATE_EPOCH", "").isdigit():
        return datetime.fromtimestamp(int(os.environ["SOURCE_DATE_EPOCH"]), UTC) \
            .isoformat(timespec="seconds")
    return times[-1] if times else "1970-01-01T00:00:00+00:00"


def best_speeds(smoke: Mapping[str, Any] | None) -> dict[str, Any]:
    """The fastest prompt and generation figures of a smoke result, with the device."""
    tests = list((smoke or {}).get("tests") or [])

    def top(prefix: str) -> dict[str, Any] | None:
        runs = [t for t in tests if str(t.get("test", "")).startswith(prefix)]
        return max(runs, key=lambda t: float(t.get("avg_ts") or 0), default=None)

    pp, tg = top("pp"), top("tg")
    device = next((str(t.get("gpu_info")) for t in tests if t.get("gpu_info")), "CPU")
    return {"pp": pp and {"test": pp["test"], "avg_ts": pp.get("avg_ts")},
            "tg": tg and {"test": tg["test"], "avg_ts": tg.get("avg_ts")}, "device": device}


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def record(v: Verification, tag: str) -> dict[str, Any]:
    return {
        "schema": 1, "tag": tag, "released_at": released_at(v),
        "buildtool_version": __version__, "llama_cpp": _source(v),
        "artifacts": [{
            "file": a.name, "kind": a.kind, "target": a.target, "size": a.size,
            "sha256": a.sha256, "platform": (a.manifest or {}).get("platform"),
            "smoke": {"verdict": (a.smoke or {}).get("verdict"),
                      "ran_at": (a.smoke or {}).get("ran_at"), **best_speeds(a.smoke)},
            "tags": list((a.manifest or {}).get("image", {}).get("tags") or [])
            if a.kind == "image" else [],
        } for a in v.artifacts],
        "exceptions": v.exceptions,
    }


def notes(rec: Mapping[str, Any]) -> str:
    src = rec["llama_cpp"]
    lines = [f"# llama.cpp {rec['tag']}", "",
             f"Built from [ggml-org/llama.cpp@{str(src.get('commit', ''))[:9]}]"
             f"({src.get('repository', 'https://github.com/ggml-org/llama.cpp')}/tree/"
             f"{src.get('commit', '')}) ({src.get('version', '?')}; source sha256 "
             f"`{src.get('source_sha256', '?')}`) by buildtool {rec['buildtool_version']}. "
             "Every artifact below passed its smoke test (llama-bench on the hardware of its "
             "backend) unless listed under exceptions.", "",
             "| Target | Artifact | Kind | Size | Smoke | Prompt t/s | Generation t/s | Device |",
             "|---|---|---|---:|---|---:|---:|---|"]

    def speed(x: Mapping[str, Any] | None) -> str:
        return f"{float(x['avg_ts']):.1f} ({x['test']})" if x and x.get("avg_ts") else "-"

    for a in sorted(rec["artifacts"], key=lambda a: (a["target"], a["kind"], a["file"])):
        s = a["smoke"]
        lines.append(f"| {a['target']} | `{a['file']}` | {a['kind']} | {human_size(a['size'])} "
                     f"| {s.get('verdict') or 'none'} | {speed(s.get('pp'))} | "
                     f"{speed(s.get('tg'))} | {str(s.get('device')).replace('|', '/')} |")
    if rec["exceptions"]:
        lines += ["", "## Exceptions", "",
                  "These artifacts ship without the proof the release gate asks for:", ""]
        for e in rec["exceptions"]:
            lines.append(f"- `{e['artifact']}`: {e['reason']}")
            lines.extend(f"  - [{p['reason']}] {p['detail']}" for p in e["problems"])
    images = [a for a in rec["artifacts"] if a["tags"]]
    if images:
        lines += ["", "## Images", ""]
        lines.extend(f"- `{a['file']}`: {', '.join(f'`{t}`' for t in a['tags'])}"
                     for a in images)
    lines += ["", "## Verify", "", "```sh", "sha256sum -c SHA256SUMS", "```", "",
              f"`{PROVENANCE}` holds an in-toto statement (SLSA provenance v1) per artifact; "
              f"`{SBOM}` is a CycloneDX 1.6 SBOM of the release.", ""]
    return "\n".join(lines)


def statement(a: Artifact, exception: str | None) -> dict[str, Any]:
    m = a.manifest or {}
    src = dict(m.get("llama_cpp") or {})
    repo = str(src.get("repository") or "https://github.com/ggml-org/llama.cpp")
    deps: list[dict[str, Any]] = [{"uri": f"git+{repo}@{src.get('commit')}",
                                   "digest": {"gitCommit": src.get("commit")}}]
    if src.get("source_sha256"):
        deps.append({"uri": f"buildtool-source:{src.get('source')}",
                     "digest": {"sha256": src["source_sha256"]},
                     "annotations": {"tree_sha256": src.get("tree_sha256")}})
    toolchain = {name: {"version": t.get("version")} for name, t in
                 (m.get("toolchain") or {}).items() if isinstance(t, dict)}
    predicate: dict[str, Any] = {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {"target": m.get("target"), "kind": a.kind,
                                   "platform": m.get("platform"), "cpu": m.get("cpu"),
                                   "toolkit": m.get("toolkit"), "gpu_archs": m.get("gpu_archs")},
            "internalParameters": {"recipe": m.get("recipe"),
                                   "cmake_defines": m.get("cmake_defines"),
                                   "build_key": m.get("build_key")},
            "resolvedDependencies": deps,
        },
        "runDetails": {
            "builder": {"id": f"buildtool/{m.get('buildtool_version')}@"
                              f"{(m.get('build_host') or {}).get('machine', 'unknown')}",
                        "version": {"buildtool": m.get("buildtool_version"), **{
                            k: str(v["version"]) for k, v in toolchain.items()}}},
            "metadata": {"invocationId": m.get("build_key"), "finishedOn": m.get("built_at")},
            "byproducts": [{"name": "smoke", "annotations": {
                "verdict": (a.smoke or {}).get("verdict"), "ran_at": (a.smoke or {}).get("ran_at"),
                **best_speeds(a.smoke)}}],
        },
    }
    if m.get("image"):
        predicate["buildDefinition"]["externalParameters"]["build_args"] = \
            m["image"].get("build_args")
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
    repo = str(src.get("repository") or "https://github.com/ggml-org/llama.cpp")
    source = Component(
        name="llama.cpp-source", version=str(src.get("commit") or "unknown"),
        type=ComponentType.LIBRARY, bom_ref="source", licenses=[],
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=str(src["source_sha256"]))]
        if src.get("source_sha256") else [],
        external_references=[ExternalReference(type=ExternalReferenceType.VCS,
                                               url=XsUri(repo))],
        properties=[Property(name="buildtool:version", value=str(src.get("version"))),
                    Property(name="buildtool:source", value=str(src.get("source")))])
    bom.components.add(source)
    tools: dict[str, Component] = {}
    files = []
    for a in v.artifacts:
        m = a.manifest or {}
        used = []
        for name, t in sorted((m.get("toolchain") or {}).items()):
            if not isinstance(t, dict) or not t.get("version"):
                continue
            ref = f"tool:{name}@{t['version']}"
            if ref not in tools:
                tools[ref] = Component(name=name, version=str(t["version"]),
                                       type=ComponentType.APPLICATION, bom_ref=ref)
                bom.components.add(tools[ref])
            used.append(tools[ref])
        comp = Component(
            name=a.name, type=ComponentType.FILE, bom_ref=f"artifact:{a.name}",
            version=str(src.get("version") or tag),
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=a.sha256)],
            properties=[Property(name="buildtool:target", value=a.target),
                        Property(name="buildtool:kind", value=a.kind),
                        Property(name="buildtool:platform", value=str(m.get("platform"))),
                        Property(name="buildtool:smoke",
                                 value=str((a.smoke or {}).get("verdict")))])
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


def write(v: Verification, out: Path, tag: str) -> dict[str, Any]:
    """Write the release directory ``out`` (replaced as a whole); return its record."""
    if v.blocking:
        raise refusal(v)
    names = [a.name for a in v.artifacts]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UsageError(f"two artifacts share a file name: {', '.join(dupes)}",
                         hint="publish one of each; keep the other out of the directory")
    rec = record(v, tag)
    with atomic_dir(out) as tmp:
        for a in v.artifacts:
            _place(a.path, tmp / a.name)
            for extra in a.sidecars():
                shutil.copyfile(extra, tmp / extra.name)
        sums = format_sums({a.name: a.sha256 for a in v.artifacts})
        (tmp / SUMS).write_text(sums)
        (tmp / NOTES).write_text(notes(rec))
        (tmp / PROVENANCE).write_text("".join(
            json.dumps(statement(a, v.allowed.get(a.name)), sort_keys=True) + "\n"
            for a in sorted(v.artifacts, key=lambda a: a.name)))
        (tmp / SBOM).write_text(sbom(v, tag, sums))
        (tmp / RELEASE_RECORD).write_text(json.dumps(rec, indent=2, sort_keys=True) + "\n")
    return rec


def files(out: Path) -> list[Path]:
    """What a release directory holds, in upload order (artifacts last: the notes first)."""
    meta = [out / n for n in (NOTES, SUMS, PROVENANCE, SBOM, RELEASE_RECORD)]
    rest = sorted(p for p in out.iterdir() if p.is_file() and p not in meta)
    return [p for p in meta if p.is_file()] + rest
