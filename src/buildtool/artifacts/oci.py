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
import json
import posixpath
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, TypeVar

from buildtool import records
from buildtool.archives import Deflated, GzipTar, tar_info
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


def _blob_path(digest: str) -> str:
    """Where an OCI image layout keeps the blob of ``digest``: blobs/<algorithm>/<hex>."""
    algo, _, hexdigest = digest.partition(":")
    return f"blobs/{algo}/{hexdigest}"


def _blob(tf: tarfile.TarFile, digest: str, limit: int | None = None) -> bytes:
    return _read(tf, _blob_path(digest), f"blob {digest}", limit)


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


@dataclass(frozen=True)
class Tree:
    """The regular files and symbolic links under one directory of an image's final file
    system, by path relative to it (read once: checked by digest, written out for the
    audit)."""

    entries: Mapping[str, _Entry]
    # layers (by digest) that hold nothing under the directory, not even a whiteout
    empty: frozenset[str] = frozenset()

    def digests(self) -> dict[str, str]:
        """As a manifest's ``files`` says it: each regular file's sha256,
        ``symlink:<target>`` for a symbolic link."""
        return {rel: f"symlink:{entry.link}" if entry.data is None
                else hashlib.sha256(entry.data).hexdigest()
                for rel, entry in self.entries.items()}

    def write(self, dest: Path) -> list[Path]:
        """Write the regular files into ``dest``, modes kept; their paths."""
        out = []
        for rel, entry in self.entries.items():
            if entry.data is None:
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(entry.data)
            target.chmod(entry.mode & 0o777)
            out.append(target)
        return out


def tree(archive: Path, directory: str, *, empty: frozenset[str] = frozenset()) -> Tree:
    """What ``directory`` (e.g. "/opt/llama.cpp") of the image's final file system holds:
    later layers win, whiteouts delete. ``empty``: digests of layers known to hold nothing
    there (Tree.empty of an earlier reading), not decompressed again."""
    prefix = PurePosixPath(directory.strip("/"))
    entries: dict[str, _Entry | None] = {}
    found_empty: set[str] = set()
    try:
        with tarfile.open(archive) as tf:
            manifest, _, _ = _manifest(tf)
            for layer in manifest.layers:
                if layer.digest in empty:
                    found_empty.add(layer.digest)
                    continue
                held = False
                with _layer_tar(_blob(tf, layer.digest), layer.media_type) as lt:
                    for member in lt.getmembers():
                        path = PurePosixPath(posixpath.normpath(member.name.lstrip("./") or "."))
                        if prefix not in (path, *path.parents):
                            continue
                        held = True
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
                if not held:
                    found_empty.add(layer.digest)
    except (OSError, tarfile.TarError, EOFError, ValueError, KeyError) as exc:
        raise OciError(f"cannot read {archive}: {exc}") from exc
    return Tree({rel: entry for rel, entry in sorted(entries.items()) if entry is not None},
                empty=frozenset(found_empty))


def extract(archive: Path, directory: str, dest: Path) -> list[Path]:
    """Write the regular files under ``directory`` of the image's final file system into
    ``dest``."""
    return tree(archive, directory).write(dest)


def digests(archive: Path, directory: str) -> dict[str, str]:
    """What ``directory`` of the image's final file system holds (see Tree.digests)."""
    return tree(archive, directory).digests()


# ------------------------------------------------------------------------------ writing

LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
_CHUNK = 1 << 20


@dataclass(frozen=True, kw_only=True)
class LayerEntry:
    """One member of a layer: ``path`` inside the image (no leading /), from ``source`` (a
    regular file or a symbolic link, as it is) or a directory when ``source`` is None."""

    path: str
    source: Path | None = None
    mode: int = 0o755  # directories; files and links keep their own
    mtime: float = 0.0


@dataclass(frozen=True, kw_only=True)
class Layer:
    """A gzip-compressed layer written to ``blob``: its digest and size as the manifest
    lists it, its diff_id (the uncompressed tar's digest) as the config lists it, and the
    history entry that says what made it."""

    blob: Path
    digest: str
    size: int
    diff_id: str
    created_by: str


