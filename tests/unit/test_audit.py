"""ISA audit: instruction classification and per-file verdicts, on objdump-format text."""

from __future__ import annotations

from pathlib import Path

import pytest

from buildtool.config.model import AuditAllow
from buildtool.cpudata import CPU
from buildtool.inputs import ByContent
from buildtool.verify.audit import (
    FileAudit,
    allowed_for,
    classify,
    classify_a64,
    closure,
    scan,
    scan_a64,
)

# objdump -d --no-show-raw-insn lines (binutils 2.40, AT&T syntax)
DISASM = """
/tmp/libggml-cpu.so:     file format elf64-x86-64

Disassembly of section .text:

0000000000012340 <ggml_vec_dot_f16>:
   12340:\tpush   %rbp
   12341:\tvmovups (%rsi,%rax,1),%ymm1
   12346:\tvfmadd231ps %ymm2,%ymm1,%ymm0
   1234b:\tvcvtph2ps (%rdi),%ymm3
   12350:\tvpaddd %ymm4,%ymm5,%ymm6
   12354:\tshlx   %eax,%ebx,%ecx
   12358:\tpopcnt %rax,%rdx
   1235d:\tret
"""
PLANTED = DISASM + "   12360:\tvpaddd %zmm1,%zmm2,%zmm3\n"


@pytest.mark.parametrize(("insn", "operands", "expected"), [
    ("mov", "%eax,%ebx", set()),
    ("pshufb", "%xmm1,%xmm0", {"ssse3"}),
    ("pmulld", "%xmm1,%xmm0", {"sse4_1"}),
    ("crc32b", "%al,%eax", {"sse4_2"}),
    ("popcntl", "%eax,%eax", {"popcnt"}),
    ("andnq", "%rax,%rbx,%rcx", {"bmi1"}),
    ("vaddps", "%xmm1,%xmm2,%xmm3", {"avx"}),
    ("vpaddd", "%xmm1,%xmm2,%xmm3", {"avx"}),
    ("vpaddd", "%ymm1,%ymm2,%ymm3", {"avx", "avx2"}),
    ("vpermq", "$0xd8,%ymm0,%ymm0", {"avx", "avx2"}),
    ("vperm2f128", "$0x0,%ymm1,%ymm1,%ymm0", {"avx"}),  # seen in ggml's sandybridge variant
    ("vpermilps", "$0x4e,%ymm0,%ymm1", {"avx"}),
    ("vptest", "%ymm0,%ymm0", {"avx"}),
    ("vfmadd213ps", "%ymm1,%ymm2,%ymm3", {"avx", "fma"}),
    ("vcvtps2ph", "$0x0,%ymm0,%xmm0", {"avx", "f16c"}),
    ("vaddps", "%zmm1,%zmm2,%zmm3", {"avx", "avx512f"}),
    ("vmovdqu8", "%ymm0,(%rax)", {"avx", "avx512f"}),
    ("vpternlogd", "$0x96,%xmm0,%xmm1,%xmm2", {"avx", "avx512f"}),
    ("vpcmpgtd", "%ymm1,%ymm2,%k1", {"avx", "avx2", "avx512f"}),
    ("{vex}vpdpbusd", "%ymm1,%ymm2,%ymm3", {"avx", "avx_vnni"}),
    ("vpdpbusd", "%zmm1,%zmm2,%zmm3", {"avx", "avx512f", "avx512_vnni"}),
    ("vdpbf16ps", "%zmm1,%zmm2,%zmm3", {"avx", "avx512f", "avx512_bf16"}),
    ("vpermb", "%zmm1,%zmm2,%zmm3", {"avx", "avx512f", "avx512_vbmi"}),
    ("tdpbssd", "%tmm2,%tmm1,%tmm0", {"amx_int8"}),
    ("tileloadd", "(%rax,%rbx,1),%tmm0", {"amx_tile"}),
])
def test_classify(insn: str, operands: str, expected: set[str]) -> None:
    assert classify(insn, operands) == expected


def test_v3_library_passes() -> None:
    result = scan(DISASM.splitlines(), FileAudit(path="libggml-cpu.so",
                                                 allowed=("avx2", "fma", "f16c", "bmi2")))
    assert set(result.used) == {"avx", "avx2", "fma", "f16c", "bmi2", "popcnt"}
    assert result.violations == []


