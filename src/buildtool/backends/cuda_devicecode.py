"""The device code a CUDA artifact carries, and the GPUs it covers.

A CUDA library holds, per GPU architecture, native code (SASS: a cubin for ``sm_86``) and/or
PTX (``compute_90``), which the driver compiles for the GPU it finds (JIT). Which of them an
artifact has decides whether it runs on a user's GPU — "no kernel image is available for
execution on the device" when neither covers it — and that is knowable before anything runs:

* after a CUDA build, ``cuobjdump --list-elf --list-ptx`` lists each shipped library's SASS
  and PTX; the list must be what the target's ``gpu-archs`` asked for (CMake's
  ``CMAKE_CUDA_ARCHITECTURES``: ``86-real`` is SASS only, ``90-virtual`` PTX only, ``86``
  both), else the build fails;
* SASS for ``sm_XY`` runs on GPUs of compute capability X.Z with Z >= Y (same major);
  architecture-specific SASS (``sm_90a``, ``sm_120a``) only on X.Y itself; PTX for
  ``compute_XY`` is compiled by the driver for any compute capability >= X.Y, if the driver
  is at least as new as the toolkit that wrote it;
* the minimum driver: CUDA's minor-version compatibility lets SASS built with CUDA 12.x run
  on any 12.x driver (>= 525.60.13), but JIT-compiling its PTX needs the toolkit's own driver
  (NVIDIA's CUDA toolkit release notes, tables 2 and 3).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from buildtool import cmd
from buildtool.backends.cuda_toolkit import toolkit_major
from buildtool.errors import CommandError, ToolchainError
from buildtool.records import DeviceCode, DeviceCodeRecord

# CUDA major → the oldest Linux driver its SASS runs on (minor-version compatibility)
MIN_DRIVER = {11: "450.80.02", 12: "525.60.13", 13: "580.65.06"}
# CUDA major.minor → its release's Linux driver: what JIT-compiling its PTX needs
TOOLKIT_DRIVER = {"11.8": "520.61.05", "12.4": "550.54.14", "12.8": "570.26",
                  "12.9": "575.51.03", "13.0": "580.65.06"}

# the architecture as GpuArchNumber (records) spells it: two or three digits, a suffix
_LISTED = re.compile(r"^(ELF|PTX) file\s+\d+:\s+\S*?\.(?:sm|compute)_(\d{2,3}[a-z]?)"
                     r"\.(?:cubin|ptx)$")
_ARCH = re.compile(r"^(\d+)([a-z]?)(?:-(real|virtual))?$")


def parse_listing(text: str) -> DeviceCode:
    """``cuobjdump --list-elf --list-ptx`` output → the architectures with SASS and PTX."""
    sass: set[str] = set()
    ptx: set[str] = set()
    for line in text.splitlines():
        m = _LISTED.match(line.strip())
        if m:
            (sass if m[1] == "ELF" else ptx).add(m[2])
    return DeviceCode(sass=DeviceCode.ordered(sass), ptx=DeviceCode.ordered(ptx))


def expected(gpu_archs: Sequence[str]) -> DeviceCode:
    """What CMAKE_CUDA_ARCHITECTURES asks nvcc for: ``86-real`` → SASS 86, ``90-virtual`` →
    PTX 90, ``86`` → both."""
    sass: set[str] = set()
    ptx: set[str] = set()
    for entry in gpu_archs:
        m = _ARCH.match(entry.strip())
        if m is None:
            continue  # "native", "all": nothing fixed to compare with
        arch = m[1] + m[2]
        if m[3] != "virtual":
            sass.add(arch)
        if m[3] != "real":
            ptx.add(arch)
    return DeviceCode(sass=DeviceCode.ordered(sass), ptx=DeviceCode.ordered(ptx))


def _split(arch: str) -> tuple[int, int, str]:
    """``86`` → (8, 6, ''), ``120a`` → (12, 0, 'a')."""
    m = re.fullmatch(r"(\d+)(\d)([a-z]?)", arch)
    if m is None:
        raise ValueError(f"not a CUDA architecture: {arch!r}")
    return int(m[1]), int(m[2]), m[3]


def coverage(code: DeviceCode, capability: str) -> str | None:
    """How ``code`` runs on a GPU of compute capability ``capability`` ('8.6'): the SASS or
    PTX that serves it, or None."""
    try:
        major, minor = (int(p) for p in capability.split(".", 1))
    except ValueError:
        return None
    for arch in reversed(code.sass):
        a_major, a_minor, suffix = _split(arch)
        if a_major == major and (a_minor == minor if suffix == "a" else a_minor <= minor):
            return f"sm_{arch} SASS"
    for arch in reversed(code.ptx):
        a_major, a_minor, suffix = _split(arch)
        if not suffix and (a_major, a_minor) <= (major, minor):
            return f"compute_{arch} PTX (compiled by the driver)"
    return None


def describe(code: DeviceCode) -> str:
    parts = []
    if code.sass:
        parts.append("SASS " + ", ".join(f"sm_{a}" for a in code.sass))
    if code.ptx:
        parts.append("PTX " + ", ".join(f"compute_{a}" for a in code.ptx))
    return "; ".join(parts) or "no device code"


def covered_gpus(code: DeviceCode) -> str:
    """The GPUs an artifact runs on, for people: '8.6+, 8.9+ natively, >= 7.5 by JIT' (8.6+:
    8.6 and later minors of 8; an 'a' architecture only itself)."""
    native = []
    for arch in code.sass:
        major, minor, suffix = _split(arch)
        native.append(f"{major}.{minor}" + ("" if suffix == "a" else "+"))
    jit = min((_split(a)[:2] for a in code.ptx if not _split(a)[2]), default=None)
    parts = ([", ".join(native) + " natively"] if native else []) + \
        ([f">= {jit[0]}.{jit[1]} by JIT"] if jit else [])
    return ", ".join(parts) or "none"


def list_file(cuobjdump: Path, path: Path) -> DeviceCode | None:
    """One file's device code (None: it has none)."""
    try:
        out = cmd.capture_all([str(cuobjdump), "--list-elf", "--list-ptx", str(path)],
                              timeout=600)
    except CommandError as exc:
        raise ToolchainError(f"cuobjdump could not read {path.name}: {' '.join(exc.tail)}") \
            from exc
    if "does not contain device code" in out.stdout + out.stderr:
        return None
    if out.returncode != 0:
        raise ToolchainError(f"cuobjdump could not read {path.name} "
                             f"({cmd.describe_exit(out.returncode)}): "
                             + " ".join((out.stderr or out.stdout).strip().splitlines()[-2:]))
    code = parse_listing(out.stdout)
    return code if code.sass or code.ptx else None


