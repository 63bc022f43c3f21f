"""The ABI floor read from real ELF files: small programs and libraries compiled here, one of
them planted with a newer symbol version than the floor allows, and systems read from root
file systems made of this host's libraries."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from buildtool import abi, records
from buildtool.artifacts.base import check_system
from buildtool.errors import DataError, ExitCode, HostIncompatibleError
from buildtool.records import AbiRecord, AbiVersions, Manifest
from tests.unit.release_data import base_manifest

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("g++") is None,
                                reason="needs gcc and g++ (.ci/run installs build-essential)")
HOST = abi.system_abi()


def _compile(out: Path, source: str, *args: str, lang: str = "c") -> Path:
    src = out.with_suffix(".cpp" if lang == "c++" else ".c")
    src.write_text(source)
    compiler = "g++" if lang == "c++" else "gcc"
    subprocess.run([compiler, "-O1", "-o", str(out), str(src), *args], check=True,
                   capture_output=True)
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("elf")
    lib = _compile(d / "libshipped.so", "int shipped(int x) { return x * 2; }\n", "-shared",
                   "-fPIC")
    return {
        "plain": _compile(d / "plain", "#include <stdio.h>\nint main(void) "
                          "{ puts(\"hi\"); return 0; }\n"),
        # arc4random is new in glibc 2.36: the planted need a 2.35 floor must catch
        "planted": _compile(d / "planted", "#include <stdlib.h>\nint main(void) "
                            "{ return (int)(arc4random() & 1); }\n"),
        "cxx": _compile(d / "cxx", "#include <string>\n#include <iostream>\nint main(int c, "
                        "char** v) { std::string s(v[0]); std::cout << s.size() << '\\n'; "
                        "return 0; }\n", lang="c++"),
        "user": _compile(d / "user", "int shipped(int);\nint main(void) "
                         "{ return shipped(1); }\n", f"-L{d}", "-lshipped",
                         "-Wl,-rpath,$ORIGIN"),
        "lib": lib,
    }


@pytest.mark.skipif(HOST.versions.glibc is None or
                    abi.parse_version(HOST.versions.glibc) < (2, 36),
                    reason="the planted need is arc4random@GLIBC_2.36: needs glibc >= 2.36")
def test_a_planted_newer_symbol_fails_the_floor_naming_file_symbol_and_version(
        built: dict[str, Path]) -> None:
    report = abi.floor_of([built["plain"], built["planted"]], platform="linux-x86_64",
                          declared=AbiVersions(glibc="2.35"))
    assert report.verdict == "fail"
    assert report.floor.glibc == "2.36"
    assert report.files["planted"].glibc == "2.36"
    assert report.violations == (
        "planted: needs GLIBC_2.36 from libc.so.6, e.g. arc4random (the floor is glibc 2.35)",)
    # the same files within a floor that allows them
    ok = abi.floor_of([built["plain"], built["planted"]], platform="linux-x86_64",
                      declared=AbiVersions(glibc="2.36"))
    assert ok.verdict == "pass" and ok.violations == ()


def test_cxx_programs_need_libstdcxx_versions_and_list_the_system_libraries(
        built: dict[str, Path]) -> None:
    report = abi.floor_of([built["cxx"]], platform="linux-x86_64")
    assert report.verdict == "recorded"  # no floor declared: read and recorded only
    assert report.floor.libstdcxx is not None and report.floor.libstdcxx.startswith("3.4.")
    assert report.floor.glibc is not None
    assert {"libstdc++.so.6", "libc.so.6"} <= set(report.system_libraries)
    # a C++ program needs no more than the libstdc++ it was linked against defines
    assert HOST.versions.libstdcxx is not None
    assert abi.parse_version(report.floor.libstdcxx) <= \
        abi.parse_version(HOST.versions.libstdcxx)
    needs = abi.read_needs(built["cxx"])
    highest = needs.highest("libstdcxx")
    assert highest is not None and highest.library == "libstdc++.so.6" and highest.symbols


def test_libraries_the_artifact_ships_are_not_system_libraries(built: dict[str, Path]) -> None:
    report = abi.floor_of([built["user"], built["lib"]], platform="linux-x86_64")
    assert "libshipped.so" not in report.system_libraries
    assert "libc.so.6" in report.system_libraries
    assert set(report.files) == {"user", "libshipped.so"}


def test_other_platforms_are_skipped_and_damaged_files_are_named(tmp_path: Path,
                                                                built: dict[str, Path]) -> None:
    assert abi.floor_of([built["plain"]], platform="windows-x86_64").verdict == "skipped"
    bad = tmp_path / "libbad.so"
    bad.write_bytes(b"\x7fELF" + b"\x00" * 12)
    with pytest.raises(DataError, match=r"libbad\.so: cannot read its ELF symbol versions"):
        abi.floor_of([bad], platform="linux-x86_64")
    text = tmp_path / "README"
    text.write_text("not ELF")
    assert abi.floor_of([text], platform="linux-x86_64").files == {}


def test_runtime_versions_and_comparison() -> None:
    assert abi.runtime_version("GLIBC_2.34") == ("glibc", "2.34")
    assert abi.runtime_version("GLIBCXX_3.4.30") == ("libstdcxx", "3.4.30")
    assert abi.runtime_version("CXXABI_1.3.13") == ("cxxabi", "1.3.13")
    assert abi.runtime_version("GCC_3.0") == ("libgcc", "3.0")
    assert abi.runtime_version("GLIBC_PRIVATE") is None
    assert abi.runtime_version("GOMP_4.0") is None
    assert abi.highest(["2.2.5", "2.34", "2.4"]) == "2.34"
    assert abi.above(AbiVersions(glibc="2.34", libstdcxx="3.4.30"),
                     AbiVersions(glibc="2.31")) == {"glibc": ("2.34", "2.31")}


@pytest.mark.skipif("libc.so.6" not in HOST.libraries, reason="a glibc host")
def test_a_systems_versions_are_read_from_its_libraries(tmp_path: Path) -> None:
    assert HOST.versions.glibc is not None and HOST.release is not None
    # glibc's release is at least its highest symbol version (2.31 defines GLIBC_2.30)
    assert abi.parse_version(HOST.release) >= abi.parse_version(HOST.versions.glibc)
    root = tmp_path / "root"
    lib_dir = root / "usr" / "lib64"
    lib_dir.mkdir(parents=True)
    shutil.copyfile(HOST.libraries["libc.so.6"], lib_dir / "libc.so.6")
    other = abi.system_abi(root)
    assert other.versions.glibc == HOST.versions.glibc and other.release == HOST.release
    assert other.versions.libstdcxx is None  # no libstdc++ in that root
    assert other.missing(AbiVersions(libstdcxx="3.4.20")) == [
        "libstdc++.so.6 (libstdcxx 3.4.20) is not installed"]
    assert other.missing(AbiVersions(glibc="99.1")) == [
        f"glibc 99.1 is needed, libc.so.6 here has {HOST.release}"]
    # a link that leaves the root names the host's file: not this system's
    escaped = tmp_path / "escaped"
    (escaped / "lib64").mkdir(parents=True)
    (escaped / "lib64" / "libc.so.6").symlink_to(HOST.libraries["libc.so.6"])
    assert abi.system_abi(escaped).versions.glibc is None


def test_smoke_refuses_an_artifact_above_the_systems_floor_with_exit_code_9(
        tmp_path: Path) -> None:
    m = records.from_data(Manifest, {**base_manifest("cpu"), "artifact": "a", "kind": "tarball"},
                          "test")
    high = AbiRecord(verdict="pass", floor=AbiVersions(glibc="9.1", libstdcxx="3.4.99"))
    system = abi.SystemAbi(root=tmp_path, versions=AbiVersions(glibc="2.30", libstdcxx="3.4.28"),
                           release="2.31")
    with pytest.raises(HostIncompatibleError) as info:
        check_system(dataclasses.replace(m, abi=high), system)
    assert info.value.exit_code == ExitCode.HOST_INCOMPATIBLE and int(info.value.exit_code) == 9
    assert "glibc 9.1 is needed, libc.so.6 here has 2.31" in info.value.message
    assert "libstdcxx 3.4.99 is needed, libstdc++.so.6 here has 3.4.28" in info.value.message
    assert str(tmp_path) in info.value.message
    fits = AbiRecord(verdict="pass", floor=AbiVersions(glibc="2.30", libstdcxx="3.4.28"))
    check_system(dataclasses.replace(m, abi=fits), system)  # no error
    check_system(dataclasses.replace(m, abi=None), system)  # an older manifest: not judged
