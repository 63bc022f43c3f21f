"""Reading OCI archives (an OCI image layout in a tar file) without any engine.

What buildtool needs from an image it saved: the reference it was saved under, its config
(labels, entrypoint, user), the manifest and config digests, its size, and the files a
directory holds (for the ISA audit of the shipped binaries).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import posixpath
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, TypeVar

from buildtool import records
from buildtool.errors import DataError
from buildtool.records import ImageRecord
from buildtool.schema import Match, Range

R = TypeVar("R")

REF_NAME = "org.opencontainers.image.ref.name"


class OciError(DataError):
    """An OCI archive that cannot be read (exit code 13: damaged data)."""


Digest = Annotated[str, Match(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}",
                              "a digest such as sha256:<64 hex digits>")]
JSON_LIMIT = 16 << 20  # index, manifests and configs are a few KiB


@dataclass(frozen=True, kw_only=True)
class Descriptor:
    media_type: str = field(default="", metadata={"key": "mediaType"})
    digest: Digest
    size: Annotated[int, Range(minimum=0)] = 0
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Index:
    """index.json, or a nested index (docker save, multi-platform)."""

    manifests: tuple[Descriptor, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ImageManifest:
    config: Descriptor
    layers: tuple[Descriptor, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ContainerConfig:
    labels: dict[str, str] | None = field(default=None, metadata={"key": "Labels"})
    entrypoint: tuple[str, ...] | None = field(default=None, metadata={"key": "Entrypoint"})
    user: str | None = field(default=None, metadata={"key": "User"})
    exposed_ports: dict[str, Any] | None = field(default=None,
                                                 metadata={"key": "ExposedPorts"})


@dataclass(frozen=True, kw_only=True)
class ImageConfig:
    architecture: str = ""
    os: str = ""
    config: ContainerConfig | None = None


@dataclass(frozen=True, kw_only=True)
class ImageInfo:
    ref: str | None
    manifest_digest: str
    config_digest: str  # the image ID podman, buildah and docker show
    config: ContainerConfig  # the image config's "config" (Labels, Entrypoint, User, ...)
    architecture: str
    os: str
    layers: tuple[tuple[str, str], ...]  # (media type, digest), base first
    size: int  # compressed layers + config + manifest

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.config.labels or {})

    def to_json(self) -> dict[str, Any]:
        return {"ref": self.ref, "manifest_digest": self.manifest_digest,
                "id": self.config_digest, "architecture": self.architecture, "os": self.os,
                "layers": len(self.layers), "size": self.size, "labels": self.labels,
                "entrypoint": list(self.config.entrypoint) if self.config.entrypoint
                is not None else None, "user": self.config.user,
                "exposed_ports": sorted(self.config.exposed_ports or {})}

    def merged_into(self, image: ImageRecord | None) -> ImageRecord:
        """A manifest's image section with what this archive says of itself."""
        base = image or ImageRecord()
        return dataclasses.replace(
            base, ref=self.ref, manifest_digest=self.manifest_digest, id=self.config_digest,
            architecture=self.architecture, os=self.os, layers=len(self.layers),
            size=self.size, labels=self.labels,
            entrypoint=self.config.entrypoint, user=self.config.user,
            exposed_ports=tuple(sorted(self.config.exposed_ports or {})))


def _member(tf: tarfile.TarFile, name: str) -> tarfile.TarInfo | None:
    for candidate in (name, f"./{name}"):
        try:
            return tf.getmember(candidate)
        except KeyError:
            continue
    return None


def _read(tf: tarfile.TarFile, name: str, what: str, limit: int | None) -> bytes:
    member = _member(tf, name)
    handle = tf.extractfile(member) if member is not None and member.isfile() else None
    if member is None or handle is None:
        raise OciError(f"{what} is missing from the archive")
    if limit is not None and member.size > limit:
        raise OciError(f"{what} is too large ({member.size} bytes)")
    return handle.read()


def _blob(tf: tarfile.TarFile, digest: str, limit: int | None = None) -> bytes:
    algo, _, hexdigest = digest.partition(":")
    return _read(tf, f"blobs/{algo}/{hexdigest}", f"blob {digest}", limit)


def _record(tp: type[R], raw: bytes, where: str) -> R:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise OciError(f"{where}: not UTF-8") from None
    return records.from_text(tp, text, where, error=OciError)


