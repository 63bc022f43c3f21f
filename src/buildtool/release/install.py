"""`buildtool install`: the best artifact for this machine, verified, proven here by the
smoke test, and installed atomically — falling back to the next best when it fails.

Two sources (a directory, or the same files served over HTTP):

* a **release** `publish` wrote: ``release.json`` (the artifacts, their kinds, targets and
  sha256), ``SHA256SUMS``, ``provenance.intoto.jsonl`` (an in-toto statement per artifact)
  and each artifact's manifest beside it; a download must match all three;
* a **PEP 503 index** (`publish --index` writes ``simple/``; ``simple/<target>/`` is one
  target's): its pages link the wheels with ``#sha256=``, and each wheel's manifest lies
  beside it; a download must match its link and its RECORD, and the manifest inside it
  the one it was judged by.

Every candidate of the asked kind (tarball, wheel or image) is judged against this host — the same
host record and fitting rules as `lab run` (:mod:`buildtool.artifacts.fit`): platform, CPU
features, C library, a device of its backend with a driver new enough, its GPU code covering
the GPU, a wheel's tags this Python — and a software renderer (Mesa's lavapipe) is no GPU
unless allowed. The fitting ones are ranked (GPU backends first, then the CPU build tuned
closest to this CPU) and tried in order: download, verify, install the kind's way (the kind
module's ``install``: unpacked; into a fresh virtual environment; loaded into docker or
podman with a launcher), smoke; the first that passes is installed.

The prefix::

    PREFIX/versions/<artifact>/   each installed artifact: unpacked, a virtual environment,
                                  or an image's launcher
    PREFIX/current -> versions/<artifact>   switched by one rename (atomic)
    PREFIX/bin -> current         the stable path: PREFIX/bin/llama-server
                                  (a wheel's: current/bin, its console scripts)
    PREFIX/install.json           what is installed, from where, what was rejected and why

A new version is unpacked and smoke-tested beside the old one; ``current`` moves only after it
passed, and the old version is removed only then: there is no moment without a working
``llama-server``. One prefix holds one kind.
"""

from __future__ import annotations

import contextlib
import html.parser
import json
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from buildtool import backends, inputs, records
from buildtool.abi import SystemAbi
from buildtool.artifacts import KINDS, RELEASE_RECORD
from buildtool.artifacts.fit import unfit
from buildtool.artifacts.wheel import WheelName
from buildtool.detect.cpu import CpuInfo
from buildtool.errors import BuildtoolError, DataError, SmokeError, UsageError
from buildtool.grammar import ArtifactKind
from buildtool.inputs import sha256_file
from buildtool.outputs import atomic_path, make_parent, parse_sums, sidecar
from buildtool.paths import writable_dir
from buildtool.records import (
    HostFacts,
    InstallRecord,
    InstallRejection,
    InstallStage,
    Manifest,
    ReleaseRecord,
    SmokeRecord,
)
from buildtool.toolchains.engines import Engine

Note = Callable[[str], None]
Progress = Callable[[int, int], None]  # MiB done, MiB in all
Smoke = Callable[[Path | str, ArtifactKind], "SmokeRecord"]  # the smoke test here
SUMS = "SHA256SUMS"
PROVENANCE = "provenance.intoto.jsonl"
RECORD = "install.json"
ARTIFACT_LIMIT = 8 << 30  # the largest download accepted (a CUDA tarball is ~1 GB)
TIMEOUT = 60
INSTALLABLE: tuple[ArtifactKind, ...] = ("tarball", "wheel", "image")
INSTALLING: dict[ArtifactKind, str] = {
    "tarball": "unpack", "wheel": "install into a virtual environment",
    "image": "load into the container engine, write its launcher"}
INDEX_PAGE = "index.html"


class InstallError(BuildtoolError):
    """Nothing in the release can be installed here (exit code 8, as a failed smoke)."""

    exit_code = SmokeError.exit_code


# ------------------------------------------------------------------------------ sources


