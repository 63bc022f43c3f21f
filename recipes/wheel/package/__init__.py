"""llama.cpp's programs for one hardware target, built, audited and smoke-tested by buildtool.

    import llama_cpp_bin_cpu as llama            # the module is named after the distribution
    llama.path("llama-server")                   # absolute path of the bundled executable
    llama.manifest()["target"]                   # what it is: target, llama.cpp commit, ...
    llama.run("llama-bench", ["-m", "model.gguf"])

The console scripts (llama-server, llama-cli, llama-bench, llama-quantize) run the bundled
executables; ``python -m <module>`` says what this wheel is. This file comes from
buildtool's recipes/wheel template and is the same in every target's wheel.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BIN_DIR = HERE / "bin"


@lru_cache(maxsize=1)
def manifest() -> dict[str, Any]:
    """The build manifest: target, llama.cpp commit, required CPU features, CMake defines."""
    data: dict[str, Any] = json.loads((HERE / "manifest.json").read_text(encoding="utf-8"))
    return data


__version__: str = manifest()["wheel"]["version"]


def programs() -> tuple[str, ...]:
    """The bundled executables."""
    return tuple(manifest()["build_targets"])


def path(program: str) -> Path:
    """Absolute path of a bundled executable (KeyError if it is not bundled)."""
    if program not in programs():
        raise KeyError(f"{program!r} is not bundled; bundled: {', '.join(programs())}")
    return BIN_DIR / (program + (".exe" if os.name == "nt" else ""))


def _cpu_flags() -> set[str] | None:
    """The CPU flags the Linux kernel reports, or None where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return None


def missing_cpu_features() -> list[str]:
    """CPU features the build requires that this host lacks ([] where unknown)."""
    cpu = manifest()["cpu"]
    flags = _cpu_flags()
    if flags is None:
        return []
    spellings: dict[str, list[str]] = cpu.get("linux_flags", {})
    return [f for f in cpu.get("required_features", [])
            if not flags.intersection(spellings.get(f, [f]))]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def _glibc() -> str | None:
    """This system's glibc version ("2.36"), or None (not glibc, or unknown)."""
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()  # "glibc 2.36"
    except (AttributeError, ValueError, OSError):
        return None
    return version if name == "glibc" else None


def _libstdcxx() -> dict[str, str]:
    """The highest GLIBCXX_/CXXABI_ versions the libstdc++ this system loads defines."""
    try:
        ctypes.CDLL("libstdc++.so.6")
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            path = next((line.split()[-1] for line in maps
                         if line.rstrip().endswith("/libstdc++.so.6")
                         or "/libstdc++.so.6." in line), None)
        data = Path(path).read_bytes() if path else b""
    except (OSError, StopIteration):
        return {}
    found: dict[str, str] = {}
    for family, prefix in (("libstdcxx", rb"GLIBCXX_"), ("cxxabi", rb"CXXABI_")):
        versions = {m.decode() for m in re.findall(prefix + rb"(\d+(?:\.\d+)+)\x00", data)}
        if versions:
            found[family] = max(versions, key=_version)
    return found


def too_old() -> list[str]:
    """What this system lacks of the ABI floor the build recorded (the glibc and libstdc++
    symbol versions its binaries need): [] where it fits or cannot be told."""
    floor: dict[str, str | None] = (manifest().get("abi") or {}).get("floor") or {}
    have: dict[str, str | None] = {"glibc": _glibc(), **_libstdcxx()}
    out: list[str] = []
    for family, need in floor.items():
        got = have.get(family)
        try:
            older = bool(need and got and _version(need) > _version(got))
        except (AttributeError, TypeError, ValueError):  # a damaged manifest: not the system
            continue
        if older:
            out.append(f"{family} {need} is needed, this system has {got}")
    return out


def _library_dirs() -> list[str]:
    """Directories of runtime wheels this one depends on, found on sys.path by the patterns
    its manifest names (``wheel.library_dirs``: nvidia/*/lib for NVIDIA's wheels)."""
    patterns: list[str] = manifest()["wheel"].get("library_dirs", [])
    dirs: list[str] = []
    for entry in sys.path:
        base = Path(entry or ".")
        if not base.is_dir():
            continue
        for pattern in patterns:
            dirs += sorted(str(p) for p in base.glob(pattern) if p.is_dir())
    return list(dict.fromkeys(dirs))


def environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the bundled programs run in: ``base`` (default os.environ) with the
    library directories of runtime wheels prepended to the loader's search path."""
    env = dict(os.environ if base is None else base)
    extra = _library_dirs()
    if extra and sys.platform.startswith("linux"):
        old = env.get("LD_LIBRARY_PATH", "")
        env["LD_LIBRARY_PATH"] = os.pathsep.join([*extra, *([old] if old else [])])
    return env


def run(program: str, args: Sequence[str] = (), **kwargs: Any) -> subprocess.CompletedProcess[Any]:
    """Run a bundled program (keyword arguments go to subprocess.run)."""
    kwargs.setdefault("env", environment())
    return subprocess.run([str(path(program)), *args], check=False, **kwargs)


def describe() -> dict[str, Any]:
    """What ``python -m <module> --json`` prints."""
    m = manifest()
    return {
        "distribution": m["wheel"]["distribution"], "version": __version__,
        "module": __name__, "target": m["target"], "description": m["description"],
        "backend": m["backend"], "platform": m["platform"],
        "llama_cpp": {"version": m["llama_cpp"]["version"], "commit": m["llama_cpp"]["commit"]},
        "cpu": {"policy": m["cpu"]["policy"], "required_features": m["cpu"]["required_features"],
                "missing_here": missing_cpu_features()},
        "abi": {"floor": (m.get("abi") or {}).get("floor") or {}, "too_old_here": too_old()},
        "bin_dir": str(BIN_DIR),
        "library_dirs": _library_dirs(),
        "programs": {p: str(path(p)) for p in programs()},
        "manifest": str(HERE / "manifest.json"),
    }