def _manifest(tf: tarfile.TarFile) -> tuple[ImageManifest, str, str | None]:
    index = _record(Index, _read(tf, "index.json", "index.json (not an OCI image layout)",
                                 JSON_LIMIT), "index.json")
    if not index.manifests:
        raise OciError("index.json lists no image")
    entry = index.manifests[0]
    raw = _blob(tf, entry.digest, JSON_LIMIT)
    nested = _record(Index, raw, f"blob {entry.digest}")
    if nested.manifests:  # a nested index (docker save, multi-platform): take the first
        entry = nested.manifests[0]
        raw = _blob(tf, entry.digest, JSON_LIMIT)
    manifest = _record(ImageManifest, raw, f"manifest {entry.digest}")
    ref = index.manifests[0].annotations.get(REF_NAME) or entry.annotations.get(REF_NAME)
    return manifest, entry.digest, ref


def inspect(archive: Path) -> ImageInfo:
    try:
        with tarfile.open(archive) as tf:
            manifest, digest, ref = _manifest(tf)
            config = _record(ImageConfig, _blob(tf, manifest.config.digest, JSON_LIMIT),
                             f"config {manifest.config.digest}")
    except OciError as exc:
        raise OciError(f"{archive} is not a readable OCI archive: {exc.message}") from None
    except (OSError, tarfile.TarError, EOFError, ValueError) as exc:
        raise OciError(f"{archive} is not a readable OCI archive: {exc}") from None
    layers = tuple((layer.media_type, layer.digest) for layer in manifest.layers)
    size = sum(x.size for x in manifest.layers) + manifest.config.size
    return ImageInfo(ref=ref, manifest_digest=digest, config_digest=manifest.config.digest,
                     config=config.config or ContainerConfig(),
                     architecture=config.architecture, os=config.os, layers=layers, size=size)


def _layer_tar(blob: bytes, media_type: str) -> tarfile.TarFile:
    if media_type.endswith("+zstd"):
        raise OciError("zstd-compressed layers cannot be read here; save the image with gzip "
                       "layers (the engines' default)")
    data = gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob
    return tarfile.open(fileobj=io.BytesIO(data))


@dataclass(frozen=True)
class _Entry:
    data: bytes | None  # a regular file's content (None: a symbolic link)
    mode: int = 0o644
    link: str = ""  # a symbolic link's target


def _final_tree(archive: Path, directory: str) -> dict[str, _Entry]:
    """The regular files and symbolic links under ``directory`` of the image's final file
    system, by path relative to it: later layers win, whiteouts delete."""
    prefix = PurePosixPath(directory.strip("/"))
    entries: dict[str, _Entry | None] = {}
    try:
        with tarfile.open(archive) as tf:
            manifest, _, _ = _manifest(tf)
            for layer in manifest.layers:
                with _layer_tar(_blob(tf, layer.digest), layer.media_type) as lt:
                    for member in lt.getmembers():
                        path = PurePosixPath(posixpath.normpath(member.name.lstrip("./") or "."))
                        if prefix not in (path, *path.parents):
                            continue
                        rel = str(path.relative_to(prefix))
                        if path.name.startswith(".wh."):
                            gone = str(path.parent.relative_to(prefix) /
                                       path.name.removeprefix(".wh."))
                            for key in [k for k in entries if k == gone or
                                        k.startswith(gone + "/")]:
                                entries[key] = None
                            continue
                        if member.isfile():
                            handle = lt.extractfile(member)
                            entries[rel] = _Entry(handle.read() if handle else b"",
                                                  member.mode)
                        elif member.issym():
                            entries[rel] = _Entry(None, link=member.linkname)
    except (OSError, tarfile.TarError, EOFError, ValueError, KeyError) as exc:
        raise OciError(f"cannot read {archive}: {exc}") from exc
    return {rel: entry for rel, entry in sorted(entries.items()) if entry is not None}


def extract(archive: Path, directory: str, dest: Path) -> list[Path]:
    """Write the regular files under ``directory`` (e.g. "/opt/llama.cpp") of the image's
    final file system into ``dest``; later layers win, whiteouts delete."""
    out = []
    for rel, entry in _final_tree(archive, directory).items():
        if entry.data is None:
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(entry.data)
        target.chmod(entry.mode & 0o777)
        out.append(target)
    return out


def digests(archive: Path, directory: str) -> dict[str, str]:
    """What ``directory`` of the image's final file system holds, as a manifest's ``files``
    says it: each regular file's sha256, ``symlink:<target>`` for a symbolic link."""
    return {rel: f"symlink:{entry.link}" if entry.data is None
            else hashlib.sha256(entry.data).hexdigest()
            for rel, entry in _final_tree(archive, directory).items()}
