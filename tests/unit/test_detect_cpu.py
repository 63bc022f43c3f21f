"""CPU detection on captured data from several real CPUs (tests/data/cpuinfo)."""

from __future__ import annotations

from pathlib import Path

import pytest

from buildtool.cpudata import CPU
from buildtool.detect.cpu import parse_proc_cpuinfo, parse_sysctl

CASES = [
    # file, machine, model, level, ggml features expected present, expected absent
    ("linux-x86_64-xeon-sapphirerapids-vm.txt", "x86_64", "Intel(R) Xeon(R) Processor",
     "x86-64-v4", {"avx2", "avx512f", "avx512bw", "avx512_vbmi", "avx512_vnni", "avx512_bf16",
                   "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "f16c", "fma", "bmi2"}, set()),
    ("linux-x86_64-xeon6-graniterapids.txt", "x86_64", "Intel(R) Xeon(R) 6972P", "x86-64-v4",
     {"avx512f", "amx_int8", "avx512_bf16", "avx_vnni"}, set()),
    ("linux-x86_64-ryzen9-5950x-zen3.txt", "x86_64", "AMD Ryzen 9 5950X 16-Core Processor",
     "x86-64-v3", {"sse4_2", "avx", "avx2", "fma", "f16c", "bmi2"},
     {"avx512f", "avx_vnni", "amx_tile"}),
    ("linux-x86_64-core-i7-870-vm.txt", "x86_64",
     "Intel(R) Core(TM) i7 CPU         870  @ 2.93GHz", "x86-64", set(),
     {"sse4_2", "avx", "avx2", "fma", "f16c", "avx512f"}),
    ("linux-aarch64-graviton2-neoverse-n1.txt", "aarch64", "ARM Neoverse-N1", "armv8.2",
     {"neon", "dotprod", "fp16"}, {"i8mm", "sve"}),
    ("linux-aarch64-neoverse-n2.txt", "aarch64", "ARM Neoverse-N2", "armv8.6",
     {"neon", "dotprod", "fp16", "i8mm", "sve", "sve2", "bf16"}, {"sme"}),
]


@pytest.mark.parametrize(("name", "machine", "model", "level", "present", "absent"), CASES)
def test_proc_cpuinfo(data: Path, name: str, machine: str, model: str, level: str,
                      present: set[str], absent: set[str]) -> None:
    cpu = parse_proc_cpuinfo((data / "cpuinfo" / name).read_text(), machine)
    assert cpu.model == model
    assert cpu.level == level
    assert present <= set(cpu.ggml_features)
    assert not absent & cpu.features


def test_rosetta_x86_view_has_no_avx(data: Path) -> None:
    cpu = parse_sysctl((data / "cpuinfo" / "macos-rosetta2-apple-m1-sysctl.txt").read_text(),
                       "x86_64")
    assert cpu.arch == "x86_64"
    assert cpu.model == "Apple M1"
    assert cpu.ggml_features == ("sse4_2",)
    assert cpu.missing(["avx", "avx2", "fma", "f16c"]) == ["avx", "avx2", "fma", "f16c"]
    # No POPCNT or LAHF reported under Rosetta: only the x86-64 baseline level.
    assert cpu.level == "x86-64"


def test_apple_silicon_view(data: Path) -> None:
    cpu = parse_sysctl((data / "cpuinfo" / "macos-rosetta2-apple-m1-sysctl.txt").read_text(),
                       "arm64")
    assert cpu.arch == "aarch64"
    assert cpu.level == "armv8.2"
    assert cpu.ggml_features == ("neon", "dotprod", "fp16")
    assert "sse4_2" not in cpu.features  # x86 keys are not ARM features
    assert "i8mm" not in cpu.features  # FEAT_I8MM: 0 on the M1


def test_first_block_only_and_aliases() -> None:
    text = ("processor : 0\nflags : sse2 pni ssse3 abm avx512vbmi\n\n"
            "processor : 1\nflags : avx2\n")
    cpu = parse_proc_cpuinfo(text, "x86_64")
    assert {"sse3", "lzcnt", "avx512_vbmi"} <= cpu.features
    assert "avx2" not in cpu.features


def test_levels_are_cumulative() -> None:
    v3 = CPU.level_features("x86-64-v3")
    assert {"sse4_2", "popcnt", "avx2", "fma", "movbe"} <= v3
    assert "avx512f" not in v3
    assert CPU.level_features("x86-64-v4") > v3
    assert CPU.level_of("x86_64", frozenset(CPU.level_features("x86-64-v2"))) == "x86-64-v2"
    with pytest.raises(KeyError):
        CPU.level_features("x86-64-v9")
