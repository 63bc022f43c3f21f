"""Moving the pin: ``buildtool vendor lock`` writes a lock for another llama.cpp version.

A version comes from up to three kinds of source, each fetched and measured here:

* **upstream** — a build tag (``b11400``) or a commit, as GitHub's archive URL
  (``<repository>/archive/<ref>.tar.gz``); the commit is read from the archive itself (``git
  archive`` writes it into the tar's pax header), the build number from the tag;
* **PyPI** — a ``llama-cpp-python`` release, whose sdist vendors the complete upstream tree
  (``vendor/llama.cpp``); the commit it vendors is the submodule's ``HEAD`` in the sdist's
  ``.git/modules``. Its build number is not in it: it comes from the upstream tag, or
  ``--build-number``;
* **local** — a directory or an archive (an air-gapped machine's copy).

Every source that could be fetched is extracted and hashed (:func:`vendor.tree_digest`); all
must hold the same tree, and the lock pins that digest and each archive's sha256. A source
that cannot be reached (GitHub, from our machines) is reported and left out of the lock.
What changed against the previous lock is shown: version, commit, ggml's version, CMake
options added and removed (and the recipes that name a removed one), CPU variants added and
removed.
"""

from __future__ import annotations

import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from buildtool import inputs
from buildtool.errors import SourceError, UsageError
from buildtool.grammar import BUILD_TAG
from buildtool.outputs import write_json
from buildtool.schema import check_value
from buildtool.source import patches, vendor
from buildtool.source.vendor import Lock

Progress = Callable[[str], None]
PYPI = "https://pypi.org/pypi"
PROJECT = "llama-cpp-python"
SDIST_TREE = "vendor/llama.cpp"
TAG = re.compile(BUILD_TAG)
COMMIT = re.compile(r"[0-9a-f]{40}")
JSON_LIMIT = 16 << 20  # PyPI's JSON for llama-cpp-python is about 1 MB


@dataclass(frozen=True, kw_only=True)
class Measured:
    """One source, fetched and extracted: what it holds."""

    entry: vendor.SourceEntry  # as the lock will list it
    tree_sha256: str
    commit: str | None
    tree: Path  # the extracted tree (a temporary directory)


@dataclass(frozen=True, kw_only=True)
class Unreachable:
    name: str
    url: str
    why: str


@dataclass(frozen=True, kw_only=True)
class TreeFacts:
    """What a recipe author needs to know of a tree."""

    ggml_version: str | None
    options: frozenset[str]
    cpu_variants: frozenset[str]


@dataclass(kw_only=True)
class Outcome:
    lock_path: Path
    repository: str
    commit: str
    build_number: int
    tree_sha256: str
    sources: list[Measured]
    unreachable: list[Unreachable]
    facts: TreeFacts
    changes: list[str] = field(default_factory=list)
    written: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"lock": str(self.lock_path), "version": f"b{self.build_number}",
                "commit": self.commit, "tree_sha256": self.tree_sha256,
                "ggml_version": self.facts.ggml_version,
                "sources": [{"name": m.entry.name, "url": m.entry.url,
                             "sha256": m.entry.sha256} for m in self.sources],
                "unreachable": [{"name": u.name, "url": u.url, "why": u.why}
                                for u in self.unreachable],
                "changes": self.changes, "written": self.written}