def write_layer(entries: list[LayerEntry], blob: Path, created_by: str, *,
                clamp_mtime: float | None = None, deflated: Deflated | None = None) -> Layer:
    """Write ``entries`` as a gzip-compressed layer tar into ``blob`` (owned by root, modes
    as they are; mtimes clamped to ``clamp_mtime`` when given: SOURCE_DATE_EPOCH) in one
    pass that also hashes the tar (diff_id) and the compressed blob (digest). ``deflated``:
    the build's files already deflated for another artifact (the tarball), reused."""
    with blob.open("wb") as out:
        tar = GzipTar(out, deflated or Deflated())
        for entry in entries:
            data = None
            if entry.source is None:
                info = tarfile.TarInfo(entry.path.rstrip("/") + "/")
                info.type, info.mode = tarfile.DIRTYPE, entry.mode
                info.mtime = int(entry.mtime)
            else:
                info = tar_info(entry.source, entry.path)
                if info.isreg():
                    data = entry.source.read_bytes()
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if clamp_mtime is not None:
                info.mtime = min(info.mtime, int(clamp_mtime))
            tar.add(info, data)
        tar.close()
    return Layer(blob=blob, digest=f"sha256:{tar.compressed.hexdigest()}",
                 size=tar.size, diff_id=f"sha256:{tar.plain.hexdigest()}",
                 created_by=created_by)


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def _raw_json(tf: tarfile.TarFile, digest: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_blob(tf, digest, JSON_LIMIT))
    except ValueError as exc:
        raise OciError(f"{what} {digest} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise OciError(f"{what} {digest} is not a JSON object")
    return value


def append(base: Path, layers: list[Layer], *, labels: dict[str, str], created: str,
           ref: str, out: Path, comment: str) -> None:
    """Write ``out``: the image of the OCI archive ``base`` with ``layers`` on top, its
    labels updated with ``labels``, made at ``created``, under the reference ``ref`` —
    what an engine's COPY and LABEL on ``FROM base`` make, without the engine. The base's
    blobs are copied as they are (their digests stay valid)."""
    try:
        with tarfile.open(base) as src:
            manifest_obj, manifest_digest, _ref = _manifest(src)
            manifest = _raw_json(src, manifest_digest, "manifest")
            config = _raw_json(src, manifest_obj.config.digest, "config")
            container = dict(config.get("config") or {})
            container["Labels"] = {**(container.get("Labels") or {}), **labels}
            config["config"] = container
            config["created"] = created
            rootfs = dict(config.get("rootfs") or {"type": "layers"})
            rootfs["diff_ids"] = [*rootfs.get("diff_ids", []), *(x.diff_id for x in layers)]
            config["rootfs"] = rootfs
            history = list(config.get("history") or [])
            history += [{"created": created, "created_by": x.created_by, "comment": comment}
                        for x in layers]
            if labels:
                history.append({"created": created, "empty_layer": True, "comment": comment,
                                "created_by": "LABEL " + " ".join(
                                    f"{k}={v}" for k, v in sorted(labels.items()))})
            config["history"] = history
            config_raw = _json_bytes(config)
            config_digest = f"sha256:{hashlib.sha256(config_raw).hexdigest()}"
            config_desc = {"mediaType": CONFIG_TYPE, "size": len(config_raw),
                           "digest": config_digest}
            new_manifest = {
                "schemaVersion": 2, "mediaType": MANIFEST_TYPE, "config": config_desc,
                "layers": [*manifest.get("layers", []),
                           *({"mediaType": LAYER_GZIP, "digest": x.digest, "size": x.size}
                             for x in layers)]}
            if manifest.get("annotations"):
                new_manifest["annotations"] = manifest["annotations"]
            manifest_raw = _json_bytes(new_manifest)
            manifest_digest = f"sha256:{hashlib.sha256(manifest_raw).hexdigest()}"
            index = {"schemaVersion": 2, "manifests": [{
                "mediaType": MANIFEST_TYPE, "size": len(manifest_raw),
                "digest": manifest_digest, "annotations": {REF_NAME: ref}}]}
            with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dst:
                def add_bytes(name: str, data: bytes) -> None:
                    info = tarfile.TarInfo(name)
                    info.size, info.mode = len(data), 0o644
                    dst.addfile(info, io.BytesIO(data))

                add_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
                dirs = tarfile.TarInfo("blobs/sha256/")
                dirs.type, dirs.mode = tarfile.DIRTYPE, 0o755
                dst.addfile(dirs)
                for layer in manifest_obj.layers:  # the base's layers, as they are
                    member = _member(src, _blob_path(layer.digest))
                    handle = src.extractfile(member) if member is not None else None
                    if member is None or handle is None:
                        raise OciError(f"blob {layer.digest} is missing from the archive")
                    info = tarfile.TarInfo(_blob_path(layer.digest))
                    info.size, info.mode = member.size, 0o644
                    dst.addfile(info, handle)
                for x in layers:
                    info = dst.gettarinfo(str(x.blob),
                                          arcname=_blob_path(x.digest))
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    info.mode = 0o644
                    with x.blob.open("rb") as fh:
                        dst.addfile(info, fh)
                add_bytes(_blob_path(config_digest), config_raw)
                add_bytes(_blob_path(manifest_digest), manifest_raw)
                add_bytes("index.json", _json_bytes(index))
    except OciError as exc:
        raise OciError(f"{base} is not a readable OCI archive: {exc.message}") from None
    except (tarfile.TarError, EOFError, ValueError) as exc:
        raise OciError(f"{base} is not a readable OCI archive: {exc}") from None
