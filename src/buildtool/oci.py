"""Reading OCI archives (an OCI image layout in a tar file) without any engine.

What buildtool needs from an image it saved: the reference it was saved under, its config
(labels, entrypoint, user), the manifest and config digests, its size, and the files a
directory holds (for the ISA audit of the shipped binaries).
"""

from __future__ import annotations

import gzip
import io
import json
import posixpath
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from buildtool.errors import BuildtoolError, ExitCode

REF_NAME = "org.opencontainers.image.ref.name"


class OciError(BuildtoolError):
    exit_code = ExitCode.BUILD


@dataclass(frozen=True, kw_only=True)
class ImageInfo:
    ref: str | None
    manifest_digest: str
    config_digest: str  # the image ID podman, buildah and docker show
    config: dict[str, Any]  # the image config's "config" (Labels, Entrypoint, User, ...)
    architecture: str
    os: str
    layers: tuple[tuple[str, str], ...]  # (media type, digest), base first
    size: int  # compressed layers + config + manifest

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.config.get("Labels") or {})

    def to_json(self) -> dict[str, Any]:
        return {"ref": self.ref, "manifest_digest": self.manifest_digest,
                "id": self.config_digest, "architecture": self.architecture, "os": self.os,
                "layers": len(self.layers), "size": self.size, "labels": self.labels,
                "entrypoint": self.config.get("Entrypoint"), "user": self.config.get("User"),
                "exposed_ports": sorted(self.config.get("ExposedPorts") or {})}


def _blob(tf: tarfile.TarFile, digest: str) -> bytes:
    algo, _, hexdigest = digest.partition(":")
    for name in (f"blobs/{algo}/{hexdigest}", f"./blobs/{algo}/{hexdigest}"):
        try:
            member = tf.getmember(name)
        except KeyError:
            continue
        handle = tf.extractfile(member)
        if handle is not None:
            return handle.read()
    raise OciError(f"blob {digest} is missing from the archive")


def _json(tf: tarfile.TarFile, name: str) -> Any:
    for candidate in (name, f"./{name}"):
        try:
            handle = tf.extractfile(candidate)
        except KeyError:
            continue
        if handle is not None:
            return json.loads(handle.read())
    raise OciError(f"no {name}: not an OCI image layout")


def _manifest(tf: tarfile.TarFile) -> tuple[dict[str, Any], str, str | None]:
    index = _json(tf, "index.json")
    entries = index.get("manifests") or []
    if not entries:
        raise OciError("index.json lists no image")
    entry = entries[0]
    data = json.loads(_blob(tf, entry["digest"]))
    if "manifests" in data:  # a nested index (docker save, multi-platform): take the first
        entry = data["manifests"][0]
        data = json.loads(_blob(tf, entry["digest"]))
    ref = (entries[0].get("annotations") or {}).get(REF_NAME) or \
        (entry.get("annotations") or {}).get(REF_NAME)
    return data, entry["digest"], ref


def inspect(archive: Path) -> ImageInfo:
    try:
        with tarfile.open(archive) as tf:
            manifest, digest, ref = _manifest(tf)
            config = json.loads(_blob(tf, manifest["config"]["digest"]))
    except (OSError, tarfile.TarError, ValueError, KeyError) as exc:
        raise OciError(f"{archive} is not a readable OCI archive: {exc}") from exc
    layers = tuple((layer["mediaType"], layer["digest"]) for layer in manifest["layers"])
    size = sum(int(x.get("size", 0)) for x in manifest["layers"]) + \
        int(manifest["config"].get("size", 0))
    return ImageInfo(ref=ref, manifest_digest=digest, config_digest=manifest["config"]["digest"],
                     config=config.get("config") or {},
                     architecture=config.get("architecture", ""), os=config.get("os", ""),
                     layers=layers, size=size)


def _layer_tar(blob: bytes, media_type: str) -> tarfile.TarFile:
    if media_type.endswith("+zstd"):
        raise OciError("zstd-compressed layers cannot be read here; save the image with gzip "
                       "layers (the engines' default)")
    data = gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob
    return tarfile.open(fileobj=io.BytesIO(data))


def extract(archive: Path, directory: str, dest: Path) -> list[Path]:
    """Write the regular files under ``directory`` (e.g. "/opt/llama.cpp") of the image's
    final file system into ``dest``; later layers win, whiteouts delete."""
    prefix = PurePosixPath(directory.strip("/"))
    files: dict[str, bytes | None] = {}
    modes: dict[str, int] = {}
    try:
        with tarfile.open(archive) as tf:
            manifest, _, _ = _manifest(tf)
            for layer in manifest["layers"]:
                with _layer_tar(_blob(tf, layer["digest"]), layer["mediaType"]) as lt:
                    for member in lt.getmembers():
                        path = PurePosixPath(posixpath.normpath(member.name.lstrip("./") or "."))
                        if prefix not in (path, *path.parents):
                            continue
                        rel = str(path.relative_to(prefix))
                        if path.name.startswith(".wh."):
                            gone = str(path.parent.relative_to(prefix) /
                                       path.name.removeprefix(".wh."))
                            for key in [k for k in files if k == gone or
                                        k.startswith(gone + "/")]:
                                files[key] = None
                            continue
                        if member.isfile():
                            handle = lt.extractfile(member)
                            files[rel] = handle.read() if handle else b""
                            modes[rel] = member.mode
    except (OSError, tarfile.TarError, ValueError, KeyError) as exc:
        raise OciError(f"cannot read {archive}: {exc}") from exc
    out = []
    for rel, data in sorted(files.items()):
        if data is None:
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(modes[rel] & 0o777)
        out.append(target)
    return out
