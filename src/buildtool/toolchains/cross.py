"""Cross-compiling for another Linux architecture: the compilers, the sysroot, the CMake
toolchain file and the emulator that runs the result.

A cross build uses **clang and lld**, which target every architecture from one install
(``--target=aarch64-linux-gnu``), and a **sysroot**: the target architecture's C library,
libstdc++ and GCC runtime files, unpacked from Debian's packages into
``~/.cache/buildtool/toolchains/sysroot-<platform>-<suite>`` (``buildtool toolchain install
sysroot-linux-aarch64``; the system's package database is not touched). Why clang: GCC learned
the ``+sme`` extension of ``-march`` in version 14, and an all-variants arm64 build compiles
ggml's armv9.2 variants with it; Debian 12's cross GCC is 12 (llama.cpp's own release
workflow installs gcc-14 for the same reason). Why Debian 11 ("bullseye") for the sysroot:
binaries linked against it need glibc 2.31 and libstdc++ 10 (GLIBCXX_3.4.28), which is what
Ubuntu 20.04 (NVIDIA Jetson's L4T r35), Debian 11 and Raspberry Pi OS 11 have; clang 16
compiles llama.cpp with libstdc++ 10's headers (the x86-64 build environment of
``scripts/build-root.sh`` does the same).

The same sysroot is the ``-L`` root of the user-mode emulator (``qemu-aarch64 -L SYSROOT``)
that runs the artifact for the smoke on emulated CPU models. Each platform's facts are one
:class:`CrossPlatform` in :data:`PLATFORMS`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from buildtool.errors import ToolchainError
from buildtool.text import cmake_string
from buildtool.toolchains import discovery
from buildtool.toolchains.provision import (
    DEBIAN_ARCHS,
    debian_packages,
    swap_in,
    toolchains_dir,
)

CLANG_VERSION = ">=16"  # the first clang whose -march knows +sme, with --ld-path
INSTALL_CLANG = discovery.INSTALL_LLVM
RECORD = "sysroot.json"


@dataclass(frozen=True)
class CrossPlatform:
    """What cross-compiling for one Linux platform needs."""

    platform: str  # buildtool's name: linux-aarch64
    triple: str  # the GNU triple clang targets and Debian's multiarch directory
    processor: str  # CMAKE_SYSTEM_PROCESSOR
    suite: str  # the Debian release the sysroot comes from
    packages: tuple[str, ...]  # what the sysroot is unpacked from

    @property
    def sysroot_name(self) -> str:
        return f"sysroot-{self.platform}"

    @property
    def debian_arch(self) -> str:
        """The architecture of the sysroot's packages, as Debian names it."""
        return DEBIAN_ARCHS[self.processor]

    @property
    def python_platform(self) -> str:
        """Python's name of the platform (sysconfig.get_platform(), _PYTHON_HOST_PLATFORM):
        what a wheel built for it is tagged with before auditwheel's manylinux tag."""
        return f"linux-{self.processor}"


_SYSROOT_PACKAGES = ("libc6", "libc6-dev", "linux-libc-dev", "libcrypt1", "libcrypt-dev",
                     "libgcc-s1", "libgcc-10-dev", "libstdc++6", "libstdc++-10-dev",
                     "libgomp1", "libatomic1")

PLATFORMS: dict[str, CrossPlatform] = {
    "linux-aarch64": CrossPlatform("linux-aarch64", "aarch64-linux-gnu", "aarch64", "bullseye",
                                   _SYSROOT_PACKAGES),
    "linux-x86_64": CrossPlatform("linux-x86_64", "x86_64-linux-gnu", "x86_64", "bullseye",
                                  _SYSROOT_PACKAGES),
}


def for_platform(platform: str) -> CrossPlatform | None:
    return PLATFORMS.get(platform)


def can_cross(host_platform: str, platform: str) -> bool:
    """Whether this host builds ``platform`` by cross-compiling (Linux to Linux)."""
    return platform != host_platform and host_platform.startswith("linux-") and \
        platform in PLATFORMS


# --------------------------------------------------------------------------- compilers

