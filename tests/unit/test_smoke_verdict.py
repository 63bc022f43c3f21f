"""The smoke verdict on llama-bench JSON, and the host-compatibility refusal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from buildtool.artifacts.base import check_host
from buildtool.cmd import describe_exit
from buildtool.detect.cpu import parse_proc_cpuinfo, parse_sysctl
from buildtool.errors import HostIncompatibleError
from buildtool.records import BenchTest, CheckRecord, SmokeRecord, Verdict
from buildtool.verify.smoke import (
    parse_bench,
    table,
    verdict,
    why_unloadable,
)
from tests.unit.helpers import manifest


def _captured(data: Path, name: str) -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = json.loads((data / "llama-bench" / name).read_text())
    return loaded


def records(data: Path) -> list[dict[str, Any]]:
    """llama-bench -o json output captured from a real cpu build on our VM."""
    return _captured(data, "cpu-host.json")


def as_run(recs: list[dict[str, Any]], *, backends: str, gpu_info: str,
           n_gpu_layers: int) -> list[dict[str, Any]]:
    """The captured records with the fields that say what ran replaced."""
    for r in recs:
        r.update(backends=backends, gpu_info=gpu_info, n_gpu_layers=n_gpu_layers)
    return recs


def failing(checks: tuple[Any, ...]) -> list[str]:
    return [c.name for c in checks if not c.ok]


def bench(recs: list[dict[str, Any]]) -> list[BenchTest]:
    """The records as the smoke reads llama-bench's output."""
    return parse_bench("llama-bench log line\n" + json.dumps(recs))


def test_real_cpu_output_passes(data: Path) -> None:
    recs = records(data)
    checks = verdict(bench(recs), backend="CPU", family="cpu", gpu=False)
    assert failing(checks) == []
    assert [c.name for c in checks] == ["prompt test ran", "generation test ran",
                                        "tokens/s > 0", "backend is CPU only"]


def test_missing_generation_test_fails(data: Path) -> None:
    recs = [r for r in records(data) if int(r["n_gen"]) == 0]
    assert failing(verdict(bench(recs), backend="CPU", family="cpu", gpu=False)) == [
        "generation test ran"]


def test_zero_speed_fails(data: Path) -> None:
    recs = records(data)
    recs[0]["avg_ts"] = 0.0
    assert failing(verdict(bench(recs), backend="CPU", family="cpu", gpu=False)) == ["tokens/s > 0"]


def test_empty_output_fails_everything() -> None:
    assert len(failing(verdict(bench([]), backend="CPU", family="cpu", gpu=False))) == 4


def test_gpu_backend_compiled_in_but_ran_on_cpu_fails(data: Path) -> None:
    """A CUDA build on a host without a GPU still says backends=CUDA: gpu_info decides."""
    recs = as_run(records(data), backends="CUDA", gpu_info="", n_gpu_layers=99)
    fails = failing(verdict(bench(recs), backend="CUDA", family="cuda", gpu=True))
    assert fails == ["ran on a CUDA device"]
    for r in recs:
        r["gpu_info"] = "NVIDIA H100 80GB HBM3"
    assert failing(verdict(bench(recs), backend="CUDA", family="cuda", gpu=True)) == []


def test_wrong_backend_fails(data: Path) -> None:
    recs = records(data)
    assert failing(verdict(bench(recs), backend="Vulkan", family="vulkan", gpu=False)) == [
        "backend is Vulkan"]
    for r in recs:
        r["backends"] = "Vulkan"
    # a cpu target that silently carries a GPU backend is not a cpu artifact
    assert failing(verdict(bench(recs), backend="CPU", family="cpu", gpu=False)) == [
        "backend is CPU only"]


def test_table_shows_tests_and_verdict(data: Path) -> None:
    recs = records(data)
    checks = verdict(bench(recs), backend="CPU", family="cpu", gpu=False)
    text = table(SmokeRecord(
        artifact="a.tar.gz", target="cpu", verdict=Verdict.PASS,
        tests=(BenchTest(test="pp32", backends="CPU", gpu_info="", avg_ts=512.25,
                         stddev_ts=3.0),),
        checks=tuple(CheckRecord(name=c.name, ok=c.ok, detail=c.detail) for c in checks)))
    assert "pp32" in text and "512.2 ± 3.0" in text and "verdict: PASS" in text