def pypi_sdist(version: str, index: str = PYPI) -> tuple[str, str]:
    """The URL and sha256 of llama-cpp-python ``version``'s sdist, from PyPI's JSON API (the
    project's document: mirrors serve it, not always the per-version one)."""
    url = f"{index.rstrip('/')}/{PROJECT}/json"
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            raw = resp.read(JSON_LIMIT + 1)
    except urllib.error.HTTPError as exc:
        raise SourceError(f"{url}: {exc}") from exc
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise SourceError(f"{url}: {getattr(exc, 'reason', exc)}") from exc
    if len(raw) > JSON_LIMIT:
        raise SourceError(f"{url}: answer larger than {JSON_LIMIT >> 20} MiB")
    doc = inputs.parse_json(raw.decode("utf-8", "replace"), url, error=SourceError)
    releases = doc.get("releases") if isinstance(doc, dict) else None
    if not isinstance(releases, dict) or version not in releases:
        raise SourceError(f"{PROJECT} {version} is not on {index}")
    files = releases[version]
    for f in files if isinstance(files, list) else []:
        if isinstance(f, dict) and f.get("packagetype") == "sdist":
            digest = (f.get("digests") or {}).get("sha256")
            href = f.get("url")
            if isinstance(href, str) and isinstance(digest, str) and \
                    re.fullmatch(r"[0-9a-f]{64}", digest):
                resolved = urllib.parse.urljoin(url, href)
                if urllib.parse.urlsplit(resolved).scheme not in ("https", "http"):
                    raise SourceError(f"{url}: the sdist's URL {resolved!r} is not http(s); "
                                      "refused")
                return resolved, digest
    raise SourceError(f"{PROJECT} {version} on {index} has no sdist")


def upstream_url(repository: str, ref: str) -> str:
    return f"{repository.rstrip('/').removesuffix('.git')}/archive/{ref}.tar.gz"


def archive_commit(archive: Path) -> str | None:
    """The commit ``git archive`` wrote into a tarball's pax header (GitHub's archives)."""
    try:
        with tarfile.open(archive) as tf:
            tf.next()
            comment = tf.pax_headers.get("comment", "")
    except (tarfile.TarError, OSError, EOFError):
        return None
    return comment if COMMIT.fullmatch(comment) else None


def sdist_commit(archive: Path) -> str | None:
    """The llama.cpp commit a llama-cpp-python sdist vendors: its submodule's HEAD."""
    try:
        with tarfile.open(archive) as tf:
            for member in tf:
                if member.isfile() and member.name.endswith(
                        "/.git/modules/vendor/llama.cpp/HEAD") and member.size < 200:
                    fh = tf.extractfile(member)
                    head = fh.read().decode("ascii", "replace").strip() if fh else ""
                    return head if COMMIT.fullmatch(head) else None
    except (tarfile.TarError, OSError, EOFError):
        return None
    return None


def sdist_subdir(archive: Path) -> str:
    """``<top>/vendor/llama.cpp`` of an sdist."""
    try:
        with tarfile.open(archive) as tf:
            first = tf.next()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise SourceError(f"cannot read {archive}: {exc}") from exc
    if first is None:
        raise SourceError(f"{archive} is empty")
    return f"{first.name.split('/', 1)[0]}/{SDIST_TREE}"


def measure(name: str, archive: Path, *, url: str, sha256: str, subdir: str, note: str,
            commit: str | None, scratch: Path, progress: Progress) -> Measured:
    tree = Path(tempfile.mkdtemp(dir=scratch, prefix=f"{name}-"))
    progress(f"extracting {name} ({archive.name})")
    vendor.extract(archive, tree, subdir)
    if not (tree / "CMakeLists.txt").is_file() or not (tree / "ggml").is_dir():
        raise SourceError(f"{name} ({url}) does not hold a llama.cpp tree (no CMakeLists.txt "
                          "and ggml/)")
    entry = vendor.SourceEntry(name=name, kind="archive", url=url, sha256=sha256,
                               subdir=subdir or None, note=note)
    return Measured(entry=entry, tree_sha256=vendor.tree_digest(tree), commit=commit,
                    tree=tree)


_OPTION = re.compile(r"^\s*(?:option|llama_option_depr|ggml_option)\s*\(\s*([A-Z][A-Z0-9_]+)",
                     re.MULTILINE)
_VARIANT = re.compile(r"ggml_add_cpu_backend_variant\s*\(\s*([A-Za-z0-9_.]+)")
_GGML_VERSION = re.compile(r"set\s*\(\s*GGML_VERSION_(MAJOR|MINOR|PATCH)\s+(\d+)\s*\)")