# the tools a cross build records in place of cc / cxx, and the version each must have
CROSS_TOOLS = (("cc", "clang"), ("cxx", "clang++"), ("ld", "ld.lld"))


def cross_tools() -> dict[str, discovery.Program | None]:
    return {role: discovery.best(tool, CLANG_VERSION) for role, tool in CROSS_TOOLS}


# --------------------------------------------------------------------------- sysroot

def sysroot_dir(cp: CrossPlatform) -> Path:
    """Where the platform's sysroot is installed (and looked for)."""
    return toolchains_dir() / f"{cp.sysroot_name}-{cp.suite}"


def installed_sysroot(cp: CrossPlatform) -> Path | None:
    path = sysroot_dir(cp)
    return path if (path / RECORD).is_file() else None


def sysroot_record(cp: CrossPlatform) -> dict[str, str]:
    """What the platform's sysroot was unpacked from (suite, architecture, package
    versions)."""
    path = sysroot_dir(cp) / RECORD
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ToolchainError(f"{path}: unreadable ({exc})",
                             hint="install it again: buildtool toolchain install "
                                  f"{cp.sysroot_name}") from exc
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def install_sysroot(cp: CrossPlatform,
                    progress: Callable[[str], None] = lambda _: None) -> Path:
    """Unpack the sysroot's Debian packages (a private apt configuration, ``dpkg-deb -x``)
    into a staging directory, make its absolute symbolic links relative (so they resolve
    inside the sysroot, for the linker and for ``qemu -L``), and put it in place."""
    base = toolchains_dir()
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{cp.sysroot_name}-", dir=base))
    try:
        versions = debian_packages(cp.packages, cp.suite, staging, arch=cp.debian_arch,
                                   progress=progress)
        relink(staging)
        (staging / RECORD).write_text(json.dumps({
            "platform": cp.platform, "suite": cp.suite, "arch": cp.debian_arch,
            **{f"package:{k}": v for k, v in versions.items()}}, indent=1, sort_keys=True))
        return swap_in(staging, sysroot_dir(cp))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def relink(root: Path) -> int:
    """Rewrite every absolute symbolic link under ``root`` to the relative link that names
    the same path inside ``root``; return how many were rewritten."""
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            link = Path(dirpath) / name
            if not link.is_symlink():
                continue
            target = str(link.readlink())
            if not target.startswith("/"):
                continue
            inside = root / os.path.normpath(target).lstrip("/")  # /../x stays inside
            link.unlink()
            link.symlink_to(os.path.relpath(inside, link.parent))
            count += 1
    return count


def sysroot_version(cp: CrossPlatform) -> str:
    record = sysroot_record(cp)
    return f"debian {record.get('suite', '?')} {record.get('arch', '?')}, glibc " \
           f"{record.get('package:libc6', '?')}"


# --------------------------------------------------------------------------- CMake

def toolchain_file(cp: CrossPlatform, sysroot: Path, cc: Path, cxx: Path, ld: Path) -> str:
    """The CMake toolchain file of a cross build (written into its build directory)."""
    flags = cmake_string(f"--ld-path={ld}")
    lines = [
        "# written by buildtool: cross-compiling for " + cp.platform,
        "set(CMAKE_SYSTEM_NAME Linux)",
        f"set(CMAKE_SYSTEM_PROCESSOR {cp.processor})",
        f"set(CMAKE_SYSROOT {cmake_string(str(sysroot))})",
        f"set(CMAKE_C_COMPILER {cmake_string(str(cc))})",
        f"set(CMAKE_CXX_COMPILER {cmake_string(str(cxx))})",
        f"set(CMAKE_C_COMPILER_TARGET {cp.triple})",
        f"set(CMAKE_CXX_COMPILER_TARGET {cp.triple})",
        *(f"set(CMAKE_{kind}_LINKER_FLAGS_INIT {flags})" for kind in ("EXE", "SHARED", "MODULE")),
        "set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)",
        "set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)",
        "set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)",
        "set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)",
    ]
    return "\n".join(lines) + "\n"
