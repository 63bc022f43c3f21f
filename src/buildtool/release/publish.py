"""Upload a written release directory to where users get artifacts from.

Three destinations, each idempotent (a second publish of the same release uploads nothing,
duplicates nothing and loses nothing) and each with a dry run that touches nothing:

* **GitHub release** (REST API, ``urllib``): the release for the tag is created or its notes
  updated; each file becomes an asset unless one with the same name and sha256 (GitHub's
  ``digest``; the size where an older API gives none) is there already; a different or
  half-uploaded asset of that name is replaced. The token comes from ``GITHUB_TOKEN`` or
  ``GH_TOKEN`` and only ever goes into the ``Authorization`` header: no message, log or
  exception carries it.
* **PEP 503 index** in a directory a web server serves: wheels go to ``files/`` (never
  replaced by different bytes: a published file does not change) with their manifests
  beside them (``buildtool install`` judges a wheel by it), the indexes to
  ``simple/<target>/`` (written by :mod:`buildtool.release.index`, atomically).
* **Container registry**: each image archive is copied under each of its tags with skopeo
  (from the archive, no daemon), or with docker/podman (load, tag, push) where skopeo is
  missing. ``oci:DIR`` writes an OCI layout directory instead. A tag whose manifest digest
  is already the archive's is skipped.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO, TypeVar
from urllib.parse import quote, urlsplit

from buildtool import __version__, cmd, inputs, records
from buildtool.artifacts import KINDS, kind_of, oci
from buildtool.errors import CommandError, PublishError, UsageError
from buildtool.outputs import check_owned, sidecar
from buildtool.paths import writable_dir
from buildtool.records import Manifest, ReleaseRecord
from buildtool.schema import Match, Range
from buildtool.text import one_line, register_secret

if TYPE_CHECKING:
    from buildtool.release.gate import Verification
from buildtool.inputs import sha256_file

R = TypeVar("R")
Note = Callable[[str], None]
TOKEN_VARIABLES = ("GITHUB_TOKEN", "GH_TOKEN")
ANSWER_LIMIT = 32 << 20  # the largest JSON answer read from the API


@dataclass(frozen=True, kw_only=True)
class Action:
    destination: str  # github | index | registry
    item: str
    action: str  # created | updated | uploaded | replaced | unchanged | would-upload | ...
    detail: str = ""

    def to_json(self) -> dict[str, str]:
        return {"destination": self.destination, "item": self.item, "action": self.action,
                "detail": self.detail}


# ---------------------------------------------------------------------------------------
# GitHub


def github_token(env: Mapping[str, str] | None = None) -> str:
    """The token from the environment, registered at once so that nothing buildtool prints
    or writes from now on can carry it (:func:`buildtool.text.redact`)."""
    env = os.environ if env is None else env
    for name in TOKEN_VARIABLES:
        if env.get(name):
            token = env[name].strip()
            if not token or any(c.isspace() or not c.isprintable() for c in token):
                raise UsageError(f"${name} is not a token (it holds spaces or control "
                                 "characters)")
            register_secret(token)
            return token
    raise UsageError("publishing to GitHub needs a token",
                     hint="set GITHUB_TOKEN (or GH_TOKEN) to a token with contents:write on "
                          "the repository; it is read from the environment only")


_OWNER = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})"
_REPO = r"(?!\.{1,2}$)[A-Za-z0-9._-]{1,100}"


def check_repo(repo: str) -> str:
    if not re.fullmatch(f"{_OWNER}/{_REPO}", repo):
        raise UsageError(f"--github {repo[:80]!r} is not OWNER/REPO",
                         hint="e.g. --github ggml-org/llama.cpp")
    return repo


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_api(url: str) -> str:
    """The API root: https (plain http only on loopback, where a test stand-in runs), no
    credentials, query or fragment in it."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UsageError(f"--github-api {url[:80]!r} is not an http(s) URL")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise UsageError("--github-api must not carry credentials, a query or a fragment",
                         hint="the token comes from GITHUB_TOKEN/GH_TOKEN only")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise UsageError(f"--github-api {url[:80]!r}: the token would travel unencrypted",
                         hint="use https (plain http is accepted for loopback stand-ins)")
    return url.rstrip("/")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never carry the Authorization header to another scheme, host
    or port (what requests and pip do): a release asset download redirects to storage."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: Any, newurl: str) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(newurl) != _origin(req.full_url):
            for name in list(new.headers):
                if name.lower() == "authorization":
                    del new.headers[name]
            for name in list(new.unredirected_hdrs):
                if name.lower() == "authorization":
                    del new.unredirected_hdrs[name]
        return new


