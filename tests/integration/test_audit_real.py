"""The ISA audit on real machine code: a library with a planted AVX-512 instruction."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from buildtool.cpudata import CPU
from buildtool.verify.audit import audit_file, audit_files

SOURCE = r"""
void planted(void) { __asm__ volatile ("vpaddd %zmm1, %zmm2, %zmm3"); }
int plain(int a, int b) { return a + b; }
"""


@pytest.fixture
def planted_lib(tmp_path: Path) -> Path:
    if shutil.which("cc") is None or shutil.which("objdump") is None:
        pytest.fail("cc and objdump (binutils) are required")
    src = tmp_path / "planted.c"
    src.write_text(SOURCE)
    lib = tmp_path / "libggml-cpu.so"
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return lib


def test_planted_avx512_in_a_v3_library_is_caught(planted_lib: Path) -> None:
    result = audit_file(planted_lib, tuple(CPU.level_features("x86-64-v3")))
    assert result.violations == ["avx512f"]
    assert "zmm" in result.examples["avx512f"]


def test_report_for_the_manifest(planted_lib: Path) -> None:
    report = audit_files([planted_lib], declared=tuple(CPU.level_features("x86-64-v3")),
                         all_variants=False, platform="linux-x86_64")
    assert report.verdict == "fail"
    assert report.files["libggml-cpu.so"].violations == ("avx512f",)
    v4 = audit_files([planted_lib], declared=tuple(CPU.level_features("x86-64-v4")),
                     all_variants=False, platform="linux-x86_64")
    assert v4.verdict == "pass"


# SVE's `ptrue p0.b` as a raw word: the assembler accepts it for an armv8.2 target as well
SOURCE_A64 = r"""
void planted(void) { __asm__ volatile (".inst 0x2518e3e0"); }
int dot(const signed char *a, const signed char *b, int n) {
    int s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}
"""


@pytest.fixture
def planted_a64_lib(tmp_path: Path) -> Path:
    from buildtool.toolchains import cross, discovery

    tools = cross.cross_tools()
    if tools["cc"] is None or tools["ld"] is None or discovery.best("llvm-objdump") is None:
        pytest.fail(f"clang, lld and llvm-objdump are required: {cross.INSTALL_CLANG}")
    src = tmp_path / "planted.c"
    src.write_text(SOURCE_A64)
    lib = tmp_path / "libggml-cpu.so"
    # no C library needed: a freestanding shared object
    subprocess.run([str(tools["cc"].path), "--target=aarch64-linux-gnu", "-march=armv8.2-a",
                    "-O2", "-fPIC", "-shared", "-nostdlib", f"--ld-path={tools['ld'].path}",
                    "-o", str(lib), str(src)], check=True)
    return lib


def test_planted_sve_in_an_armv8_2_library_is_caught(planted_a64_lib: Path) -> None:
    declared = tuple(sorted(CPU.level_features("armv8.2")))
    report = audit_files([planted_a64_lib], declared=declared, all_variants=False,
                         platform="linux-aarch64", level="armv8.2")
    assert report.verdict == "fail"
    entry = report.files["libggml-cpu.so"]
    assert entry.violations == ("sve",)
    assert entry.examples["sve"] == "ptrue p0.b"
    # the level's -march base allows LSE atomics and RDM; the claim itself does not need them
    assert {"lse", "rdm", "dotprod", "fp16", "neon"} <= set(entry.allowed)
    sve = audit_files([planted_a64_lib], declared=(*declared, "sve"), all_variants=False,
                      platform="linux-aarch64", level="armv8.2")
    assert sve.verdict == "pass"
