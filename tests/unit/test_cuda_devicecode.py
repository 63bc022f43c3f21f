"""The device code of CUDA artifacts: cuobjdump listings, what gpu-archs asks for, which GPUs
the code covers, and the refusals that follow (captured listings; the real compile is in
tests/integration/test_cuda_toolkits.py)."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from buildtool import cmd
from buildtool.backends import REGISTRY, cuda_devicecode
from buildtool.errors import ExitCode, HostIncompatibleError
from buildtool.records import DeviceCode, GpuRecord
from buildtool.verify import smoke
from tests.unit.helpers import manifest

# `cuobjdump --list-elf --list-ptx libggml-cuda.so` of a cublas12 build (CUDA 12.4) with
# gpu-archs 75-virtual;80-virtual;86-real;89-real;90-virtual: two fatbins, cubins repeated
LISTING = """\
ELF file    1: libggml-cuda.1.sm_86.cubin
ELF file    2: libggml-cuda.2.sm_89.cubin
ELF file    3: libggml-cuda.3.sm_86.cubin
ELF file    4: libggml-cuda.4.sm_89.cubin
PTX file    1: libggml-cuda.1.sm_75.ptx
PTX file    2: libggml-cuda.2.sm_80.ptx
PTX file    3: libggml-cuda.3.sm_90.ptx
"""
ARCHS = ("75-virtual", "80-virtual", "86-real", "89-real", "90-virtual")


def test_a_listing_is_read_into_sass_and_ptx() -> None:
    code = cuda_devicecode.parse_listing(LISTING)
    assert code == DeviceCode(sass=("86", "89"), ptx=("75", "80", "90"))
    blackwell = cuda_devicecode.parse_listing("ELF file    1: x.1.sm_120a.cubin\n"
                                              "ELF file    2: x.2.sm_100.cubin\n")
    assert blackwell.sass == ("100", "120a")
    assert cuda_devicecode.parse_listing("cuobjdump info    : File 'x' does not contain "
                                         "device code\n") == DeviceCode()


def test_what_gpu_archs_asks_for() -> None:
    assert cuda_devicecode.expected(ARCHS) == DeviceCode(sass=("86", "89"),
                                                         ptx=("75", "80", "90"))
    assert cuda_devicecode.expected(["86", "120a-real"]) == DeviceCode(sass=("86", "120a"),
                                                                      ptx=("86",))
    assert cuda_devicecode.expected(["native"]) == DeviceCode()


@pytest.mark.parametrize(("capability", "how"), [
    ("8.6", "sm_86 SASS"),
    ("8.9", "sm_89 SASS"),
    ("8.7", "sm_86 SASS"),        # Orin: same major, later minor
    ("7.5", "compute_75 PTX (compiled by the driver)"),
    ("8.0", "compute_80 PTX (compiled by the driver)"),
    ("9.0", "compute_90 PTX (compiled by the driver)"),
    ("12.0", "compute_90 PTX (compiled by the driver)"),  # Blackwell by JIT
    ("7.0", None),                # V100: older than every architecture carried
    ("6.1", None),
])
def test_which_gpus_the_code_covers(capability: str, how: str | None) -> None:
    code = cuda_devicecode.parse_listing(LISTING)
    assert cuda_devicecode.coverage(code, capability) == how


def test_architecture_specific_code_runs_on_its_own_capability_only() -> None:
    code = DeviceCode(sass=("90a", "120a"))
    assert cuda_devicecode.coverage(code, "9.0") == "sm_90a SASS"
    assert cuda_devicecode.coverage(code, "12.0") == "sm_120a SASS"
    assert cuda_devicecode.coverage(code, "12.1") is None
    assert cuda_devicecode.covered_gpus(code) == "9.0, 12.0 natively"
    assert cuda_devicecode.covered_gpus(cuda_devicecode.parse_listing(LISTING)) == \
        "8.6+, 8.9+ natively, >= 7.5 by JIT"


def _fake_cuobjdump(monkeypatch: pytest.MonkeyPatch, listings: dict[str, str]) -> Path:
    """cuobjdump's answers, captured: a listing per file name, else "no device code"."""
    def capture_all(argv: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        name = Path(argv[-1]).name
        if name in listings:
            return subprocess.CompletedProcess(argv, 0, listings[name], "")
        return subprocess.CompletedProcess(
            argv, 255, f"cuobjdump info    : File '{argv[-1]}' does not contain device code\n",
            "")

    monkeypatch.setattr(cmd, "capture_all", capture_all)
    return Path("/opt/cuda/bin/cuobjdump")


def test_the_audit_holds_the_listing_against_gpu_archs(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    lib = tmp_path / "libggml-cuda.so"
    other = tmp_path / "libllama.so"
    lib.write_bytes(b"\x7fELF")
    other.write_bytes(b"\x7fELF")
    tool = _fake_cuobjdump(monkeypatch, {"libggml-cuda.so": LISTING})
    record = cuda_devicecode.audit([lib, other], cuobjdump=tool, tool="cuobjdump 12.4",
                                   toolkit="12.4", gpu_archs=ARCHS)
    assert record.verdict == "pass", record.violations
    assert set(record.files) == {"libggml-cuda.so"}  # libllama carries none
    assert (record.min_driver, record.min_driver_ptx) == ("525.60.13", "550.54.14")
    assert record.summary == ("SASS sm_86, sm_89; PTX compute_75, compute_80, compute_90: GPUs "
                              "of compute capability 8.6+, 8.9+ natively, >= 7.5 by JIT; "
                              "driver >= 525.60.13")
    # the build asked for Hopper SASS too: the library lacks it, and carries PTX it did not ask
    wrong = cuda_devicecode.audit([lib], cuobjdump=tool, tool="cuobjdump 12.4", toolkit="12.4",
                                  gpu_archs=("86-real", "89-real", "90-real", "75-virtual"))
    assert wrong.verdict == "fail"
    assert wrong.violations == (
        "libggml-cuda.so lacks sm_90 SASS",
        "libggml-cuda.so carries compute_80 PTX, compute_90 PTX, which gpu-archs does not "
        "name")
    none = cuda_devicecode.audit([other], cuobjdump=tool, tool="cuobjdump 12.4",
                                 toolkit="12.4", gpu_archs=ARCHS)
    assert none.violations == ("no shipped file carries device code",)


def test_a_gpu_the_code_does_not_cover_is_refused_before_running(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = tmp_path / "libggml-cuda.so"
    lib.write_bytes(b"\x7fELF")
    record = cuda_devicecode.audit([lib], cuobjdump=_fake_cuobjdump(
        monkeypatch, {"libggml-cuda.so": LISTING}), tool="cuobjdump", toolkit="12.4",
        gpu_archs=ARCHS)
    m = dataclasses.replace(manifest("cublas12", family="cuda", recipe="cuda", backend="CUDA",
                                     gpu=True), device_code=record)
    v100 = GpuRecord(vendor="NVIDIA", name="Tesla V100-SXM2-16GB", compute_capability="7.0")
    h100 = GpuRecord(vendor="NVIDIA", name="NVIDIA H100 80GB HBM3", compute_capability="9.0")
    with pytest.raises(HostIncompatibleError) as info:
        smoke.check_device_code(m, [v100])
    assert info.value.exit_code == ExitCode.HOST_INCOMPATIBLE
    assert "no device code for Tesla V100-SXM2-16GB (compute capability 7.0)" in \
        info.value.message
    assert "SASS sm_86, sm_89; PTX compute_75, compute_80, compute_90" in info.value.message
    smoke.check_device_code(m, [v100, h100])  # one GPU it covers is enough
    # an old driver that does not say the capability: not refused (the device check decides)
    smoke.check_device_code(m, [dataclasses.replace(v100, compute_capability=None)])
    assert REGISTRY["cuda"].device_fit(record, [v100]) is not None
    assert REGISTRY["vulkan"].device_fit(record, [v100]) is None  # no ahead-of-time code


def test_hostile_device_code_in_a_manifest_is_refused_where_it_is_read() -> None:
    """An architecture or a compute capability that is no such thing (a damaged or forged
    manifest, a lab result file) stops at the boundary, naming the file and the field."""
    import json

    from buildtool import records
    from buildtool.errors import DataError
    from buildtool.records import Manifest
    from tests.unit.helpers import manifest_data

    data = manifest_data("cublas12", family="cuda", recipe="cuda", backend="CUDA", gpu=True)
    data["device_code"] = {"verdict": "pass", "tool": "cuobjdump",
                           "files": {"libggml-cuda.so": {"sass": ["86", "abc"]}}}
    with pytest.raises(DataError, match=r"m\.json: device_code\.files\.libggml-cuda\.so\.sass"
                                        r"\[1\]: 'abc': expected a GPU architecture"):
        records.from_text(Manifest, json.dumps(data), "m.json")
    data["device_code"]["files"] = {"../evil.so": {"sass": ["86"]}}
    with pytest.raises(DataError, match=r"device_code\.files"):
        records.from_text(Manifest, json.dumps(data), "m.json")
    with pytest.raises(DataError, match=r"'8\.6\.x': expected a compute capability"):
        records.from_data(GpuRecord, {"vendor": "NVIDIA", "name": "g",
                                      "compute_capability": "8.6.x"}, "lab.json")
    # cuobjdump printing something that is no architecture lists nothing for it
    assert cuda_devicecode.parse_listing("ELF file    1: x.1.sm_5.cubin\n"
                                         "ELF file    2: x.2.sm_86;rm.cubin\n") == DeviceCode()