def test_planted_avx512_in_a_v3_library_is_caught() -> None:
    from buildtool.cpudata import CPU

    result = scan(PLANTED.splitlines(), FileAudit(path="libggml-cpu.so",
                                                  allowed=tuple(CPU.level_features("x86-64-v3"))))
    assert result.violations == ["avx512f"]
    assert result.examples["avx512f"] == "vpaddd %zmm1,%zmm2,%zmm3"


def test_baseline_library_with_avx_is_caught() -> None:
    result = scan(DISASM.splitlines(), FileAudit(path="libllama.so", allowed=("sse2",)))
    assert result.violations == ["avx", "avx2", "bmi2", "f16c", "fma", "popcnt"]


def test_vex_prefix_and_symbol_names_are_parsed() -> None:
    lines = ["   10:\t{vex} vpdpbusd %ymm2,%ymm1,%ymm0",
             "   14:\tcall   1000 <tileloadd_wrapper@plt>",
             "   18:\tjmp    *0x1(%rip)        # 2000 <vfmadd_table>"]
    result = scan(lines, FileAudit(path="x", allowed=()))
    assert set(result.used) == {"avx", "avx_vnni"}


def test_variant_libraries_are_held_to_their_own_variant() -> None:
    assert allowed_for("libggml-cpu-haswell.so", ("sse2",), all_variants=True) == (
        "sse4_2", "avx", "f16c", "fma", "avx2", "bmi2")
    assert "amx_int8" in allowed_for("libggml-cpu-sapphirerapids.so", (), all_variants=True)
    assert allowed_for("libllama.so", ("sse2",), all_variants=True) == ("sse2",)
    assert allowed_for("libggml-cpu.so", ("avx2",), all_variants=False) == ("avx2",)


def test_closure_follows_implications() -> None:
    assert {"avx2", "avx", "sse4_2", "popcnt", "fma", "f16c"} <= closure(["avx512f"])
    assert "avx512f" not in closure(["avx2"])


def test_waiver_applies_only_to_its_file_symbol_and_feature() -> None:
    from buildtool.config.model import AuditAllow

    lines = ["0000000000008b450 <_ZL20ma_dr_flac__decodeP1x>:",
             "   8b4e7:\tlzcnt  %rdx,%rcx",
             "   8b4f0:\tvpaddd %ymm1,%ymm2,%ymm3",
             "0000000000009000 <other_function>:",
             "   9000:\tlzcnt  %rdx,%rcx"]
    waiver = AuditAllow(file="libmtmd.so*", symbol="*ma_dr_flac__*", features=("lzcnt",),
                        reason="checks CPUID first")
    result = scan(lines, FileAudit(path="libmtmd.so.0.5.0", allowed=(), waivers=(waiver,)))
    assert result.waived == {"lzcnt": "_ZL20ma_dr_flac__decodeP1x: checks CPUID first"}
    assert result.violations == ["avx", "avx2", "lzcnt"]  # other_function's lzcnt still counts
    assert result.used["lzcnt"] == 1
    other = scan(lines, FileAudit(path="libllama.so", allowed=(), waivers=(waiver,)))
    assert other.used["lzcnt"] == 2 and other.waived == {}


def test_tzcnt_is_baseline() -> None:
    assert classify("tzcnt", "%rax,%rcx") == set()


# llvm-objdump -d --no-show-raw-insn lines of AArch64 code (LLVM 16), as ggml's arm64
# variants and libgcc's outline atomics disassemble
A64_DISASM = """
libggml-cpu.so:\tfile format elf64-littleaarch64

Disassembly of section .text:

0000000000054f40 <ggml_vec_dot_q8_0_q8_0>:
   54f40:      \tldr\tq0, [x1], #0x10
   54f44:      \tfmla\tv0.4s, v1.4s, v2.4s
   54f4c:      \tsdot\tv4.2s, v16.8b, v6.8b
   54f50:      \tfmla\tv3.8h, v4.8h, v5.8h
   54f54:      \tfcvtl\tv6.4s, v7.4h
   54f58:      \tret

00000000000e5ab0 <__aarch64_ldadd8_relax>:
   e5ab0:      \tbti\tc
   e5ac0:      \tldadd\tx0, x0, [x1]
   e5ac4:      \tret
"""
A64_PLANTED = A64_DISASM.replace("   54f58:      \tret", "   54f58:      \tptrue\tp0.b\n"
                                 "   54f5c:      \tld1w\t{ z1.s }, p0/z, [x0]\n"
                                 "   54f60:      \tret")


