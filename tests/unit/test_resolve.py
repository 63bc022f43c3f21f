"""Recipe → resolved target → CMake arguments, for all seven targets, with precedence."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.version import Version

from buildtool.config import preflight
from buildtool.config.plan import artifact_name, make_plan
from buildtool.config.project import Project, load_project
from buildtool.config.resolve import Overrides, ResolvedTarget, resolve
from buildtool.cpudata import CPU
from buildtool.detect.cpu import CpuInfo, parse_proc_cpuinfo
from buildtool.errors import ConfigError
from buildtool.source.vendor import load_lock
from buildtool.toolchains.discovery import Program
from tests.unit.helpers import ROOT, fake_cuda_tree

LOCK = load_lock(ROOT / "vendor" / "llama.cpp.lock.json")
PROJECT = load_project(ROOT)


def host(data: Path, name: str = "linux-x86_64-ryzen9-5950x-zen3.txt",
         machine: str = "x86_64") -> CpuInfo:
    return parse_proc_cpuinfo((data / "cpuinfo" / name).read_text(), machine)


def res(name: str, cpu: CpuInfo, *, platform: str = "linux-x86_64",
        overrides: Overrides = Overrides(), env: dict[str, str] | None = None,
        probe: bool = True) -> ResolvedTarget:
    return resolve(PROJECT, name, lock=LOCK, host_cpu=cpu, host_platform=platform,
                   overrides=overrides, env=env or {}, probe=probe)


COMMON = {"CMAKE_BUILD_TYPE": "Release", "BUILD_SHARED_LIBS": "ON", "GGML_NATIVE": "OFF",
          "LLAMA_BUILD_TESTS": "OFF", "LLAMA_USE_PREBUILT_UI": "OFF",
          "CMAKE_INSTALL_RPATH": "$ORIGIN", "CMAKE_BUILD_WITH_INSTALL_RPATH": "ON",
          "LLAMA_BUILD_COMMIT": "0c1e57098", "LLAMA_BUILD_NUMBER": "11312"}
ALL_VARIANTS = {"GGML_BACKEND_DL": "ON", "GGML_CPU_ALL_VARIANTS": "ON"}


def test_cpu_host_flags_are_explicit(data: Path, fake_tools: object) -> None:
    rt = res("cpu", host(data))
    d = dict(rt.defines)
    assert COMMON.items() <= d.items()
    assert {"GGML_AVX": "ON", "GGML_AVX2": "ON", "GGML_FMA": "ON", "GGML_F16C": "ON",
            "GGML_BMI2": "ON", "GGML_SSE42": "ON", "GGML_AVX512": "OFF",
            "GGML_AVX_VNNI": "OFF", "GGML_AMX_INT8": "OFF"}.items() <= d.items()
    assert rt.cpu_features == ("sse2", "sse4_2", "avx", "avx2", "bmi2", "fma", "f16c")
    assert rt.cpu_level == "x86-64-v3"
    assert "GGML_BACKEND_DL" not in d
    assert artifact_name(rt) == "llama.cpp-b11312-cpu-host-x86-64-v3-linux-x86_64"


def test_cpu_avx512_host_requires_every_avx512_subset(data: Path) -> None:
    rt = res("cpu", host(data, "linux-x86_64-xeon6-graniterapids.txt"))
    d = dict(rt.defines)
    assert d["GGML_AVX512"] == "ON" and d["GGML_AVX512_BF16"] == "ON"
    assert {"avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"} <= set(rt.cpu_features)


def test_known_defect_features_are_never_enabled(data: Path) -> None:
    """recipes/common.yaml avoids AMX at this pin (SIGILL in ggml's AMX matmul): an AMX host
    gets AMX off and no AMX requirement; all-variants leaves the sapphirerapids library out."""
    cpu = host(data, "linux-x86_64-xeon6-graniterapids.txt")
    assert {"amx_tile", "amx_int8"} <= cpu.features
    rt = res("cpu", cpu)
    d = dict(rt.defines)
    assert d["GGML_AMX_TILE"] == d["GGML_AMX_INT8"] == d["GGML_AMX_BF16"] == "OFF"
    assert not any(f.startswith("amx") for f in rt.cpu_features)
    assert rt.dropped_variants == ()
    (avoided,) = rt.to_json()["avoided_cpu_features"]
    assert "llama.cpp#26954" in avoided["reason"] and avoided["variants"] == ["sapphirerapids"]
    portable = res("cpu", cpu, overrides=Overrides(cpu="all-variants"))
    assert portable.dropped_variants == ("sapphirerapids",)
    # an explicit -D still wins (the user asked for it)
    forced = res("cpu", cpu, overrides=Overrides(defines=(("GGML_AMX_INT8", "ON"),)))
    assert forced.define("GGML_AMX_INT8") == "ON"


def test_a_workaround_applies_only_to_the_builds_it_names(data: Path) -> None:
    """An avoid-cpu-features entry with `fixed-in` no longer applies to a pin at or after it
    (and `since` to one before it): AMX is built again, the variant shipped again."""
    import dataclasses

    (amx,) = PROJECT.common.avoid_cpu_features
    assert amx.since is None and amx.fixed_in is None  # open upstream at this pin
    assert "still applies (open upstream" in amx.at(11312)
    fixed = dataclasses.replace(amx, since="b10000", fixed_in="b11400")
    project = dataclasses.replace(PROJECT, common=dataclasses.replace(
        PROJECT.common, avoid_cpu_features=(fixed,)))
    cpu = host(data, "linux-x86_64-xeon6-graniterapids.txt")
    for build, avoided in ((9999, False), (10000, True), (11399, True), (11400, False)):
        lock = dataclasses.replace(LOCK, build_number=build)
        rt = resolve(project, "cpu", lock=lock, host_cpu=cpu, host_platform="linux-x86_64",
                     overrides=Overrides(), env={}, probe=True)
        assert (rt.define("GGML_AMX_INT8") == "OFF") is avoided, build
        assert bool(rt.avoided) is avoided
        portable = resolve(project, "cpu", lock=lock, host_cpu=cpu,
                           host_platform="linux-x86_64",
                           overrides=Overrides(cpu="all-variants"), env={}, probe=True)
        assert (portable.dropped_variants == ("sapphirerapids",)) is avoided
    assert fixed.at(11400).endswith("fixed in b11400, inactive from b11400 on: drop it")
    assert "still applies (fixed in b11400)" in fixed.at(11000)
    assert "inactive at b9000 (the defect arrived in b10000)" in fixed.at(9000)


@pytest.mark.parametrize(("policy", "on", "off"), [
    ("x86-64-v2", {"GGML_SSE42"}, {"GGML_AVX", "GGML_AVX2", "GGML_FMA", "GGML_AVX512"}),
    ("x86-64-v3", {"GGML_AVX", "GGML_AVX2", "GGML_FMA", "GGML_F16C", "GGML_BMI2"},
     {"GGML_AVX512", "GGML_AVX_VNNI"}),
    ("x86-64-v4", {"GGML_AVX2", "GGML_AVX512"}, {"GGML_AVX512_VNNI", "GGML_AMX_TILE"}),
])
def test_named_levels(data: Path, policy: str, on: set[str], off: set[str]) -> None:
    rt = res("cpu", host(data), overrides=Overrides(cpu=policy))
    d = dict(rt.defines)
    assert all(d[k] == "ON" for k in on) and all(d[k] == "OFF" for k in off)
    assert rt.variant == policy


def test_all_variants(data: Path) -> None:
    rt = res("cpu", host(data), overrides=Overrides(cpu="all-variants"))
    d = dict(rt.defines)
    assert ALL_VARIANTS.items() <= d.items()
    assert "GGML_AVX2" not in d
    assert rt.cpu_features == ("sse2",)
    assert artifact_name(rt) == "llama.cpp-b11312-cpu-linux-x86_64"


def test_arm_host_uses_cpu_arm_arch(data: Path) -> None:
    cpu = host(data, "linux-aarch64-neoverse-n2.txt", "aarch64")
    rt = res("cpu", cpu, platform="linux-aarch64")
    assert rt.define("GGML_CPU_ARM_ARCH") == "armv8.6-a+dotprod+fp16+i8mm+sve"
    assert rt.cpu_features == ("neon", "dotprod", "fp16", "i8mm", "sve")


def test_precedence_env_then_cli(data: Path) -> None:
    cpu = host(data)
    assert res("cpu", cpu, env={"BUILDTOOL_CPU": "x86-64-v2"}).cpu_policy == "x86-64-v2"
    rt = res("cpu", cpu, env={"BUILDTOOL_CPU": "x86-64-v2"},
             overrides=Overrides(cpu="x86-64-v3", defines=(("GGML_AVX2", "OFF"),
                                                           ("LLAMA_OPENSSL", "ON"))))
    assert rt.cpu_policy == "x86-64-v3"
    assert rt.origins["cpu"] == "--cpu"
    assert rt.define("GGML_AVX2") == "OFF" and rt.origins["-DGGML_AVX2"] == "-D (command line)"
    assert rt.define("LLAMA_OPENSSL") == "ON"
    assert rt.origins["-DCMAKE_BUILD_TYPE"] == "recipes/common.yaml"


def test_bad_cpu_policy_from_env(data: Path) -> None:
    with pytest.raises(ConfigError) as info:
        res("cpu", host(data), env={"BUILDTOOL_CPU": "x86-64-v5"})
    assert "environment BUILDTOOL_CPU" in info.value.message


def _cuda(tools: dict[str, list[Program]], version: str, root: Path | str,
          lacking: tuple[str, ...] = ()) -> Path:
    """Announce an nvcc of ``version`` at ``root``; a Path root also gets a toolkit tree."""
    if isinstance(root, Path):
        fake_cuda_tree(root, lacking=lacking)
    tools.setdefault("nvcc", []).append(Program("nvcc", Path(root) / "bin" / "nvcc",
                                                Version(version)))
    return Path(root)


def test_cublas12_uses_the_matching_toolkit_explicitly(
        data: Path, fake_tools: dict[str, list[Program]], tmp_path: Path) -> None:
    _cuda(fake_tools, "13.0", tmp_path / "cuda-13.0")
    kit = _cuda(fake_tools, "12.4", tmp_path / "opt" / "cuda-12.4")
    rt = res("cublas12", host(data))
    d = dict(rt.defines)
    assert d["GGML_CUDA"] == "ON"
    assert d["CMAKE_CUDA_COMPILER"] == str(kit / "bin" / "nvcc")
    assert d["CUDAToolkit_ROOT"] == str(kit)
    assert d["CMAKE_CUDA_ARCHITECTURES"].endswith("86-real;89-real;90-virtual")
    assert ALL_VARIANTS.items() <= d.items()
    assert "CMAKE_CUDA_HOST_COMPILER" not in d
    assert preflight.check(rt) == []


def test_incomplete_toolkit_is_refused_with_what_it_lacks(
        data: Path, fake_tools: dict[str, list[Program]], tmp_path: Path) -> None:
    # /usr/local/cuda on our machines: nvcc 13.0 without cuBLAS
    bare = _cuda(fake_tools, "13.0", tmp_path / "cuda", lacking=("cuBLAS headers",
                                                                 "cuBLAS library"))
    rt = res("cublas13", host(data))
    (problem,) = preflight.check(rt)
    assert f"{bare} lacks cuBLAS headers, cuBLAS library" in problem.what
    assert "buildtool toolchain install cuda-13.0" in problem.fix
    # a complete one found later in the ranking is chosen instead
    good = _cuda(fake_tools, "13.0", tmp_path / "toolchains" / "cuda-13.0")
    rt = res("cublas13", host(data))
    assert preflight.check(rt) == []
    assert rt.define("CUDAToolkit_ROOT") == str(good)


def test_cublas11_stops_at_89_and_needs_gxx11(data: Path, tmp_path: Path,
                                              fake_tools: dict[str, list[Program]]) -> None:
    _cuda(fake_tools, "11.8", tmp_path / "cuda-11.8")
    rt = res("cublas11", host(data))
    d = dict(rt.defines)
    archs = d["CMAKE_CUDA_ARCHITECTURES"].split(";")
    assert archs[-1] == "89-real" and not any(a.startswith("90") for a in archs)
    assert d["CMAKE_CUDA_HOST_COMPILER"] == "g++-11"
    problems = preflight.check(rt)
    assert [p.fix for p in problems] == ["apt-get install g++-11"]
    fake_tools["g++-11"] = [Program("g++-11", Path("/usr/bin/g++-11"), Version("11.4.0"))]
    rt = res("cublas11", host(data))
    assert rt.define("CMAKE_CUDA_HOST_COMPILER") == "/usr/bin/g++-11"
    assert preflight.check(rt) == []


def test_wrong_cuda_version_is_refused_by_name(data: Path,
                                               fake_tools: dict[str, list[Program]]) -> None:
    _cuda(fake_tools, "13.0", "/usr/local/cuda")
    rt = res("cublas12", host(data))
    assert rt.define("CMAKE_CUDA_COMPILER") == "/usr/local/cuda-12.4/bin/nvcc"  # never 13's
    (problem,) = preflight.check(rt)
    assert "nvcc ==12.*" in problem.what and "nvcc 13.0 at /usr/local/cuda/bin/nvcc" in problem.what


def test_hipblas(data: Path, fake_tools: object) -> None:
    rt = res("hipblas", host(data))
    d = dict(rt.defines)
    assert d["GGML_HIP"] == "ON" and "gfx1100" in d["GPU_TARGETS"].split(";")
    assert ALL_VARIANTS.items() <= d.items()
    assert dict(rt.configure_env) == {"HIPCXX": "/opt/rocm/llvm/bin/clang",
                                      "HIP_PATH": "/opt/rocm"}
    whats = [p.what for p in preflight.check(rt)]
    assert any("hipconfig" in w for w in whats) and any("hipcc" in w for w in whats)


def test_intel_sycl(data: Path, fake_tools: object) -> None:
    rt = res("intel", host(data))
    d = dict(rt.defines)
    assert {"GGML_SYCL": "ON", "CMAKE_C_COMPILER": "icx", "CMAKE_CXX_COMPILER": "icpx",
            "GGML_SYCL_F16": "ON"}.items() <= d.items()
    fixes = " ".join(p.fix for p in preflight.check(rt))
    assert "setvars.sh" in fixes


def test_vulkan(data: Path, fake_tools: dict[str, list[Program]]) -> None:
    rt = res("vulkan", host(data))
    assert rt.define("GGML_VULKAN") == "ON" and rt.backend == "Vulkan" and rt.recipe.gpu
    assert dict(rt.recipe.smoke_env) == {"GGML_VK_VISIBLE_DEVICES": "0"}
    glslc, headers = preflight.check(rt)
    assert "glslc" in glslc.what and "apt-get install glslc" in glslc.fix
    assert "vulkan-headers >=1.4" in headers.what
    assert "buildtool toolchain install vulkan-headers" in headers.fix


def test_vulkan_prefers_new_enough_headers(data: Path, tmp_path: Path,
                                           fake_tools: dict[str, list[Program]],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("buildtool.backends.vulkan.SYSTEM_SPIRV_DIRS", [])
    fake_tools["glslc"] = [Program("glslc", Path("/usr/bin/glslc"), Version("14.0"))]
    old = Program("vulkan-headers", Path("/usr/include"), Version("1.3.239"))
    fake_tools["vulkan-headers"] = [old]
    (problem,) = preflight.check(res("vulkan", host(data)))
    assert "found only: vulkan-headers 1.3.239 at /usr/include" in problem.what
    prefix = tmp_path / "vulkan-headers-1.4.309" / "usr"
    new = Program("vulkan-headers", prefix / "include", Version("1.4.309"))
    fake_tools["vulkan-headers"] = [new, old]
    (problem,) = preflight.check(res("vulkan", host(data)))
    assert "SPIRV-Headers" in problem.what and "spirv-headers" in problem.fix
    spirv = prefix / "share" / "cmake" / "SPIRV-Headers"
    spirv.mkdir(parents=True)
    (spirv / "SPIRV-HeadersConfig.cmake").write_text("# test\n")
    rt = res("vulkan", host(data))
    assert preflight.check(rt) == []
    assert rt.define("Vulkan_INCLUDE_DIR") == str(prefix / "include")
    assert rt.define("SPIRV-Headers_DIR") == str(spirv)


def test_metal_on_linux_plans_but_refuses(data: Path, fake_tools: object) -> None:
    rt = res("metal", host(data))
    d = dict(rt.defines)
    assert {"GGML_METAL": "ON", "GGML_METAL_EMBED_LIBRARY": "ON",
            "CMAKE_INSTALL_RPATH": "@loader_path"}.items() <= d.items()
    assert rt.platform == "macos-arm64" and not rt.platform_supported
    assert d["GGML_CPU_ARM_ARCH"].startswith("armv8.2-a")
    (problem,) = preflight.check(rt)
    assert "Metal needs a macOS arm64 host" in problem.fix


def test_plan_commands(data: Path, fake_tools: object, tmp_path: Path) -> None:
    rt = res("cpu", host(data))
    plan = make_plan(rt, root=tmp_path, source_dir=tmp_path / "vendor/llama.cpp",
                     tree_sha256="0" * 64, jobs=2, use_ccache=False)
    # recipes/cmake wraps llama.cpp; the tree and what artifacts ship are its inputs
    assert plan.configure[:5] == ("/opt/cmake/bin/cmake", "-S", str(tmp_path / "recipes/cmake"),
                                  "-B", str(plan.build_dir))
    defines = dict(plan.cmake_defines)
    assert defines["LLAMA_CPP_SOURCE_DIR"] == str(tmp_path / "vendor/llama.cpp")
    assert defines["BUILDTOOL_PROGRAMS"] == \
        "llama-server;llama-cli;llama-bench;llama-quantize;llama-results"
    assert defines["BUILDTOOL_DESTINATION"] == "llama_cpp_bin_cpu/bin"
    assert plan.configure[7:] == tuple(f"-D{k}={v}" for k, v in plan.cmake_defines)
    assert "-DGGML_AVX2=ON" in plan.configure and "-G" in plan.configure
    assert plan.build[-8:] == ("--target", "llama-server", "llama-cli", "llama-bench",
                               "llama-quantize", "llama-results", "--parallel", "2")
    # Same inputs → same key; any input change → another key.
    again = make_plan(rt, root=tmp_path, source_dir=tmp_path / "vendor/llama.cpp",
                      tree_sha256="0" * 64, use_ccache=False)
    assert again.key == plan.key
    other = make_plan(res("cpu", host(data), overrides=Overrides(defines=(("X", "1"),))),
                      root=tmp_path, source_dir=tmp_path, tree_sha256="0" * 64)
    assert other.key != plan.key
    changed_source = make_plan(rt, root=tmp_path, source_dir=tmp_path, tree_sha256="1" * 64)
    assert changed_source.key != plan.key
    # ... and so does a change to the CMake project every artifact is built from
    (tmp_path / "recipes/cmake").mkdir(parents=True)
    for name in ("CMakeLists.txt", "ship.cmake"):
        (tmp_path / "recipes/cmake" / name).write_text("# v1\n")
    v1 = make_plan(rt, root=tmp_path, source_dir=tmp_path / "vendor/llama.cpp",
                   tree_sha256="0" * 64, use_ccache=False)
    (tmp_path / "recipes/cmake/ship.cmake").write_text("# v2\n")
    v2 = make_plan(rt, root=tmp_path, source_dir=tmp_path / "vendor/llama.cpp",
                   tree_sha256="0" * 64, use_ccache=False)
    assert len({plan.key, v1.key, v2.key}) == 3


def test_cublas13_drops_pre_turing_and_adds_blackwell(
        data: Path, fake_tools: dict[str, list[Program]], tmp_path: Path) -> None:
    kit = _cuda(fake_tools, "13.0", tmp_path / "cuda-13.0")
    rt = res("cublas13", host(data))
    archs = rt.define("CMAKE_CUDA_ARCHITECTURES").split(";")  # type: ignore[union-attr]
    assert archs[0] == "75-virtual" and "120a-real" in archs and "121a-real" in archs
    assert not any(a.startswith(("50", "61", "70")) for a in archs)
    assert rt.define("CMAKE_CUDA_COMPILER") == str(kit / "bin" / "nvcc")
    assert preflight.check(rt) == []


def _vulkan_with(tmp_path: Path, extra: str) -> Project:
    """A scratch project whose vulkan recipe has ``extra`` appended."""
    from tests.unit.helpers import copy_project

    copy_project(tmp_path)
    recipe = tmp_path / "recipes" / "vulkan.yaml"
    recipe.write_text(recipe.read_text() + extra)
    return load_project(tmp_path)


def test_a_recipe_cpu_floor_raises_the_claim(tmp_path: Path, data: Path,
                                            fake_tools: object) -> None:
    """A family whose bundled runtime needs SSE4.2 claims x86-64-v2 whatever the policy: an
    all-variants build keeps its variants, a lower level is lifted, a higher one stays."""
    project = _vulkan_with(tmp_path, "cpu-floor: [x86-64-v2, armv8.2]\n")

    def claim(cpu: str, platform: str = "linux-x86_64") -> ResolvedTarget:
        return resolve(project, "vulkan", lock=LOCK, host_cpu=host(data),
                       host_platform=platform, overrides=Overrides(cpu=cpu), env={},
                       probe=False)

    portable = claim("all-variants")
    assert portable.cpu_level == "x86-64-v2"
    assert set(portable.cpu_features) == CPU.level_features("x86-64-v2")
    assert dict(portable.defines)["GGML_CPU_ALL_VARIANTS"] == "ON"
    assert portable.origins["cpu_floor"] == "recipes/vulkan.yaml"
    lifted = claim("x86-64")
    assert lifted.cpu_level == "x86-64-v2" and "sse4_2" in lifted.cpu_features
    assert dict(lifted.defines)["GGML_SSE42"] == "OFF"  # the code stays x86-64; the claim rises
    higher = claim("x86-64-v3")
    assert higher.cpu_level == "x86-64-v3" and "avx2" in higher.cpu_features
    arm = claim("armv8.0", "linux-aarch64")
    assert arm.cpu_level == "armv8.2" and {"dotprod", "fp16"} <= set(arm.cpu_features)
    # without a floor nothing changes
    assert res("vulkan", host(data), overrides=Overrides(cpu="x86-64"),
               probe=False).cpu_level == "x86-64"


def test_a_recipe_audit_allow_joins_common_yaml(tmp_path: Path, data: Path,
                                                fake_tools: object) -> None:
    project = _vulkan_with(tmp_path, (
        "audit-allow:\n  - file: libvendor.so\n    symbol: '*'\n    features: [avx2]\n"
        "    reason: dispatches by CPUID\n"))
    rt = resolve(project, "vulkan", lock=LOCK, host_cpu=host(data),
                 host_platform="linux-x86_64", env={}, probe=False)
    assert [a.file for a in rt.audit_allow] == [
        *(a.file for a in project.common.audit_allow), "libvendor.so"]
    assert res("vulkan", host(data), probe=False).audit_allow == project.common.audit_allow


def _cross_tools(tools: dict[str, list[Program]], tmp_path: Path) -> Path:
    llvm = tmp_path / "llvm-16" / "bin"
    for name in ("clang", "clang++", "ld.lld"):
        tools[name] = [Program(name, llvm / name, Version("16.0.6"))]
    root = tmp_path / "cache" / "toolchains" / "sysroot-linux-aarch64-bullseye"
    root.mkdir(parents=True)
    (root / "sysroot.json").write_text('{"suite": "bullseye", "arch": "arm64", '
                                       '"package:libc6": "2.31-13+deb11u11"}')
    return root


def test_another_linux_architecture_is_cross_compiled(
        data: Path, fake_tools: dict[str, list[Program]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUILDTOOL_CACHE", str(tmp_path / "cache"))
    rt = res("cpu", host(data), overrides=Overrides(platform="linux-aarch64", cpu="armv8.2"))
    assert (rt.platform, rt.cross, rt.platform_supported) == ("linux-aarch64", True, True)
    assert rt.origins["platform"] == "--platform"
    d = dict(rt.defines)
    assert d["GGML_CPU_ARM_ARCH"] == "armv8.2-a+dotprod+fp16"
    assert d["GGML_OPENMP"] == "OFF" and "GGML_OPENMP" in rt.host_only
    assert rt.cpu_models == ("cortex-a53", "neoverse-n1", "max")
    assert artifact_name(rt) == "llama.cpp-b11312-cpu-armv8.2-linux-aarch64"
    # without clang, lld and the sysroot, preflight says what to install
    problems = [p.what for p in preflight.check(rt)]
    assert any("needs clang >=16" in p for p in problems)
    assert any("needs its sysroot (Debian bullseye arm64)" in p for p in problems)
    assert not any("needs cc" in p for p in problems)  # the host compiler is not used
    root = _cross_tools(fake_tools, tmp_path)
    assert preflight.check(rt) == []
    plan = make_plan(rt, root=tmp_path, source_dir=tmp_path / "vendor/llama.cpp",
                     tree_sha256="0" * 64)
    assert dict(plan.cmake_defines)["CMAKE_TOOLCHAIN_FILE"] == str(plan.cross_file_path)
    assert "CMAKE_TOOLCHAIN_FILE" in plan.host_only
    assert plan.toolchain["cc"]["path"] == str(tmp_path / "llvm-16/bin/clang")
    assert plan.toolchain["sysroot"]["version"] == \
        "debian bullseye arm64, glibc 2.31-13+deb11u11"
    assert plan.cross_file is not None
    for line in ("set(CMAKE_SYSTEM_PROCESSOR aarch64)", f'set(CMAKE_SYSROOT "{root}")',
                 "set(CMAKE_CXX_COMPILER_TARGET aarch64-linux-gnu)",
                 f'set(CMAKE_SHARED_LINKER_FLAGS_INIT "--ld-path={tmp_path}/llvm-16/bin/ld.lld")'):
        assert line in plan.cross_file.splitlines()
    plan.write_cross_file()
    assert plan.cross_file_path.read_text() == plan.cross_file


def test_a_platform_the_target_is_not_built_for_is_refused(data: Path,
                                                           fake_tools: object) -> None:
    from buildtool.errors import UsageError

    with pytest.raises(UsageError, match=r"--platform linux-aarch64: target openvino is built "
                                         r"for linux-x86_64 \(from recipes/openvino.yaml\)"):
        res("openvino", host(data), overrides=Overrides(platform="linux-aarch64"))
    # a family that does not cross-compile names where it builds
    rt = res("vulkan", host(data), overrides=Overrides(platform="linux-aarch64"))
    assert (rt.cross, rt.platform_supported) == (False, False)
    assert "this host is linux-x86_64" in preflight.check(rt)[0].what


def test_sysroot_links_are_made_relative_and_stay_inside(tmp_path: Path) -> None:
    from buildtool.toolchains import cross

    root = tmp_path / "sysroot"
    (root / "lib/aarch64-linux-gnu").mkdir(parents=True)
    (root / "lib/aarch64-linux-gnu/libm.so.6").write_text("")
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/libm.so").symlink_to("/lib/aarch64-linux-gnu/libm.so.6")
    (root / "usr/lib/escape").symlink_to("/../../../etc/passwd")
    (root / "usr/lib/relative").symlink_to("libm.so")
    assert cross.relink(root) == 2
    assert (root / "usr/lib/libm.so").readlink() == Path("../../lib/aarch64-linux-gnu/libm.so.6")
    assert (root / "usr/lib/libm.so").resolve() == (root / "lib/aarch64-linux-gnu/libm.so.6")
    assert (root / "usr/lib/escape").resolve() == (root / "etc/passwd")
    assert (root / "usr/lib/relative").readlink() == Path("libm.so")


def test_a_damaged_sysroot_record_is_named(data: Path, fake_tools: dict[str, list[Program]],
                                           tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from buildtool.errors import ToolchainError

    monkeypatch.setenv("BUILDTOOL_CACHE", str(tmp_path / "cache"))
    root = _cross_tools(fake_tools, tmp_path)
    (root / "sysroot.json").write_text("{not json")
    rt = res("cpu", host(data), overrides=Overrides(platform="linux-aarch64"))
    with pytest.raises(ToolchainError, match=r"sysroot.json: unreadable") as info:
        make_plan(rt, root=tmp_path, source_dir=tmp_path / "vendor/llama.cpp",
                  tree_sha256="0" * 64)
    assert info.value.hint == "install it again: buildtool toolchain install " \
                              "sysroot-linux-aarch64"


def test_the_toolchain_file_takes_paths_literally() -> None:
    """A cache under a path with quotes or ${...} (XDG_CACHE_HOME is the user's) cannot
    break or inject into the CMake toolchain file."""
    from buildtool.toolchains import cross

    cp = cross.PLATFORMS["linux-aarch64"]
    text = cross.toolchain_file(cp, Path('/c/a"b${HOME}/sysroot'), Path("/llvm/clang"),
                                Path("/llvm/clang++"), Path("/l$x/ld.lld"))
    assert 'set(CMAKE_SYSROOT "/c/a\\"b\\${HOME}/sysroot")' in text.splitlines()
    assert 'set(CMAKE_EXE_LINKER_FLAGS_INIT "--ld-path=/l\\$x/ld.lld")' in text.splitlines()
