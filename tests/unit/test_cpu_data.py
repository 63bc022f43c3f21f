"""The CPU data file (src/buildtool/data/cpu.yaml) and the class that answers from it: the
shipped file's facts, one selection algorithm for every architecture, and a broken data file
refused with its path."""

from __future__ import annotations

from pathlib import Path

import pytest

from buildtool.backends.cpu import cpu_settings
from buildtool.cpudata import CPU, load
from buildtool.errors import ConfigError
from buildtool.grammar import CPU_POLICIES


def test_levels_variants_and_implications_of_the_shipped_file() -> None:
    assert CPU.levels_of("x86_64") == ("x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4")
    assert CPU.levels_of("aarch64") == ("armv8.0", "armv8.2", "armv8.6")
    assert ("host", "all-variants", *CPU.levels) == CPU_POLICIES
    assert CPU.level_features("armv8.6") == {"neon", "dotprod", "fp16", "i8mm"}
    # a variant carries its parents' features
    assert set(CPU.variant_features("x86_64", "sapphirerapids") or ()) == {
        "sse4_2", "avx", "f16c", "fma", "avx2", "bmi2", "avx512f", "avx512cd", "avx512vl",
        "avx512dq", "avx512bw", "avx512_vbmi", "avx512_vnni", "avx512_bf16", "amx_tile",
        "amx_int8"}
    assert CPU.variant_features("x86_64", "alderlake") == (
        "sse4_2", "avx", "f16c", "fma", "avx2", "bmi2", "avx_vnni")
    assert CPU.variant_features("x86_64", "nosuchcpu") is None
    assert {"avx2", "avx", "sse4_2", "sse4_1", "ssse3", "sse3", "sse2", "sse", "popcnt"} \
        == CPU.closure(["avx2"])
    assert CPU.canonical("PNI") == "sse3" and CPU.canonical("asimddp") == "dotprod"
    assert CPU.spellings("lzcnt") == ["abm", "lzcnt"]
    assert CPU.arch("AMD64") == "x86_64" and CPU.arch("arm64") == "aarch64"
    assert CPU.arch("riscv64") == "riscv64"


def test_one_selection_for_both_architectures() -> None:
    """x86-64: one -D per option; arm64: the options as +extensions of the level's -march.
    Both: an option is on when all its features are there and none is avoided, and the
    build requires the architecture's first level."""
    v3 = cpu_settings("x86-64-v3", "x86_64", None)
    defines = dict(v3.defines)
    assert defines["GGML_AVX2"] == "ON" and defines["GGML_AVX512"] == "OFF"
    assert len(defines) == len(CPU.ggml_options("x86_64"))
    assert v3.required[0] == "sse2" and "avx512f" not in v3.required
    v4 = cpu_settings("x86-64-v4", "x86_64", None, avoid=frozenset({"avx512bw"}))
    assert dict(v4.defines)["GGML_AVX512"] == "OFF"  # one of its features is avoided
    arm = cpu_settings("armv8.6", "aarch64", None)
    assert arm.defines == (("GGML_CPU_ARM_ARCH", "armv8.6-a+dotprod+fp16+i8mm"),)
    assert arm.required == ("neon", "dotprod", "fp16", "i8mm")
    assert cpu_settings("armv8.6", "aarch64", None, avoid=frozenset({"i8mm"})).defines == (
        ("GGML_CPU_ARM_ARCH", "armv8.6-a+dotprod+fp16"),)
    assert cpu_settings("all-variants", "aarch64", None).required == ("neon",)
    with pytest.raises(ValueError, match="does not apply to aarch64"):
        cpu_settings("x86-64-v3", "aarch64", None)
    with pytest.raises(ValueError, match="no CPU settings for architecture 'riscv64'"):
        cpu_settings("x86-64-v3", "riscv64", None)


RISCV = """
features:
  rv64gc: {arch: riscv64}
  v: {arch: riscv64, implies: [rv64gc], aliases: [rvv]}
architectures:
  riscv64:
    baseline: [rv64gc]
    ggml-features: [v]
    levels:
      rva20: {features: [rv64gc], march: rv64gc}
      rva23: {parent: rva20, features: [v], march: rv64gcv}
    foreign-host-level: rva20
    ggml-march-define: GGML_RV_ARCH
    ggml-options:
      zvfh: [v]
"""


def test_a_new_architecture_is_data(tmp_path: Path) -> None:
    """The algorithm has no architecture in it: a data file with another one answers."""
    path = tmp_path / "cpu.yaml"
    path.write_text(RISCV)
    data = load(path)
    assert data.levels_of("riscv64") == ("rva20", "rva23")
    assert data.level_of("riscv64", {"rv64gc", "v"}) == "rva23"
    chosen = data.select("riscv64", data.level_features("rva23"), "rva23")
    assert chosen.defines == (("GGML_RV_ARCH", "rv64gcv+zvfh"),)
    assert chosen.required == ("rv64gc", "v")
    assert data.canonical("rvv") == "v"


@pytest.mark.parametrize(("change", "message"), [
    (("implies: [rv64gc]", "implies: [rv32]"), "features.v.implies: unknown feature 'rv32'"),
    (("{parent: rva20,", "{parent: rva24,"), "levels.rva23: parent 'rva24' is not defined"),
    (("rva20: {features", "rva20: {parent: rva23, features"), "parent 'rva23' loops"),
    (("foreign-host-level: rva20", "foreign-host-level: v9"), "is not one of its levels"),
    (("rva23: {parent: rva20, features: [v], march: rv64gcv}",
      "rva23: {parent: rva20, features: [v]}"), "every level needs a march value"),
    (("aliases: [rvv]", "aliases: [rv64gc]"), "alias 'rv64gc' already names"),
    (("zvfh: [v]", "zvfh: [vector]"), "ggml-options.zvfh: unknown feature 'vector'"),
])
def test_a_broken_data_file_is_refused_with_its_path(
        tmp_path: Path, change: tuple[str, str], message: str) -> None:
    path = tmp_path / "cpu.yaml"
    text = RISCV
    assert change[0] in text
    path.write_text(text.replace(*change))
    with pytest.raises(ConfigError, match=message) as exc:
        load(path)
    assert exc.value.path == path


def test_configuration_names_only_known_features(tmp_path: Path, capsys: object) -> None:
    """avoid-cpu-features is checked against the data: a typo gets a suggestion."""
    from tests.unit.helpers import copy_project, run_cli

    copy_project(tmp_path)
    common = tmp_path / "recipes" / "common.yaml"
    common.write_text(common.read_text().replace("features: [amx_tile, amx_int8",
                                                 "features: [amx_tile, amx_int9"))
    code, _, err = run_cli(capsys, "--matrix", str(tmp_path / "build_matrix.yaml"), "plan",
                           "--target", "cpu")
    assert code == 3, err
    assert "common.yaml" in err and "amx_int9" in err and "did you mean 'amx_int8'" in err