def tree_facts(tree: Path) -> TreeFacts:
    """ggml's version, the CMake options and the CPU variants a tree defines."""
    def text(rel: str) -> str:
        p = tree / rel
        return p.read_text(errors="replace") if p.is_file() else ""

    options = set(_OPTION.findall(text("CMakeLists.txt")))
    options |= set(_OPTION.findall(text("ggml/CMakeLists.txt")))
    version = dict(_GGML_VERSION.findall(text("ggml/CMakeLists.txt")))
    ggml = ".".join(version[k] for k in ("MAJOR", "MINOR", "PATCH")) \
        if len(version) == 3 else None
    variants = set(_VARIANT.findall(text("ggml/src/CMakeLists.txt")))
    return TreeFacts(ggml_version=ggml, options=frozenset(options),
                     cpu_variants=frozenset(variants))


def changes(old_lock: Lock | None, old: TreeFacts | None, new_commit: str, build_number: int,
            new: TreeFacts, recipes: Mapping[str, str]) -> list[str]:
    """What a release engineer should look at, one line each."""
    out = []
    if old_lock is not None:
        out.append(f"version: {old_lock.version} -> b{build_number}")
        out.append(f"commit: {old_lock.short_commit} -> {new_commit[:9]}")
    if old is None:
        out.append("the previous tree is not here (buildtool vendor): options and CPU "
                   "variants not compared")
        return out
    if old.ggml_version != new.ggml_version:
        out.append(f"ggml: {old.ggml_version} -> {new.ggml_version}")
    for name in sorted(new.options - old.options):
        out.append(f"new CMake option {name}")
    for name in sorted(old.options - new.options):
        users = [f for f, body in recipes.items() if re.search(rf"\b{name}\b", body)]
        out.append(f"removed CMake option {name}"
                   + (f": named in {', '.join(users)}" if users else ""))
    for name in sorted(new.cpu_variants - old.cpu_variants):
        out.append(f"new CPU variant {name} (data/cpu.yaml, recipes/cpu.yaml)")
    for name in sorted(old.cpu_variants - new.cpu_variants):
        out.append(f"removed CPU variant {name} (data/cpu.yaml)")
    return out


def lock_document(repository: str, commit: str, build_number: int, tree_sha256: str,
                  sources: Iterable[vendor.SourceEntry],
                  patches: Iterable[vendor.PatchEntry] = ()) -> dict[str, Any]:
    """The lock as JSON (the file's kebab-case keys), sources in the order they are tried:
    the local tree first, then the archives."""
    entries: list[dict[str, Any]] = [{
        "name": "local", "kind": "local", "path-env": "BUILDTOOL_LLAMA_SOURCE",
        "note": "a directory (verified by tree-sha256) or an archive whose sha256 is pinned "
                "below; for air-gapped machines"}]
    for s in sources:
        entry: dict[str, Any] = {"name": s.name, "kind": s.kind, "url": s.url,
                                 "sha256": s.sha256}
        if s.subdir:
            entry["subdir"] = s.subdir
        if s.note:
            entry["note"] = s.note
        entries.append(entry)
    doc: dict[str, Any] = {"upstream": {"repository": repository, "commit": commit,
                                        "build-number": build_number},
                           "tree-sha256": tree_sha256, "sources": entries}
    queue = [{"file": p.file, "sha256": p.sha256, "reason": p.reason} for p in patches]
    if queue:
        doc["patches"] = queue
    return doc


