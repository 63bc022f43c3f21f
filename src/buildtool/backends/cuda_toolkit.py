"""CUDA toolkits: what makes a toolkit usable for a build, and assembling one privately.

A toolkit prefix that CMake and nvcc accept has NVIDIA's layout::

    bin/nvcc bin/ptxas bin/nvcc.profile ...   nvvm/bin/cicc nvvm/libdevice/
    include/cuda_runtime.h include/cublas_v2.h ...
    lib64/libcudart.so lib64/libcudart_static.a lib64/libcublas.so lib64/stubs/libcuda.so

`buildtool toolchain install cuda-X.Y` assembles one under ``~/.cache/buildtool/toolchains``
from package registries only (the system is not touched):

* **13.x**: PyPI wheels alone (``nvidia-cuda-nvcc``, ``-crt``, ``nvidia-nvvm``,
  ``-cuda-runtime``, ``-cuda-cccl``, ``nvidia-cublas``, ``nvidia-cuda-cuobjdump``), which
  share one ``nvidia/cu13`` tree.
  Missing from the wheels: ``lib64`` (nvcc.profile links with ``$(TOP)/lib64``), unversioned
  ``.so`` links, and the ``libcuda.so`` link stub — generated here from ``cuda.h``.
* **12.4 / 11.8**: the CUDA 12.x/11.x wheels hold no nvcc, so the compiler, headers and static
  runtime come from Debian's non-free ``nvidia-cuda-toolkit``/``nvidia-cuda-dev`` (trixie has
  12.4.131, bookworm 11.8.89), CCCL (Thrust/CUB/libcu++) from Debian too (the 12.4
  ``nvidia-cuda-cccl-cu12`` wheels lack ``nv/target``), and the shared runtime and cuBLAS from
  the matching PyPI wheels. Debian's files are moved into NVIDIA's layout and nvcc gets an
  NVIDIA-style ``nvcc.profile`` relative to its own directory.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from packaging.version import Version

from buildtool import cmd
from buildtool.errors import ToolchainError
from buildtool.toolchains import provision


def toolkit_major(toolkit: str | None) -> int:
    """The CUDA major version of a toolkit version ("12.4" → 12; unnamed: 12.4's)."""
    return Version(toolkit or "12.4").major


# What a build of ggml-cuda needs in a toolkit, relative to its root.
REQUIRED = {
    "nvcc": ("bin/nvcc",),
    "cuobjdump (the device-code audit)": ("bin/cuobjdump",),
    "CUDA runtime headers": ("include/cuda_runtime.h",),
    "cuBLAS headers": ("include/cublas_v2.h",),
    "CUDA runtime library": ("lib64/libcudart.so", "lib/libcudart.so",
                             "lib/x86_64-linux-gnu/libcudart.so",
                             "lib/aarch64-linux-gnu/libcudart.so"),
    "static CUDA runtime": ("lib64/libcudart_static.a", "lib/libcudart_static.a",
                            "lib/x86_64-linux-gnu/libcudart_static.a",
                            "lib/aarch64-linux-gnu/libcudart_static.a"),
    "cuBLAS library": ("lib64/libcublas.so", "lib/libcublas.so",
                       "lib/x86_64-linux-gnu/libcublas.so",
                       "lib/aarch64-linux-gnu/libcublas.so"),
    "libcuda.so (driver or link stub)": (
        "lib64/stubs/libcuda.so", "lib/stubs/libcuda.so", "lib64/libcuda.so",
        "lib/x86_64-linux-gnu/stubs/libcuda.so", "lib/x86_64-linux-gnu/libcuda.so",
        "lib/aarch64-linux-gnu/stubs/libcuda.so", "lib/aarch64-linux-gnu/libcuda.so"),
}


def toolkit_root(nvcc: Path) -> Path:
    """The directory CMake's ``CUDAToolkit_ROOT`` should name for this nvcc.

    NVIDIA's and buildtool's layouts: ``<root>/bin/nvcc``. Debian's system package:
    ``/usr/lib/nvidia-cuda-toolkit/bin/nvcc`` (and a ``/usr/bin/nvcc`` wrapper) with headers in
    ``/usr/include`` and libraries in ``/usr/lib/<triplet>``: the root is ``/usr``."""
    if nvcc.parent.parent.name == "nvidia-cuda-toolkit":   # <usr>/lib/nvidia-cuda-toolkit/bin
        return nvcc.parents[3]
    if nvcc == Path("/usr/bin/nvcc") and Path("/usr/lib/nvidia-cuda-toolkit/bin/nvcc").exists():
        return Path("/usr")
    return nvcc.parent.parent


def missing_parts(root: Path) -> list[str]:
    """What a CUDA build needs and ``root`` lacks (empty: complete)."""
    return [what for what, options in REQUIRED.items()
            if not any((root / o).exists() for o in options)]


@dataclass(frozen=True)
class CudaKit:
    """One provisionable CUDA toolkit: its pieces and where they come from."""

    version: str
    wheels: tuple[str, ...]                    # pip requirements, exact pins
    wheel_roots: tuple[str, ...]               # directories inside the wheels to merge
    debian_suite: str | None = None
    debian_packages: tuple[str, ...] = ()
    debian_members: tuple[str, ...] = ()       # tar patterns kept from the .debs
    notes: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return f"cuda-{self.version}"


_DEBIAN_MEMBERS = (
    "./usr/bin/*", "./usr/lib/nvidia-cuda-toolkit/bin/*",
    "./usr/lib/nvidia-cuda-toolkit/libdevice/*", "./usr/include/*",
    "./usr/lib/*-linux-gnu/libcudart*", "./usr/lib/*-linux-gnu/libcudadevrt*",
    "./usr/lib/*-linux-gnu/libculibos*", "./usr/lib/*-linux-gnu/libcublas.so*",
    "./usr/lib/*-linux-gnu/libcublasLt.so*",
    "./usr/lib/*-linux-gnu/libnvvm*", "./usr/lib/*-linux-gnu/stubs/libcuda.so*",
    "./usr/share/doc/*/copyright",
)

# Debian's CUDA compiler, headers and static runtime, and CCCL (Thrust, CUB, libcu++)
_DEBIAN_PACKAGES = ("nvidia-cuda-toolkit", "nvidia-cuda-dev", "libnvvm4", "libcu++-dev",
                    "libcub-dev", "libthrust-dev")

KITS: dict[str, CudaKit] = {
    "13.0": CudaKit(
        "13.0",
        wheels=("nvidia-cuda-nvcc==13.0.88", "nvidia-cuda-crt==13.0.88", "nvidia-nvvm==13.0.88",
                "nvidia-cuda-runtime==13.0.96", "nvidia-cuda-cccl==13.0.85",
                "nvidia-cublas==13.0.2.14",
                # the device-code audit's lister: PyPI has it from 13.2 (it reads 13.0 code)
                "nvidia-cuda-cuobjdump==13.2.51"),
        wheel_roots=("nvidia/cu13",),
    ),
    "12.4": CudaKit(
        "12.4",
        wheels=("nvidia-cuda-runtime-cu12==12.4.127", "nvidia-cublas-cu12==12.4.5.8"),
        wheel_roots=("nvidia/cuda_runtime", "nvidia/cublas"),
        debian_suite="trixie",
        debian_packages=_DEBIAN_PACKAGES,
        debian_members=_DEBIAN_MEMBERS,
    ),
    "11.8": CudaKit(
        "11.8",
        wheels=("nvidia-cuda-runtime-cu11==11.8.89", "nvidia-cublas-cu11==11.11.3.6"),
        wheel_roots=("nvidia/cuda_runtime", "nvidia/cublas"),
        debian_suite="bookworm",
        debian_packages=_DEBIAN_PACKAGES,
        debian_members=_DEBIAN_MEMBERS,
        notes=("nvcc 11.8 accepts g++ <= 11 only: apt-get install g++-11",),
    ),
}


def kit_for(name: str) -> CudaKit:
    """``cuda-12.4``, ``cuda-12`` or ``12.4`` → the kit; unknown names list the known ones."""
    wanted = name.removeprefix("cuda-").removeprefix("cuda")
    if wanted in KITS:
        return KITS[wanted]
    matches = [k for v, k in KITS.items() if v.split(".")[0] == wanted]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(k.name for k in KITS.values())
    raise ToolchainError(f"no CUDA toolkit '{name}' can be provisioned",
                         hint=f"known: {known}")


# --- the libcuda.so link stub ---------------------------------------------------------------

_DECL_RE = re.compile(r"\bCUDAAPI\s+(cu[A-Za-z0-9_]+)\s*\(")
_ALIAS_RE = re.compile(r"^\s*#\s*define\s+(cu[A-Za-z0-9_]+)\s+(cu[A-Za-z0-9_]+)\s*$", re.M)


def driver_symbols(cuda_h: str) -> list[str]:
    """Every driver-API function ``cuda.h`` declares, under both the names it declares and
    the versioned names its macros map them to (``cuMemAlloc`` → ``cuMemAlloc_v2``): the real
    libcuda.so exports both."""
    names = set(_DECL_RE.findall(cuda_h))
    for alias, target in _ALIAS_RE.findall(cuda_h):
        if alias in names or target.startswith(alias):
            names.update((alias, target))
    return sorted(names)


def stub_source(symbols: list[str]) -> str:
    """C source of a link-only libcuda: every entry point returns CUDA_ERROR_STUB_LIBRARY."""
    lines = ["/* libcuda.so link stub generated by buildtool from cuda.h; never loaded at run"
             " time */", "#define STUB(name) int name(void) { return 34; }"]
    lines += [f"STUB({name})" for name in symbols]
    return "\n".join(lines) + "\n"


def build_stub(cuda_h: Path, dest: Path, cc: str = "cc") -> Path:
    symbols = driver_symbols(cuda_h.read_text(errors="replace"))
    if len(symbols) < 100:
        raise ToolchainError(f"{cuda_h} declares only {len(symbols)} driver functions; "
                             "not a CUDA cuda.h?")
    dest.parent.mkdir(parents=True, exist_ok=True)
    src = dest.parent / "libcuda-stub.c"
    src.write_text(stub_source(symbols))
    cmd.capture([cc, "-shared", "-fPIC", "-O0", "-Wl,-soname,libcuda.so.1", "-o", str(dest),
                 str(src)], timeout=120)
    src.unlink()
    return dest


# --- layout ---------------------------------------------------------------------------------

NVCC_PROFILE = """\
# written by buildtool: NVIDIA's layout, relative to this directory
TOP              = $(_HERE_)/..

CICC_PATH        = $(TOP)/nvvm/bin
NVVMIR_LIBRARY_DIR = $(TOP)/nvvm/libdevice

LD_LIBRARY_PATH += $(TOP)/lib64:
PATH            += $(CICC_PATH):$(_HERE_):

INCLUDES        +=  "-I$(TOP)/include" $(_SPACE_)
{cccl}
LIBRARIES        =+ $(_SPACE_) "-L$(TOP)/lib64/stubs" "-L$(TOP)/lib64"

CUDAFE_FLAGS    +=
PTXAS_FLAGS     +=
"""


def _move_contents(src: Path, dest: Path) -> None:
    """Merge directory ``src`` into ``dest`` (later sources win)."""
    if not src.is_dir():
        return
    dest.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        target = dest / item.name
        if item.is_dir() and not item.is_symlink():
            _move_contents(item, target)
            continue
        if target.is_symlink() or target.is_file():
            target.unlink()
        shutil.move(str(item), str(target))


def arrange_debian(staging: Path, prefix: Path) -> None:
    """Move files unpacked from Debian's CUDA packages into NVIDIA's layout under ``prefix``."""
    usr = staging / "usr"
    tk = usr / "lib" / "nvidia-cuda-toolkit"
    bin_dir = prefix / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for tool in sorted((usr / "bin").glob("*")):
        if tool.name != "nvcc":          # /usr/bin/nvcc is Debian's wrapper script
            shutil.move(str(tool), str(bin_dir / tool.name))
    if (tk / "bin" / "nvcc").is_file():
        shutil.move(str(tk / "bin" / "nvcc"), str(bin_dir / "nvcc"))
    if (tk / "bin" / "crt").is_dir():
        _move_contents(tk / "bin" / "crt", bin_dir / "crt")
    nvvm = prefix / "nvvm"
    if (tk / "bin" / "cicc").is_file():
        (nvvm / "bin").mkdir(parents=True, exist_ok=True)
        shutil.move(str(tk / "bin" / "cicc"), str(nvvm / "bin" / "cicc"))
    _move_contents(tk / "libdevice", nvvm / "libdevice")
    _move_contents(usr / "include", prefix / "include")
    lib64 = prefix / "lib64"
    for triplet in sorted((usr / "lib").glob("*-linux-gnu")):
        for lib in sorted(triplet.glob("libnvvm.so*")):
            (nvvm / "lib64").mkdir(parents=True, exist_ok=True)
            shutil.move(str(lib), str(nvvm / "lib64" / lib.name))
        _move_contents(triplet, lib64)
    _move_contents(usr / "share" / "doc", prefix / "share" / "doc")
    shutil.rmtree(usr, ignore_errors=True)


def arrange_wheels(unpacked: Path, roots: tuple[str, ...], prefix: Path) -> None:
    """Merge the wheels' ``roots`` (e.g. ``nvidia/cu13``) into ``prefix``: ``lib`` → ``lib64``;
    the packages' ``__init__.py`` files are dropped."""
    for root in roots:
        src = unpacked / root
        for init in src.rglob("__init__.py"):
            init.unlink()
        if (src / "lib").is_dir():
            _move_contents(src / "lib", prefix / "lib64")
            shutil.rmtree(src / "lib")
        _move_contents(src, prefix)


def finish(prefix: Path, *, cc: str = "cc") -> list[str]:
    """Add what neither wheels nor .debs provide; return what was added."""
    added: list[str] = []
    lib64 = prefix / "lib64"
    lib = prefix / "lib"
    if lib64.is_dir() and not lib.exists():
        lib.symlink_to("lib64")
        added.append("lib -> lib64")
    # links whose target was not fetched (Debian's libcufft.so → libcufft.so.11 ...)
    for link in list(prefix.rglob("*")):
        if link.is_symlink() and not link.exists():
            link.unlink()
    for versioned in sorted(lib64.glob("lib*.so.*")):
        base = versioned.name.split(".so.")[0] + ".so"
        if not (lib64 / base).exists() and not (lib64 / base).is_symlink():
            candidates = sorted(lib64.glob(base + ".*"), key=lambda p: len(p.name))
            (lib64 / base).symlink_to(candidates[0].name)
            added.append(f"lib64/{base} -> {candidates[0].name}")
    stub = lib64 / "stubs" / "libcuda.so"
    if not stub.exists() and (prefix / "include" / "cuda.h").is_file():
        build_stub(prefix / "include" / "cuda.h", stub, cc=cc)
        added.append("lib64/stubs/libcuda.so (link stub generated from cuda.h)")
    profile = prefix / "bin" / "nvcc.profile"
    if profile.is_symlink() or not profile.exists():   # Debian's links to /etc/nvcc.profile
        if profile.is_symlink():
            profile.unlink()
        # CCCL lives in include/cccl in CUDA >= 13, directly in include/ before; CMake turns
        # every -isystem here into an include directory that must exist
        cccl = 'SYSTEM_INCLUDES +=  "-isystem" "$(TOP)/include/cccl" $(_SPACE_)\n' \
            if (prefix / "include" / "cccl").is_dir() else ""
        profile.write_text(NVCC_PROFILE.replace("{cccl}", cccl))
        added.append("bin/nvcc.profile")
    return added


def install(version: str, progress: Callable[[str], None] = lambda _: None,
            *, toolchains: Path | None = None) -> Path:
    """Assemble CUDA ``version`` into ``<toolchains>/cuda-<version>``; return the prefix."""
    kit = kit_for(version)
    base = toolchains or provision.toolchains_dir()
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{kit.name}-", dir=base))
    try:
        prefix = staging / "prefix"
        prefix.mkdir()
        components: dict[str, str] = {}
        if kit.debian_suite:
            debs = staging / "debs"
            components.update(provision.debian_packages(
                kit.debian_packages, kit.debian_suite, debs,
                components=("main", "contrib", "non-free"), members=kit.debian_members,
                progress=progress))
            progress("arranging Debian's files in NVIDIA's layout")
            arrange_debian(debs, prefix)
        wheels = staging / "wheels"
        components.update(provision.pypi_wheels(kit.wheels, wheels, progress=progress))
        arrange_wheels(wheels, kit.wheel_roots, prefix)
        progress("adding lib64, unversioned library links and the libcuda.so link stub")
        added = finish(prefix)
        missing = missing_parts(prefix)
        if missing:
            raise ToolchainError(f"the assembled CUDA {kit.version} lacks: {', '.join(missing)}")
        (prefix / "buildtool-toolchain.json").write_text(json.dumps({
            "name": kit.name, "version": kit.version, "components": components,
            "debian-suite": kit.debian_suite, "added": added, "notes": list(kit.notes),
        }, indent=2) + "\n")
        return provision.swap_in(prefix, base / kit.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
