"""`buildtool install`: the best artifact of a release for this machine, verified, proven here
by the smoke test, and installed atomically — falling back to the next best when it fails.

A release is what `publish` writes (a directory, or the same files served over HTTP):
``release.json`` (the artifacts, their kinds, targets and sha256), ``SHA256SUMS``,
``provenance.intoto.jsonl`` (an in-toto statement per artifact) and each artifact's manifest
beside it. Every candidate of the asked kind is judged against this host — the same host
record and fitting rules as `lab run` (:mod:`buildtool.artifacts.fit`): platform, CPU
features, C library, a device of its backend with a driver new enough, its GPU code covering
the GPU — and a software renderer (Mesa's lavapipe) is no GPU unless allowed. The fitting
ones are ranked (GPU backends first, then the CPU build tuned closest to this CPU) and tried
in order: download, sha256 against ``SHA256SUMS``, ``release.json`` and the provenance
statement, unpack, smoke; the first that passes is installed.

The prefix::

    PREFIX/versions/<artifact>/   each installed artifact, unpacked
    PREFIX/current -> versions/<artifact>   switched by one rename (atomic)
    PREFIX/bin -> current         the stable path: PREFIX/bin/llama-server
    PREFIX/install.json           what is installed, from which release, what was rejected

A new version is unpacked and smoke-tested beside the old one; ``current`` moves only after it
passed, and the old version is removed only then: there is no moment without a working
``llama-server``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from buildtool import backends, inputs, records
from buildtool.abi import SystemAbi
from buildtool.artifacts import RELEASE_RECORD, tarball
from buildtool.artifacts.fit import unfit
from buildtool.detect.cpu import CpuInfo
from buildtool.errors import BuildtoolError, DataError, SmokeError, UsageError
from buildtool.grammar import ArtifactKind
from buildtool.inputs import sha256_file
from buildtool.outputs import atomic_path, parse_sums, sidecar
from buildtool.paths import writable_dir
from buildtool.records import (
    HostFacts,
    InstallRecord,
    InstallRejection,
    InstallStage,
    Manifest,
    ReleaseArtifact,
    ReleaseRecord,
    SmokeRecord,
)

Note = Callable[[str], None]
Progress = Callable[[int, int], None]  # MiB done, MiB in all
SUMS = "SHA256SUMS"
PROVENANCE = "provenance.intoto.jsonl"
RECORD = "install.json"
RECORD_SCHEMA = 1
ARTIFACT_LIMIT = 8 << 30  # the largest download accepted (a CUDA tarball is ~1 GB)
TIMEOUT = 60
INSTALLABLE: tuple[ArtifactKind, ...] = ("tarball",)


class InstallError(BuildtoolError):
    """Nothing in the release can be installed here (exit code 8, as a failed smoke)."""

    exit_code = SmokeError.exit_code


# ------------------------------------------------------------------------------ sources


class Source(Protocol):
    @property
    def where(self) -> str:
        """The directory or base URL, as said in messages and the install record."""
        ...

    def read(self, name: str) -> bytes:
        """A small file of the release (records, sums), whole."""
        ...

    def fetch(self, name: str, dest: Path, progress: Progress | None = None) -> None:
        """An artifact of the release, into ``dest``."""
        ...

    def exists(self, name: str) -> bool:
        ...


@dataclass(frozen=True)
class DirectorySource:
    path: Path

    @property
    def where(self) -> str:
        return str(self.path)

    def _file(self, name: str) -> Path:
        if "/" in name or name in ("", ".", ".."):
            raise DataError(f"{name!r} is not a file name of a release", path=self.path)
        return self.path / name

    def read(self, name: str) -> bytes:
        return inputs.read_bytes(self._file(name), limit=inputs.RECORD_LIMIT, error=DataError)

    def fetch(self, name: str, dest: Path, progress: Progress | None = None) -> None:
        src = self._file(name)
        if not src.is_file():
            raise DataError(f"{name} is listed but not in the release", path=self.path)
        shutil.copyfile(src, dest)

    def exists(self, name: str) -> bool:
        return self._file(name).is_file()


@dataclass(frozen=True)
class HttpSource:
    base: str  # ends with "/"

    @property
    def where(self) -> str:
        return self.base

    def _url(self, name: str) -> str:
        if "/" in name or name in ("", ".", ".."):
            raise DataError(f"{name!r} is not a file name of a release", path=self.base)
        return urllib.parse.urljoin(self.base, urllib.parse.quote(name))

    def _open(self, name: str) -> Any:
        url = self._url(name)
        try:
            return urllib.request.urlopen(url, timeout=TIMEOUT)  # http(s) only: open_source
        except urllib.error.HTTPError as exc:
            raise DataError(f"{url}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DataError(f"{url}: {reason}",
                            hint="is the release served there, and reachable?") from None

    def read(self, name: str) -> bytes:
        with self._open(name) as resp:
            data: bytes = resp.read(inputs.RECORD_LIMIT + 1)
        if len(data) > inputs.RECORD_LIMIT:
            raise DataError(f"{self._url(name)} is larger than a release record can be")
        return data

    def fetch(self, name: str, dest: Path, progress: Progress | None = None) -> None:
        with self._open(name) as resp, dest.open("wb") as out:
            length = resp.headers.get("Content-Length", "")
            total = -(-int(length) // (1 << 20)) if length.isdigit() else 0
            size = 0
            while chunk := resp.read(1 << 20):
                size += len(chunk)
                if size > ARTIFACT_LIMIT:
                    raise DataError(f"{self._url(name)} is larger than {ARTIFACT_LIMIT >> 30} GiB")
                out.write(chunk)
                if progress is not None and total:
                    progress(min(-(-size // (1 << 20)), total), total)

    def exists(self, name: str) -> bool:
        try:
            with self._open(name):
                return True
        except DataError:
            return False


def open_source(spec: str) -> Source:
    """A release directory, or the base URL (http/https) a release directory is served at."""
    parts = urllib.parse.urlsplit(spec)
    if parts.scheme in ("http", "https"):
        if not parts.netloc:
            raise UsageError(f"{spec}: no host in the URL")
        return HttpSource(spec if spec.endswith("/") else spec + "/")
    if parts.scheme and len(parts.scheme) > 1:
        raise UsageError(f"{spec}: an install source is a release directory or an http(s) URL",
                         hint="a release directory is what `buildtool publish --out` writes")
    path = Path(spec)
    if not path.is_dir():
        raise UsageError(f"{spec} is not a directory")
    return DirectorySource(path.resolve())


# ------------------------------------------------------------------------------ the release


@dataclass(frozen=True, kw_only=True)
class Release:
    source: Source
    record: ReleaseRecord
    sums: dict[str, str]
    provenance: dict[str, str]  # artifact file → the sha256 its statement names


def load_release(source: Source) -> Release:
    where = f"{source.where.rstrip('/')}/"
    rec = records.from_text(ReleaseRecord, source.read(RELEASE_RECORD).decode("utf-8", "replace"),
                            where + RELEASE_RECORD)
    sums = parse_sums(source.read(SUMS).decode("utf-8", "replace"), where + SUMS)
    return Release(source=source, record=rec, sums=sums,
                   provenance=read_provenance(source.read(PROVENANCE), where + PROVENANCE))


def read_provenance(data: bytes, where: str) -> dict[str, str]:
    """File name → sha256 from the release's in-toto statements (one JSON per line)."""
    out: dict[str, str] = {}
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
            subjects = doc["subject"]
            for subject in subjects:
                out[str(subject["name"])] = str(subject["digest"]["sha256"])
        except (ValueError, KeyError, TypeError):
            raise DataError("not an in-toto statement with subjects", path=where,
                            line=number) from None
    return out