@dataclass(frozen=True, kw_only=True)
class GhRelease:
    """What buildtool reads of a GitHub release (the API sends more)."""

    id: Annotated[int, Range(minimum=0)]
    body: str | None = None
    upload_url: Annotated[str, Match(r"https?://\S+", "an http(s) URL")]
    html_url: str = ""


@dataclass(frozen=True, kw_only=True)
class GhAsset:
    id: Annotated[int, Range(minimum=0)]
    name: str
    size: int = 0
    digest: str | None = None
    state: str = "uploaded"


MAX_PAGES = 100


class GitHub:
    """The few REST calls a release needs. The token is sent only to the API's host (and,
    for api.github.com, to uploads.github.com, where GitHub takes release assets)."""

    def __init__(self, repo: str, token: str, api: str = "https://api.github.com") -> None:
        self.repo = check_repo(repo)
        self._token = token
        self.api = check_api(api)
        host = _origin(self.api)
        self._token_hosts = {host}
        if host[1] == "api.github.com":
            self._token_hosts.add(("https", "uploads.github.com", 443))
        self._opener = urllib.request.build_opener(_SameHostRedirects())

    def __repr__(self) -> str:  # never the token
        return f"GitHub({self.repo!r}, api={self.api!r})"

    def _call(self, method: str, url: str, *, body: Any = None, data: BinaryIO | None = None,
              size: int | None = None, ok: tuple[int, ...] = (200, 201, 204),
              ) -> tuple[int, Any]:
        if _origin(url) not in self._token_hosts:
            raise PublishError(f"GitHub API: refusing to send the token to {_origin(url)[1]}, "
                               f"which is not the API's host ({urlsplit(self.api).hostname})",
                               hint="the API answered with an upload URL on another host")
        headers = {"Accept": "application/vnd.github+json",
                   "X-GitHub-Api-Version": "2022-11-28",
                   "User-Agent": f"buildtool/{__version__}",
                   "Authorization": f"Bearer {self._token}"}
        payload: Any = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        elif data is not None:
            payload = data
            headers["Content-Type"] = "application/octet-stream"
            headers["Content-Length"] = str(size)
        request = urllib.request.Request(url, data=payload, method=method, headers=headers)
        try:
            with self._opener.open(request, timeout=600) as response:
                raw = response.read(ANSWER_LIMIT + 1)
                status = response.status
        except urllib.error.HTTPError as exc:
            raw = exc.read(ANSWER_LIMIT + 1)
            status = exc.code
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PublishError(f"GitHub API {method} {url}: {one_line(str(reason))}") from None
        if len(raw) > ANSWER_LIMIT:
            raise PublishError(f"GitHub API {method} {url}: the answer is larger than "
                               f"{ANSWER_LIMIT >> 20} MiB")
        try:
            answer = inputs.parse_json(raw.decode("utf-8"), "GitHub API answer",
                                       error=PublishError) if raw else None
        except (UnicodeDecodeError, PublishError):
            answer = raw.decode("utf-8", "replace")
        if status not in ok:
            message = answer.get("message") if isinstance(answer, dict) else answer
            hint = "check that the token may write releases of the repository" \
                if status in (401, 403, 404) else None
            # the server's words, on one line, bounded, and never with the token in them
            raise PublishError(f"GitHub API {method} {url} answered {status}: "
                               f"{one_line(str(message))}", hint=hint)
        return status, answer

    def _typed(self, tp: type[R], answer: Any, what: str) -> R:
        return records.from_data(tp, answer, f"GitHub API answer ({what})",
                                 error=PublishError)

    def release(self, tag: str) -> GhRelease | None:
        status, answer = self._call("GET", f"{self.api}/repos/{self.repo}/releases/tags/"
                                    f"{quote(tag, safe='')}", ok=(200, 404))
        return self._typed(GhRelease, answer, "release") if status == 200 else None

    def assets(self, release_id: int) -> list[GhAsset]:
        out: list[GhAsset] = []
        for page in range(1, MAX_PAGES + 1):
            _, answer = self._call("GET", f"{self.api}/repos/{self.repo}/releases/{release_id}"
                                   f"/assets?per_page=100&page={page}")
            batch = self._typed(tuple[GhAsset, ...], answer or [], "assets")
            out.extend(batch)
            if len(batch) < 100:
                return out
        raise PublishError(f"GitHub API: more than {MAX_PAGES * 100} assets in one release")

    def publish(self, tag: str, notes: str, files: list[Path], *, dry_run: bool,
                note: Note) -> list[Action]:
        actions: list[Action] = []
        if dry_run:
            actions.append(Action(destination="github", item=f"{self.repo}@{tag}",
                                  action="would-create-or-update"))
            actions.extend(Action(destination="github", item=f.name, action="would-upload",
                                  detail=f"{f.stat().st_size} bytes") for f in files)
            return actions
        rel = self.release(tag)
        if rel is None:
            _, answer = self._call("POST", f"{self.api}/repos/{self.repo}/releases", body={
                "tag_name": tag, "name": f"llama.cpp {tag}", "body": notes,
                "draft": False, "prerelease": False})
            rel = self._typed(GhRelease, answer, "release")
            actions.append(Action(destination="github", item=f"{self.repo}@{tag}",
                                  action="created", detail=rel.html_url))
        elif rel.body != notes:
            _, answer = self._call("PATCH", f"{self.api}/repos/{self.repo}/releases/{rel.id}",
                                   body={"body": notes})
            rel = self._typed(GhRelease, answer, "release")
            actions.append(Action(destination="github", item=f"{self.repo}@{tag}",
                                  action="updated", detail="release notes"))
        else:
            actions.append(Action(destination="github", item=f"{self.repo}@{tag}",
                                  action="unchanged"))
        note(f"GitHub release {self.repo}@{tag}: {actions[-1].action}")
        existing = {a.name: a for a in self.assets(rel.id)}
        upload = rel.upload_url.split("{", 1)[0]
        for f in files:
            digest = sha256_file(f)
            size = f.stat().st_size
            have = existing.get(f.name)
            verb = "uploaded"
            if have is not None:
                same = have.digest == f"sha256:{digest}" if have.digest else have.size == size
                if same and have.state == "uploaded":
                    actions.append(Action(destination="github", item=f.name, action="unchanged"))
                    continue
                self._call("DELETE", f"{self.api}/repos/{self.repo}/releases/assets/{have.id}")
                verb = "replaced"
            note(f"uploading {f.name} ({size} bytes)")
            with f.open("rb") as handle:
                self._call("POST", f"{upload}?name={quote(f.name)}", data=handle, size=size)
            actions.append(Action(destination="github", item=f.name, action=verb,
                                  detail=f"sha256:{digest}"))
        return actions


