"""The ABI floor: which C library and C++ runtime an artifact's binaries need, read from their
ELF symbol versions — the cause of "version `GLIBC_2.34' not found" on older distributions.

A Linux binary records, per library it loads, the symbol versions it was linked against
(``.gnu.version_r``: ``libc.so.6`` → ``GLIBC_2.34``, ``libstdc++.so.6`` → ``GLIBCXX_3.4.30``)
and, per imported symbol, which of them it needs (``.gnu.version``). The highest version of
each runtime is the artifact's floor: a system whose library does not define it cannot load
the binary. A system's own versions are read the same way, from the version definitions
(``.gnu.version_d``) of its ``libc.so.6``, ``libstdc++.so.6`` and ``libgcc_s.so.1`` — for
this machine or for any root file system, without running anything there.

Runtimes (the names used in manifests and in ``build_matrix.yaml``):

* ``glibc`` — ``GLIBC_x.y`` (libc, libm, libpthread, libdl, the loader);
* ``libstdcxx`` — ``GLIBCXX_3.4.n`` (GCC's C++ library);
* ``cxxabi`` — ``CXXABI_1.3.n`` (the C++ ABI, also libstdc++'s);
* ``libgcc`` — ``GCC_x.y[.z]`` (libgcc_s).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerDefSection, GNUVerNeedSection, GNUVerSymSection

from buildtool.errors import DataError
from buildtool.inputs import ByContent
from buildtool.records import AbiRecord, AbiVersions, SystemRecord

# runtime → (the prefix of its version names, the library that defines them)
RUNTIMES: Mapping[str, tuple[str, str]] = {
    "glibc": ("GLIBC_", "libc.so.6"),
    "libstdcxx": ("GLIBCXX_", "libstdc++.so.6"),
    "cxxabi": ("CXXABI_", "libstdc++.so.6"),
    "libgcc": ("GCC_", "libgcc_s.so.1"),
}
_VERSION = re.compile(r"(GLIBCXX|GLIBC|CXXABI|GCC)_(\d+(?:\.\d+)*)")
_PREFIX_RUNTIME = {prefix[:-1]: runtime for runtime, (prefix, _) in RUNTIMES.items()}
# where a root file system keeps its libraries, per architecture (Debian's multiarch
# directories first, then the RPM distributions' lib64)
LIB_DIRS: Mapping[str, tuple[str, ...]] = {
    "x86_64": ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "usr/lib64",
               "lib", "usr/lib"),
    "aarch64": ("lib/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu", "lib64", "usr/lib64",
                "lib", "usr/lib"),
}


def parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def runtime_version(name: str) -> tuple[str, str] | None:
    """``GLIBC_2.34`` → ("glibc", "2.34"); None for other names (GLIBC_PRIVATE, GOMP_4.0)."""
    m = _VERSION.fullmatch(name)
    if m is None:
        return None
    return _PREFIX_RUNTIME[m[1]], m[2]


def highest(versions: Iterable[str]) -> str | None:
    return max(versions, key=parse_version, default=None)


@dataclass(frozen=True, kw_only=True)
class Need:
    """One version a file needs: from which library, and an imported symbol that needs it."""

    library: str
    version: str  # the full name: GLIBC_2.34
    symbols: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class FileNeeds:
    path: Path
    needed: tuple[str, ...]  # DT_NEEDED: the libraries it loads
    needs: tuple[Need, ...]

    def highest(self, runtime: str, shipped: frozenset[str] = frozenset()) -> Need | None:
        """The need of ``runtime`` with the highest version (from a library not shipped)."""
        best: tuple[tuple[int, ...], Need] | None = None
        for need in self.needs:
            fv = runtime_version(need.version)
            if fv is None or fv[0] != runtime or need.library in shipped:
                continue
            key = parse_version(fv[1])
            if best is None or key > best[0]:
                best = (key, need)
        return best[1] if best else None


def is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) == b"\x7fELF"
    except OSError:
        return False


def _dt_needed(elf: ELFFile) -> list[str]:
    return [str(tag.needed)  # type: ignore[attr-defined]
            for section in elf.iter_sections() if isinstance(section, DynamicSection)
            for tag in section.iter_tags("DT_NEEDED")]


def needed(path: Path) -> list[str]:
    """The libraries ``path`` loads (DT_NEEDED) — none for what is not an ELF file."""
    try:
        with path.open("rb") as fh:
            return _dt_needed(ELFFile(fh))
    except (ELFError, OSError, ValueError):
        return []


def read_needs(path: Path) -> FileNeeds:
    """The libraries ``path`` loads and the symbol versions it needs from them."""
    try:
        with path.open("rb") as fh:
            elf = ELFFile(fh)
            loads = _dt_needed(elf)
            by_index: dict[int, tuple[str, str]] = {}
            for section in elf.iter_sections():
                if isinstance(section, GNUVerNeedSection):
                    for verneed, auxes in section.iter_versions():
                        for aux in auxes:
                            by_index[aux.entry["vna_other"]] = (str(verneed.name),
                                                                str(aux.name))
            symbols: dict[int, list[str]] = {}
            versym = next((s for s in elf.iter_sections()
                           if isinstance(s, GNUVerSymSection)), None)
            dynsym = elf.get_section_by_name(".dynsym")
            if versym is not None and dynsym is not None:
                for i, sym in enumerate(dynsym.iter_symbols()):  # type: ignore[attr-defined]
                    if sym["st_shndx"] != "SHN_UNDEF" or not sym.name:
                        continue
                    ndx = versym.get_symbol(i)["ndx"]
                    if isinstance(ndx, int) and ndx in by_index:
                        symbols.setdefault(ndx, []).append(str(sym.name))
    except (ELFError, OSError, ValueError, KeyError, IndexError) as exc:
        raise DataError(f"{path}: cannot read its ELF symbol versions: {exc}") from None
    needs = tuple(Need(library=lib, version=ver, symbols=tuple(sorted(symbols.get(i, []))))
                  for i, (lib, ver) in sorted(by_index.items()))
    return FileNeeds(path=path, needed=tuple(loads), needs=needs)


def defined_versions(path: Path) -> list[str]:
    """The version names a shared library defines (``.gnu.version_d``)."""
    try:
        with path.open("rb") as fh:
            elf = ELFFile(fh)
            names: list[str] = []
            for section in elf.iter_sections():
                if isinstance(section, GNUVerDefSection):
                    for _verdef, auxes in section.iter_versions():
                        names += [str(aux.name) for aux in auxes]
            return names
    except (ELFError, OSError, ValueError, KeyError, IndexError) as exc:
        raise DataError(f"{path}: cannot read its ELF version definitions: {exc}") from None


# ------------------------------------------------------------------------ an artifact's floor


def versions_of(files: Iterable[FileNeeds], shipped: frozenset[str]) -> AbiVersions:
    """The highest version per runtime over ``files`` (libraries shipped beside them, such as a
    bundled libstdc++, do not count: the artifact brings them)."""
    found: dict[str, str | None] = {}
    for runtime in RUNTIMES:
        found[runtime] = highest(
            fv[1] for f in files for n in f.needs
            if n.library not in shipped and (fv := runtime_version(n.version)) is not None
            and fv[0] == runtime)
    return AbiVersions(**found)


def above(versions: AbiVersions, limit: AbiVersions) -> dict[str, tuple[str, str]]:
    """The families where ``versions`` exceeds ``limit``: runtime → (needed, limit). A runtime
    the limit does not state is not judged."""
    out: dict[str, tuple[str, str]] = {}
    for runtime in RUNTIMES:
        need, have = getattr(versions, runtime), getattr(limit, runtime)
        if need is not None and have is not None and parse_version(need) > parse_version(have):
            out[runtime] = (need, have)
    return out


def floor_of(files: Iterable[Path], *, platform: str,
             declared: AbiVersions | None = None, memo: ByContent | None = None) -> AbiRecord:
    """Read every ELF file the artifact ships; its floor, the system libraries it loads, and
    the verdict against the ``declared`` floor (build_matrix.yaml ``platforms``). ``memo``:
    files with the same bytes are read once."""
    if not platform.startswith("linux-"):
        return AbiRecord(verdict="skipped",
                         reason=f"symbol versions are a Linux (glibc) matter; this is {platform}")
    paths = list(files)
    shipped = frozenset(p.name for p in paths)
    def read(p: Path) -> FileNeeds:
        if memo is None:
            return read_needs(p)
        return replace(memo.get(p, ("abi",), lambda: read_needs(p)), path=p)

    elves = [read(p) for p in paths if not p.is_symlink() and is_elf(p)]
    floor = versions_of(elves, shipped)
    system = sorted({lib for f in elves for lib in f.needed if lib not in shipped})
    per_file = {f.path.name: versions_of([f], shipped) for f in elves}
    violations: list[str] = []
    if declared is not None:
        for f in elves:
            for runtime, (_need, limit) in above(per_file[f.path.name], declared).items():
                worst = f.highest(runtime, shipped)
                assert worst is not None
                symbol = f", e.g. {worst.symbols[0]}" if worst.symbols else ""
                violations.append(f"{f.path.name}: needs {worst.version} from "
                                  f"{worst.library}{symbol} (the floor is {runtime} {limit})")
    return AbiRecord(verdict="fail" if violations else "pass" if declared else "recorded",
                     floor=floor, declared=declared, system_libraries=tuple(system),
                     files=dict(sorted(per_file.items())),
                     violations=tuple(violations))


# ------------------------------------------------------------------------ a system's versions


@dataclass(frozen=True, kw_only=True)
class SystemAbi:
    """What a system's C library and C++ runtime provide (None: not found there).
    ``release`` is glibc's own version (2.31), which can be above its highest symbol version
    (GLIBC_2.30: 2.31 added no symbols); comparisons use the symbol versions."""

    root: Path
    versions: AbiVersions
    release: str | None = None
    libraries: dict[str, Path] = field(default_factory=dict)

    @property
    def shown(self) -> AbiVersions:
        """The versions as people know them: glibc's release, the others' symbol versions."""
        return replace(self.versions, glibc=self.release or self.versions.glibc)

    def describe(self) -> str:
        parts = [f"{f} {v}" for f in RUNTIMES if (v := getattr(self.shown, f))]
        return ", ".join(parts) or "no glibc found"

    def record(self) -> SystemRecord:
        """What a smoke result or a lab host records of this system."""
        return SystemRecord(root=str(self.root), glibc=self.shown.glibc,
                            libstdcxx=self.shown.libstdcxx)

    def missing(self, need: AbiVersions) -> list[str]:
        """What of ``need`` this system lacks, as sentences (empty: it fits)."""
        out: list[str] = []
        for runtime in RUNTIMES:
            want, have = getattr(need, runtime), getattr(self.versions, runtime)
            if want is None:
                continue
            lib = RUNTIMES[runtime][1]
            if have is None:
                out.append(f"{lib} ({runtime} {want}) is not installed")
            elif parse_version(want) > parse_version(have):
                out.append(f"{runtime} {want} is needed, {lib} here has "
                           f"{getattr(self.shown, runtime)}")
        return out


def find_library(root: Path, name: str, arch: str) -> Path | None:
    for rel in LIB_DIRS.get(arch, ("lib64", "usr/lib64", "lib", "usr/lib")):
        candidate = root / rel / name
        if candidate.exists():
            return candidate.resolve()
    return None


def system_abi(root: Path = Path("/"), arch: str = "x86_64") -> SystemAbi:
    """The versions the C library, libstdc++ and libgcc_s of ``root`` define."""
    found: dict[str, str | None] = dict.fromkeys(RUNTIMES)
    libraries: dict[str, Path] = {}
    for library in sorted({lib for _, lib in RUNTIMES.values()}):
        path = find_library(root, library, arch)
        if path is None or not path.is_relative_to(root.resolve()):
            continue  # a link out of the root file system names the host's file
        libraries[library] = path
        names = [fv for n in defined_versions(path) if (fv := runtime_version(n)) is not None]
        for runtime, (_, lib) in RUNTIMES.items():
            if lib == library:
                found[runtime] = highest(v for f, v in names if f == runtime)
    release = None
    if "libc.so.6" in libraries:
        release = glibc_release(libraries["libc.so.6"])
    return SystemAbi(root=root, versions=AbiVersions(**found), release=release,
                     libraries=libraries)


_RELEASE = re.compile(rb"release version (\d+\.\d+)")


def glibc_release(libc: Path) -> str | None:
    """glibc's version from the banner its libc.so.6 carries ("... release version 2.31.")."""
    try:
        m = _RELEASE.search(libc.read_bytes())
    except OSError:
        return None
    return m[1].decode() if m else None


def violations_message(report: AbiRecord) -> str:
    return "\n".join(f"  {v}" for v in report.violations)
