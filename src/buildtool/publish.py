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
  replaced by different bytes: a published file does not change), the indexes to
  ``simple/<target>/`` (written by :mod:`buildtool.index`, atomically).
* **Container registry**: each image archive is copied under each of its tags with skopeo
  (from the archive, no daemon), or with docker/podman (load, tag, push) where skopeo is
  missing. ``oci:DIR`` writes an OCI layout directory instead. A tag whose manifest digest
  is already the archive's is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, urlsplit

from buildtool import __version__, cmd, oci
from buildtool.errors import CommandError, PublishError, UsageError
from buildtool.vendor import sha256_file

Note = Callable[[str], None]
TOKEN_VARIABLES = ("GITHUB_TOKEN", "GH_TOKEN")
LOOPBACK = ("localhost", "127.0.0.1", "::1")


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
    env = os.environ if env is None else env
    for name in TOKEN_VARIABLES:
        if env.get(name):
            return env[name]
    raise UsageError("publishing to GitHub needs a token",
                     hint="set GITHUB_TOKEN (or GH_TOKEN) to a token with contents:write on "
                          "the repository; it is read from the environment only")


class GitHub:
    """The few REST calls a release needs."""

    def __init__(self, repo: str, token: str, api: str = "https://api.github.com") -> None:
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise UsageError(f"--github {repo!r} is not OWNER/REPO")
        self.repo = repo
        self._token = token
        self.api = api.rstrip("/")

    def __repr__(self) -> str:  # never the token
        return f"GitHub({self.repo!r}, api={self.api!r})"

    def _call(self, method: str, url: str, *, body: Any = None, data: BinaryIO | None = None,
              size: int | None = None, ok: tuple[int, ...] = (200, 201, 204),
              ) -> tuple[int, Any]:
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
            with urllib.request.urlopen(request, timeout=600) as response:
                raw = response.read()
                status = response.status
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            status = exc.code
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PublishError(f"GitHub API {method} {url}: {reason}") from None
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            answer = raw.decode("utf-8", "replace")[:200]
        if status not in ok:
            message = answer.get("message") if isinstance(answer, dict) else answer
            hint = "check that the token may write releases of the repository" \
                if status in (401, 403, 404) else None
            raise PublishError(f"GitHub API {method} {url} answered {status}: {message}",
                               hint=hint)
        return status, answer

    def release(self, tag: str) -> dict[str, Any] | None:
        status, answer = self._call("GET", f"{self.api}/repos/{self.repo}/releases/tags/"
                                    f"{quote(tag, safe='')}", ok=(200, 404))
        return answer if status == 200 else None

    def assets(self, release_id: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            _, answer = self._call("GET", f"{self.api}/repos/{self.repo}/releases/{release_id}"
                                   f"/assets?per_page=100&page={page}")
            out.extend(answer or [])
            if not answer or len(answer) < 100:
                return out
            page += 1

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
            _, rel = self._call("POST", f"{self.api}/repos/{self.repo}/releases", body={
                "tag_name": tag, "name": f"llama.cpp {tag}", "body": notes,
                "draft": False, "prerelease": False})
            actions.append(Action(destination="github", item=f"{self.repo}@{tag}",
                                  action="created", detail=str(rel.get("html_url", ""))))
        elif rel.get("body") != notes:
            _, rel = self._call("PATCH", f"{self.api}/repos/{self.repo}/releases/{rel['id']}",
                                body={"body": notes})
            actions.append(Action(destination="github", item=f"{self.repo}@{tag}",
                                  action="updated", detail="release notes"))
        else:
            actions.append(Action(destination="github", item=f"{self.repo}@{tag}",
                                  action="unchanged"))
        note(f"GitHub release {self.repo}@{tag}: {actions[-1].action}")
        existing = {a["name"]: a for a in self.assets(int(rel["id"]))}
        upload = str(rel["upload_url"]).split("{", 1)[0]
        for f in files:
            digest = sha256_file(f)
            size = f.stat().st_size
            have = existing.get(f.name)
            verb = "uploaded"
            if have is not None:
                same = have.get("digest") == f"sha256:{digest}" if have.get("digest") \
                    else have.get("size") == size
                if same and have.get("state", "uploaded") == "uploaded":
                    actions.append(Action(destination="github", item=f.name, action="unchanged"))
                    continue
                self._call("DELETE", f"{self.api}/repos/{self.repo}/releases/assets/"
                           f"{have['id']}")
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
    from buildtool import index

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
        fd, tmp = tempfile.mkstemp(dir=store, prefix=f".{whl.name}.", suffix=".part")
        os.close(fd)
        try:
            shutil.copyfile(whl, tmp)
            Path(tmp).chmod(0o644)
            Path(tmp).replace(store / whl.name)
        finally:
            Path(tmp).unlink(missing_ok=True)
    written = index.write(store, dest / "simple")
    for t in written:
        note(f"index {t.target}: {dest / 'simple' / t.target}/ ({len(t.wheels)} wheels)")
    return actions


# ---------------------------------------------------------------------------------------
# Container registry


def image_tags(manifest: Mapping[str, Any]) -> list[str]:
    """The tags of an image manifest's references (``localhost/llama.cpp:cpu-b1`` → ``cpu-b1``)."""
    tags = []
    for ref in (manifest.get("image") or {}).get("tags") or []:
        tag = str(ref).rpartition(":")[2]
        if tag and "/" not in tag:
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
    return destination.startswith("docker://") and host in LOOPBACK


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


def publish_images(images: Sequence[tuple[Path, Mapping[str, Any]]], registry: str, *,
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
                    source = str(manifest.get("image", {}).get("tags", [""])[0])
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
