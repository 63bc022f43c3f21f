"""linux-aarch64 for real on this x86-64 machine: the arm64 sysroot provisioned from Debian,
the cpu target cross-compiled with clang (armv8.2: dotprod + fp16), its AArch64 code audited,
and the tarball and the wheel smoke-tested under qemu-aarch64 on the CPU models the claim
covers — and refused on the one it does not (Cortex-A53, armv8.0) before it could die of
SIGILL. The all-variants build (eight Arm variants, each chosen by ggml's loader on the model
it fits) is the slow test at the end (-m slow).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from buildtool.errors import ExitCode
from tests.integration.conftest import buildtool


@pytest.fixture(scope="module")
def sysroot() -> Path:
    proc = buildtool("toolchain", "install", "sysroot-linux-aarch64", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    root = Path(proc.stdout.strip().rsplit(": ", 1)[1])
    assert (root / "lib/aarch64-linux-gnu/libc.so.6").exists()
    assert (root / "lib/ld-linux-aarch64.so.1").exists()
    # absolute links were made relative: they resolve inside the sysroot
    assert not [p for p in root.rglob("*") if p.is_symlink() and str(p.readlink())[:1] == "/"]
    return root


@pytest.fixture(scope="module")
def cross(sysroot: Path, work: Path) -> dict[str, object]:
    dist, build_root = work / "arm64-dist", work / "arm64-build"
    proc = buildtool("build", "--target", "cpu", "--platform", "linux-aarch64", "--cpu",
                     "armv8.2", "--artifact", "tarball", "--artifact", "wheel", "--dist",
                     str(dist), "--build-root", str(build_root), "--json", timeout=3600)
    assert proc.returncode == 0, proc.stderr[-6000:]
    return {"outcome": json.loads(proc.stdout), "stderr": proc.stderr, "dist": dist,
            "build_root": build_root}


def _artifact(cross: dict[str, object], kind: str) -> dict[str, object]:
    outcome = cross["outcome"]
    assert isinstance(outcome, dict)
    return next(a for a in outcome["artifacts"] if a["kind"] == kind)


def _manifest(cross: dict[str, object]) -> dict[str, object]:
    tarball = str(_artifact(cross, "tarball")["artifact"])
    loaded: dict[str, object] = json.loads(
        Path(tarball.replace(".tar.gz", ".manifest.json")).read_text())
    return loaded


def test_the_cross_build_is_arm64_code_within_its_claim(cross: dict[str, object]) -> None:
    tarball = _artifact(cross, "tarball")
    assert Path(str(tarball["artifact"])).name == \
        "llama.cpp-b11312-cpu-armv8.2-linux-aarch64.tar.gz"
    manifest: dict = _manifest(cross)  # type: ignore[type-arg]
    assert manifest["platform"] == "linux-aarch64"
    assert manifest["cpu"]["required_features"] == ["neon", "dotprod", "fp16"]
    assert manifest["cpu"]["avoided_features"] == []  # the AMX workaround is x86-64's
    assert manifest["cmake_defines"]["GGML_CPU_ARM_ARCH"] == "armv8.2-a+dotprod+fp16"
    toolchain = manifest["toolchain"]
    assert toolchain["cc"]["path"].endswith("clang")
    assert toolchain["sysroot"]["version"].startswith("debian bullseye arm64")
    # every shipped ELF file was disassembled as AArch64 and stays within armv8.2
    audit = manifest["isa_audit"]
    assert audit["verdict"] == "pass"
    assert "llama-bench" in audit["files"]
    assert any(n.startswith("libggml-cpu.so") for n in audit["files"])
    assert manifest["build_host"]["platform"] == "linux-x86_64"  # cross-compiled
    used = {f for entry in audit["files"].values() for f in entry["used"]}
    assert {"dotprod", "fp16"} <= used and "sve" not in used
    # linked against Debian 11's glibc and libstdc++: what Ubuntu 20.04 (Jetson) has
    floor = manifest["abi"]["floor"]
    assert tuple(int(x) for x in floor["glibc"].split(".")) <= (2, 31)
    assert tuple(int(x) for x in floor["libstdcxx"].split(".")) <= (3, 4, 28)


def test_the_smoke_ran_under_qemu_on_the_models_the_claim_covers(
        cross: dict[str, object], sysroot: Path) -> None:
    for kind in ("tarball", "wheel"):
        smoke = _artifact(cross, kind)["smoke"]
        assert isinstance(smoke, dict)
        assert smoke["verdict"] == "pass", smoke
        # the main run: llama-bench under the emulator, on the sysroot's C library
        assert smoke["command"][:5] == [smoke["command"][0], "-L", str(sysroot), "-cpu", "max"]
        assert smoke["command"][0].endswith("qemu-aarch64")
        assert smoke["system"]["glibc"] == "2.31"
        runs = {r["model"]: r for r in smoke["emulated"]}
        # cortex-a53 (armv8.0) is not covered by the claim: not one of its proofs
        assert set(runs) == {"neoverse-n1", "max"}
        assert all(r["verdict"] == "pass" and r["emulator"] == "qemu-aarch64"
                   for r in runs.values())
        assert runs["neoverse-n1"]["level"] == "armv8.2"
        assert all(t["avg_ts"] > 0 for r in runs.values() for t in r["tests"])
        # the Arm kernels (NEON, dotprod; SVE under max) compute what the reference says
        assert smoke["numerics"]["verdict"] == "pass", smoke["numerics"]
        assert all(n["ok"] for r in runs.values() for n in r["numerics"]) and all(
            len(r["numerics"]) == 3 for r in runs.values()), runs


def test_the_wheel_is_manylinux_aarch64(cross: dict[str, object]) -> None:
    wheel = Path(str(_artifact(cross, "wheel")["artifact"]))
    assert wheel.name.endswith("_aarch64.whl") and "manylinux_2_" in wheel.name
    with zipfile.ZipFile(wheel) as zf:
        bench = zf.read("llama_cpp_bin_cpu/bin/llama-bench")
    assert bench[:4] == b"\x7fELF" and int.from_bytes(bench[18:20], "little") == 183  # AArch64


def test_an_armv8_2_artifact_is_refused_on_cortex_a53_and_dies_there_if_forced(
        cross: dict[str, object]) -> None:
    tarball = str(_artifact(cross, "tarball")["artifact"])
    refused = buildtool("smoke", tarball, "--cpu-model", "cortex-a53")
    assert refused.returncode == ExitCode.HOST_INCOMPATIBLE, refused.stderr
    assert "CPU model cortex-a53 lacks: dotprod, fp16" in refused.stderr
    forced = buildtool("smoke", tarball, "--cpu-model", "cortex-a53", "--run-anyway",
                       "--json")
    assert forced.returncode == ExitCode.SMOKE, forced.stderr[-2000:]
    result = json.loads(forced.stdout)
    (run,) = result["emulated"]
    assert run["verdict"] == "fail" and "SIGILL" in run["reason"]


@pytest.mark.slow
def test_all_variants_load_the_variant_each_arm_cpu_fits(sysroot: Path, work: Path) -> None:
    dist = work / "arm64-all-dist"
    proc = buildtool("build", "--target", "cpu", "--platform", "linux-aarch64", "--cpu",
                     "all-variants", "--dist", str(dist), "--build-root",
                     str(work / "arm64-build"), "--json", timeout=5400)
    assert proc.returncode == 0, proc.stderr[-6000:]
    outcome = json.loads(proc.stdout)
    manifest = json.loads(Path(outcome["artifact"].replace(".tar.gz", ".manifest.json"))
                          .read_text())
    files = manifest["isa_audit"]["files"]
    variants = sorted(n.removeprefix("libggml-cpu-").removesuffix(".so") for n in files
                      if n.startswith("libggml-cpu-"))
    assert variants == ["armv8.0_1", "armv8.2_1", "armv8.2_2", "armv8.2_3", "armv8.6_1",
                        "armv8.6_2", "armv9.2_1", "armv9.2_2"]
    assert "sme" in files["libggml-cpu-armv9.2_2.so"]["allowed"]
    runs = {r["model"]: r for r in outcome["smoke"]["emulated"]}
    assert {m: (r["verdict"], r["variant"]) for m, r in runs.items()} == {
        "cortex-a53": ("pass", "armv8.0_1"), "neoverse-n1": ("pass", "armv8.2_2"),
        "max": ("pass", "armv9.2_2")}
