"""Small but well-formed artifacts for release tests: a tarball, a wheel and an OCI archive,
each with the manifest and smoke sidecars `buildtool build` writes, built in Python."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path
from typing import Any

from buildtool.outputs import sidecar, update_sums

COMMIT = "0c1e57098bba43ac29e6e3b677cdceebdd22334f"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha(path: Path) -> str:
    return sha(path.read_bytes())


def base_manifest(target: str, *, gpu: bool = False, backend: str = "CPU",
                  family: str = "cpu") -> dict[str, Any]:
    return {
        "schema": 1, "target": target, "recipe": family, "family": family, "backend": backend,
        "gpu": gpu, "platform": "linux-x86_64",
        "llama_cpp": {"repository": "https://github.com/ggml-org/llama.cpp", "commit": COMMIT,
                      "version": "b11312", "source": "pypi-sdist", "source_sha256": "8" * 64,
                      "tree_sha256": "7" * 64},
        "cpu": {"policy": "all-variants", "level": None, "required_features": []},
        "toolkit": "12.4" if gpu else None, "gpu_archs": ["89-real"] if gpu else [],
        "cmake_defines": {"CMAKE_BUILD_TYPE": "Release", "GGML_NATIVE": "OFF",
                          **({"GGML_CUDA": "ON"} if gpu else {})},
        "toolchain": {"cmake": {"path": "/usr/bin/cmake", "version": "3.31.6"},
                      "cc": {"path": "/usr/bin/cc", "version": "12.2.0"}},
        "buildtool_version": "0.1.0", "build_key": "k" * 64,
        "built_at": "2026-11-20T10:00:00+00:00",
        "build_host": {"platform": "linux-x86_64", "machine": "ci-runner-7"},
    }


def smoke_result(artifact: Path, target: str, *, backend: str = "CPU", gpu_info: str = "",
                 ngl: int = 0, verdict: str = "pass", waived: tuple[str, ...] = ()
                 ) -> dict[str, Any]:
    tests = [{"test": t, "model_type": "llama ?B all F32", "backends": backend,
              "gpu_info": gpu_info, "n_gpu_layers": ngl, "avg_ts": ts, "stddev_ts": 1.0}
             for t, ts in (("pp32", 812.5), ("tg16", 95.25))]
    return {"artifact": artifact.name, "target": target, "kind": "tarball", "verdict": verdict,
            "checks": [{"name": "tokens/s > 0", "ok": verdict == "pass", "detail": "",
                        "waived": False}],
            "waived": list(waived), "tests": tests, "command": [], "duration_s": 0.1,
            "model": "synthetic:x.gguf", "artifact_sha256": file_sha(artifact),
            "ran_at": "2026-11-20T11:00:00+00:00",
            "system": {"root": "/", "glibc": "2.36", "libstdcxx": "3.4.30"},
            # the portable fixtures (all-variants) are proven on the lowest model they claim
            "emulated": [emulated_run("qemu64", "x64")],
            "numerics": {"verdict": "pass", "tokens": 63, "runs": [
                numerics_run("F32", 5.5e-8), numerics_run("Q4_0", 1.6e-4)],
                "reference": "NumPy float64 forward pass of the same weights"}}


def numerics_run(model_type: str, nmse: float, *, ok: bool = True) -> dict[str, Any]:
    """A run as the smoke records it (measured figures of the cpu artifact here)."""
    limit = 1e-5 if model_type == "F32" else 2e-3
    return {"model_type": model_type, "nmse": nmse, "kl": nmse * 1.5, "kl_max": nmse * 3,
            "top1": 1.0, "max_nmse": limit, "max_kl": limit, "ok": ok}


def emulated_run(model: str, variant: str, verdict: str = "pass") -> dict[str, Any]:
    return {"model": model, "emulator": "qemu-x86_64", "level": None, "verdict": verdict,
            "reason": f"ran {variant}", "variant": variant, "expected_variant": variant,
            "tests": [], "duration_s": 1.5}


def _sidecars(path: Path, manifest: dict[str, Any], smoke: dict[str, Any] | None) -> None:
    manifest = {**manifest, "artifact_file": path.name, "artifact_sha256": file_sha(path)}
    sidecar(path, "manifest").write_text(json.dumps(manifest))
    if smoke is not None:
        sidecar(path, "smoke").write_text(json.dumps(smoke))
    update_sums(path.parent, path.name, file_sha(path))


def tarball(dist: Path, target: str = "cpu", *, gpu: bool = False, backend: str = "CPU",
            family: str = "cpu", gpu_info: str = "", ngl: int = 0, smoke: bool = True,
            name: str | None = None, rebuild: int = 0) -> Path:
    name = name or f"llama.cpp-b11312-{target}-linux-x86_64"
    files = {"llama-bench": b"\x7fELF bench " + target.encode()
             + b"".join(hashlib.sha256(bytes([i % 256, i // 256])).digest()
                        for i in range(rebuild)),
             "libggml.so.0.1": b"\x7fELF ggml"}
    path = dist / f"{name}.tar.gz"
    with gzip.GzipFile(path, "wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tf:
        for rel, data in files.items():
            info = tarfile.TarInfo(f"{name}/{rel}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo(f"{name}/libggml.so.0")
        link.type = tarfile.SYMTYPE
        link.linkname = "libggml.so.0.1"
        tf.addfile(link)
    manifest = {**base_manifest(target, gpu=gpu, backend=backend, family=family),
                "kind": "tarball", "artifact": name,
                "files": {**{k: sha(v) for k, v in files.items()},
                          "libggml.so.0": "symlink:libggml.so.0.1"}}
    _sidecars(path, manifest, smoke_result(path, target, backend=backend, gpu_info=gpu_info,
                                           ngl=ngl) if smoke else None)
    return path


def wheel(dist: Path, target: str = "cpu", *, cpu: dict[str, Any] | None = None) -> Path:
    """``cpu``: its claim (default: all-variants), in the manifest inside and beside it."""
    project = f"llama_cpp_bin_{target.replace('-', '_')}"
    path = dist / f"{project}-11312.0-py3-none-manylinux_2_35_x86_64.whl"
    claim = {"cpu": cpu} if cpu else {}
    inner = json.dumps({**base_manifest(target), **claim, "kind": "wheel",
                        "artifact": path.name, "wheel": {"module": project}}).encode()
    files = {f"{project}/__init__.py": b"TARGET = 'cpu'\n",
             f"{project}/manifest.json": inner,
             f"{project}/bin/llama-bench": b"\x7fELF bench"}
    rows = []
    with zipfile.ZipFile(path, "w") as zf:
        for rel, data in files.items():
            zf.writestr(rel, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            rows.append(f"{rel},sha256={digest.decode()},{len(data)}")
        info = f"{project}-11312.0.dist-info"
        zf.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: x\n")
        rows.append(f"{info}/RECORD,,")
        zf.writestr(f"{info}/RECORD", "\n".join(rows) + "\n")
    manifest = {**base_manifest(target), **claim, "kind": "wheel", "artifact": path.name,
                "wheel": {"module": project}}
    smoke = {**smoke_result(path, target), "kind": "wheel"}
    _sidecars(path, manifest, smoke)
    return path


def oci_archive(dist: Path, target: str = "cpu", *, tags: tuple[str, ...] = (),
                name: str | None = None) -> Path:
    name = name or f"llama.cpp-b11312-{target}-linux-x86_64-image"
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as lt:
        data = b"\x7fELF bench"
        info = tarfile.TarInfo("opt/llama.cpp/llama-bench")
        info.size = len(data)
        lt.addfile(info, io.BytesIO(data))
    layer_bytes = layer.getvalue()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Labels": {"dev.buildtool.target": target}},
                         "rootfs": {"type": "layers", "diff_ids": [f"sha256:{sha(layer_bytes)}"]}
                         }).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": f"sha256:{sha(config)}", "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": f"sha256:{sha(layer_bytes)}", "size": len(layer_bytes)}]}).encode()
    tags = tags or (f"localhost/llama.cpp:{target}-b11312", f"localhost/llama.cpp:{target}")
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": f"sha256:{sha(manifest)}", "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": tags[0]}}]}).encode()
    path = dist / f"{name}.oci.tar"
    with tarfile.open(path, "w") as tf:
        for member, data in (("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'),
                             ("index.json", index), (f"blobs/sha256/{sha(config)}", config),
                             (f"blobs/sha256/{sha(manifest)}", manifest),
                             (f"blobs/sha256/{sha(layer_bytes)}", layer_bytes)):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    meta = {**base_manifest(target), "kind": "image", "artifact": name,
            "image": {"tags": list(tags), "build_args": {"BUILD_IMAGE": "debian:12"},
                      "manifest_digest": f"sha256:{sha(manifest)}"}}
    _sidecars(path, meta, {**smoke_result(path, target), "kind": "image"})
    return path


def rewrite_sidecar(path: Path, kind: str, **changes: Any) -> None:
    side = sidecar(path, kind)
    data = json.loads(side.read_text())
    data.update(changes)
    side.write_text(json.dumps(data))


def sidecar_path(dist: Path, kind: str, target: str = "cpu") -> Path:
    """The manifest or smoke sidecar of the tarball :func:`tarball` made for ``target``."""
    return sidecar(dist / f"llama.cpp-b11312-{target}-linux-x86_64.tar.gz", kind)