MANIFEST = manifest(artifact="llama.cpp-b11312-cpu-host-x86-64-v4-linux-x86_64",
                    platform="linux-x86_64",
                    cpu={"policy": "host", "required_features": ["sse4_2", "avx", "avx2", "fma",
                                                                  "f16c", "avx512f"]})


def test_host_without_avx512_is_refused_naming_the_feature(data: Path) -> None:
    zen3 = parse_proc_cpuinfo((data / "cpuinfo" / "linux-x86_64-ryzen9-5950x-zen3.txt")
                              .read_text(), "x86_64")
    with pytest.raises(HostIncompatibleError) as info:
        check_host(MANIFEST, zen3)
    assert "avx512f" in info.value.message and "avx2" not in info.value.message
    assert "AMD Ryzen 9 5950X" in info.value.message


def test_host_without_avx_lists_all_missing(data: Path) -> None:
    rosetta = parse_sysctl((data / "cpuinfo" / "macos-rosetta2-apple-m1-sysctl.txt").read_text(),
                           "x86_64")
    with pytest.raises(HostIncompatibleError, match="avx, avx2, fma, f16c, avx512f"):
        check_host(MANIFEST, rosetta)


def test_capable_host_and_wrong_arch(data: Path) -> None:
    gnr = parse_proc_cpuinfo((data / "cpuinfo" / "linux-x86_64-xeon6-graniterapids.txt")
                             .read_text(), "x86_64")
    check_host(MANIFEST, gnr)  # does not raise
    arm = parse_proc_cpuinfo((data / "cpuinfo" / "linux-aarch64-neoverse-n2.txt").read_text(),
                             "aarch64")
    with pytest.raises(HostIncompatibleError, match="built for linux-x86_64"):
        check_host(MANIFEST, arm)


def test_linux_host_without_avx_is_refused(data: Path) -> None:
    old = parse_proc_cpuinfo((data / "cpuinfo" / "linux-x86_64-core-i7-870-vm.txt").read_text(),
                             "x86_64")
    with pytest.raises(HostIncompatibleError) as info:
        check_host(MANIFEST, old)
    assert "sse4_2, avx, avx2, fma, f16c, avx512f" in info.value.message
    assert info.value.exit_code == 9


def test_cpu_fallback_only_passes_when_explicitly_allowed(data: Path) -> None:
    recs = as_run(records(data), backends="Vulkan", gpu_info="", n_gpu_layers=0)
    assert failing(verdict(bench(recs), backend="Vulkan", family="vulkan", gpu=True)) == [
        "ran on a Vulkan device", "layers offloaded"]
    checks = verdict(bench(recs), backend="Vulkan", family="vulkan", gpu=True,
                     allow_cpu_fallback=True)
    assert failing(checks) == []
    assert [c.name for c in checks if c.waived] == ["ran on a Vulkan device", "layers offloaded"]
    assert all("--allow-cpu-fallback" in c.detail for c in checks if c.waived)


def test_real_vulkan_run_on_lavapipe_passes(data: Path) -> None:
    recs = _captured(data, "vulkan-lavapipe.json")
    assert failing(verdict(bench(recs), backend="Vulkan", family="vulkan", gpu=True)) == []


def test_real_vulkan_build_without_a_device_fails(data: Path) -> None:
    """Captured: the same artifact with the device hidden. backends still says Vulkan."""
    recs = _captured(data, "vulkan-no-device.json")
    assert {r["backends"] for r in recs} == {"Vulkan"}
    assert failing(verdict(bench(recs), backend="Vulkan", family="vulkan", gpu=True)) == [
        "ran on a Vulkan device"]


def test_real_openvino_run_on_its_cpu_device_passes(data: Path) -> None:
    """Captured: the openvino tarball's llama-bench, ``-ngl 99``, on OpenVINO's CPU device."""
    recs = _captured(data, "openvino-cpu-device.json")
    assert {(r["backends"], r["gpu_info"]) for r in recs} == {("OPENVINO", "OpenVINO Runtime")}
    assert failing(verdict(bench(recs), backend="OPENVINO", family="openvino", gpu=True)) == []