@pytest.mark.parametrize(("insn", "operands", "expected"), [
    ("add", "x0, x1, x2", set()),
    ("fmla", "v0.4s, v1.4s, v2.4s", set()),
    ("fcvtl", "v0.4s, v1.4h", set()),  # conversions are armv8.0; FEAT_FP16 is the arithmetic
    ("fcvtn", "v0.4h, v1.4s", set()),
    ("fmla", "v0.8h, v1.8h, v2.8h", {"fp16"}),
    ("fadd", "h0, h1, h2", {"fp16"}),
    ("fmul", "v0.8h, v1.8h, v2.h[3]", {"fp16"}),
    ("sdot", "v0.4s, v1.16b, v2.16b", {"dotprod"}),
    ("udot", "v0.2s, v1.8b, v2.4b[1]", {"dotprod"}),
    ("sdot", "z0.s, z1.b, z2.b", {"sve"}),  # SVE's own dot product
    ("smmla", "v0.4s, v1.16b, v2.16b", {"i8mm"}),
    ("usdot", "v0.4s, v1.16b, v2.16b", {"i8mm"}),
    ("smmla", "z0.s, z1.b, z2.b", {"sve", "i8mm"}),
    ("bfmmla", "v0.4s, v1.8h, v2.8h", {"bf16"}),
    ("bfdot", "z0.s, z1.h, z2.h", {"sve", "bf16"}),
    ("ptrue", "p0.b", {"sve"}),
    ("rdvl", "x0, #1", {"sve"}),
    ("ld1w", "{ z1.s }, p0/z, [x0]", {"sve"}),
    ("fmla", "z0.s, p0/m, z1.s, z2.s", {"sve"}),
    ("saddlb", "z0.h, z1.b, z2.b", {"sve", "sve2"}),
    ("sqxtnt", "z0.b, z1.h", {"sve", "sve2"}),
    ("eor3", "z0.d, z0.d, z1.d, z2.d", {"sve", "sve2"}),
    ("zip1", "z0.s, z1.s, z2.s", {"sve"}),
    # SVE compares and loops that end like SVE2's bottom/top forms (seen in ggml's armv8.2_3)
    ("fcmlt", "p2.s, p0/z, z5.s, #0.0", {"sve"}),
    ("cmplt", "p0.s, p1/z, z0.s, #0", {"sve"}),
    ("whilelt", "p0.s, x0, x1", {"sve"}),
    ("lastb", "w0, p0, z0.s", {"sve"}),
    ("sqshrunb", "z0.b, z1.h, #1", {"sve", "sve2"}),
    ("umulh", "z0.s, p0/m, z0.s, z1.s", {"sve"}),  # predicated: SVE's own
    ("smstart", "", {"sme"}),
    ("fmopa", "za0.s, p0/m, p1/m, z0.s, z1.s", {"sme"}),
    ("ldadd", "x0, x0, [x1]", {"lse"}),
    ("casal", "w0, w1, [x2]", {"lse"}),
    ("swpal", "x0, x1, [x2]", {"lse"}),
    ("ldaxr", "x0, [x1]", set()),
    ("sqrdmlah", "v0.8h, v1.8h, v2.8h", {"rdm"}),
])
def test_classify_a64(insn: str, operands: str, expected: set[str]) -> None:
    assert classify_a64(insn, operands) == expected