def audit(files: Iterable[Path], *, cuobjdump: Path, tool: str, toolkit: str | None,
          gpu_archs: Sequence[str]) -> DeviceCodeRecord:
    """The device code of every shipped file that has any, held against ``gpu_archs``."""
    found: dict[str, DeviceCode] = {}
    for path in files:
        if path.is_symlink() or not path.is_file():
            continue
        code = list_file(cuobjdump, path)
        if code is not None:
            found[path.name] = code
    want = expected(gpu_archs)
    violations: list[str] = []
    if not found:
        violations.append("no shipped file carries device code")
    for name, code in found.items():
        missing = [f"sm_{a} SASS" for a in want.sass if a not in code.sass] + \
            [f"compute_{a} PTX" for a in want.ptx if a not in code.ptx]
        extra = [f"sm_{a} SASS" for a in code.sass if a not in want.sass] + \
            [f"compute_{a} PTX" for a in code.ptx if a not in want.ptx]
        if missing:
            violations.append(f"{name} lacks {', '.join(missing)}")
        if extra:
            violations.append(f"{name} carries {', '.join(extra)}, which gpu-archs does not "
                              "name")
    carried = DeviceCode.union(found.values())
    min_driver = MIN_DRIVER.get(toolkit_major(toolkit)) if toolkit else None
    return DeviceCodeRecord(
        verdict="fail" if violations else "pass", tool=tool, toolkit=toolkit,
        min_driver=min_driver, min_driver_ptx=TOOLKIT_DRIVER.get(toolkit or ""),
        expected=want, files=found, violations=tuple(violations),
        summary=f"{describe(carried)}: GPUs of compute capability {covered_gpus(carried)}"
                + (f"; driver >= {min_driver}" if min_driver else ""))
