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
