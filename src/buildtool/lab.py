"""Hardware-lab validation: run every fitting artifact on this machine, record everything.

``lab run`` detects the host (CPU features, GPUs and their drivers, Vulkan ICDs, container
engines), finds the artifacts in a directory that fit it, and for each one: the smoke
verdict, then llama-bench over several prompt and generation sizes with repetitions. A
failing or broken artifact is recorded and the run goes on; artifacts that cannot run here
are recorded as skipped with the reason. The result file (``buildtool-lab/1``) is rewritten
atomically after every artifact, so an interrupted run keeps what it measured.

Result file::

    {"schema": "buildtool-lab/1", "host": {...}, "settings": {...}, "started_at": ...,
     "finished_at": ..., "buildtool_version": ...,
     "results": [{"artifact", "kind", "target", "backend", "sha256", "status", "reason",
                  "smoke": {...} | null, "bench": [{"test", "n_prompt", "n_gen", "avg_ts",
                  "stddev_ts", "samples_ts", "backends", "gpu_info", "model_type"}],
                  "duration_s"}]}

``status`` is ``pass`` (smoke passed, benchmark ran), ``fail`` (the smoke verdict failed),
``error`` (it could not run: install, load or llama-bench failed) or ``skipped`` (does not
fit this host).
"""

from __future__ import annotations

import json
import os
import platform as _platform
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from buildtool import __version__
from buildtool.detect.cpu import CpuInfo, normalize_arch
from buildtool.errors import BuildtoolError, ToolchainError, UsageError
from buildtool.package import read_json, sidecar, write_json

SCHEMA = "buildtool-lab/1"
Note = Callable[[str], None]


# ---------------------------------------------------------------------------------------
# Host facts


def parse_os_release(text: str) -> str:
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return values.get("PRETTY_NAME", values.get("NAME", "")).strip().strip('"')


def parse_meminfo(text: str) -> int | None:
    m = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.M)
    return int(m.group(1)) * 1024 if m else None


def vulkan_icds(root: Path = Path("/")) -> list[str]:
    """The Vulkan drivers installed (ICD manifests): ``lvp`` is Mesa's CPU implementation."""
    names = set()
    for d in ("usr/share/vulkan/icd.d", "etc/vulkan/icd.d"):
        for path in (root / d).glob("*.json"):
            names.add(path.name.split(".")[0].removesuffix("_icd"))
    return sorted(names)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def host_facts(cpu: CpuInfo, *, sys_root: Path = Path("/")) -> dict[str, Any]:
    from buildtool import engine as engines
    from buildtool.detect.host import detect_gpus

    drivers = {}
    amd = _read(sys_root / "sys/module/amdgpu/version").strip()
    if amd:
        drivers["amdgpu"] = amd
    nvidia = _read(sys_root / "proc/driver/nvidia/version").splitlines()
    if nvidia:
        drivers["nvidia"] = nvidia[0].strip()
    gpus = detect_gpus(sys_root)
    engines_found = [e.name for e in engines.detect() if e.usable]
    return {
        "id": _platform.node() or "unknown-host",
        "hostname": _platform.node(),
        "os": parse_os_release(_read(sys_root / "etc/os-release")) or _platform.system(),
        "kernel": _platform.release(),
        "platform": f"{sys.platform}-{cpu.arch}",
        "cpu": {"model": cpu.model, "vendor": cpu.vendor, "arch": cpu.arch, "level": cpu.level,
                "cores": os.cpu_count(), "ggml_features": list(cpu.ggml_features),
                "features": sorted(cpu.features)},
        "memory_bytes": parse_meminfo(_read(sys_root / "proc/meminfo")),
        "gpus": [g.to_json() for g in gpus],
        "drivers": drivers,
        "vulkan_icds": vulkan_icds(sys_root),
        "devices": {d: (sys_root / d.lstrip("/")).exists()
                    for d in ("/dev/nvidiactl", "/dev/kfd", "/dev/dri")},
        "engines": engines_found,
        "python": _platform.python_version(),
    }


# ---------------------------------------------------------------------------------------
# Which artifacts fit


