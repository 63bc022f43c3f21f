"""The openvino target for real: OpenVINO provisioned from PyPI, ggml-openvino built, the
tarball smoke-tested on OpenVINO's CPU device (layers offloaded to it, not to ggml's CPU
backend), and the artifact's CPU claim checked on emulated CPUs.

Needs opencl-headers, ocl-icd-opencl-dev and qemu-user (`.ci/run` installs them) and PyPI for
the openvino wheel (`buildtool toolchain install openvino`, run here when missing).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from buildtool import cmd
from buildtool.errors import ExitCode
from buildtool.outputs import sidecar
from buildtool.toolchains import discovery as toolchain
from buildtool.verify.synthetic import cached_model
from tests.integration.conftest import buildtool

ARTIFACT = "llama.cpp-b11312-openvino-linux-x86_64"


@pytest.fixture(scope="module")
def built(work: Path) -> dict:  # type: ignore[type-arg]
    if toolchain.best("openvino", "==2026.4.1") is None:
        proc = buildtool("toolchain", "install", "openvino")
        assert proc.returncode == 0, proc.stderr[-3000:]
    proc = buildtool("build", "--target", "openvino", "--dist", str(work / "dist-openvino"),
                     "--build-root", str(work / "build-openvino"), "--json")
    assert proc.returncode == 0, proc.stderr[-5000:]
    outcome: dict = json.loads(proc.stdout)  # type: ignore[type-arg]
    return outcome


@pytest.fixture(scope="module")
def unpacked(built: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[type-arg]
    dest = tmp_path_factory.mktemp("openvino")
    with tarfile.open(built["artifact"]) as tf:
        tf.extractall(dest, filter="data")
    return dest / ARTIFACT


def test_it_ran_on_the_openvino_device(built: dict) -> None:  # type: ignore[type-arg]
    assert Path(built["artifact"]).name == f"{ARTIFACT}.tar.gz"
    smoke = built["smoke"]
    assert smoke["verdict"] == "pass" and smoke["waived"] == []
    names = [c["name"] for c in smoke["checks"]]
    assert {"backend is OPENVINO", "ran on a OPENVINO device", "layers offloaded"} <= set(names)
    assert {"Q4_0", "F32"} <= {t["model_type"].split()[-1] for t in smoke["tests"]}
    for test in smoke["tests"]:
        assert test["backends"].split(",") == ["OPENVINO"]
        assert test["gpu_info"] == "OpenVINO Runtime" and test["n_gpu_layers"] == 99


def test_the_tarball_carries_openvinos_runtime(built: dict, unpacked: Path) -> None:  # type: ignore[type-arg]
    manifest = json.loads((unpacked / "manifest.json").read_text())
    assert manifest["family"] == "openvino" and manifest["toolkit"] == "2026.4.1"
    assert manifest["toolchain"]["openvino"]["version"] == "2026.4.1"
    files = manifest["files"]
    for name in ("libopenvino.so.2641", "libopenvino_intel_cpu_plugin.so", "libtbb.so.12",
                 "libggml-openvino.so", "licenses/openvino/LICENSE",
                 "licenses/openvino/licensing/runtime-third-party-programs.txt"):
        assert name in files and (unpacked / name).is_file(), name
    assert not any("frontend" in name for name in files)  # model importers are left out
    # the programs find the runtime beside them, not in the toolchain they were built with
    dynamic = cmd.capture(["readelf", "-d", str(unpacked / "libggml-openvino.so")])
    assert "[$ORIGIN]" in dynamic and ".cache" not in dynamic


def test_the_claim_is_openvinos_floor_and_the_audit_held_it(built: dict, unpacked: Path) -> None:  # type: ignore[type-arg]
    manifest = json.loads((unpacked / "manifest.json").read_text())
    cpu = manifest["cpu"]
    assert cpu["policy"] == "all-variants" and cpu["level"] == "x86-64-v2"
    assert {"sse4_2", "ssse3", "popcnt"} <= set(cpu["required_features"])
    audit = manifest["isa_audit"]
    assert audit["verdict"] == "pass"
    cpu_plugin = audit["files"]["libopenvino_intel_cpu_plugin.so"]
    assert "avx512f" in cpu_plugin["waived"] and not cpu_plugin["violations"]
    assert "libopenvino.so.2641" in audit["files"]  # the bundled runtime is audited too
    gpu_plugin = audit["files"]["libopenvino_intel_gpu_plugin.so"]
    assert "sse4_1" in gpu_plugin["used"] and "sse4_2" in gpu_plugin["allowed"]


@pytest.mark.parametrize(("cpu", "runs"), [("Nehalem", True), ("Penryn", False)])
def test_the_claim_on_emulated_cpus(unpacked: Path, cpu: str, runs: bool) -> None:
    """x86-64-v2 is what the artifact needs: on an emulated Nehalem (SSE4.2, no AVX) it
    loads every OpenVINO plugin and computes on OpenVINO's CPU device; on a Penryn (SSE4.1)
    OpenVINO's runtime does not run."""
    qemu = shutil.which("qemu-x86_64")
    assert qemu, "qemu-user is needed (.ci/run installs it)"
    proc = subprocess.run(
        [qemu, "-cpu", cpu, str(unpacked / "llama-bench"), "-m", str(cached_model()),
         "-p", "16", "-n", "4", "-r", "1", "-t", "1", "-ngl", "99", "-o", "json"],
        capture_output=True, text=True, timeout=900, check=False,
        env={k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"})
    if runs:
        assert proc.returncode == 0, proc.stderr[-3000:]
        tests = json.loads(proc.stdout[proc.stdout.index("["):])
        assert {t["backends"] for t in tests} == {"OPENVINO"}
        assert "libggml-cpu-sse42.so" in proc.stderr  # ggml's loader picked the SSE4.2 variant
    else:
        assert proc.returncode != 0


def test_without_its_runtime_the_smoke_fails(unpacked: Path, tmp_path: Path) -> None:
    """A build whose backend module cannot load runs on ggml's CPU backend and still reports
    99 layers: the verdict says so instead of passing."""
    copy = tmp_path / ARTIFACT
    shutil.copytree(unpacked, copy, symlinks=True)
    (copy / "libopenvino.so.2641").unlink()
    proc = buildtool("smoke", str(copy), "--no-record")
    assert proc.returncode == ExitCode.SMOKE, proc.stdout + proc.stderr
    assert "libggml-openvino.so is shipped but cannot load here: libopenvino.so.2641 not found" \
        in proc.stdout + proc.stderr


def test_the_wheel_runs_on_the_openvino_wheel(built: dict, work: Path) -> None:  # type: ignore[type-arg]
    """The wheel bundles no OpenVINO: it depends on the openvino wheel of the same release,
    whose libraries its launcher puts on the loader's path; the smoke test installs both
    into a fresh virtual environment and runs on OpenVINO's CPU device."""
    proc = buildtool("build", "--target", "openvino", "--artifact", "wheel",
                     "--dist", str(work / "dist-openvino"),
                     "--build-root", str(work / "build-openvino"), "--json")
    assert proc.returncode == 0, proc.stderr[-5000:]
    outcome = json.loads(proc.stdout)
    assert outcome["smoke"]["verdict"] == "pass"
    assert {t["backends"] for t in outcome["smoke"]["tests"]} == {"OPENVINO"}
    wheel = Path(outcome["artifact"])
    manifest = json.loads(sidecar(wheel, "manifest").read_text())
    assert manifest["wheel"]["requires"] == ["openvino==2026.4.1"]
    assert manifest["wheel"]["library_dirs"] == ["openvino/libs"]
    assert manifest["repair"]["tag"].startswith("manylinux_")
    with zipfile.ZipFile(wheel) as zf:
        assert not [n for n in zf.namelist() if "libopenvino" in n]  # the dependency's