def test_a64_armv8_2_library_passes_with_outline_atomics_waived() -> None:
    waiver = AuditAllow(file="*", symbol="__aarch64_*", features=("lse",), reason="libgcc")
    allowed = tuple(CPU.level_features("armv8.2"))
    result = scan_a64(A64_DISASM, FileAudit(path="libggml-cpu.so", allowed=allowed,
                                            waivers=(waiver,), arch="aarch64"))
    assert result.violations == []
    assert result.used == {"dotprod": 1, "fp16": 1}
    assert "lse" in result.waived
    # without the waiver, armv8.0 code may not use the LSE atomics inline
    bare = scan_a64(A64_DISASM, FileAudit(path="libggml-cpu.so", allowed=("neon",),
                                          arch="aarch64"))
    assert bare.violations == ["dotprod", "fp16", "lse"]


def test_a64_planted_sve_in_an_armv8_2_library_is_caught() -> None:
    result = scan_a64(A64_PLANTED, FileAudit(path="libggml-cpu.so",
                                             allowed=tuple(CPU.level_features("armv8.2")),
                                             arch="aarch64"))
    assert result.violations == ["lse", "sve"]
    assert result.examples["sve"] == "ptrue p0.b"


def test_a64_variants_allow_what_their_march_base_allows() -> None:
    # armv9.2 implies SVE2 although ggml's loader does not check it for armv9.2_1
    assert "sve2" in allowed_for("libggml-cpu-armv9.2_1.so", ("neon",), True, "aarch64")
    assert "sve2" not in allowed_for("libggml-cpu-armv8.6_1.so", ("neon",), True, "aarch64")
    assert "lse" in allowed_for("libggml-cpu-armv8.2_1.so", ("neon",), True, "aarch64")
    assert allowed_for("libggml-cpu-armv8.0_1.so", ("neon",), True, "aarch64") == ()


def test_files_with_the_same_bytes_are_read_once(tmp_path: Path) -> None:
    memo, reads = ByContent(), []
    for name, data in (("a", b"x"), ("b", b"x"), ("c", b"y")):
        (tmp_path / name).write_bytes(data)

    def read(name: str) -> str:
        reads.append(name)
        return name

    assert memo.get(tmp_path / "a", ("isa",), lambda: read("a")) == "a"
    assert memo.get(tmp_path / "b", ("isa",), lambda: read("b")) == "a"  # same bytes
    assert memo.get(tmp_path / "b", ("abi",), lambda: read("b")) == "b"  # another reading
    assert memo.get(tmp_path / "c", ("isa",), lambda: read("c")) == "c"
    assert reads == ["a", "b", "c"] and memo.hits == 1


def test_a_library_under_its_soname_is_the_same_bytes_audited_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the tarball keeps libggml-cpu.so.0.9.4, the wheel ships it as libggml-cpu.so.0: one
    # disassembly, each name reported; a waiver that names one of them is not shared
    from buildtool.verify import audit

    disassembled: list[str] = []

    def fake(path: Path, arch: str) -> str:
        disassembled.append(path.name)
        return DISASM

    monkeypatch.setattr(audit, "disassemble", fake)
    elf = b"\x7fELF" + b"\x00" * 60
    for name in ("libggml-cpu.so.0.9.4", "libggml-cpu.so.0", "libother.so"):
        (tmp_path / name).write_bytes(elf)
    memo = ByContent()
    kw = {"declared": (), "all_variants": False, "platform": "linux-x86_64", "memo": memo}
    tarball = audit.audit_files([tmp_path / "libggml-cpu.so.0.9.4"], **kw)  # type: ignore[arg-type]
    wheel = audit.audit_files([tmp_path / "libggml-cpu.so.0"], **kw)  # type: ignore[arg-type]
    assert disassembled == ["libggml-cpu.so.0.9.4"]
    assert list(tarball.files) == ["libggml-cpu.so.0.9.4"]
    assert list(wheel.files) == ["libggml-cpu.so.0"]
    assert wheel.files["libggml-cpu.so.0"].used == tarball.files["libggml-cpu.so.0.9.4"].used
    assert wheel.verdict == tarball.verdict == "fail"  # AVX without a declaration
    waiver = AuditAllow(file="libother.so", symbol="ggml_vec_dot_f16", features=("avx",),
                        reason="checked at run time")
    other = audit.audit_files([tmp_path / "libother.so"], waivers=(waiver,), **kw)  # type: ignore[arg-type]
    assert disassembled == ["libggml-cpu.so.0.9.4", "libother.so"]
    assert "avx" in other.files["libother.so"].waived