def artifact_manifest(path: Path) -> dict[str, Any] | None:
    manifest = read_json(sidecar(path, "manifest"))
    if manifest is None and path.suffix == ".whl":
        from buildtool.wheel import WheelError, read_manifest

        try:
            manifest = read_manifest(path)
        except WheelError:
            return None
    return manifest


def wheel_fits(name: str) -> bool:
    from packaging.tags import sys_tags
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    try:
        tags = parse_wheel_filename(name)[3]
    except InvalidWheelFilename:
        return False
    return any(t in tags for t in sys_tags())


def unfit(kind: str, name: str, manifest: Mapping[str, Any], host: Mapping[str, Any],
          cpu: CpuInfo) -> str | None:
    """Why an artifact cannot run on this host, or None when it fits."""
    plat = str(manifest.get("platform") or "")
    os_name, _, arch = plat.partition("-")
    here = {"linux": "linux", "darwin": "macos", "win32": "windows"}.get(sys.platform,
                                                                        sys.platform)
    if os_name and os_name != here:
        return f"built for {plat}; this host is {here}"
    if arch and normalize_arch(arch) != cpu.arch:
        return f"built for {arch}; this host is {cpu.arch}"
    missing = cpu.missing(manifest.get("cpu", {}).get("required_features", []))
    if missing:
        return f"needs CPU features this host lacks: {', '.join(missing)}"
    family = str(manifest.get("family") or "")
    devices = host.get("devices", {})
    gpus = host.get("gpus", [])
    if family == "cuda" and not (devices.get("/dev/nvidiactl")
                                 or any(g["vendor"] == "NVIDIA" for g in gpus)):
        return "no NVIDIA GPU"
    if family == "hip" and not devices.get("/dev/kfd"):
        return "no AMD GPU (/dev/kfd)"
    if family == "sycl" and not any(g["vendor"] == "Intel" for g in gpus):
        return "no Intel GPU"
    if family == "vulkan" and not host.get("vulkan_icds"):
        return "no Vulkan driver (ICD)"
    if family == "metal" and here != "macos":
        return "Metal needs macOS"
    if kind == "wheel" and not wheel_fits(name):
        return f"wheel tags do not match this Python ({_platform.python_version()})"
    if kind == "image" and not host.get("engines"):
        return "no container engine (docker, podman or buildah)"
    return None


# ---------------------------------------------------------------------------------------
# Running


@dataclass(frozen=True, kw_only=True)
class Settings:
    n_prompt: tuple[int, ...] = (64, 256)
    n_gen: tuple[int, ...] = (16, 64)
    repetitions: int = 3
    model: Path | None = None
    threads: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"n_prompt": list(self.n_prompt), "n_gen": list(self.n_gen),
                "repetitions": self.repetitions,
                "model": str(self.model) if self.model else "synthetic",
                "threads": self.threads}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def bench_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    from buildtool.smoke import summary

    keep = ("test", "model_type", "backends", "gpu_info", "n_gpu_layers", "n_prompt", "n_gen",
            "n_threads", "avg_ts", "stddev_ts", "samples_ts")
    return [{k: r.get(k) for k in keep} for r in summary(list(records))]