# ---------------------------------------------------------------------------------------
# PEP 503 index


def publish_index(wheels: list[Path], dest: Path, *, dry_run: bool, note: Note
                  ) -> list[Action]:
    """Add ``wheels`` to the index in ``dest`` (``files/`` + ``simple/``) and rewrite it."""
    from buildtool.release import index

    actions: list[Action] = []
    store = dest / "files"
    pending: list[Path] = []
    for whl in wheels:
        there = store / whl.name
        if there.is_file():
            if sha256_file(there) != sha256_file(whl):
                raise PublishError(f"{there} exists with different contents",
                                   hint="a published wheel never changes: build a new "
                                        "version (a higher build number) instead")
            actions.append(Action(destination="index", item=whl.name, action="unchanged"))
        else:
            pending.append(whl)
            actions.append(Action(destination="index", item=whl.name,
                                  action="would-add" if dry_run else "added"))
    if dry_run or not wheels:
        return actions
    store.mkdir(parents=True, exist_ok=True)
    for whl in pending:
        _copy_in(whl, store / whl.name)
    for whl in wheels:  # the manifest beside each wheel: `install` judges a wheel by it
        manifest = sidecar(whl, "manifest")
        there = store / manifest.name
        if manifest.is_file() and not (there.is_file() and
                                       sha256_file(there) == sha256_file(manifest)):
            _copy_in(manifest, there)
    written = index.write(store, dest / "simple", root=dest)
    for t in written:
        note(f"index {t.target}: {dest / 'simple' / t.target}/ ({len(t.wheels)} wheels)")
    return actions