def recheck_patches(previous: Lock | None, tree: Path, scratch: Path
                    ) -> tuple[list[vendor.PatchEntry], list[str], list[str]]:
    """The current lock's patches against the new tree, in order (each on the tree with the
    earlier ones applied): those that apply are kept; one whose change is already there
    (it reverses cleanly: checked first, as a fix that only adds lines would apply twice)
    is dropped; one that does neither conflicts. Returns the kept patches, a line per patch,
    and the conflicts."""
    if previous is None or not previous.patches:
        return [], [], []
    work = scratch / "patched"
    shutil.copytree(tree, work, symlinks=True)
    kept: list[vendor.PatchEntry] = []
    notes: list[str] = []
    conflicts: list[str] = []
    for entry in previous.patches:
        path = vendor.patch_file(previous, entry)
        if patches.applies(work, path, reverse=True)[0]:
            notes.append(f"patch {entry.file}: already upstream (dropped)")
            continue
        ok, said = patches.applies(work, path)
        if ok:
            patches.apply(work, path, name=entry.file)
            kept.append(entry)
            notes.append(f"patch {entry.file}: applies (kept)")
        else:
            conflicts.append(f"patch {entry.file}: conflicts ({said})")
    return kept, notes, conflicts


def make_lock(*, lock_path: Path, repository: str, upstream: str | None = None,
              pypi: str | None = None, local: Path | None = None,
              build_number: int | None = None, commit: str | None = None,
              previous: Lock | None = None, previous_tree: Path | None = None,
              keep: bool = False, recipes_dir: Path | None = None, pypi_index: str = PYPI,
              dry_run: bool = False, progress: Progress = lambda _: None) -> Outcome:
    """Fetch and measure each source given, check they agree, and write the lock
    (``keep``: beside ``lock_path`` as ``llama.cpp-bN.lock.json``, a kept version)."""
    check_value(vendor.Url, repository, "--repository", error=UsageError)
    if not (upstream or pypi or local):
        raise UsageError("name a version: an upstream tag or commit, --pypi VERSION or "
                         "--local PATH")
    if upstream and not (TAG.fullmatch(upstream) or COMMIT.fullmatch(upstream)):
        raise UsageError(f"{upstream!r} is neither a build tag (b11400) nor a full commit "
                         "(40 hex digits)")
    if upstream and TAG.fullmatch(upstream):
        tagged = int(upstream[1:])
        if build_number is not None and build_number != tagged:
            raise UsageError(f"--build-number {build_number} contradicts the tag {upstream}")
        build_number = tagged
    measured: list[Measured] = []
    unreachable: list[Unreachable] = []
    scratch = Path(tempfile.mkdtemp(prefix="buildtool-lock-"))
    try:
        if upstream:
            url = upstream_url(repository, upstream)
            try:
                archive, sha = vendor.download(url, "upstream", progress)
            except SourceError as exc:
                unreachable.append(Unreachable(name="upstream", url=url, why=exc.message))
                progress(f"upstream: {url} unreachable ({exc.message})")
            else:
                measured.append(measure(
                    "upstream", archive, url=url, sha256=sha, subdir="",
                    note=f"GitHub's archive of {upstream}", commit=archive_commit(archive),
                    scratch=scratch, progress=progress))
        if pypi:
            url, expect = pypi_sdist(pypi, pypi_index)
            archive, sha = vendor.download(url, "pypi-sdist", progress, expect=expect)
            subdir = sdist_subdir(archive)
            measured.append(measure(
                "pypi-sdist", archive, url=url, sha256=sha, subdir=subdir,
                note=f"llama-cpp-python {pypi} vendors the complete upstream tree",
                commit=sdist_commit(archive), scratch=scratch, progress=progress))
        if local is not None:
            measured.append(measure_local(local, scratch, progress))
        if not measured:
            raise SourceError("no source could be fetched: " + "; ".join(
                f"{u.name} ({u.url}): {u.why}" for u in unreachable),
                hint="add --pypi VERSION (llama-cpp-python's sdist) or --local PATH")
        digests = {m.tree_sha256 for m in measured}
        if len(digests) > 1:
            raise SourceError("the sources hold different trees: " + "; ".join(
                f"{m.entry.name}: {m.tree_sha256}" for m in measured))
        commits = {m.commit for m in measured if m.commit} | ({commit} if commit else set())
        if len(commits) > 1:
            raise SourceError("the sources name different commits: " + ", ".join(
                sorted(commits)))
        if not commits:
            raise UsageError("no source says which commit it holds",
                             hint="give --commit (the full upstream commit)")
        (found,) = commits
        if build_number is None:
            raise UsageError(f"the build number of commit {found[:9]} is not in the sources "
                             "here", hint="give --build-number N (its bN release tag)")
        if keep:
            if previous is not None and previous.build_number == build_number:
                raise UsageError(f"b{build_number} is the default pin ({lock_path.name}); "
                                 "--keep is for other versions")
            lock_path = vendor.kept_lock_path(lock_path, f"b{build_number}")
        kept, notes, conflicts = recheck_patches(previous, measured[0].tree, scratch)
        if conflicts and not dry_run:
            raise SourceError("patches of the current lock conflict with b"
                              f"{build_number}: " + "; ".join(conflicts),
                              hint="rebase each on the new tree (or drop it from the current "
                                   "lock) and run `buildtool vendor lock` again; --dry-run "
                                   "shows the whole report")
        facts = tree_facts(measured[0].tree)
        old_facts = tree_facts(previous_tree) if previous_tree is not None and \
            (previous_tree / "CMakeLists.txt").is_file() else None
        recipes = {str(p.relative_to(recipes_dir.parent)): p.read_text(errors="replace")
                   for p in sorted(recipes_dir.glob("*.yaml"))} if recipes_dir else {}
        outcome = Outcome(lock_path=lock_path, repository=repository, commit=found,
                          build_number=build_number, tree_sha256=digests.pop(),
                          sources=measured, unreachable=unreachable, facts=facts,
                          changes=[*changes(previous, old_facts, found, build_number, facts,
                                            recipes), *notes, *conflicts])
        document = lock_document(repository, found, build_number, outcome.tree_sha256,
                                 [m.entry for m in measured if m.entry.kind == "archive"],
                                 kept)
        write_json(scratch / "lock.json", document)
        vendor.load_lock(scratch / "lock.json")  # it reads back before it replaces anything
        if not dry_run:
            write_json(lock_path, document)
            outcome.written = True
        return outcome
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def measure_local(path: Path, scratch: Path, progress: Progress) -> Measured:
    """A local directory (hashed where it is: the lock's ``local`` source is whatever path is
    given when building) or archive (extracted)."""
    if path.is_dir():
        progress(f"hashing {path}")
        if not (path / "CMakeLists.txt").is_file() or not (path / "ggml").is_dir():
            raise SourceError(f"{path} does not hold a llama.cpp tree (no CMakeLists.txt and "
                              "ggml/)")
        entry = vendor.SourceEntry(name="local", kind="local", note=str(path))
        return Measured(entry=entry, tree_sha256=vendor.tree_digest(path), commit=None,
                        tree=path)
    if not path.is_file():
        raise SourceError(f"{path} is neither a directory nor an archive")
    # pinned by its sha256 (what `buildtool vendor --source ARCHIVE` checks), listed with
    # where it lay: elsewhere that URL fails and the next source is tried
    sha = inputs.sha256_file(path)
    vendored = sdist_commit(path)  # a llama-cpp-python sdist: its tree is vendor/llama.cpp
    return measure("local-archive", path, url=path.resolve().as_uri(), sha256=sha,
                   subdir=sdist_subdir(path) if vendored else "", note="a local archive",
                   commit=archive_commit(path) or vendored, scratch=scratch,
                   progress=progress)


def report(outcome: Outcome) -> str:
    lines = [f"{outcome.lock_path}: llama.cpp b{outcome.build_number} "
             f"({outcome.commit[:9]}), tree sha256 {outcome.tree_sha256}"
             + ("" if outcome.written else " (not written: --dry-run)")]
    lines += [f"  source {m.entry.name}: {m.entry.url or m.entry.note} (sha256 "
              f"{m.entry.sha256 or 'tree'})" for m in outcome.sources]
    lines += [f"  source {u.name}: {u.url} unreachable ({u.why}); left out of the lock"
              for u in outcome.unreachable]
    lines += [f"  {line}" for line in outcome.changes]
    return "\n".join(lines)
