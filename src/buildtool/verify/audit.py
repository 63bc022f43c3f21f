"""ISA audit: disassemble shipped binaries and check no instruction exceeds what the
artifact declares — the cause of the "illegal instruction" reports in llama.cpp's, ollama's
and LocalAI's trackers.

Each instruction is classified by the extensions it needs, from its mnemonic and its
registers. x86-64 (GNU objdump): ``%zmm``/``%k`` mean AVX-512, an integer operation on
``%ymm`` means AVX2, ... AArch64 (llvm-objdump, which decodes every extension and runs on any
host): ``z``/``p`` registers mean SVE, ``za``/``smstart`` SME, ``sdot`` on ``v`` registers
dotprod, ``smmla``/``usdot`` i8mm, ``bfdot`` bf16, floating-point arithmetic on ``.8h``/``h``
registers fp16, ``casal``/``ldadd`` LSE atomics. The classification is deliberately about
*classes* that decide a level or a ggml option, not an exhaustive opcode map. A library is
checked against the features its artifact declares (and what its level's ``-march`` base
allows); in an all-variants build each ``libggml-cpu-<variant>`` is checked against its own
variant and everything else against the architecture's baseline.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from buildtool import cmd
from buildtool.config.model import AuditAllow
from buildtool.cpudata import CPU
from buildtool.errors import ToolchainError
from buildtool.inputs import ByContent
from buildtool.records import AuditRecord, FileAuditRecord
from buildtool.toolchains import discovery

# What every x86-64 CPU has, and so any file may use
BASELINE_X86 = CPU.baseline("x86_64")

# tzcnt is left out on purpose: it is `rep bsf`, which CPUs without BMI1 execute as BSF;
# compilers emit it for generic x86-64 (GCC does in libllama).
_BMI1 = {"andn", "bextr", "blsi", "blsmsk", "blsr"}
_BMI2 = {"bzhi", "pdep", "pext", "mulx", "rorx", "sarx", "shlx", "shrx"}
_SSE41 = {"pmulld", "ptest", "pblendvb", "blendvps", "blendvpd", "blendps", "blendpd",
          "roundps", "roundpd", "roundss", "roundsd", "pminsd", "pmaxsd", "pminud", "pmaxud",
          "pminsb", "pmaxsb", "pminuw", "pmaxuw", "pextrb", "pextrd", "pextrq", "pinsrb",
          "pinsrd", "pinsrq", "pmovsxbw", "pmovzxbw", "pmovsxbd", "pmovzxbd", "pmovsxwd",
          "pmovzxwd", "pmovsxdq", "pmovzxdq", "pcmpeqq", "packusdw", "dpps", "dppd",
          "insertps", "extractps", "mpsadbw", "phminposuw", "pmuldq", "movntdqa"}
_SSE42 = {"pcmpestri", "pcmpestrm", "pcmpistri", "pcmpistrm", "pcmpgtq", "crc32"}
_SSSE3 = {"pshufb", "palignr", "pmaddubsw", "phaddw", "phaddd", "phsubw", "phsubd", "pabsb",
          "pabsw", "pabsd", "psignb", "psignw", "psignd", "pmulhrsw", "phaddsw", "phsubsw"}
_AVX2_ONLY = {"vpermd", "vpermq", "vpermps", "vpermpd", "vperm2i128", "vinserti128",
              "vextracti128", "vpbroadcastb", "vpbroadcastw", "vpbroadcastd", "vpbroadcastq",
              "vbroadcasti128", "vpgatherdd", "vpgatherdq", "vpgatherqd", "vpgatherqq",
              "vgatherdps", "vgatherdpd", "vgatherqps", "vgatherqpd", "vpmaskmovd",
              "vpmaskmovq", "vpsllvd", "vpsllvq", "vpsrlvd", "vpsrlvq", "vpsravd", "vpblendd"}
# AVX (1) instructions that start like integer ones and work on %ymm
_AVX1_VP = {"vperm2f128", "vpermilps", "vpermilpd", "vptest"}
_VNNI = {"vpdpbusd", "vpdpbusds", "vpdpwssd", "vpdpwssds"}
_BF16 = {"vdpbf16ps", "vcvtne2ps2bf16", "vcvtneps2bf16"}
_VBMI = {"vpermb", "vpermi2b", "vpermt2b", "vpmultishiftqb"}
_EVEX_ONLY = re.compile(
    r"v(movdq[au](8|16|32|64)|pternlog|permt2|permi2[dqw]|perm[bw]\b|pro[lr]|pmov(s|us)?[wdq][bwd]\b"
    r"|p?compress|p?expand|rcp14|rsqrt14|scalef|getexp|getmant|fixupimm|range|reduce"
    r"|(broadcast|insert|extract)[if](32x[48]|64x[24])|shuf[if](32x4|64x2)|align[dq]"
    r"|pconflict|plzcnt|pabsq|p(max|min)[su]q|pmullq|psraq|psravq|psravw|psllvw|psrlvw"
    r"|cvt[a-z]*(u?qq|udq)|cvtu(si|dq|qq)|fpclass|dbpsadbw|pmadd52)")
_ZMM = re.compile(r"%zmm\d+|%k[0-7]\b|\{%k[0-7]\}")
_YMM = re.compile(r"%ymm\d+")
_GPR_OPS = {"popcnt", "lzcnt", "movbe", "crc32"} | _BMI1 | _BMI2


def classify(mnemonic: str, operands: str) -> set[str]:
    """The features one x86-64 instruction needs (an empty set: baseline)."""
    m = mnemonic.lower()
    needs: set[str] = set()
    vex = m.startswith("{vex}")
    if vex:
        m = m.removeprefix("{vex}").strip()
    base = m
    if m[:-1] in _GPR_OPS and m[-1] in "bwlq":  # AT&T size suffix: popcntl, tzcntq, crc32b
        base = m[:-1]
    if m.startswith(("tile", "tdp")) or m in {"ldtilecfg", "sttilecfg"}:
        needs.add("amx_int8" if m.startswith("tdpb") and "bf16" not in m else
                  "amx_bf16" if "bf16" in m else "amx_tile")
        return needs
    if base == "popcnt":
        needs.add("popcnt")
    elif base == "lzcnt":
        needs.add("lzcnt")
    elif base == "movbe":
        needs.add("movbe")
    elif base in _BMI1:
        needs.add("bmi1")
    elif base in _BMI2:
        needs.add("bmi2")
    elif base in _SSE42:
        needs.add("sse4_2")
    elif base in _SSE41:
        needs.add("sse4_1")
    elif base in _SSSE3:
        needs.add("ssse3")
    if not m.startswith("v"):
        return needs
    # VEX/EVEX-encoded (AVX family)
    if _ZMM.search(operands) or _EVEX_ONLY.match(m):
        needs.add("avx512f")
    if m in _VNNI:  # objdump writes the VEX (AVX-VNNI) form as "{vex} vpdpbusd"
        needs.add("avx_vnni" if vex else "avx512_vnni")
    elif m in _BF16:
        needs.add("avx512_bf16")
    elif m in _VBMI:
        needs.add("avx512_vbmi")
    elif m.startswith(("vfmadd", "vfmsub", "vfnmadd", "vfnmsub")):
        needs.add("fma")
    elif m in {"vcvtph2ps", "vcvtps2ph"}:
        needs.add("f16c")
    elif m in _AVX2_ONLY or (m.startswith("vp") and m not in _AVX1_VP
                             and _YMM.search(operands)):
        needs.add("avx2")
    needs.add("avx")
    return needs


@dataclass
class FileAudit:
    path: str
    allowed: tuple[str, ...]
    waivers: tuple[AuditAllow, ...] = ()
    arch: str = "x86_64"
    used: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)
    waived: dict[str, str] = field(default_factory=dict)  # feature → "symbol: reason"

    @property
    def violations(self) -> list[str]:
        return sorted(f for f in self.used if f not in self.accepted)

    @property
    def accepted(self) -> frozenset[str]:
        return closure(self.allowed) | CPU.baseline(self.arch)

    def note(self, symbol: str, features: Iterable[str], example: str) -> None:
        """Count what one instruction of ``symbol`` needs, or the waiver that covers it."""
        for feature in features:
            if (w := _waiver(self, symbol, feature)) is not None:
                self.waived.setdefault(feature, f"{symbol}: {w.reason}")
                continue
            self.used[feature] = self.used.get(feature, 0) + 1
            self.examples.setdefault(feature, example)


def closure(features: Iterable[str]) -> frozenset[str]:
    return CPU.closure(features)


def _waiver(audit: FileAudit, symbol: str, feature: str) -> AuditAllow | None:
    for w in audit.waivers:
        if feature in w.features and fnmatch.fnmatchcase(audit.path, w.file) \
                and fnmatch.fnmatchcase(symbol, w.symbol):
            return w
    return None


# Only lines that can need more than baseline x86-64 are looked at (a regex in C over the
# whole text is several times faster than Python over every line): symbol headers, and
# instructions starting like an extension's mnemonic.
_INTERESTING = re.compile(
    r"^[0-9a-f]+ <(?P<symbol>.+)>:$"
    r"|^ +[0-9a-f]+:\t(?P<insn>(?:\{vex\} ?)?(?:v|p|t(?:ile|dp)|blend|round|dp|insertps"
    r"|extractps|mpsadbw|movntdqa|movbe|crc32|popcnt|lzcnt|andn|bextr|bls|bzhi|mulx|rorx"
    r"|sarx|shlx|shrx|ldtilecfg|sttilecfg)[^\n]*)$",
    re.MULTILINE)


def scan(disassembly: Iterable[str] | str, audit: FileAudit) -> FileAudit:
    """Feed ``objdump -d --no-show-raw-insn`` output (text or lines) into ``audit``."""
    text = disassembly if isinstance(disassembly, str) else "\n".join(disassembly)
    symbol = ""
    for match in _INTERESTING.finditer(text):
        if match.group("symbol") is not None:
            symbol = match.group("symbol")
            continue
        insn = match.group("insn").split("#", 1)[0].strip()
        insn = re.sub(r"<[^>]*>", "", insn)
        if not insn:
            continue
        if insn.startswith("{vex}"):
            rest = insn[len("{vex}"):].strip()
            mnemonic, _, operands = rest.partition(" ")
            mnemonic = "{vex}" + mnemonic
        else:
            mnemonic, _, operands = insn.partition(" ")
        audit.note(symbol, classify(mnemonic, operands), insn)
    return audit


# ---------------------------------------------------------------------------- AArch64

_A64_SVE_ONLY = {"ptrue", "ptrues", "pfalse", "rdvl", "addvl", "addpl", "cntb", "cnth", "cntw",
                 "cntd", "cntp", "incb", "inch", "incw", "incd", "incp", "decb", "dech", "decw",
                 "decd", "decp", "setffr", "rdffr", "rdffrs", "wrffr", "whilelo", "whilelt",
                 "whilele", "whilels", "brka", "brkb", "brkn", "brkpa", "brkpb", "pfirst",
                 "pnext", "ptest"}
_A64_SVE2 = {"eor3", "bcax", "xar", "bsl", "bsl1n", "bsl2n", "nbsl", "histcnt", "histseg",
             "match", "nmatch", "whilerw", "whilewr", "whilege", "whilegt", "whilehi",
             "whilehs", "cdot", "cmla", "sqrdcmlah", "adclb", "adclt", "sbclb", "sbclt", "tbx",
             "sqrdmlah", "sqrdmlsh", "sqdmulh", "sqrdmulh", "pmul", "sli",
             "sri", "ssra", "usra", "srsra", "ursra", "addp", "smaxp", "sminp", "umaxp",
             "uminp", "faddp", "fmaxp", "fminp", "fmaxnmp", "fminnmp", "sqabs", "sqneg",
             "urecpe", "ursqrte", "flogb", "fcvtx", "fcvtxnt", "fcvtlt", "fcvtnt", "sadalp",
             "uadalp", "shadd", "uhadd", "srhadd", "urhadd", "shsub", "uhsub", "sqshl", "uqshl",
             "srshl", "urshl", "sqrshl", "uqrshl", "suqadd", "usqadd", "fmlalb", "fmlalt",
             "fmlslb", "fmlslt", "aesd", "aese", "sm4e", "rax1", "saddlbt", "ssublbt",
             "ssubltb", "eorbt", "eortb"}
# SVE2's widening (…lb/…lt, …wb/…wt) and narrowing (…nb/…nt) forms, as a pattern: SVE
# itself has no such mnemonics (its cmplt, fcmlt, whilelt, lastb end alike but do not match)
_A64_SVE2_BT = re.compile(r"^(?:[su](?:add|sub|abd|mul|mla|mls|aba)l|sqdm(?:ul|la|ls)l|pmull"
                          r"|[su]shll|[su](?:add|sub)w|r?(?:add|sub)hn|(?:[su]q)?r?shrn"
                          r"|sq?r?shrun|[su]qxtu?n)[bt]$")
_A64_SME = {"smstart", "smstop", "fmopa", "fmops", "bfmopa", "bfmops", "smopa", "smops",
            "umopa", "umops", "sumopa", "sumops", "usmopa", "usmops", "addha", "addva",
            "rdsvl", "addsvl", "addspl", "zero", "luti2", "luti4"}
_A64_I8MM = {"smmla", "ummla", "usmmla", "usdot", "sudot"}
_A64_BF16 = {"bfdot", "bfmmla", "bfmlalb", "bfmlalt", "bfcvt", "bfcvtn", "bfcvtn2", "bfcvtnt"}
_A64_RDM = {"sqrdmlah", "sqrdmlsh"}
_A64_LSE = re.compile(r"^(?:casp?|ld(?:add|clr|eor|set|smax|smin|umax|umin)|swp"
                      r"|st(?:add|clr|eor|set|smax|smin|umax|umin))(?:a|al|l)?[bh]?$")
# half-precision conversions every armv8.0 CPU has (FEAT_FP16 is the arithmetic)
_A64_FP16_BASE = {"fcvt", "fcvtl", "fcvtl2", "fcvtn", "fcvtn2"}
_A64_ZREG = re.compile(r"\bz\d+(?:\.[bhsdq])?\b|\bp\d+(?:\.[bhsd]|/[zm])\b|\bp\d+\b")
_A64_ZA = re.compile(r"\bza(?:\d*[hv]?)?(?:\.[bhsdq])?\b|\bzt0\b|\bsvcr")
_A64_HALF = re.compile(r"\bv\d+\.[48]h\b|\bv\d+\.h\[|\bh\d+\b")


def classify_a64(mnemonic: str, operands: str) -> set[str]:
    """The features one AArch64 instruction needs (an empty set: armv8.0 with Advanced
    SIMD)."""
    m = mnemonic.lower()
    ops = operands.lower()
    needs: set[str] = set()
    if m in _A64_SME or _A64_ZA.search(ops) or (m == "msr" and "svcr" in ops):
        needs.add("sme")
        return needs
    zregs = bool(_A64_ZREG.search(ops))
    if zregs or m in _A64_SVE_ONLY:
        needs.add("sve")
        if zregs and (m in _A64_SVE2 or _A64_SVE2_BT.match(m)):
            needs.add("sve2")
    if m in _A64_I8MM:
        needs.add("i8mm")
    elif m in _A64_BF16:
        needs.add("bf16")
    elif m in {"sdot", "udot"} and not zregs:
        needs.add("dotprod")
    elif m in _A64_RDM and not zregs:
        needs.add("rdm")
    elif _A64_LSE.match(m):
        needs.add("lse")
    elif not zregs and (m.startswith("f") or m in {"scvtf", "ucvtf"}) and \
            m not in _A64_FP16_BASE and _A64_HALF.search(ops):
        needs.add("fp16")
    return needs


_A64_LINE = re.compile(r"^[0-9a-f]+ <(?P<symbol>.+)>:$"
                       r"|^ *[0-9a-f]+:[ \t]+(?P<mnemonic>[a-z][a-z0-9.]*)"
                       r"(?:[ \t]+(?P<ops>[^\n]*))?$", re.MULTILINE)


def scan_a64(disassembly: Iterable[str] | str, audit: FileAudit) -> FileAudit:
    """Feed ``llvm-objdump -d --no-show-raw-insn`` output of AArch64 code into ``audit``."""
    text = disassembly if isinstance(disassembly, str) else "\n".join(disassembly)
    symbol = ""
    for match in _A64_LINE.finditer(text):
        if match.group("symbol") is not None:
            symbol = match.group("symbol")
            continue
        mnemonic = match.group("mnemonic")
        operands = re.sub(r"<[^>]*>", "", (match.group("ops") or "").split("//", 1)[0])
        audit.note(symbol, classify_a64(mnemonic, operands), f"{mnemonic} {operands}".strip())
    return audit


def disassemble(path: Path, arch: str) -> str:
    """The file's code as text: GNU objdump for x86-64, llvm-objdump for AArch64."""
    if arch == "x86_64":
        return cmd.capture(["objdump", "-d", "--no-show-raw-insn", str(path)], timeout=600)
    tool = discovery.best("llvm-objdump")
    if tool is None:
        raise ToolchainError(f"the ISA audit of {arch} code needs llvm-objdump: not found",
                             hint=discovery.install_hint("llvm-objdump"))
    return cmd.capture([str(tool.path), "-d", "--no-show-raw-insn", str(path)], timeout=600)