def _copy_in(src: Path, dest: Path) -> None:
    """``src`` to ``dest`` in one rename: a reader sees the old file or the whole new one."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        Path(tmp).chmod(0o644)
        Path(tmp).replace(dest)
    finally:
        Path(tmp).unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------
# Container registry


IMAGE_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # the OCI distribution spec's


def image_tags(manifest: Manifest) -> list[str]:
    """The tags of an image manifest's references (``localhost/llama.cpp:cpu-b1`` → ``cpu-b1``);
    what is not a valid tag is left out."""
    tags = []
    for ref in manifest.image.tags if manifest.image else ():
        tag = ref.rpartition(":")[2]
        if IMAGE_TAG.fullmatch(tag):
            tags.append(tag)
    return tags


def destinations(registry: str, tags: list[str], repository: str = "llama.cpp") -> list[str]:
    """skopeo destinations: ``oci:DIR`` → ``oci:DIR:<tag>``; a registry path
    ``HOST[:PORT][/NAMESPACE]`` → ``docker://HOST/NAMESPACE/llama.cpp:<tag>``."""
    if registry.startswith("oci:"):
        return [f"{registry}:{t}" for t in tags]
    base = registry.removeprefix("docker://").rstrip("/")
    if not base:
        raise UsageError("--registry needs HOST[:PORT][/NAMESPACE] or oci:DIR")
    return [f"docker://{base}/{repository}:{t}" for t in tags]


def insecure(destination: str) -> bool:
    """Plain HTTP for loopback registries (a local stand-in has no certificate)."""
    host = urlsplit(destination.replace("docker://", "//", 1)).hostname or ""
    return destination.startswith("docker://") and is_loopback(host)


def skopeo_copy(archive: Path, dest: str) -> list[str]:
    argv = ["skopeo", "copy", "--preserve-digests"]
    if insecure(dest):
        argv.append("--dest-tls-verify=false")
    return [*argv, f"oci-archive:{archive}", dest]


def skopeo_digest(dest: str) -> list[str]:
    argv = ["skopeo", "inspect", "--format", "{{.Digest}}"]
    if insecure(dest):
        argv.append("--tls-verify=false")
    return [*argv, dest]


def engine_push(engine: str, source: str, dest: str) -> list[list[str]]:
    """docker/podman: tag the loaded image and push it (docker cannot push to oci:)."""
    ref = dest.removeprefix("docker://")
    if engine == "docker":
        return [["docker", "tag", source, ref], ["docker", "push", ref]]
    push = ["podman", "push"]
    if insecure(dest):
        push.append("--tls-verify=false")
    return [[engine, "tag", source, ref], [*push, ref, dest]]


def _remote_digest(dest: str) -> str | None:
    """The manifest digest under ``dest``, or None when there is none (yet)."""
    try:
        return cmd.capture(skopeo_digest(dest), timeout=300).strip() or None
    except CommandError:
        return None


def publish_images(images: Sequence[tuple[Path, Manifest]], registry: str, *,
                   dry_run: bool, note: Note, tool: str | None = None) -> list[Action]:
    """Copy each image archive to the registry under each of its tags."""
    tool = tool or ("skopeo" if cmd.which("skopeo") else
                    next((e for e in ("podman", "docker") if cmd.which(e)), None))
    if tool is None and not dry_run:
        raise PublishError("pushing images needs skopeo, podman or docker",
                           hint="apt-get install skopeo (it copies OCI archives without a "
                                "daemon)")
    if tool in ("docker", "podman") and registry.startswith("oci:"):
        raise PublishError(f"{tool} cannot write an OCI layout ({registry})",
                           hint="install skopeo")
    actions: list[Action] = []
    for archive, manifest in images:
        tags = image_tags(manifest)
        if not tags:
            raise PublishError(f"{archive.name}: its manifest names no image tags")
        want = oci.inspect(archive).manifest_digest
        for dest in destinations(registry, tags):
            if dry_run:
                actions.append(Action(destination="registry", item=dest, action="would-push",
                                      detail=want))
                continue
            if tool == "skopeo" and _remote_digest(dest) == want:
                actions.append(Action(destination="registry", item=dest, action="unchanged",
                                      detail=want))
                continue
            note(f"pushing {archive.name} → {dest} ({tool})")
            try:
                if tool == "skopeo":
                    cmd.capture(skopeo_copy(archive, dest), timeout=3600)
                else:
                    assert tool is not None
                    cmd.capture([tool, "load", "-i", str(archive)], timeout=1800)
                    source = manifest.image.tags[0] if manifest.image else ""
                    for argv in engine_push(tool, source, dest):
                        cmd.capture(argv, timeout=3600)
            except CommandError as exc:
                raise PublishError(f"pushing {archive.name} to {dest} failed:\n    "
                                   + "\n    ".join(exc.tail[-8:]),
                                   hint="log in first (`skopeo login`, `podman login` or "
                                        "`docker login`) when the registry needs it") from exc
            actions.append(Action(destination="registry", item=dest, action="pushed",
                                  detail=want))
    return actions


# ---------------------------------------------------------------------------------------
# The whole `buildtool publish`: every argument checked before anything is written

