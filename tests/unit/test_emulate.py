"""Emulated CPU models: which models a claim covers, the variant ggml's loader must choose on
each, refusal before running, and the platform's models and ABI floor in the cascade.
(The models' features are checked against QEMU itself in tests/integration/test_claims.py.)"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from buildtool import cmd, records
from buildtool.artifacts.base import Subject
from buildtool.config.resolve import Overrides, parse_abi_floor
from buildtool.cpudata import CPU
from buildtool.errors import (
    ConfigError,
    ExitCode,
    HostIncompatibleError,
    ToolchainError,
    UsageError,
)
from buildtool.records import AbiVersions, CpuClaim, Manifest
from buildtool.verify import emulate, smoke
from tests.unit.release_data import base_manifest
from tests.unit.test_resolve import host, res

# what ggml's loader prints when it picks a CPU variant (captured from an all-variants build)
LOADED = ("load_backend: loaded CPU backend from /tmp/buildtool-smoke-x/llama.cpp-b11312-cpu-"
          "linux-x86_64/libggml-cpu-sandybridge.so\n")


def _manifest(policy: str, required: tuple[str, ...],
              dropped: tuple[str, ...] = ()) -> Manifest:
    m = records.from_data(Manifest, {**base_manifest("cpu"), "artifact": "a", "kind": "tarball"},
                          "test")
    return dataclasses.replace(m, cpu=CpuClaim(policy=policy, required_features=required,
                                               dropped_variants=dropped))


def test_models_are_ordered_and_their_levels_follow_from_their_features() -> None:
    levels = {m: CPU.level_of(arch, CPU.model_features(m)) for m in CPU.model_names()
              if (arch := CPU.model_arch(m))}
    assert levels == {"qemu64": "x86-64", "Nehalem": "x86-64-v2", "SandyBridge": "x86-64-v2",
                      "IvyBridge": "x86-64-v2", "Haswell": "x86-64-v3",
                      "Skylake-Server": "x86-64-v4",
                      # AT_HWCAP under `qemu-aarch64 -cpu NAME` (QEMU 7.2)
                      "cortex-a53": "armv8.0", "cortex-a72": "armv8.0",
                      "cortex-a76": "armv8.2", "neoverse-n1": "armv8.2",
                      "a64fx": "armv8.0",  # SVE without dotprod
                      "max": "armv8.6"}
    assert CPU.unemulated("Haswell") == ()
    assert "avx512f" in CPU.unemulated("Skylake-Server")


def test_the_models_a_claim_covers_and_the_lowest_it_must_be_proven_on() -> None:
    v3 = CPU.level_features("x86-64-v3")
    assert CPU.covering_models("x86_64", v3) == ("Haswell", "Skylake-Server")
    assert CPU.lowest_model("x86_64", v3) == "Haswell"
    assert CPU.lowest_model("x86_64", ["sse2"]) == "qemu64"
    assert CPU.lowest_model("x86_64", ["avx", "f16c"]) == "IvyBridge"
    # AVX-512 claims: covered only by a model the emulator cannot execute
    assert CPU.lowest_model("x86_64", ["avx512f"]) is None
    listed = ["qemu64", "Nehalem", "SandyBridge", "IvyBridge", "Haswell"]
    assert emulate.claimed_models(_manifest("x86-64-v3", tuple(sorted(v3))), listed) == \
        ["Haswell"]
    assert emulate.claimed_models(_manifest("all-variants", ("sse2",)), listed) == listed


@pytest.mark.parametrize(("model", "variant"), [
    ("qemu64", "x64"), ("Nehalem", "sse42"), ("SandyBridge", "sandybridge"),
    ("IvyBridge", "ivybridge"), ("Haswell", "haswell"), ("Skylake-Server", "skylakex")])
def test_the_variant_the_loader_must_choose_on_each_model(model: str, variant: str) -> None:
    m = _manifest("all-variants", ("sse2",))
    assert emulate.expected_variant(m, CPU.model_features(model)) == variant
    # a tuned build has no variants to choose from
    assert emulate.expected_variant(_manifest("x86-64-v3", ("avx2",)),
                                    CPU.model_features(model)) is None


def _arm(policy: str, required: tuple[str, ...]) -> Manifest:
    return dataclasses.replace(_manifest(policy, required), platform="linux-aarch64")


@pytest.mark.parametrize(("model", "variant"), [
    ("cortex-a53", "armv8.0_1"), ("neoverse-n1", "armv8.2_2"), ("a64fx", "armv8.0_1"),
    # ggml's loader weighs SME (1<<6) over SVE2 (1<<5): both armv9.2 variants fit, the one
    # built for SVE2 too scores highest
    ("max", "armv9.2_2")])
def test_the_arm64_variant_the_loader_must_choose(model: str, variant: str) -> None:
    assert emulate.expected_variant(_arm("all-variants", ("neon",)),
                                    CPU.model_features(model)) == variant


def test_arm64_claims_and_refusals() -> None:
    v82 = _arm("armv8.2", tuple(sorted(CPU.level_features("armv8.2"))))
    listed = ["cortex-a53", "neoverse-n1", "max"]
    assert emulate.claimed_models(v82, listed) == ["neoverse-n1", "max"]
    assert emulate.main_model(v82) == "max"
    # the release gate asks for a run on the lowest model a claim covers: the matrix's
    assert CPU.lowest_model("aarch64", v82.cpu.required_features) == "neoverse-n1"
    assert CPU.lowest_model("aarch64", ["neon"]) == "cortex-a53"
    with pytest.raises(HostIncompatibleError, match="CPU model cortex-a53 lacks: dotprod, fp16"):
        smoke.refuse_models(v82, ["cortex-a53"], run_anyway=False)
    with pytest.raises(UsageError, match="CPU model 'Haswell' is x86_64"):
        emulate.check_models(v82, ["Haswell"])


def test_a_foreign_artifact_runs_under_its_emulator_with_the_sysroot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUILDTOOL_CACHE", str(tmp_path / "cache"))
    m = _arm("armv8.2", tuple(sorted(CPU.level_features("armv8.2"))))
    subject = Subject(kind="tarball", manifest=m, bench=tmp_path / "llama-bench",
                      quantize=None, lib_dir=tmp_path)
    monkeypatch.setattr(cmd, "which", lambda name, path=None: f"/usr/bin/{name}")
    with pytest.raises(ToolchainError, match="needs their C library") as info:
        emulate.foreign_subject(subject)
    assert info.value.hint == "buildtool toolchain install sysroot-linux-aarch64"
    root = tmp_path / "cache/toolchains/sysroot-linux-aarch64-bullseye"
    root.mkdir(parents=True)
    (root / "sysroot.json").write_text("{}")
    wrapped = emulate.foreign_subject(subject)
    assert wrapped.emulator_root == root
    assert wrapped.command(["llama-bench", "-m", "x"], {}) == [
        "/usr/bin/qemu-aarch64", "-L", str(root), "-cpu", "max", "llama-bench", "-m", "x"]
    assert emulate.require(wrapped) == "/usr/bin/qemu-aarch64"


def test_a_dropped_variant_is_not_expected() -> None:
    m = _manifest("all-variants", ("sse2",), dropped=("haswell",))
    assert emulate.expected_variant(m, CPU.model_features("Haswell")) == "piledriver"


def test_the_loaded_variant_is_read_from_ggmls_log() -> None:
    assert emulate.loaded_variant("noise\n" + LOADED) == "sandybridge"
    assert emulate.loaded_variant("load_backend: loaded RPC backend from x.so\n") is None
    # arm64 variant names carry the architecture version's dot
    assert emulate.loaded_variant("load_backend: loaded CPU backend from /x/libggml-cpu-"
                                  "armv9.2_2.so\n") == "armv9.2_2"


def test_models_are_checked_against_the_artifact() -> None:
    m = _manifest("all-variants", ("sse2",))
    assert emulate.check_models(m, ["Haswell", "qemu64", "Haswell"]) == ["Haswell", "qemu64"]
    with pytest.raises(UsageError, match="unknown CPU model 'Pentium4'; x86_64 models: qemu64"):
        emulate.check_models(m, ["Pentium4"])


def test_a_model_lacking_a_required_feature_is_refused_before_running() -> None:
    v3 = _manifest("x86-64-v3", tuple(sorted(CPU.level_features("x86-64-v3"))))
    with pytest.raises(HostIncompatibleError) as info:
        smoke.refuse_models(v3, ["Haswell", "Nehalem"], run_anyway=False)
    assert info.value.exit_code == ExitCode.HOST_INCOMPATIBLE
    assert "CPU model Nehalem lacks: avx, avx2, bmi1, bmi2, f16c, fma, lzcnt, movbe, xsave" \
        in info.value.message
    assert "Haswell" not in info.value.message
    smoke.refuse_models(v3, ["Nehalem"], run_anyway=True)  # runs, to die of SIGILL
    smoke.refuse_models(v3, ["Haswell"], run_anyway=False)


def test_the_platform_declares_its_floor_and_models(data: Path, fake_tools: object,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    rt = res("cpu", host(data))
    assert rt.abi_floor == AbiVersions(glibc="2.35", libstdcxx="3.4.30", cxxabi="1.3.13")
    assert rt.origins["abi_floor"] == "build_matrix.yaml:platforms.linux-x86_64"
    assert rt.cpu_models == ("qemu64", "Nehalem", "SandyBridge", "IvyBridge", "Haswell")
    env = res("cpu", host(data), env={"BUILDTOOL_ABI_FLOOR": "glibc=2.31"})
    assert env.abi_floor == AbiVersions(glibc="2.31")
    assert env.origins["abi_floor"] == "environment BUILDTOOL_ABI_FLOOR"
    cli = res("cpu", host(data), env={"BUILDTOOL_ABI_FLOOR": "glibc=2.31"},
              overrides=Overrides(abi_floor=parse_abi_floor("glibc=2.28,libstdcxx=3.4.25",
                                                            "--abi-floor")))
    assert cli.abi_floor == AbiVersions(glibc="2.28", libstdcxx="3.4.25")
    assert cli.origins["abi_floor"] == "--abi-floor"
    with pytest.raises(ConfigError, match=r"'musl=1\.2' is not FAMILY=VERSION"):
        parse_abi_floor("glibc=2.31,musl=1.2", "--abi-floor")
    with pytest.raises(ConfigError, match="'glibc=two' is not FAMILY=VERSION"):
        parse_abi_floor("glibc=two", "environment BUILDTOOL_ABI_FLOOR")


def test_emulation_needs_a_subject_run_here_and_the_emulator(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = _manifest("all-variants", ("sse2",))
    here = Subject(kind="tarball", manifest=m, bench=tmp_path / "llama-bench", quantize=None,
                   lib_dir=tmp_path)
    monkeypatch.setattr(cmd, "which", lambda name, path=None: f"/usr/bin/{name}")
    assert emulate.require(here) == "/usr/bin/qemu-x86_64"
    boxed = dataclasses.replace(here, kind="image", wrap=lambda argv, env: argv)
    with pytest.raises(UsageError, match="images run in a container or another root"):
        emulate.require(boxed)
    monkeypatch.setattr(cmd, "which", lambda name, path=None: None)
    with pytest.raises(ToolchainError, match="qemu-x86_64 is not installed") as info:
        emulate.require(here)
    assert info.value.hint == "apt-get install qemu-user (Debian, Ubuntu)"


def test_why_no_model_proves_a_claim() -> None:
    avx512 = _manifest("host", ("avx512f", "avx512bw", "avx2"))
    assert emulate.why_none(avx512) == (
        "only Skylake-Server has what it requires, and qemu-x86_64 cannot execute avx512f, "
        "avx512bw, avx512cd, avx512dq, avx512vl")
    assert emulate.why_none(_manifest("host", ("amx_int8",))) == \
        "no x86_64 CPU model has everything it requires"
    assert emulate.why_none(_manifest("x86-64-v3", ("avx2",))) == (
        "the platform's models do not include Haswell, Skylake-Server, which have what it "
        "requires")