@dataclass(frozen=True)
class Source:
    """Where a release or an index is read from: a directory (read through ``file:`` URLs)
    or an http(s) URL. A release names its files (``name``); an index page links them
    (absolute URLs, joined with the page's), and a link never leaves the source's kind: a
    directory's pages link files, a web server's link http(s)."""

    base: str  # a URL ending with "/"
    where: str  # the directory or URL, as said in messages and the install record

    @property
    def schemes(self) -> tuple[str, ...]:
        return ("file",) if self.base.startswith("file:") else ("http", "https")

    def url(self, ref: str) -> str:
        """A file name of a release, or an absolute URL an index page linked."""
        if "://" not in ref and not ref.startswith("file:"):
            if "/" in ref or ref in ("", ".", ".."):
                raise DataError(f"{ref!r} is not a file name of a release", path=self.where)
            return urllib.parse.urljoin(self.base, urllib.parse.quote(ref))
        scheme = urllib.parse.urlsplit(ref).scheme
        if scheme not in self.schemes:
            raise DataError(f"{ref}: a {scheme} link in a source read over "
                            f"{'/'.join(self.schemes)}", path=self.where)
        return urllib.parse.urldefrag(ref).url

    def show(self, url: str) -> str:
        """A URL as the user knows it: a local file by its path."""
        if url.startswith("file:"):
            return urllib.request.url2pathname(urllib.parse.urlsplit(url).path)
        return url

    def _open(self, ref: str) -> Any:
        url = self.url(ref)
        try:
            return urllib.request.urlopen(url, timeout=TIMEOUT)  # file/http(s): self.schemes
        except urllib.error.HTTPError as exc:
            raise DataError(f"{url}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if url.startswith("file:"):
                raise DataError(f"{self.show(url)}: {getattr(reason, 'strerror', None) or reason}"
                                ) from None
            raise DataError(f"{url}: {reason}",
                            hint="is the release served there, and reachable?") from None

    def read(self, ref: str) -> bytes:
        """A small file (records, sums, index pages), whole."""
        with self._open(ref) as resp:
            return self._whole(resp, ref)

    def read_if_present(self, ref: str) -> bytes | None:
        """:meth:`read`, or None where the file cannot be opened (absent, unreachable): one
        request where :meth:`exists` and then :meth:`read` make two."""
        try:
            resp = self._open(ref)
        except DataError:
            return None
        with resp:
            return self._whole(resp, ref)

    def _whole(self, resp: Any, ref: str) -> bytes:
        data: bytes = resp.read(inputs.RECORD_LIMIT + 1)
        if len(data) > inputs.RECORD_LIMIT:
            raise DataError(f"{self.show(self.url(ref))} is larger than a record can be")
        return data

    def fetch(self, ref: str, dest: Path, progress: Progress | None = None) -> None:
        """An artifact, into ``dest``."""
        with self._open(ref) as resp, dest.open("wb") as out:
            length = resp.headers.get("Content-Length", "")
            total = -(-int(length) // (1 << 20)) if length.isdigit() else 0
            size = 0
            while chunk := resp.read(1 << 20):
                size += len(chunk)
                if size > ARTIFACT_LIMIT:
                    raise DataError(f"{self.show(self.url(ref))} is larger than "
                                    f"{ARTIFACT_LIMIT >> 30} GiB")
                out.write(chunk)
                if progress is not None and total:
                    progress(min(-(-size // (1 << 20)), total), total)

    def exists(self, ref: str) -> bool:
        try:
            with self._open(ref):
                return True
        except DataError:
            return False


def open_source(spec: str) -> Source:
    """A release directory or PEP 503 index directory, or the http(s) URL one is served at."""
    parts = urllib.parse.urlsplit(spec)
    if parts.scheme in ("http", "https"):
        if not parts.netloc:
            raise UsageError(f"{spec}: no host in the URL")
        return Source(spec if spec.endswith("/") else spec + "/", spec)
    if parts.scheme and len(parts.scheme) > 1:
        raise UsageError(f"{spec}: an install source is a release directory, a PEP 503 index "
                         "or an http(s) URL of one",
                         hint="a release directory is what `buildtool publish --out` writes")
    path = Path(spec)
    if not path.is_dir():
        raise UsageError(f"{spec} is not a directory")
    path = path.resolve()
    return Source(path.as_uri() + "/", str(path))


# ------------------------------------------------------------------------------ what it offers


@dataclass(frozen=True, kw_only=True)
class Offer:
    """One artifact a source offers, and what vouches for its bytes."""

    file: str
    kind: ArtifactKind
    target: str | None  # None: an index says it only in the wheel's manifest
    release: str  # the release's tag; an index's wheel: its version
    url: str  # what Source.fetch takes
    manifest_url: str
    digests: dict[str, str | None]  # each witness and the sha256 it names (None: silent)


@dataclass(frozen=True, kw_only=True)
class Catalog:
    """What a source offers: a release (``release.json``, ``SHA256SUMS``, provenance
    statements) or a PEP 503 index (links with ``#sha256=``)."""

    source: Source
    name: str  # the release's tag, or "PEP 503 index"
    what: str  # as messages say it: "release b11312", "the PEP 503 index"
    offers: tuple[Offer, ...]


INDEX_NAME = "PEP 503 index"
INDEX_LINK = "the index's link"
INDEX_PAGES = 256  # the most pages read from one index
INDEX_DEPTH = 2  # buildtool's simple/ → <target>/ → <project>/


def load_catalog(source: Source) -> Catalog:
    """A release when the source has ``release.json``, else a PEP 503 index (its
    ``index.html``); DataError naming the source when it is neither."""
    record = source.read_if_present(RELEASE_RECORD)
    if record is not None:
        return load_release(source, record)
    if source.exists(INDEX_PAGE):
        return load_index(source)
    raise DataError(f"{source.where} has neither {RELEASE_RECORD} (a release) nor "
                    f"{INDEX_PAGE} (a PEP 503 index)",
                    hint="`buildtool publish --out DIR` writes a release; `--index DIR` an "
                         "index (install from DIR/simple/)")


def load_release(source: Source, record: bytes) -> Catalog:
    """The release whose ``release.json`` is ``record``."""
    where = f"{source.where.rstrip('/')}/"
    rec = records.from_text(ReleaseRecord, record.decode("utf-8", "replace"),
                            where + RELEASE_RECORD)
    sums = parse_sums(source.read(SUMS).decode("utf-8", "replace"), where + SUMS)
    provenance = read_provenance(source.read(PROVENANCE), where + PROVENANCE)
    return Catalog(source=source, name=rec.tag, what=f"release {rec.tag}", offers=tuple(
        Offer(file=str(a.file), kind=a.kind, target=a.target, release=rec.tag, url=str(a.file),
              manifest_url=sidecar(Path(a.file), "manifest").name,
              digests={RELEASE_RECORD: a.sha256, SUMS: sums.get(str(a.file)),
                       PROVENANCE: provenance.get(str(a.file))})
        for a in rec.artifacts))


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


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.hrefs.append(href)


def _page_url(source: Source, url: str) -> str:
    # a web server answers a directory with its index; a directory is read file by file
    return url + INDEX_PAGE if url.startswith("file:") else url


def load_index(source: Source) -> Catalog:
    """Every wheel a PEP 503 index links, from its root (``simple/<target>/``) or from
    buildtool's page of targets above it (``simple/``). A wheel's sha256 is its link's
    ``#sha256=``; its manifest lies beside it (``publish --index`` puts it there)."""
    offers: dict[str, Offer] = {}
    pages, queue = 0, [(source.base, 0)]
    while queue:
        url, depth = queue.pop(0)
        pages += 1
        if pages > INDEX_PAGES:
            raise DataError(f"{source.where}: more than {INDEX_PAGES} index pages")
        page = _page_url(source, url)
        parser = _Links()
        parser.feed(source.read(page).decode("utf-8", "replace"))
        for href in parser.hrefs:
            link = urllib.parse.urljoin(url, href)
            bare, fragment = urllib.parse.urldefrag(link)
            name = urllib.parse.unquote(bare.rsplit("/", 1)[-1])
            if name.endswith(".whl"):
                sha = fragment.partition("=")[2] if fragment.startswith("sha256=") else None
                offer = Offer(file=name, kind="wheel", target=None, release=_wheel_version(name),
                              url=source.url(bare), digests={INDEX_LINK: sha},
                              manifest_url=source.url(urllib.parse.urljoin(
                                  bare, urllib.parse.quote(sidecar(Path(name),
                                                                   "manifest").name))))
                if name in offers and offers[name].digests != offer.digests:
                    raise DataError(f"{source.show(page)} links {name} with another sha256 "
                                    "than another page does")
                offers[name] = offer
            elif bare.endswith("/") and bare.startswith(source.base) and bare != url \
                    and depth < INDEX_DEPTH:
                queue.append((bare, depth + 1))
    if not offers:
        raise DataError(f"{source.where}: the index links no wheels")
    return Catalog(source=source, name=INDEX_NAME, what=f"the {INDEX_NAME}",
                   offers=tuple(offers.values()))


def _wheel_version(name: str) -> str:
    try:
        return WheelName.parse(name).version
    except BuildtoolError:
        return "unknown"


# ------------------------------------------------------------------------------ ranking


@dataclass(kw_only=True)
class Candidate:
    offer: Offer
    manifest: Manifest | None = None
    rejected: str | None = None  # why it is not (or could not be) installed
    stage: InstallStage | None = None  # where it was (or is being) tried

    @property
    def name(self) -> str:
        return self.offer.file

    @property
    def target(self) -> str | None:
        return self.manifest.target if self.manifest else self.offer.target

    def to_json(self) -> dict[str, Any]:
        m = self.manifest
        return {"artifact": self.name, "kind": self.offer.kind, "target": self.target,
                "family": m.family if m else None, "cpu": m.cpu.level if m else None,
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


def candidates(catalog: Catalog, kind: ArtifactKind, *, host: HostFacts, cpu: CpuInfo,
               system: SystemAbi | None, allow_software_gpu: bool) -> list[Candidate]:
    """Every artifact of ``kind`` offered: the fitting ones first, best first, then those
    that do not fit, each with its reason."""
    out: list[Candidate] = []
    source = catalog.source
    for offer in catalog.offers:
        if offer.kind != kind:
            continue
        c = Candidate(offer=offer)
        out.append(c)
        manifest_url = source.url(offer.manifest_url)
        data = source.read_if_present(offer.manifest_url)
        if data is None:
            c.rejected, c.stage = f"no manifest beside it ({source.show(manifest_url)})", "fit"
            continue
        c.manifest = records.from_text(Manifest, data.decode("utf-8", "replace"),
                                       source.show(manifest_url))
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
    kind: ArtifactKind
    release: str
    source: str
    installed: Candidate | None = None
    candidates: list[Candidate] = field(default_factory=list)
    changed: bool = False  # False: the same artifact was installed already
    dry_run: bool = False
    previous: str | None = None
    smoke: SmokeRecord | None = None

    def to_json(self) -> dict[str, Any]:
        return {"prefix": str(self.prefix), "kind": self.kind, "release": self.release,
                "source": self.source,
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
            fallback: bool = True, allow_software_gpu: bool = False, smoke: Smoke,
            note: Note, step: Note, engine: Engine | None = None,
            progress: Callable[[int, int, str], None] | None = None) -> Outcome:
    """Install the best artifact of ``kind`` the release or index at ``spec`` offers into
    ``prefix``. ``smoke`` runs the smoke test here on what the kind installed (an unpacked
    tarball, the virtual environment a wheel is installed in, an image's reference);
    ``engine``: docker or podman, for images; ``progress`` (MiB done, MiB in all, what)
    shows a download."""
    if kind not in INSTALLABLE:
        raise UsageError(f"install takes {', '.join(INSTALLABLE)} artifacts")
    check_prefix(prefix)
    existing = read_record(prefix)
    if existing is not None and existing.kind != kind:
        raise UsageError(f"{prefix} holds a {existing.kind} ({existing.artifact}); a {kind} "
                         "goes into another --prefix")
    source = open_source(spec)
    step(f"artifacts at {source.where}")
    catalog = load_catalog(source)
    outcome = Outcome(prefix=prefix, kind=kind, release=catalog.name, source=source.where,
                      dry_run=dry_run)
    outcome.candidates = candidates(catalog, kind, host=host, cpu=cpu, system=system,
                                    allow_software_gpu=allow_software_gpu)
    for c in outcome.candidates:
        note(f"{'fits    ' if c.rejected is None else 'rejected'} {c.name}"
             + (f": {c.rejected}" if c.rejected else ""))
    outcome.previous = existing.artifact if existing else None
    fitting = [c for c in outcome.candidates if c.rejected is None]
    what = catalog.what
    if not fitting:
        raise InstallError(f"no {kind} of {what} fits this host:\n  "
                           + "\n  ".join(f"{c.name}: {c.rejected}" for c in outcome.candidates)
                           if outcome.candidates else f"{what} offers no {kind}",
                           hint="a CPU artifact always fits a host of its platform; is this "
                                "the platform it was built for?")
    if existing is not None and _current_ok(prefix, existing):
        same = next((c for c in fitting
                     if next(iter(c.offer.digests.values())) == existing.sha256), None)
        # installed from this release (the best here, or the best that passed here when it
        # was installed): nothing to do
        if same is not None and (same is fitting[0] or existing.release == same.offer.release):
            outcome.installed = same
            note(f"{same.name} is installed already ({prefix / 'bin' / 'llama-server'})")
            return outcome
        if not upgrade:
            raise UsageError(
                f"{prefix} holds {existing.artifact} ({existing.release}); the best of "
                f"{what} here is {fitting[0].name}",
                hint="--upgrade installs it, keeping the installed one until it passed its "
                     "smoke test")
    if dry_run:
        return outcome
    for c in fitting:
        try:
            outcome.smoke = _try(catalog, c, prefix, smoke, step, note, engine, progress)
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
        _write_record(prefix, catalog, outcome, existing)
        return outcome
    raise InstallError(f"every {kind} of {what} that fits this host failed here:\n  "
                       + "\n  ".join(f"{c.name}: {c.rejected}" for c in fitting))


def _current_ok(prefix: Path, existing: InstallRecord) -> bool:
    version = prefix / "versions" / existing.artifact
    program = version / KINDS[existing.kind].INSTALLED_PROGRAMS / "llama-server"
    return (prefix / "current").resolve() == version.resolve() and program.is_file()


def _try(catalog: Catalog, c: Candidate, prefix: Path, smoke: Smoke, step: Note, note: Note,
         engine: Engine | None,
         progress: Callable[[int, int, str], None] | None = None) -> SmokeRecord:
    """Download, verify, install (the kind's way: unpacked, into a virtual environment,
    loaded into the engine) and smoke one candidate; on success it is the current one."""
    name, kind = c.name, c.offer.kind
    make_parent(prefix / RECORD)  # a prefix that cannot be made is a usage error, said
    work = Path(tempfile.mkdtemp(dir=prefix, prefix=".install-"))
    placed: Path | None = None  # versions/<name> until it passed: removed when it did not
    try:
        step(f"{name}: download")
        c.stage = "download"
        download = work / name
        catalog.source.fetch(c.offer.url, download, None if progress is None else
                             lambda done, total: progress(done, total, f"MiB of {name}"))
        c.stage = "verify"
        digest = verify(c.offer, download, c.manifest)
        note(f"sha256 {digest[:16]}… as {', '.join(c.offer.digests)} "
             + ("say" if len(c.offer.digests) > 1 else "says"))
        c.stage = "unpack" if kind == "tarball" else "install"
        step(f"{name}: {INSTALLING[kind]}")
        placed = dest = _fresh_version(prefix, name)
        assert c.manifest is not None
        subject = KINDS[kind].install(download, dest, c.manifest, engine)
        download.unlink()
        step(f"{name}: smoke test on this machine")
        c.stage = "smoke"
        result = smoke(subject, kind)
        if not result.passed:
            failed = "; ".join(f"{f.name} ({f.detail})" for f in result.failures())
            raise SmokeError(f"smoke test failed here: {failed}")
        placed = None
        _make_current(prefix, name, kind)
        return result
    finally:
        if placed is not None:
            shutil.rmtree(placed, ignore_errors=True)
            with contextlib.suppress(OSError):  # nothing installed yet: no versions/ either
                placed.parent.rmdir()
        shutil.rmtree(work, ignore_errors=True)


def verify(offer: Offer, path: Path, manifest: Manifest | None) -> str:
    """The downloaded file is the one every witness (release.json, SHA256SUMS, the provenance
    statement; an index's link) names; what is inside it is what its manifest records (the
    release gate's check, the kind's ``contents``); a manifest it carries (a wheel's) makes
    the claims it was judged by. Returns its sha256."""
    got = sha256_file(path)
    missing = [k for k, v in offer.digests.items() if v is None]
    if missing:
        raise DataError(f"{offer.file} has no sha256 in {', '.join(missing)}: it cannot be "
                        "verified")
    wrong = [k for k, v in offer.digests.items() if v != got]
    if wrong:
        raise DataError(f"{offer.file}'s sha256 is {got[:16]}…, not what {', '.join(wrong)} "
                        "say: refused (a damaged or tampered download)")
    kind = KINDS[offer.kind]
    try:
        bad = kind.contents(path, manifest)
        inner = kind.own_manifest(path)
    except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise DataError(f"{offer.file} cannot be read: {exc}") from None
    if bad:
        raise DataError(f"{offer.file}: what is inside differs from its record: "
                        f"{', '.join(bad[:5])}: refused")
    if inner is not None and manifest is not None and \
            (inner.target, inner.cpu, inner.platform, inner.gpu_archs) != \
            (manifest.target, manifest.cpu, manifest.platform, manifest.gpu_archs):
        raise DataError(f"{offer.file}: the manifest beside it is not the one inside it "
                        "(it was judged by a claim it does not make): refused")
    return got


def _fresh_version(prefix: Path, name: str) -> Path:
    """``versions/<name>``, empty: never the current one (a file of a published name does not
    change), an interrupted install's leftover removed."""
    final = prefix / "versions" / name
    if (prefix / "current").resolve() == final.resolve():
        raise DataError(f"{name} differs from the installed artifact of the same name: "
                        "refused (a published artifact never changes)")
    if final.is_symlink() or final.is_file():
        final.unlink()
    elif final.exists():
        shutil.rmtree(final)
    final.parent.mkdir(exist_ok=True)
    return final


def _make_current(prefix: Path, name: str, kind: ArtifactKind) -> None:
    """``current`` → versions/<name> (one rename: the old one or the new one, never none);
    ``bin`` → the directory of its programs (a wheel's: its environment's scripts)."""
    link = prefix / f".current-{os.getpid()}"
    link.unlink(missing_ok=True)
    link.symlink_to(Path("versions") / name)
    link.replace(prefix / "current")
    bin_link = prefix / "bin"
    target = os.path.normpath(Path("current") / KINDS[kind].INSTALLED_PROGRAMS)
    if bin_link.is_symlink() and str(bin_link.readlink()) == target:
        return
    if bin_link.exists() or bin_link.is_symlink():
        raise UsageError(f"{bin_link} exists and is not buildtool's link to {target}")
    bin_link.symlink_to(target)


def _write_record(prefix: Path, catalog: Catalog, outcome: Outcome,
                  previous: InstallRecord | None) -> None:
    chosen = outcome.installed
    assert chosen is not None and chosen.manifest is not None
    rec = InstallRecord(
        artifact=chosen.name, kind=chosen.offer.kind, sha256=sha256_of(chosen.offer),
        target=chosen.manifest.target, release=chosen.offer.release,
        source=catalog.source.where,
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


def sha256_of(offer: Offer) -> str:
    """The sha256 every witness agreed on (verify checked it)."""
    digest = next(iter(offer.digests.values()))
    assert digest is not None
    return digest