RELEASE_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
REGISTRY = re.compile(r"(?:docker://)?[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[a-z0-9._-]+)*/?")


def check_tag(tag: str) -> str:
    """A release tag becomes a directory name and a git tag: letters, digits, '.', '_',
    '+', '-', starting with a letter or digit (no '/', no '..')."""
    if not RELEASE_TAG.fullmatch(tag) or ".." in tag:
        raise UsageError(f"--tag {tag[:80]!r} is not a release tag",
                         hint="letters, digits, '.', '_', '+' and '-', starting with a letter "
                              "or digit, e.g. b11312 or b11312-r1")
    return tag


def check_registry(registry: str) -> str:
    """``oci:DIR`` or ``HOST[:PORT][/NAMESPACE]``."""
    if registry.startswith("oci:"):
        writable_dir(Path(registry.removeprefix("oci:")), "--registry oci:")
        return registry
    if not REGISTRY.fullmatch(registry):
        raise UsageError(f"--registry {registry[:80]!r} is not HOST[:PORT][/NAMESPACE] or "
                         "oci:DIR")
    return registry


@dataclass(frozen=True, kw_only=True)
class Request:
    """What `buildtool publish` was asked to do."""

    directory: Path
    tag: str | None = None
    out: Path | None = None
    allow: Mapping[str, str] = dataclasses.field(default_factory=dict)
    github_repo: str | None = None
    github_api: str | None = None
    index_dir: Path | None = None
    registry: str | None = None
    dry_run: bool = False


@dataclass(frozen=True, kw_only=True)
class Outcome:
    tag: str
    dest: Path
    record: ReleaseRecord
    verification: Verification
    actions: tuple[Action, ...]

    def to_json(self, dry_run: bool) -> dict[str, Any]:
        rec = records.to_json(self.record)
        return {"refused": False, "dry_run": dry_run, "tag": self.tag,
                "release_dir": str(self.dest), "artifacts": rec["artifacts"],
                "exceptions": rec["exceptions"], "actions": [a.to_json() for a in self.actions]}


def run(req: Request, *, step: Note, info: Note, warn: Note) -> Outcome:
    """Verify, write the release directory and upload it. Every argument is checked first:
    a bad tag, repository, API URL, registry or output directory is refused before anything
    is written or sent (and the token is read, and hidden, before any output)."""
    from buildtool.release import gate as release

    tag = check_tag(req.tag) if req.tag is not None else None
    gh = None
    if req.github_repo is not None:
        api = req.github_api or os.environ.get("GITHUB_API_URL") or "https://api.github.com"
        gh = GitHub(req.github_repo, "" if req.dry_run else github_token(), api)
    if req.registry is not None:
        check_registry(req.registry)
    if req.index_dir is not None:
        writable_dir(req.index_dir, "--index")
    if req.out is not None:
        writable_dir(req.out, "--out")
        check_owned(req.out, "release")
    step(f"verifying the artifacts in {req.directory}")
    verification = release.verify(req.directory, allow=req.allow)
    if verification.blocking:
        raise release.refusal(verification)
    for name, why in verification.allowed.items():
        warn(f"{name} ships by exception: {why}")
    tag = tag or check_tag(release.default_tag(verification))
    dest = req.out or req.directory / f"release-{tag}"
    check_owned(dest, "release")
    scratch = Path(tempfile.mkdtemp(prefix="buildtool-release-")) if req.dry_run else None
    actions: list[Action] = []
    try:
        where = scratch / dest.name if scratch else dest
        rec = release.write(verification, where, tag)
        info(f"{'would write' if req.dry_run else 'wrote'} {dest} "
             f"({len(verification.artifacts)} artifacts)")
        files = release.files(where)
        if gh is not None:
            step(f"GitHub release {gh.repo}@{tag}")
            actions += gh.publish(tag, (where / release.NOTES).read_text(), files,
                                  dry_run=req.dry_run, note=info)
        if req.index_dir is not None:
            step(f"wheel index {req.index_dir}")
            actions += publish_index([f for f in files if (k := kind_of(f)) and KINDS[k].INDEXED],
                                     req.index_dir,
                                     dry_run=req.dry_run, note=info)
        if req.registry is not None:
            step(f"images to {req.registry}")
            images = [(where / a.name, a.manifest) for a in verification.artifacts
                      if KINDS[a.kind].CONTAINER and a.manifest is not None]
            actions += publish_images(images, req.registry, dry_run=req.dry_run, note=info)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return Outcome(tag=tag, dest=dest, record=rec, verification=verification,
                   actions=tuple(actions))
