"""Claims proven on the machines they name, with real emulators and real older systems:

* the CPU models of data/cpu.yaml are what QEMU's user-mode emulator says they are (a program
  asks CPUID under each x86-64 model, the kernel's hwcaps under each arm64 one);
* a tarball built in a Debian 11 build environment (``--build-env``) needs glibc 2.31 at most,
  runs its smoke inside the Debian 11 root file system and here (slow: a whole build in the
  older environment, ``nox -s slow``).

The refusals on the host-tuned artifact (Debian 11 root, models below its claim) are in
test_cpu_build.py, the runs of the portable artifact on every model in
test_portable_and_vulkan.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from buildtool import abi
from buildtool.cpudata import CPU
from tests.integration.conftest import buildtool

# what a program sees of the CPU: GCC's names for the features cpu.yaml spells otherwise
PROBE_NAMES = {"sse3": "sse3", "ssse3": "ssse3", "sse4_1": "sse4.1", "sse4_2": "sse4.2",
               "popcnt": "popcnt", "avx": "avx", "avx2": "avx2", "fma": "fma", "f16c": "f16c",
               "bmi1": "bmi", "bmi2": "bmi2", "movbe": "movbe", "lzcnt": "abm",
               "avx512f": "avx512f", "avx512bw": "avx512bw", "avx512_vnni": "avx512vnni",
               "avx_vnni": "avxvnni"}
_TCG_LACKS = re.compile(r"TCG doesn't support requested feature: CPUID\.[0-9A-F]+H:[A-Z]+"
                        r"\.([a-z0-9_-]+)")


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("probe")
    checks = "".join(f'if (__builtin_cpu_supports("{gcc}")) puts("{name}");\n'
                     for name, gcc in PROBE_NAMES.items())
    (d / "probe.c").write_text("#include <stdio.h>\nint main(void) {\n"
                               f"__builtin_cpu_init();\n{checks}return 0;\n}}\n")
    subprocess.run(["gcc", "-O1", "-o", str(d / "probe"), str(d / "probe.c")], check=True)
    return d / "probe"


@pytest.mark.parametrize("model", CPU.covering_models("x86_64", ()))
def test_each_cpu_model_is_what_the_emulator_says(model: str, probe: Path) -> None:
    emulator = CPU.emulator("x86_64")
    assert emulator and shutil.which(emulator), f"{emulator} is needed (.ci/run installs it)"
    done = subprocess.run([emulator, "-cpu", model, str(probe)], capture_output=True,
                          text=True, timeout=60, check=True)
    seen = set(done.stdout.split())
    lacks = {m.replace("-", "_") for m in _TCG_LACKS.findall(done.stderr)}
    listed = CPU.model_features(model)
    # what the data says the model has, the emulated CPUID reports, except what TCG lacks
    expected = {f for f in PROBE_NAMES if f in listed and f not in lacks}
    assert seen == expected, (model, done.stderr)
    # and what buildtool says cannot be emulated, the emulator says it cannot execute
    assert set(CPU.unemulated(model)) == {f for f in lacks if f in CPU.features}


# what an arm64 program sees of the CPU: the kernel's hwcap names (AT_HWCAP, AT_HWCAP2 bits)
HWCAP = {"neon": (1, 1), "lse": (1, 8), "fp16": (1, 10), "rdm": (1, 12), "dotprod": (1, 20),
         "sve": (1, 22), "sve2": (2, 1), "i8mm": (2, 13), "bf16": (2, 14), "sme": (2, 23)}


@pytest.fixture(scope="module")
def probe_a64(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from buildtool.toolchains import cross

    proc = buildtool("toolchain", "install", "sysroot-linux-aarch64", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    root = Path(proc.stdout.strip().rsplit(": ", 1)[1])
    tools = cross.cross_tools()
    assert tools["cc"] and tools["ld"], cross.INSTALL_CLANG
    d = tmp_path_factory.mktemp("probe-a64")
    checks = "".join(f'if ((getauxval({"AT_HWCAP" if word == 1 else "AT_HWCAP2"}) >> {bit}) '
                     f'& 1) puts("{name}");\n' for name, (word, bit) in HWCAP.items())
    (d / "probe.c").write_text("#include <stdio.h>\n#include <sys/auxv.h>\n"
                               f"int main(void) {{\n{checks}return 0;\n}}\n")
    subprocess.run([str(tools["cc"].path), "--target=aarch64-linux-gnu", f"--sysroot={root}",
                    f"--ld-path={tools['ld'].path}", "-O1", "-o", str(d / "probe"),
                    str(d / "probe.c")], check=True)
    return d / "probe", root


@pytest.mark.parametrize("model", CPU.covering_models("aarch64", ()))
def test_each_arm_cpu_model_is_what_the_emulator_says(model: str,
                                                      probe_a64: tuple[Path, Path]) -> None:
    probe, root = probe_a64
    emulator = CPU.emulator("aarch64")
    assert emulator and shutil.which(emulator), f"{emulator} is needed (.ci/run installs it)"
    done = subprocess.run([emulator, "-L", str(root), "-cpu", model, str(probe)],
                          capture_output=True, text=True, timeout=60, check=True)
    assert set(done.stdout.split()) == set(CPU.model_features(model)), (model, done.stderr)
    assert CPU.unemulated(model) == ()


@pytest.mark.slow
def test_a_tarball_built_in_debian_11_runs_there_and_here(work: Path, bullseye: Path) -> None:
    dist, build_root = work / "dist-bullseye", work / "build-bullseye"
    proc = buildtool("build", "--target", "cpu", "--cpu", "all-variants", "--build-env",
                     str(bullseye), "--abi-floor", "glibc=2.31,libstdcxx=3.4.28",
                     "--dist", str(dist), "--build-root", str(build_root), "--json")
    assert proc.returncode == 0, proc.stderr[-5000:]
    outcome = json.loads(proc.stdout)
    artifact = Path(outcome["artifact"])
    name = artifact.name.removesuffix(".tar.gz")
    with tarfile.open(artifact) as tf:
        manifest = json.load(tf.extractfile(f"{name}/manifest.json"))  # type: ignore[arg-type]
    floor = manifest["abi"]["floor"]
    assert abi.parse_version(floor["glibc"]) <= (2, 31)
    assert abi.parse_version(floor["libstdcxx"]) <= (3, 4, 28)
    assert manifest["abi"]["verdict"] == "pass"
    assert manifest["build_host"]["environment"].startswith("Debian GNU/Linux 11 (bullseye)")
    assert manifest["toolchain"]["cxx"]["path"] == "/usr/local/bin/c++"
    # the smoke here (Debian 12), on every emulated model, as the build ran it
    smoke = outcome["smoke"]
    assert smoke["verdict"] == "pass"
    assert [r["verdict"] for r in smoke["emulated"]] == ["pass"] * 5
    # and inside the Debian 11 root file system, against its own glibc
    inside = buildtool("smoke", str(artifact), "--root", str(bullseye), "--json",
                       "--no-record")
    assert inside.returncode == 0, inside.stderr[-3000:]
    result = json.loads(inside.stdout)
    assert result["verdict"] == "pass"
    assert result["system"]["glibc"] == "2.31" and result["system"]["root"] == str(bullseye)
