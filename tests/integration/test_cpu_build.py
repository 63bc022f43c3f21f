"""Real builds of the vendored llama.cpp tree for the cpu target (slow: minutes).

The tree comes from the pinned sources (PyPI sdist) unless vendor/llama.cpp is already
present; builds go into a temporary build root and dist so every run really compiles
(ccache, when installed, makes repeated runs cheaper).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from buildtool import abi
from buildtool.cpudata import CPU
from buildtool.errors import ExitCode
from tests.integration.conftest import ROOT, buildtool


@pytest.fixture(scope="module")
def built(work: Path) -> dict[str, object]:
    dist, build_root = work / "dist", work / "build"
    proc = buildtool("build", "--target", "cpu", "--dist", str(dist), "--build-root",
                     str(build_root), "--json")
    assert proc.returncode == 0, proc.stderr[-4000:]
    outcome = json.loads(proc.stdout)
    return {"outcome": outcome, "stderr": proc.stderr, "dist": dist, "build_root": build_root}


def test_build_produces_a_verified_smoked_tarball(built: dict[str, object]) -> None:
    outcome = built["outcome"]
    assert isinstance(outcome, dict)
    artifact = Path(outcome["artifact"])
    assert artifact.is_file() and artifact.name.startswith("llama.cpp-b11312-cpu-host-")
    assert outcome["cached"] is False
    assert outcome["smoke"]["verdict"] == "pass"
    tests = {(t["test"], t["model_type"].split()[-1]): t for t in outcome["smoke"]["tests"]}
    # the synthetic F32 model and its Q4_0 copy made by the artifact's own llama-quantize
    assert set(tests) == {("pp32", "F32"), ("tg16", "F32"), ("pp32", "Q4_0"), ("tg16", "Q4_0")}
    assert all(t["avg_ts"] > 0 and t["backends"] == "CPU" for t in tests.values())
    # its outputs agree with the NumPy reference of the same weights, per type, by at least
    # an order of magnitude below each tolerance; quantizing costs what it should
    numerics = outcome["smoke"]["numerics"]
    assert numerics["verdict"] == "pass" and numerics["reference"].startswith("NumPy")
    assert [r["model_type"] for r in numerics["runs"]] == ["F32", "Q4_0", "Q4_K_M"]
    assert all(r["ok"] and r["nmse"] < r["max_nmse"] / 10 and r["top1"] > 0.8
               for r in numerics["runs"]), numerics
    assert all(0.005 < r["nmse_f32"] < 0.2 for r in numerics["runs"][1:]), numerics
    assert "[ok] outputs match the reference: F32 NMSE" in str(built["stderr"])
    # llama-bench reports the pinned commit, not "unknown" (no .git in the tree)
    assert {t["build_commit"] for t in tests.values()} == {"0c1e57098"}
    stderr = str(built["stderr"])
    assert "==> configure cpu" in stderr
    assert "(100%)" in stderr  # plain progress lines (not a terminal)


def test_manifest_and_checksums(built: dict[str, object]) -> None:
    outcome = built["outcome"]
    assert isinstance(outcome, dict)
    artifact = Path(outcome["artifact"])
    dist = Path(str(built["dist"]))
    sums = dict(reversed(line.split("  ")) for line in (dist / "SHA256SUMS").read_text()
                .splitlines())
    assert sums[artifact.name] == hashlib.sha256(artifact.read_bytes()).hexdigest()
    outer = json.loads((dist / artifact.name.replace(".tar.gz", ".manifest.json")).read_text())
    assert outer["smoke"]["verdict"] == "pass"
    name = artifact.name.removesuffix(".tar.gz")
    with tarfile.open(artifact) as tf:
        manifest = json.load(tf.extractfile(f"{name}/manifest.json"))  # type: ignore[arg-type]
        names = set(tf.getnames())
        for rel, digest in manifest["files"].items():
            if digest.startswith("symlink:"):
                continue
            data = tf.extractfile(f"{name}/{rel}").read()  # type: ignore[union-attr]
            assert hashlib.sha256(data).hexdigest() == digest, rel
    for exe in ("llama-server", "llama-cli", "llama-bench", "llama-quantize", "llama-results"):
        assert f"{name}/{exe}" in names
    assert any(n.startswith(f"{name}/libllama.so") for n in names)
    assert manifest["llama_cpp"]["source_sha256"] in (
        "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e", None)
    assert manifest["cmake_defines"]["GGML_NATIVE"] == "OFF"
    assert "avx2" in manifest["cpu"]["required_features"]
    assert manifest["toolchain"]["cmake"]["version"]
    # the ABI floor read from the binaries: this host's glibc/libstdc++ at most, within the
    # platform's declared floor, and the system libraries the binaries load
    system = abi.system_abi()
    floor = manifest["abi"]["floor"]
    assert manifest["abi"]["verdict"] == "pass"
    assert manifest["abi"]["declared"]["glibc"] == "2.35"
    assert abi.parse_version(floor["glibc"]) <= abi.parse_version(system.versions.glibc or "0")
    assert floor["libstdcxx"].startswith("3.4.")
    assert {"libc.so.6", "libstdc++.so.6"} <= set(manifest["abi"]["system_libraries"])
    assert not any(lib.startswith(("libllama", "libggml"))
                   for lib in manifest["abi"]["system_libraries"])  # it ships those


def _below_claim(required: list[str]) -> str:
    """The highest emulated CPU model that lacks something the artifact requires."""
    below = [m for m in CPU.covering_models("x86_64", ()) if not CPU.unemulated(m)
             and not set(required) <= CPU.model_features(m)]
    assert below, required
    return below[-1]


def test_a_model_below_the_claim_is_refused_and_forced_dies_of_sigill(
        built: dict[str, object]) -> None:
    outcome = built["outcome"]
    assert isinstance(outcome, dict)
    artifact = outcome["artifact"]
    manifest = json.loads(Path(artifact.replace(".tar.gz", ".manifest.json")).read_text())
    model = _below_claim(manifest["cpu"]["required_features"])
    refused = buildtool("smoke", artifact, "--cpu-model", model, "--no-record")
    assert refused.returncode == ExitCode.HOST_INCOMPATIBLE, refused.stderr[-2000:]
    assert f"CPU model {model} lacks:" in refused.stderr and "Traceback" not in refused.stderr
    assert "smoke llama.cpp" not in refused.stdout  # refused before anything ran
    forced = buildtool("smoke", artifact, "--cpu-model", model, "--run-anyway", "--json",
                       "--no-record")
    assert forced.returncode == ExitCode.SMOKE, forced.stderr[-2000:]
    result = json.loads(forced.stdout)
    (run,) = result["emulated"]
    assert run["model"] == model and run["verdict"] == "fail"
    assert run["reason"] == f"killed by SIGILL (illegal instruction) on {model}"
    # the native run on this host passed: only the emulated CPU failed
    assert all(c["ok"] for c in result["checks"] if c["name"] != "emulated CPU models")


def test_debian_11_refuses_a_tarball_built_on_debian_12(built: dict[str, object],
                                                        bullseye: Path) -> None:
    outcome = built["outcome"]
    assert isinstance(outcome, dict)
    proc = buildtool("smoke", outcome["artifact"], "--root", str(bullseye), "--no-record")
    assert proc.returncode == ExitCode.HOST_INCOMPATIBLE, proc.stderr[-2000:]
    assert f"needs a newer C library or C++ runtime than {bullseye} has" in proc.stderr
    assert "libc.so.6 here has 2.31" in proc.stderr and "libstdc++.so.6 here has 3.4.28" \
        in proc.stderr
    # never the dynamic loader's own words: nothing ran
    assert "not found" not in proc.stderr and "Traceback" not in proc.stderr
    # what the loader would have said, for the record: the same artifact run there anyway
    name = Path(outcome["artifact"]).name.removesuffix(".tar.gz")
    scratch = bullseye / "tmp" / "buildtool-test-loader"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        with tarfile.open(outcome["artifact"]) as tf:
            tf.extractall(scratch, filter="data")
        loader = subprocess.run(
            ["unshare", "--mount", "--fork", "--", "sh", "-c",
             'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"', str(bullseye),
             f"/tmp/buildtool-test-loader/{name}/llama-cli", "--version"],
            capture_output=True, text=True, timeout=60, check=False)
        assert loader.returncode != 0 and "version `GLIBC_2.3" in loader.stderr
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def test_binaries_run_from_any_directory(built: dict[str, object], tmp_path: Path) -> None:
    outcome = built["outcome"]
    assert isinstance(outcome, dict)
    with tarfile.open(outcome["artifact"]) as tf:
        tf.extractall(tmp_path, filter="data")
    (top,) = tmp_path.iterdir()
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    proc = subprocess.run([str(top / "llama-cli"), "--version"], cwd="/", env=env,
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "11312" in proc.stdout + proc.stderr


def test_unchanged_inputs_return_the_existing_artifact(built: dict[str, object]) -> None:
    proc = buildtool("build", "--target", "cpu", "--dist", str(built["dist"]), "--build-root",
                     str(built["build_root"]), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads(proc.stdout)
    outcome = built["outcome"]
    assert isinstance(outcome, dict)
    assert again["cached"] is True and again["artifact"] == outcome["artifact"]
    assert again["smoke"]["verdict"] == "pass"
    assert "configure" not in again["timings"]


def test_smoke_command(built: dict[str, object]) -> None:
    outcome = built["outcome"]
    assert isinstance(outcome, dict)
    proc = buildtool("smoke", str(outcome["artifact"]), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["verdict"] == "pass"
    assert [c["ok"] for c in result["checks"]] == [True] * 6
    names = [c["name"] for c in result["checks"]]
    assert "Q4_0 model ran" in names and "outputs match the reference" in names


def test_failed_compile_shows_tail_and_log_and_leaves_no_artifact(work: Path) -> None:
    dist = work / "dist-fail"
    # Valid for CMake's compiler checks (they do not use the Release flags), fatal for the
    # first real C++ translation unit.
    proc = buildtool("build", "--target", "cpu", "--no-smoke", "--dist", str(dist),
                     "--build-root", str(work / "build-fail"),
                     "-D", "CMAKE_CXX_FLAGS_RELEASE=-include /nonexistent/buildtool-missing.h")
    assert proc.returncode == ExitCode.BUILD, proc.stderr[-3000:]
    assert "compilation failed" in proc.stderr
    assert "buildtool-missing.h" in proc.stderr  # the tail of the log
    assert "full log: " in proc.stderr
    log = Path(proc.stderr.split("full log: ")[1].split()[0])
    assert log.is_file() and "buildtool-missing.h" in log.read_text()
    assert not list(dist.glob("*.tar.gz")) and not (dist / ".buildtool").exists()


def test_ctrl_c_leaves_nothing_that_looks_finished(work: Path) -> None:
    dist = work / "dist-int"
    proc = subprocess.Popen(
        # Ctrl-C as a terminal delivers it: a test run started as a background job inherits
        # SIGINT ignored, and Python would leave it ignored in the build
        [sys.executable, "-c", "import os, signal, sys; signal.signal(signal.SIGINT, "
         "signal.SIG_DFL); os.execv(sys.executable, [sys.executable, *sys.argv[1:]])",
         "-m", "buildtool", "build", "--target", "cpu", "--no-smoke",
         "--no-ccache", "--dist", str(dist), "--build-root", str(work / "build-int"),
         "--cpu", "x86-64-v2"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 600
    for line in proc.stdout:
        seen.append(line)
        if (line.strip().startswith("build ") and "/" in line) or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == ExitCode.INTERRUPTED, "".join(seen) + out
    assert "interrupted" in out
    assert not list(dist.glob("*.tar.gz")) and not list(dist.glob("*.manifest.json"))