def run_one(path: Path, manifest: dict[str, Any], host: Mapping[str, Any], cpu: CpuInfo,
            settings: Settings, engine: Any, note: Note) -> dict[str, Any]:
    from buildtool import release, smoke
    from buildtool.synthetic import cached_model

    kind = release.kind_of(path) or "?"
    entry: dict[str, Any] = {
        "artifact": path.name, "kind": kind, "target": manifest.get("target"),
        "backend": manifest.get("backend"), "family": manifest.get("family"),
        "sha256": None, "status": "skipped", "reason": None, "smoke": None, "bench": [],
        "duration_s": 0.0}
    why = unfit(kind, path.name, manifest, host, cpu)
    if why:
        entry["reason"] = why
        return entry
    started = time.monotonic()
    from buildtool.vendor import sha256_file

    entry["sha256"] = sha256_file(path)
    try:
        with smoke.opened(path, host=cpu, engine=engine, note=note) as (subject, work):
            result = smoke.smoke_subject(subject, work, path, model=settings.model,
                                         threads=settings.threads)
            entry["smoke"] = result.to_json()
            model = smoke.stage_model(subject, work, settings.model or cached_model())
            records, _ = smoke.bench(subject, work, [model],
                                     n_prompt=",".join(map(str, settings.n_prompt)),
                                     n_gen=",".join(map(str, settings.n_gen)),
                                     repetitions=settings.repetitions,
                                     threads=settings.threads)
            entry["bench"] = bench_rows(records)
        if result.passed:
            entry["status"] = "pass"
        else:
            entry["status"] = "fail"
            entry["reason"] = "; ".join(f"{c.name}: {c.detail}" for c in result.failures())
    except BuildtoolError as exc:
        entry["status"] = "error"
        lines = [ln.strip() for ln in exc.message.splitlines() if ln.strip()]
        # "llama-bench failed (exit code 3):" + its first line of output
        entry["reason"] = " ".join(lines[:2] if lines and lines[0].endswith(":") else
                                   lines[:1]) or type(exc).__name__
        entry["detail"] = str(exc)
    except Exception as exc:  # one broken artifact must not end the lab run
        entry["status"] = "error"
        entry["reason"] = f"{type(exc).__name__}: {exc}"
    entry["duration_s"] = round(time.monotonic() - started, 1)
    return entry


def run(directory: Path, out: Path, *, cpu: CpuInfo, settings: Settings,
        engine: str | None = None, note: Note = lambda _: None,
        host: Mapping[str, Any] | None = None) -> dict[str, Any]:
    from buildtool import engine as engines
    from buildtool import release

    paths = release.find(directory)
    if not paths:
        raise UsageError(f"no artifacts (*.tar.gz, *.whl, *.oci.tar) under {directory}",
                         hint="download a build's artifacts into it first")
    facts = dict(host or host_facts(cpu))
    eng = None
    if any(p.name.endswith(".oci.tar") for p in paths) and facts.get("engines"):
        try:
            eng = engines.choose(engine)
        except ToolchainError as exc:
            facts["engines"] = []
            note(f"images will be skipped: {exc.message}")
    doc: dict[str, Any] = {"schema": SCHEMA, "buildtool_version": __version__,
                           "host": facts, "settings": settings.to_json(),
                           "started_at": now(), "finished_at": None, "results": []}
    for i, path in enumerate(paths, 1):
        manifest = artifact_manifest(path)
        note(f"[{i}/{len(paths)}] {path.name}")
        entry: dict[str, Any]
        if manifest is None:
            entry = {"artifact": path.name, "kind": release.kind_of(path), "target": None,
                     "status": "skipped", "reason": "no buildtool manifest", "smoke": None,
                     "bench": [], "duration_s": 0.0}
        else:
            entry = run_one(path, manifest, facts, cpu, settings, eng, note)
        note(f"    {entry['status']}" + (f": {entry['reason']}" if entry.get("reason") else ""))
        doc["results"].append(entry)
        write_json(out, doc)
    doc["finished_at"] = now()
    write_json(out, doc)
    return doc


def counts(doc: Mapping[str, Any]) -> dict[str, int]:
    out = {"pass": 0, "fail": 0, "error": 0, "skipped": 0}
    for r in doc["results"]:
        out[r["status"]] = out.get(r["status"], 0) + 1
    return out


def default_out() -> Path:
    return Path("lab-results") / f"{_platform.node() or 'host'}.json"


def sizes(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise ValueError(f"{text!r} is not a comma-separated list of positive sizes")
    return values


def load_results(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Read result files; a file that is not one names itself and what is wrong."""
    from buildtool.errors import ConfigError

    docs = []
    for path in paths:
        try:
            doc = json.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror}", path=path) from exc
        except ValueError as exc:
            raise ConfigError(f"not JSON ({exc})", path=path,
                              hint="pass files written by `buildtool lab run`") from exc
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            found = doc.get("schema") if isinstance(doc, dict) else None
            raise ConfigError(f"not a lab result (schema {found!r}, expected {SCHEMA!r})",
                              path=path,
                              hint="pass files written by `buildtool lab run`")
        if not isinstance(doc.get("host"), dict) or not isinstance(doc.get("results"), list):
            raise ConfigError("a lab result needs 'host' and 'results'", path=path)
        docs.append(doc)
    return docs