SCANNERS = {"x86_64": scan, "aarch64": scan_a64}


def audit_file(path: Path, allowed: Iterable[str],
               waivers: tuple[AuditAllow, ...] = (), arch: str = "x86_64") -> FileAudit:
    result = FileAudit(path=path.name, allowed=tuple(allowed), waivers=waivers, arch=arch)
    return SCANNERS[arch](disassemble(path, arch), result)


def allowed_for(name: str, declared: tuple[str, ...], all_variants: bool,
                arch: str = "x86_64") -> tuple[str, ...]:
    """What a shipped file may use: its ggml CPU variant's features (and what the variant's
    -march base allows), or the declaration."""
    m = re.match(r"libggml-cpu-([a-z0-9_.]+?)\.so", name)
    if not all_variants or m is None:
        return declared
    variant = CPU.variant_features(arch, m.group(1))
    if variant is None:
        return declared
    return tuple(dict.fromkeys([*variant, *sorted(CPU.variant_allows(arch, m.group(1)))]))


def _is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) == b"\x7fELF"
    except OSError:
        return False


def audit_files(files: Iterable[Path], *, declared: tuple[str, ...], all_variants: bool,
                platform: str, waivers: tuple[AuditAllow, ...] = (),
                level: str | None = None, memo: ByContent | None = None) -> AuditRecord:
    """Audit every shipped ELF file (in parallel); the report goes into the manifest.
    ``level``: the declared level, whose -march base may allow more than it requires;
    ``memo``: files with the same bytes, allowance and waivers are disassembled once — the
    wheel names a library by its SONAME (libllama.so.0) where the tarball keeps the file
    CMake wrote (libllama.so.0.0.11312): the same bytes, audited once."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    arch = CPU.arch(platform.split("-", 1)[1])
    if not platform.startswith("linux-") or arch not in SCANNERS:
        return AuditRecord(verdict="skipped",
                           reason=f"the audit reads ELF code of {', '.join(SCANNERS)}; "
                                  f"this is {platform}")
    if level is not None and CPU.arch_of_level(level) == arch:
        declared = tuple(dict.fromkeys([*declared, *sorted(CPU.level_allows(level))]))
    targets = [p for p in files if not p.is_symlink() and _is_elf(p)]
    def one(p: Path) -> FileAudit:
        allowed = allowed_for(p.name, declared, all_variants, arch)
        if memo is None:
            return audit_file(p, allowed, waivers, arch)
        # what the name decides: the allowance and the waivers that apply to it
        applies = tuple(w for w in waivers if fnmatch.fnmatchcase(p.name, w.file))
        found = memo.get(p, ("isa", allowed, applies, arch),
                         lambda: audit_file(p, allowed, applies, arch))
        return dataclasses.replace(found, path=p.name)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(pool.map(one, targets))
    bad = [r for r in results if r.violations]
    return AuditRecord(
        verdict="fail" if bad else "pass",
        files={r.path: FileAuditRecord(
            allowed=tuple(sorted(r.accepted)),
            used=tuple(sorted(r.used)), violations=tuple(r.violations),
            waived=dict(r.waived), examples={f: r.examples[f] for f in r.violations})
            for r in results})


def violations_message(report: AuditRecord) -> str:
    lines = []
    for name, entry in report.files.items():
        for feature in entry.violations:
            lines.append(f"  {name}: uses {feature} (e.g. `{entry.examples.get(feature)}`), "
                         "which the artifact does not declare")
    return "\n".join(lines)
