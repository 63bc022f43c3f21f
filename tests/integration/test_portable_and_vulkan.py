"""Real builds beyond the host-tuned cpu artifact: the portable all-variants CPU build and
the Vulkan target, smoke-tested on Mesa's lavapipe (a Vulkan device that is the CPU).

Needs glslc, the Vulkan loader and Mesa's drivers (`.ci/run` installs them) and Vulkan
headers >= 1.4 (`buildtool toolchain install vulkan-headers`, run here when missing).
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from buildtool.toolchains import discovery as toolchain
from tests.integration.conftest import buildtool


def _build(work: Path, target: str, *args: str) -> dict:  # type: ignore[type-arg]
    proc = buildtool("build", "--target", target, "--dist", str(work / f"dist-{target}"),
                     "--build-root", str(work / f"build-{target}"), "--json", *args)
    assert proc.returncode == 0, proc.stderr[-5000:]
    outcome: dict = json.loads(proc.stdout)  # type: ignore[type-arg]
    return outcome


def _manifest(artifact: str) -> dict:  # type: ignore[type-arg]
    name = Path(artifact).name.removesuffix(".tar.gz")
    with tarfile.open(artifact) as tf:
        data: dict = json.load(tf.extractfile(f"{name}/manifest.json"))  # type: ignore[arg-type,type-arg]
    return data


MODELS = ["qemu64", "Nehalem", "SandyBridge", "IvyBridge", "Haswell"]  # build_matrix.yaml
VARIANTS = ["x64", "sse42", "sandybridge", "ivybridge", "haswell"]  # what fits each best


def test_all_variants_cpu_build(work: Path) -> None:
    # the tarball and a wheel from the same build directory
    outcome = _build(work, "cpu", "--cpu", "all-variants", "--artifact", "tarball",
                     "--artifact", "wheel")
    assert Path(outcome["artifact"]).name == "llama.cpp-b11312-cpu-linux-x86_64.tar.gz"
    assert outcome["smoke"]["verdict"] == "pass"
    # both kinds ran on every emulated CPU model of the platform (its claim covers them
    # all), and ggml's loader chose the variant that fits each
    for made in outcome["artifacts"]:
        runs = made["smoke"]["emulated"]
        assert [r["model"] for r in runs] == MODELS, made["kind"]
        assert [r["verdict"] for r in runs] == ["pass"] * 5, runs
        assert [r["variant"] for r in runs] == VARIANTS == [r["expected_variant"]
                                                            for r in runs]
        assert all(t["avg_ts"] > 0 for r in runs for t in r["tests"])
        # each variant the loader chose computed what the reference says, every type
        assert all([n["model_type"] for n in r["numerics"]] == ["F32", "Q4_0", "Q4_K_M"]
                   and all(n["ok"] for n in r["numerics"]) for r in runs), runs
        assert made["smoke"]["numerics"]["verdict"] == "pass"
        assert made["smoke"]["system"]["glibc"]
    manifest = _manifest(outcome["artifact"])
    assert manifest["abi"]["verdict"] == "pass" and manifest["abi"]["floor"]["glibc"]
    assert manifest["cpu"]["policy"] == "all-variants"
    assert manifest["cpu"]["required_features"] == ["sse2"]
    files = manifest["isa_audit"]["files"]
    assert manifest["isa_audit"]["verdict"] == "pass"
    variants = {n for n in files if n.startswith("libggml-cpu-")}
    assert {"libggml-cpu-x64.so", "libggml-cpu-haswell.so", "libggml-cpu-skylakex.so",
            "libggml-cpu-zen4.so"} <= variants
    # left out: its AMX kernels die of SIGILL at this pin (recipes/common.yaml)
    assert "libggml-cpu-sapphirerapids.so" not in variants
    assert manifest["cpu"]["dropped_variants"] == ["sapphirerapids"]
    # each variant library was held to its own level, and really uses it
    assert "avx2" in files["libggml-cpu-haswell.so"]["used"]
    assert "avx512f" not in files["libggml-cpu-haswell.so"]["allowed"]
    assert "avx512f" in files["libggml-cpu-skylakex.so"]["used"]
    assert files["libggml-cpu-x64.so"]["used"] == []
    assert all(not f["violations"] for f in files.values())


def test_vulkan_build_runs_on_a_vulkan_device(work: Path) -> None:
    if toolchain.best("vulkan-headers", ">=1.4") is None:
        proc = buildtool("toolchain", "install", "vulkan-headers")
        assert proc.returncode == 0, proc.stderr[-3000:]
    outcome = _build(work, "vulkan")
    smoke = outcome["smoke"]
    assert smoke["verdict"] == "pass" and smoke["waived"] == []
    names = [c["name"] for c in smoke["checks"]]
    assert "ran on a Vulkan device" in names and "layers offloaded" in names
    for test in smoke["tests"]:
        assert "Vulkan" in test["backends"].split(",")
        assert test["gpu_info"]  # lavapipe (llvmpipe) here; a real GPU elsewhere
        assert test["n_gpu_layers"] == 99
    # what the Vulkan device computed agrees with the CPU-free reference (measured on
    # lavapipe: F32 NMSE 6.8e-07, Q4_0 2.2e-05, Q4_K_M 2.8e-05)
    numerics = smoke["numerics"]
    assert numerics["verdict"] == "pass"
    assert [r["model_type"] for r in numerics["runs"]] == ["F32", "Q4_0", "Q4_K_M"]
    assert all(r["ok"] and r["nmse"] < r["max_nmse"] / 5 for r in numerics["runs"]), numerics
    manifest = _manifest(outcome["artifact"])
    assert manifest["cmake_defines"]["GGML_VULKAN"] == "ON"
    assert manifest["cmake_defines"]["Vulkan_INCLUDE_DIR"].endswith("/usr/include")