# ------------------------------------------------------------------------------ ranking


@dataclass(kw_only=True)
class Candidate:
    artifact: ReleaseArtifact
    manifest: Manifest | None = None
    rejected: str | None = None  # why it is not (or could not be) installed
    stage: InstallStage | None = None  # where it was (or is being) tried

    @property
    def name(self) -> str:
        return str(self.artifact.file)

    def to_json(self) -> dict[str, Any]:
        m = self.manifest
        return {"artifact": self.name, "target": self.artifact.target,
                "family": m.family if m else None,
                "cpu": m.cpu.level if m else None,
                "rejected": self.rejected, "stage": self.stage}


def rank_key(c: Candidate) -> tuple[int, int, int, int, str]:
    """GPU builds first (the GPU vendor's own backend before a portable one: the family's
    ``gpu_preference``), then the CPU build claiming the most of this CPU (a tuned level
    before all-variants, which picks at run time but carries every variant)."""
    m = c.manifest
    assert m is not None
    portable = 1 if m.cpu.policy == "all-variants" else 0
    return (0 if m.gpu else 1, backends.family(m.family).gpu_preference, portable,
            -len(m.cpu.required_features), c.name)


def candidates(release: Release, kind: ArtifactKind, *, host: HostFacts, cpu: CpuInfo,
               system: SystemAbi | None, allow_software_gpu: bool) -> list[Candidate]:
    """Every artifact of ``kind`` in the release: the fitting ones first, best first, then
    those that do not fit, each with its reason."""
    out: list[Candidate] = []
    for art in release.record.artifacts:
        if art.kind != kind:
            continue
        c = Candidate(artifact=art)
        out.append(c)
        name = sidecar(Path(art.file), "manifest").name
        if not release.source.exists(name):
            c.rejected, c.stage = f"the release has no {name}", "fit"
            continue
        c.manifest = records.from_text(Manifest, release.source.read(name).decode(
            "utf-8", "replace"), f"{release.source.where.rstrip('/')}/{name}")
        why = unfit(kind, c.name, c.manifest, host, cpu, system)
        if why is None and not allow_software_gpu:
            why = backends.family(c.manifest.family).only_software(host)
            if why is not None:
                why += " (--allow-software-gpu takes it)"
        if why is not None:
            c.rejected, c.stage = why, "fit"
    fitting = sorted((c for c in out if c.rejected is None), key=rank_key)
    return fitting + [c for c in out if c.rejected is not None]