def test_real_openvino_build_without_its_runtime_fails(data: Path) -> None:
    """Captured: the same tarball without libopenvino.so: libggml-openvino.so does not load,
    llama-bench runs everything on the CPU and still reports 99 layers "offloaded"."""
    recs = _captured(data, "openvino-runtime-missing.json")
    assert {(r["backends"], r["gpu_info"], r["n_gpu_layers"]) for r in recs} == {("CPU", "", 99)}
    assert failing(verdict(bench(recs), backend="OPENVINO", family="openvino", gpu=True)) == [
        "backend is OPENVINO", "ran on a OPENVINO device"]


def test_cuda_module_that_cannot_load_is_waived_only_with_its_reason(data: Path) -> None:
    """Captured: the cublas13 artifact (GGML_BACKEND_DL) on our machine without a driver —
    libggml-cuda.so does not load, so backends lists only the CPU."""
    recs = _captured(data, "cuda-dl-no-driver.json")
    assert {r["backends"] for r in recs} == {"CPU"}
    assert failing(verdict(bench(recs), backend="CUDA", family="cuda", gpu=True)) == [
        "backend is CUDA", "ran on a CUDA device"]
    # without knowing why the module is missing, the fallback does not cover it
    assert failing(verdict(bench(recs), backend="CUDA", family="cuda", gpu=True,
                           allow_cpu_fallback=True)) == ["backend is CUDA"]
    reason = "libggml-cuda.so is shipped but cannot load here: libcuda.so.1 not found"
    checks = verdict(bench(recs), backend="CUDA", family="cuda", gpu=True, allow_cpu_fallback=True,
                     unloadable=reason)
    assert failing(checks) == []
    waived = {c.name: c.detail for c in checks if c.waived}
    assert list(waived) == ["backend is CUDA", "ran on a CUDA device"]
    assert reason in waived["backend is CUDA"]


def test_why_unloadable_needs_the_module(tmp_path: Path) -> None:
    assert why_unloadable(tmp_path, "cuda") is None          # not shipped: nothing to excuse
    assert why_unloadable(tmp_path, "cpu") is None


def test_quantized_model_must_have_run(data: Path) -> None:
    f32 = records(data)
    assert failing(verdict(bench(f32), backend="CPU", family="cpu", gpu=False,
                           quantized="Q4_0")) == ["Q4_0 model ran"]
    q4 = records(data)
    for r in q4:
        r["model_type"] = "llama ?B Q4_0"
    checks = verdict(bench([*f32, *q4]), backend="CPU", family="cpu", gpu=False, quantized="Q4_0")
    assert failing(checks) == []
    assert "llama ?B Q4_0" in next(c.detail for c in checks if c.name == "Q4_0 model ran")


def test_sigill_is_explained() -> None:
    assert "illegal instruction" in describe_exit(-4)
    assert "illegal instruction" in describe_exit(132)
    assert describe_exit(-9) == "killed by signal 9" and describe_exit(3) == "exit code 3"


@pytest.mark.parametrize(("output", "fragment"), [
    ("no json at all", "printed no JSON array"),
    ("[1, 2, 3]", "llama-bench output: [0]: expected a mapping, got int"),
    ('[{"n_prompt": "many"}]', "[0].n_prompt: expected an integer"),
    ('[{"avg_ts": 1e400}]', "number out of range"),
    ('[{"avg_ts": NaN}]', "NaN is not a JSON number"),
    ('[{"samples_ts": 5}]', "[0].samples_ts: expected a list"),
    ('[{"n_prompt": -5}]', "must be at least 0"),
])
def test_junk_llama_bench_output_is_a_smoke_failure(output: str, fragment: str) -> None:
    from buildtool.errors import SmokeError

    with pytest.raises(SmokeError) as info:
        parse_bench("log\n" + output)
    assert fragment in info.value.message and info.value.exit_code == 8


def test_control_characters_from_llama_bench_are_neutralized() -> None:
    (t,) = parse_bench('[{"gpu_info": "evil\\u001b[2Jdevice", "n_prompt": 32, "n_gen": 0}]')
    assert t.gpu_info == "evil\ufffd[2Jdevice" and t.test == "pp32"