# ------------------------------------------------------------------------------ installing


@dataclass(kw_only=True)
class Outcome:
    prefix: Path
    release: str
    source: str
    installed: Candidate | None = None
    candidates: list[Candidate] = field(default_factory=list)
    changed: bool = False  # False: the same artifact was installed already
    dry_run: bool = False
    previous: str | None = None
    smoke: SmokeRecord | None = None

    def to_json(self) -> dict[str, Any]:
        return {"prefix": str(self.prefix), "release": self.release, "source": self.source,
                "installed": self.installed.name if self.installed else None,
                "changed": self.changed, "dry_run": self.dry_run, "previous": self.previous,
                "llama_server": str(self.prefix / "bin" / "llama-server")
                if self.installed else None,
                "candidates": [c.to_json() for c in self.candidates]}


def read_record(prefix: Path) -> InstallRecord | None:
    path = prefix / RECORD
    return records.load(InstallRecord, path) if path.is_file() else None


def check_prefix(prefix: Path) -> None:
    """The prefix is empty, absent or one `install` manages (never a user's directory), and
    this process may write it (not below a regular file, not read-only)."""
    writable_dir(prefix, "--prefix")
    if prefix.is_symlink() or (prefix.exists() and not prefix.is_dir()):
        raise UsageError(f"{prefix} exists and is not a directory")
    if prefix.is_dir() and any(prefix.iterdir()) and not (prefix / RECORD).is_file():
        raise UsageError(f"{prefix} is not empty and holds no {RECORD}: refusing to install "
                         "into a directory buildtool does not manage",
                         hint="choose an empty or new --prefix")


def install(spec: str, prefix: Path, *, kind: ArtifactKind, host: HostFacts, cpu: CpuInfo,
            system: SystemAbi | None, upgrade: bool = False, dry_run: bool = False,
            fallback: bool = True, allow_software_gpu: bool = False,
            smoke: Callable[[Path], SmokeRecord], note: Note, step: Note,
            progress: Callable[[int, int, str], None] | None = None) -> Outcome:
    """Install the best artifact of the release at ``spec`` into ``prefix``. ``smoke``
    runs the smoke test on an unpacked artifact here; ``progress`` (MiB done, MiB in all,
    file name) shows a download."""
    if kind not in INSTALLABLE:
        raise UsageError(f"install takes {', '.join(INSTALLABLE)} artifacts for now",
                         hint="wheels: pip install from the release's index")
    check_prefix(prefix)
    source = open_source(spec)
    step(f"release at {source.where}")
    release = load_release(source)
    outcome = Outcome(prefix=prefix, release=release.record.tag, source=source.where,
                      dry_run=dry_run)
    outcome.candidates = candidates(release, kind, host=host, cpu=cpu, system=system,
                                    allow_software_gpu=allow_software_gpu)
    for c in outcome.candidates:
        note(f"{'fits    ' if c.rejected is None else 'rejected'} {c.name}"
             + (f": {c.rejected}" if c.rejected else ""))
    existing = read_record(prefix)
    outcome.previous = existing.artifact if existing else None
    fitting = [c for c in outcome.candidates if c.rejected is None]
    if not fitting:
        raise InstallError(f"no {kind} of release {release.record.tag} fits this host:\n  "
                           + "\n  ".join(f"{c.name}: {c.rejected}" for c in outcome.candidates),
                           hint="a CPU artifact of the release always fits a host of its "
                                "platform; is this the platform it was built for?")
    if existing is not None and _current_ok(prefix, existing):
        same = next((c for c in fitting if c.artifact.sha256 == existing.sha256), None)
        # installed from this release (the best here, or the best that passed here when it
        # was installed): nothing to do
        if same is not None and (same is fitting[0] or existing.release == release.record.tag):
            outcome.installed = same
            note(f"{same.name} is installed already ({prefix / 'bin' / 'llama-server'})")
            return outcome
        if not upgrade:
            raise UsageError(
                f"{prefix} holds {existing.artifact} (release {existing.release}); "
                f"the best of release {release.record.tag} here is {fitting[0].name}",
                hint="--upgrade installs it, keeping the installed one until it passed its "
                     "smoke test")
    if dry_run:
        return outcome
    for c in fitting:
        try:
            outcome.smoke = _try(release, c, prefix, smoke, step, note, progress)
        except BuildtoolError as exc:  # damaged, refused by this host, failed its smoke
            if isinstance(exc, UsageError):
                raise
            c.rejected = exc.message.splitlines()[0]
            note(f"rejected {c.name} ({c.stage}): {c.rejected}")
            if not fallback:
                raise InstallError(f"{c.name} cannot be installed here: {c.rejected}",
                                   hint="without --no-fallback the next best is tried") from exc
            continue
        outcome.installed, outcome.changed = c, True
        _write_record(prefix, release, outcome, existing)
        return outcome
    raise InstallError(f"every {kind} of release {release.record.tag} that fits this host "
                       "failed here:\n  "
                       + "\n  ".join(f"{c.name}: {c.rejected}" for c in fitting))


def _current_ok(prefix: Path, existing: InstallRecord) -> bool:
    version = prefix / "versions" / existing.artifact
    return (prefix / "current").resolve() == version.resolve() and \
        (version / "llama-server").is_file()


def _try(release: Release, c: Candidate, prefix: Path, smoke: Callable[[Path], SmokeRecord],
         step: Note, note: Note,
         progress: Callable[[int, int, str], None] | None = None) -> SmokeRecord:
    """Download, verify, unpack and smoke one candidate; on success it is the current one."""
    name = c.name
    prefix.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=prefix, prefix=".install-"))
    try:
        step(f"{name}: download")
        c.stage = "download"
        download = work / name
        release.source.fetch(name, download, None if progress is None else
                             lambda done, total: progress(done, total, f"MiB of {name}"))
        c.stage = "verify"
        verify(release, c.artifact, download)
        note(f"sha256 {c.artifact.sha256[:16]}… as SHA256SUMS, release.json and the "
             "provenance statement say")
        c.stage = "unpack"
        unpacked = work / "unpacked"
        unpacked.mkdir()
        root, _ = tarball.unpack(download, unpacked)
        download.unlink()
        step(f"{name}: smoke test on this machine")
        c.stage = "smoke"
        result = smoke(root)
        if not result.passed:
            failed = "; ".join(f"{f.name} ({f.detail})" for f in result.failures())
            raise SmokeError(f"smoke test failed here: {failed}")
        _place(prefix, root, name)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def verify(release: Release, art: ReleaseArtifact, path: Path) -> None:
    """The downloaded file is the one the release lists, sums and states provenance for."""
    got = sha256_file(path)
    listed = {"release.json": art.sha256, SUMS: release.sums.get(str(art.file)),
              PROVENANCE: release.provenance.get(str(art.file))}
    missing = [k for k, v in listed.items() if v is None]
    if missing:
        raise DataError(f"{art.file} is not in the release's {', '.join(missing)}")
    wrong = [k for k, v in listed.items() if v != got]
    if wrong:
        raise DataError(f"{art.file}'s sha256 is {got[:16]}…, not what {', '.join(wrong)} "
                        "say: refused (a damaged or tampered download)")


def _place(prefix: Path, root: Path, name: str) -> None:
    """Move the unpacked artifact to versions/<name> and make it current (one rename)."""
    versions = prefix / "versions"
    versions.mkdir(exist_ok=True)
    final = versions / name
    if final.exists():
        shutil.rmtree(final)
    root.rename(final)
    link = prefix / f".current-{os.getpid()}"
    link.unlink(missing_ok=True)
    link.symlink_to(Path("versions") / name)
    link.replace(prefix / "current")  # atomic: the old one or the new one, never none
    bin_link = prefix / "bin"
    if not bin_link.is_symlink():
        if bin_link.exists():
            raise UsageError(f"{bin_link} exists and is not buildtool's link")
        bin_link.symlink_to("current")


def _write_record(prefix: Path, release: Release, outcome: Outcome,
                  previous: InstallRecord | None) -> None:
    chosen = outcome.installed
    assert chosen is not None
    rec = InstallRecord(
        artifact=chosen.name, sha256=chosen.artifact.sha256, target=chosen.artifact.target,
        release=release.record.tag, source=release.source.where,
        installed_at=datetime.now(UTC).isoformat(timespec="seconds"),
        llama_server=str(prefix / "bin" / "llama-server"),
        smoke=outcome.smoke.verdict if outcome.smoke else None,
        rejected=tuple(InstallRejection(artifact=c.name, stage=c.stage, reason=c.rejected)
                       for c in outcome.candidates
                       if c.rejected is not None and c.stage is not None))
    with atomic_path(prefix / RECORD) as tmp:
        tmp.write_text(json.dumps(records.to_json(rec), indent=2) + "\n")
    if previous is not None and previous.artifact != chosen.name:
        shutil.rmtree(prefix / "versions" / previous.artifact, ignore_errors=True)
