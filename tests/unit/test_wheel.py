"""Wheels: names, versions and tags per target, the rendered scikit-build-core project (one
source of truth for the CMake definitions), the package template's API, the index."""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest

from buildtool import abi
from buildtool.artifacts import wheel
from buildtool.artifacts.base import base_manifest as build_manifest
from buildtool.config import naming
from buildtool.config.plan import make_plan
from buildtool.config.resolve import Overrides, ResolvedTarget
from buildtool.errors import ExitCode
from buildtool.release import index
from buildtool.source.vendor import Materialized
from buildtool.toolchains.discovery import Program
from tests.unit.helpers import ROOT, fake_cuda_tree, manifest_data
from tests.unit.test_resolve import LOCK, host, res


def _cuda(tools: dict[str, list[Program]], version: str, tmp_path: Path) -> None:
    from packaging.version import Version

    root = fake_cuda_tree(tmp_path / f"cuda-{version}")
    tools["nvcc"] = [Program("nvcc", root / "bin/nvcc", Version(version))]


def test_one_distribution_per_target_cupy_style(
        data: Path, fake_tools: dict[str, list[Program]], tmp_path: Path) -> None:
    for version in ("13.0", "12.4", "11.8"):
        _cuda(fake_tools, version, tmp_path)
        major = version.split(".")[0]
        rt = res(f"cublas{major}", host(data))
        assert naming.distribution(rt) == f"llama-cpp-bin-cuda{major}x"
        assert naming.module(rt) == f"llama_cpp_bin_cuda{major}x"
        assert naming.version(rt) == "11312.0"  # all-variants: portable, no local label
        assert rt.wheel_requires == ((f"nvidia-cuda-runtime-cu{major}>={version}",
                                      f"nvidia-cublas-cu{major}") if major != "13" else
                                     ("nvidia-cuda-runtime>=13.0,<14", "nvidia-cublas>=13.0,<14"))
        assert "libcuda.so.*" in rt.wheel_exclude and "libcublas.so.*" in rt.wheel_exclude
        assert f"cuda-nvcc-{version.replace('.', '-')}" in rt.wheel_before_all
        assert dict(rt.wheel_environment)["CUDACXX"] == f"/usr/local/cuda-{version}/bin/nvcc"
        fake_tools.pop("nvcc")
    names = {t: naming.distribution(res(t, host(data), probe=False))
             for t in ("cpu", "vulkan", "hipblas", "intel")}
    assert names == {"cpu": "llama-cpp-bin-cpu", "vulkan": "llama-cpp-bin-vulkan",
                     "hipblas": "llama-cpp-bin-rocm7", "intel": "llama-cpp-bin-sycl"}
    metal = res("metal", host(data, "linux-aarch64-neoverse-n2.txt", "aarch64"),
                platform="macos-arm64", probe=False)
    assert naming.distribution(metal) == "llama-cpp-bin-metal"


def test_version_is_build_number_revision_and_tuned_builds_say_so(
        data: Path, fake_tools: object) -> None:
    tuned = res("cpu", host(data))
    assert tuned.cpu_policy == "host"
    assert naming.version(tuned) == "11312.0+host.x86.64.v3"
    level = res("cpu", host(data), overrides=Overrides(cpu="x86-64-v2"))
    assert naming.version(level) == "11312.0+x86.64.v2"
    portable = res("cpu", host(data), overrides=Overrides(cpu="all-variants"))
    assert naming.version(portable) == "11312.0"
    assert naming.wheel_stem(portable) == "llama_cpp_bin_cpu-11312.0"
    from packaging.version import Version

    assert Version(naming.version(tuned)).local == "host.x86.64.v3"
    assert Version(naming.version(tuned)).public == "11312.0"


def test_packaging_revision_comes_from_the_matrix(tmp_path: Path, data: Path,
                                                  fake_tools: object) -> None:
    from buildtool.config.project import load_project
    from buildtool.config.resolve import resolve
    from tests.unit.helpers import copy_project

    root = copy_project(tmp_path)
    matrix = root / "build_matrix.yaml"
    text = matrix.read_text().replace("    n-prompt: 32", "    n-prompt: 32", 1)
    text = text.replace("defaults:\n", "defaults:\n  revision: 2\n", 1)
    text = text.replace("    recipe: vulkan\n", "    recipe: vulkan\n    revision: 5\n", 1)
    matrix.write_text(text)
    project = load_project(root)
    cpu = resolve(project, "cpu", lock=LOCK, host_cpu=host(data), host_platform="linux-x86_64",
                  overrides=Overrides(cpu="all-variants"), env={}, probe=False)
    vk = resolve(project, "vulkan", lock=LOCK, host_cpu=host(data),
                 host_platform="linux-x86_64", overrides=Overrides(), env={}, probe=False)
    assert (naming.version(cpu), naming.version(vk)) == ("11312.2", "11312.5")


def test_wheel_file_names_and_tags() -> None:
    name = wheel.WheelName.parse(
        "llama_cpp_bin_cpu-11312.0+host.x86.64.v4-py3-none-manylinux_2_35_x86_64.whl")
    assert (name.distribution, name.version, name.python, name.abi) == \
        ("llama-cpp-bin-cpu", "11312.0+host.x86.64.v4", "py3", "none")
    assert name.platforms == ("manylinux_2_35_x86_64",)
    multi = wheel.WheelName.parse("a-1-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
    assert multi.platforms == ("manylinux_2_17_x86_64", "manylinux2014_x86_64")
    with pytest.raises(wheel.WheelError, match="not a wheel file name"):
        wheel.WheelName.parse("llama.cpp-b11312-cpu-linux-x86_64.tar.gz")


def test_auditwheel_show_must_agree_with_the_tag(data: Path) -> None:
    shown = (data / "auditwheel" / "show-cpu-manylinux_2_35.txt").read_text()
    assert wheel.parse_show(shown) == "manylinux_2_35_x86_64"
    good = Path("llama_cpp_bin_cpu-11312.0-py3-none-manylinux_2_35_x86_64.whl")
    wheel.check_tag(good, wheel.parse_show(shown))
    with pytest.raises(wheel.WheelError, match="says manylinux_2_35_x86_64, the file name"):
        wheel.check_tag(Path("llama_cpp_bin_cpu-11312.0-py3-none-manylinux_2_17_x86_64.whl"),
                        wheel.parse_show(shown))
    with pytest.raises(wheel.WheelError, match="no manylinux tag"):
        wheel.check_tag(good, wheel.parse_show("not consistent with anything"))


def test_excluded_libraries_are_set_aside_when_the_tag_is_checked(data: Path) -> None:
    """Captured: `auditwheel show --json` of the repaired openvino wheel. show knows no
    --exclude: the system's libOpenCL.so.1 (found) and OpenVINO's libraries (a dependency,
    not found) make its overall tag linux_x86_64; the recipe excludes all three."""
    shown = (data / "auditwheel" / "show-openvino-manylinux_2_35.json").read_text()
    exclude = ("libopenvino.so.*", "libopenvino_*.so*", "libtbb*.so.*", "libhwloc.so.*",
               "libOpenCL.so.*")
    assert wheel.excluded_tag(shown, exclude) == "manylinux_2_35_x86_64"
    # a library the recipe does not exclude keeps the overall tag: the check still fails
    assert wheel.excluded_tag(shown, exclude[:-1]) == "linux_x86_64"
    assert wheel.excluded_tag(shown, ()) == "linux_x86_64"
    with pytest.raises(wheel.WheelError, match="unexpected output"):
        wheel.excluded_tag('{"external_libs": []}', exclude)
    with pytest.raises(wheel.WheelError, match="invalid JSON"):
        wheel.excluded_tag("auditwheel: error", exclude)


def test_repair_leaves_out_what_the_driver_provides() -> None:
    argv = wheel.repair_command(Path("in.whl"), Path("out"), ("libcuda.so.*", "libcublas.so.*"))
    assert argv[1:5] == ["-m", "auditwheel", "repair", "--plat"]
    assert argv[argv.index("--exclude") + 1] == "libcuda.so.*"
    assert argv.count("--exclude") == 2 and argv[-1] == "in.whl"


def _source(tmp_path: Path) -> Materialized:
    tree = tmp_path / "vendor" / "llama.cpp"
    for sub in ("ggml/src", "models", "docs", "tools/server", "tools/mtmd/models", "src/models"):
        (tree / sub).mkdir(parents=True, exist_ok=True)
    (tree / "CMakeLists.txt").write_text("project(llama.cpp)\n")
    (tree / "LICENSE").write_text("MIT License\n")
    (tree / "models" / "big.gguf").write_bytes(b"x" * 10)
    (tree / "ggml/src/ggml.c").write_text("int x;\n")
    (tree / "tools/mtmd/models/models.h").write_text("// a source file\n")
    (tree / "src/models/llama.cpp").write_text("// a source file\n")
    (tree / "tools/server/tiny.gguf").write_bytes(b"GGUF")
    return Materialized(tree=tree, source="local", archive_sha256=None, tree_sha256="0" * 64,
                        commit=LOCK.commit, fetched_at="2026-11-22T00:00:00+00:00")


def _render(rt: ResolvedTarget, tmp_path: Path, *, emit: bool) -> tuple[Path, Any]:
    import shutil

    root = tmp_path / "repo"
    if not root.exists():
        shutil.copytree(ROOT / "recipes", root / "recipes")
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(ROOT / name, root / name)
        shutil.copytree(ROOT / "src", root / "src",
                        ignore=shutil.ignore_patterns("__pycache__"))
    source = _source(tmp_path)
    plan = make_plan(rt, root=root, source_dir=source.tree, tree_sha256="0" * 64,
                     use_ccache=False)
    inner = wheel.wheel_manifest(plan, build_manifest(plan, source, files={}))
    dest = tmp_path / ("emit" if emit else "project")
    wheel.render(plan, inner, dest, root=root, emit=emit)
    return dest, plan


def test_rendered_project_builds_exactly_the_plans_cmake_configuration(
        data: Path, fake_tools: object, tmp_path: Path) -> None:
    rt = res("cpu", host(data))
    dest, plan = _render(rt, tmp_path, emit=False)
    py = tomllib.loads((dest / "pyproject.toml").read_text())
    skb = py["tool"]["scikit-build"]
    # one source of truth: the same definitions, in the same order, as `cmake -S recipes/cmake`
    assert list(skb["cmake"]["define"].items()) == list(plan.cmake_defines)
    assert skb["cmake"]["source-dir"] == str(plan.project_dir)
    assert skb["build"]["targets"] == list(rt.build_targets)
    assert skb["install"]["components"] == ["buildtool"]
    assert skb["wheel"]["py-api"] == "py3" and skb["wheel"]["packages"] == ["llama_cpp_bin_cpu"]
    assert py["project"]["name"] == "llama-cpp-bin-cpu"
    assert py["project"]["version"] == "11312.0+host.x86.64.v3"
    assert py["project"]["scripts"] == dict.fromkeys(rt.build_targets,
                                                     "llama_cpp_bin_cpu._launch:main")
    assert py["project"]["dependencies"] == []
    manifest = json.loads((dest / "llama_cpp_bin_cpu" / "manifest.json").read_text())
    assert manifest["kind"] == "wheel" and manifest["target"] == "cpu"
    assert manifest["llama_cpp"]["commit"] == LOCK.commit
    assert manifest["wheel"] == {"distribution": "llama-cpp-bin-cpu",
                                 "version": "11312.0+host.x86.64.v3",
                                 "module": "llama_cpp_bin_cpu", "requires": [], "exclude": [],
                                 "library_dirs": []}
    assert manifest["cpu"]["required_features"] == list(rt.cpu_features)
    assert "llama-cpp-bin-cpu" in (dest / "README.md").read_text()
    assert not (dest / "llama.cpp").exists()  # built from vendor/ in place


def test_emitted_project_is_self_contained(data: Path, fake_tools: dict[str, list[Program]],
                                           tmp_path: Path) -> None:
    _cuda(fake_tools, "12.4", tmp_path)
    rt = res("cublas12", host(data))
    assert Path(str(rt.define("CMAKE_CUDA_COMPILER"))).is_absolute()
    dest, plan = _render(rt, tmp_path, emit=True)
    py = tomllib.loads((dest / "pyproject.toml").read_text())
    defines = py["tool"]["scikit-build"]["cmake"]["define"]
    assert py["tool"]["scikit-build"]["cmake"]["source-dir"] == "."
    # this machine's toolchain paths and the vendor path stay behind ...
    for key in ("CMAKE_CUDA_COMPILER", "CUDAToolkit_ROOT", "LLAMA_CPP_SOURCE_DIR",
                "CMAKE_MAKE_PROGRAM"):
        assert key not in defines
    # ... everything else is the plan's
    assert defines["CMAKE_CUDA_ARCHITECTURES"] == rt.define("CMAKE_CUDA_ARCHITECTURES")
    assert defines["GGML_CUDA"] == "ON" and defines["GGML_CPU_ALL_VARIANTS"] == "ON"
    assert defines["BUILDTOOL_LEAVE_OUT"].startswith("libggml-cpu-sapphirerapids.so")
    assert (dest / "CMakeLists.txt").read_bytes() == \
        (plan.project_dir / "CMakeLists.txt").read_bytes()
    assert (dest / "llama.cpp/ggml/src/ggml.c").is_file()
    assert not (dest / "llama.cpp/models").exists() and not (dest / "llama.cpp/docs").exists()
    # only the top-level model/doc trees stay behind: sources in */models are kept
    assert (dest / "llama.cpp/tools/mtmd/models/models.h").is_file()
    assert (dest / "llama.cpp/src/models/llama.cpp").is_file()
    assert not (dest / "llama.cpp/tools/server/tiny.gguf").exists()
    assert (dest / "_buildtool/src/buildtool/cli.py").is_file()
    assert py["project"]["dependencies"] == ["nvidia-cuda-runtime-cu12>=12.4",
                                             "nvidia-cublas-cu12"]
    cibw = py["tool"]["cibuildwheel"]
    assert cibw["test-command"] == "buildtool smoke {wheel} --allow-cpu-fallback"
    assert "cuda-nvcc-12-4" in cibw["linux"]["before-all"]
    assert cibw["linux"]["environment"]["CUDAToolkit_ROOT"] == "/usr/local/cuda-12.4"
    repair = cibw["linux"]["repair-wheel-command"]
    assert "--exclude libcuda.so.*" in repair and repair.endswith("-w {dest_dir} {wheel}")
    # the target's platforms decide the architectures (cuda: no macOS)
    assert cibw["linux"]["archs"] == ["x86_64", "aarch64"]
    assert cibw["windows"]["archs"] == ["AMD64"]
    assert cibw["skip"] == "*-musllinux_* *-macosx_*"
    # cibuildwheel's own schema accepts the configuration (and would reject a typo)
    from importlib.resources import files

    import jsonschema

    schema = json.loads(files("cibuildwheel").joinpath("resources/cibuildwheel.schema.json")
                        .read_text())
    jsonschema.validate(cibw, schema)
    with pytest.raises(jsonschema.ValidationError, match="test-comand"):
        jsonschema.validate({**cibw, "test-comand": "x"}, schema)


def test_package_template_api(data: Path, fake_tools: object, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    rt = res("cpu", host(data), overrides=Overrides(cpu="x86-64-v3"))
    dest, _ = _render(rt, tmp_path, emit=False)
    monkeypatch.syspath_prepend(str(dest))
    pkg = importlib.import_module("llama_cpp_bin_cpu")
    try:
        assert pkg.__version__ == "11312.0+x86.64.v3"
        assert pkg.programs() == rt.build_targets
        assert pkg.path("llama-server") == dest / "llama_cpp_bin_cpu" / "bin" / "llama-server"
        with pytest.raises(KeyError, match="not bundled"):
            pkg.path("llama-simple")
        # the kernel's spellings count (lzcnt is "abm" in /proc/cpuinfo)
        flags = {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave",
                 "cx16", "lahf_lm", "popcnt", "pni", "ssse3", "sse4_1", "sse4_2", "sse2"}
        monkeypatch.setattr(pkg, "_cpu_flags", lambda: flags)
        assert pkg.missing_cpu_features() == []
        monkeypatch.setattr(pkg, "_cpu_flags", lambda: flags - {"avx2", "fma"})
        assert pkg.missing_cpu_features() == ["avx2", "fma"]
        info = pkg.describe()
        assert info["distribution"] == "llama-cpp-bin-cpu" and info["target"] == "cpu"
        assert info["cpu"]["missing_here"] == ["avx2", "fma"]
        site = tmp_path / "site" / "nvidia"
        (site / "cublas" / "lib").mkdir(parents=True)
        monkeypatch.syspath_prepend(str(tmp_path / "site"))
        # a cpu wheel depends on no runtime wheel: nothing is added
        assert pkg.environment({"LD_LIBRARY_PATH": "/opt/x"})["LD_LIBRARY_PATH"] == "/opt/x"
        # the directories come from the manifest's patterns (a recipe's wheel-library-dirs)
        inner = dest / "llama_cpp_bin_cpu" / "manifest.json"
        doc = json.loads(inner.read_text())
        doc["wheel"]["library_dirs"] = ["nvidia/*/lib"]
        inner.write_text(json.dumps(doc))
        pkg.manifest.cache_clear()
        env = pkg.environment({"LD_LIBRARY_PATH": "/opt/x"})
        if sys.platform.startswith("linux"):
            assert env["LD_LIBRARY_PATH"] == f"{site / 'cublas' / 'lib'}:/opt/x"
    finally:
        sys.modules.pop("llama_cpp_bin_cpu", None)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc systems only")
def test_the_launcher_refuses_a_system_older_than_the_abi_floor(
        data: Path, fake_tools: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    rt = res("cpu", host(data), overrides=Overrides(cpu="x86-64-v3"))
    dest, _ = _render(rt, tmp_path, emit=False)
    monkeypatch.syspath_prepend(str(dest))
    pkg = importlib.import_module("llama_cpp_bin_cpu")
    launch = importlib.import_module("llama_cpp_bin_cpu._launch")
    try:
        # the launcher reads this system as buildtool does (ELF version definitions)
        system = abi.system_abi()
        assert pkg._glibc() == system.release
        assert pkg._libstdcxx() == {"libstdcxx": system.versions.libstdcxx,
                                    "cxxabi": system.versions.cxxabi}
        inner = dest / "llama_cpp_bin_cpu" / "manifest.json"
        doc = json.loads(inner.read_text())
        doc["abi"] = {"verdict": "pass", "floor": {"glibc": system.versions.glibc,
                                                   "libstdcxx": system.versions.libstdcxx}}
        inner.write_text(json.dumps(doc))
        pkg.manifest.cache_clear()
        assert pkg.too_old() == []
        doc["abi"]["floor"] = {"glibc": "9.1", "libstdcxx": "3.4.99"}
        inner.write_text(json.dumps(doc))
        pkg.manifest.cache_clear()
        assert pkg.too_old() == [f"glibc 9.1 is needed, this system has {system.release}",
                                 f"libstdcxx 3.4.99 is needed, this system has "
                                 f"{system.versions.libstdcxx}"]
        assert pkg.describe()["abi"]["too_old_here"] == pkg.too_old()
        damaged = {**doc, "abi": {"floor": {"glibc": "two.x", "libstdcxx": 3}}}
        inner.write_text(json.dumps(damaged))
        pkg.manifest.cache_clear()
        assert pkg.too_old() == []  # a damaged floor is not held against the system
        inner.write_text(json.dumps(doc))
        pkg.manifest.cache_clear()
        monkeypatch.setattr(pkg, "_cpu_flags", lambda: None)
        monkeypatch.setattr(sys, "argv", ["llama-bench"])
        with pytest.raises(SystemExit) as exit_info:
            launch.main()
        assert exit_info.value.code == 9  # buildtool's "this host cannot run the artifact"
        err = capsys.readouterr().err
        assert "needs a newer C library or C++ runtime than this system has: glibc 9.1" in err
    finally:
        sys.modules.pop("llama_cpp_bin_cpu._launch", None)
        sys.modules.pop("llama_cpp_bin_cpu", None)


def _fake_wheel(dest: Path, dist: str, version: str, target: str,
                plat: str = "manylinux_2_35_x86_64") -> Path:
    module = dist.replace("-", "_")
    path = dest / f"{module}-{version}-py3-none-{plat}.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{module}/manifest.json", json.dumps(manifest_data(
            target, kind="wheel", artifact=path.name.removesuffix(".whl"),
            wheel={"module": module})))
        zf.writestr(f"{module}-{version}.dist-info/METADATA",
                    f"Metadata-Version: 2.4\nName: {dist}\nVersion: {version}\n"
                    "Requires-Python: >=3.9\n\nbody\n")
    return path


def test_index_one_per_target_pep503(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    (dist / "sub").mkdir(parents=True)
    cpu = _fake_wheel(dist, "llama-cpp-bin-cpu", "11312.0", "cpu")
    cpu_tuned = _fake_wheel(dist / "sub", "llama-cpp-bin-cpu", "11312.0+host.x86.64.v4", "cpu")
    cu12 = _fake_wheel(dist, "llama-cpp-bin-cuda12x", "11312.0", "cublas12")
    with zipfile.ZipFile(dist / "other-1.0-py3-none-any.whl", "w") as zf:
        zf.writestr("other/__init__.py", "")  # not ours: not indexed
    out = dist / "whl"
    written = index.write(dist, out)
    assert [(w.target, w.projects) for w in written] == [
        ("cpu", ("llama-cpp-bin-cpu",)), ("cublas12", ("llama-cpp-bin-cuda12x",))]
    assert written[0].url == (out / "cpu").as_uri() + "/"
    root_page = (out / "cpu" / "index.html").read_text()
    assert '<a href="llama-cpp-bin-cpu/">llama-cpp-bin-cpu</a>' in root_page
    assert "cuda12x" not in root_page
    page_dir = out / "cpu" / "llama-cpp-bin-cpu"
    page = (page_dir / "index.html").read_text()
    import re
    from urllib.parse import unquote

    links = re.findall(r'<a href="([^"#]+)#sha256=([0-9a-f]{64})" '
                       r'data-requires-python="&gt;=3.9">', page)
    assert len(links) == 2
    for href, digest in links:
        # every link stays inside the served directory: the wheels lie beside their page
        target = (page_dir / unquote(href)).resolve()
        assert target.parent == page_dir.resolve() and "/" not in unquote(href)
        assert target.name in (cpu.name, cpu_tuned.name)
        assert hashlib.sha256(target.read_bytes()).hexdigest() == digest
    assert "%2Bhost.x86.64.v4" in page  # '+' of the local version is escaped in the URL
    assert (out / "cublas12" / "llama-cpp-bin-cuda12x" / "index.html").is_file()
    assert not (out / "cublas12" / "llama-cpp-bin-cpu").exists()
    assert str(cu12.name) in (out / "cublas12/llama-cpp-bin-cuda12x/index.html").read_text()
    # idempotent: writing again gives the same files, and nothing left over
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    index.write(dist, out)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert before == after
    assert not [p for p in dist.iterdir() if p.name.startswith(".whl")]


def test_index_without_wheels_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(index.NoWheelsError) as err:
        index.write(tmp_path, tmp_path / "whl")
    assert err.value.exit_code == ExitCode.USAGE
    assert not (tmp_path / "whl").exists()


def test_smoke_checks_a_wheels_modules_with_its_runtime_wheels(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from buildtool.artifacts.wheel import with_library_dirs

    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/x")
    env = with_library_dirs(["/site/nvidia/cublas/lib", "/site/nvidia/cuda_runtime/lib"])
    assert env is not None
    assert env["LD_LIBRARY_PATH"] == "/site/nvidia/cublas/lib:/site/nvidia/cuda_runtime/lib:/opt/x"
    assert with_library_dirs([]) is None and with_library_dirs(None) is None


def test_check_wheel_contents_is_configured_for_binary_wheels(
        tmp_path: Path, data: Path, fake_tools: object) -> None:
    """The layout `buildtool build --artifact wheel` makes (programs and libraries in
    <module>/bin, auditwheel's <module>.libs) trips exactly W004, W009 and W010 — and with the
    repository's configuration (pyproject.toml, also in the wheel template) nothing."""
    from check_wheel_contents.checker import NO_CONFIG, WheelChecker
    from check_wheel_contents.contents import WheelContents

    module = "llama_cpp_bin_cpu"
    path = tmp_path / f"{module}-11312.0-py3-none-manylinux_2_35_x86_64.whl"
    files = {f"{module}/__init__.py": b"x = 1\n", f"{module}/__main__.py": b"y = 2\n",
             f"{module}/_launch.py": b"z = 3\n", f"{module}/manifest.json": b"{}",
             **{f"{module}/bin/{name}": f"\x7fELF {name}".encode() for name in (
                 "llama-bench", "llama-server", "libggml-base.so", "libggml-cpu-haswell.so",
                 "libllama.so")},
             f"{module}.libs/libgomp-a34b3233.so.1.0.0": b"\x7fELF gomp"}
    info = f"{module}-11312.0.dist-info"
    rows = []
    with zipfile.ZipFile(path, "w") as zf:
        for rel, content in files.items():
            zf.writestr(rel, content)
            digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=")
            rows.append(f"{rel},sha256={digest.decode()},{len(content)}")
        zf.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: llama-cpp-bin-cpu\n"
                    "Version: 11312.0\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: t\nRoot-Is-Purelib: "
                    "false\nTag: py3-none-manylinux_2_35_x86_64\n")
        rows += [f"{info}/METADATA,,", f"{info}/WHEEL,,", f"{info}/RECORD,,"]
        zf.writestr(f"{info}/RECORD", "\n".join(rows) + "\n")
    contents = WheelContents.from_wheel(path)
    bare = WheelChecker()
    bare.configure_options(configpath=NO_CONFIG)
    assert sorted(f.check.name for f in bare.check_contents(contents)) == ["W004", "W009",
                                                                          "W010"]
    emitted, _ = _render(res("cpu", host(data), overrides=Overrides(cpu="x86-64-v3")), tmp_path,
                         emit=True)
    for config in (ROOT / "pyproject.toml", emitted / "pyproject.toml"):
        checker = WheelChecker()
        checker.configure_options(configpath=str(config))
        assert checker.check_contents(contents) == [], config


def test_restamp_replaces_the_manifest_and_copies_every_other_member_as_compressed(
        tmp_path: Path) -> None:
    from buildtool import records
    from buildtool.archives import copy_zip
    from buildtool.records import Manifest

    src = tmp_path / "pkg-1-py3-none-manylinux_2_35_x86_64.whl"
    lib = bytes(range(256)) * 4000  # compressible, a megabyte
    with zipfile.ZipFile(src, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, data, mode in (("pkg/manifest.json", b'{"old": 1}', 0o644),
                                 ("pkg/bin/libllama.so.0", lib, 0o755),
                                 ("pkg/__init__.py", b"", 0o644),
                                 ("pkg-1.dist-info/RECORD",
                                  b"pkg/manifest.json,sha256=old,10\npkg/__init__.py,,\n",
                                  0o644)):
            info = zipfile.ZipInfo(name, (2020, 1, 2, 3, 4, 6))
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data, compresslevel=9)
    manifest = records.from_data(Manifest, manifest_data(), "test")
    out = tmp_path / "out.whl"
    wheel.restamp(src, out, "pkg", manifest)
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(out) as b:
        assert b.testzip() is None  # every CRC checks
        assert [i.filename for i in a.infolist()] == [i.filename for i in b.infolist()]
        for x, y in zip(a.infolist(), b.infolist(), strict=True):
            assert (x.date_time, x.external_attr) == (y.date_time, y.external_attr)
        lib_a, lib_b = a.getinfo("pkg/bin/libllama.so.0"), b.getinfo("pkg/bin/libllama.so.0")
        # level 9's bytes kept: not deflated again at the default level
        assert b.read(lib_b) == lib and lib_b.compress_size == lib_a.compress_size
        stamped = b.read("pkg/manifest.json")
        assert json.loads(stamped) == records.to_json(manifest)
        digest = base64.urlsafe_b64encode(hashlib.sha256(stamped).digest()).rstrip(b"=")
        assert b.read("pkg-1.dist-info/RECORD").decode().splitlines() == [
            f"pkg/manifest.json,sha256={digest.decode()},{len(stamped)}", "pkg/__init__.py,,"]
    assert wheel.contents(out, None) == []  # its RECORD holds for every member
    # a member that is not where the directory says: refused, not copied wrong
    broken = bytearray(src.read_bytes())
    at = broken.find(b"PK\x03\x04", 10)
    broken[at:at + 4] = b"XXXX"
    (tmp_path / "broken.whl").write_bytes(bytes(broken))
    with pytest.raises(ValueError, match="no local header"):
        copy_zip(tmp_path / "broken.whl", tmp_path / "x.whl", {})


def _run_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str, source: str,
              *extra: str, intermediate: bool = False) -> tuple[Path, list[str]]:
    """Run the script buildtool runs (data/build_wheel.py) in this process, for a project
    whose backend (``backend``, its module's ``source``) lives in the project (backend-path);
    ``extra``: arguments after the ones buildtool passes. Returns the project and argv."""
    import runpy
    import zlib

    module = backend.partition(":")[0]
    project = tmp_path / "project"
    (project / "_backend").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        f'[build-system]\nrequires = []\nbuild-backend = "{backend}"\n'
        'backend-path = ["_backend"]\n')
    (project / "_backend" / f"{module}.py").write_text(source)
    argv = [*wheel.build_command(project, tmp_path / "out", tmp_path / "build",
                                 intermediate=intermediate), *extra]
    monkeypatch.setattr(zlib, "compressobj", zlib.compressobj)  # --intermediate replaces it
    monkeypatch.setattr(sys, "argv", argv[1:])
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    try:
        runpy.run_path(argv[1], run_name="__main__")
    finally:
        sys.modules.pop(module, None)
    return project, argv


def test_the_wheel_is_built_through_the_backends_pep517_hook(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # the script buildtool runs (data/build_wheel.py), run here with a backend of the
    # project's own (backend-path): called in the project, with the output directory and
    # the plan's build directory, as `python -m build -C build-dir=…` calls it
    project, argv = _run_hook(
        tmp_path, monkeypatch, "fake_backend:api",
        "import os, pathlib\n"
        "class api:\n"
        "    @staticmethod\n"
        "    def build_wheel(out, config):\n"
        "        name = 'x-1-py3-none-any.whl'\n"
        "        (pathlib.Path(out) / name).write_text(os.getcwd() + '|' + config['build-dir'])\n"
        "        return name\n")
    assert argv[1] == str(wheel.BUILD_WHEEL) and wheel.BUILD_WHEEL.is_file()
    assert "--intermediate" not in argv
    assert capsys.readouterr().out == "built x-1-py3-none-any.whl\n"
    assert (tmp_path / "out" / "x-1-py3-none-any.whl").read_text() == \
        f"{project}|{tmp_path / 'build'}"


@pytest.mark.parametrize("intermediate", [False, True])
def test_an_intermediate_wheel_is_written_uncompressed(
        intermediate: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # the raw wheel auditwheel rewrites is written at deflate level 0 by the backend's own
    # zipfile call (ZIP_DEFLATED): still a zip every reader takes, members the same bytes
    _, argv = _run_hook(
        tmp_path, monkeypatch, "zip_backend",
        "import pathlib, zipfile\n"
        "def build_wheel(out, config):\n"
        "    name = 'x-1-py3-none-any.whl'\n"
        "    with zipfile.ZipFile(pathlib.Path(out) / name, 'w', zipfile.ZIP_DEFLATED) as zf:\n"
        "        zf.writestr('x/lib.so', b'ggml ' * 200_000)\n"
        "    return name\n", intermediate=intermediate)
    assert ("--intermediate" in argv) is intermediate
    assert capsys.readouterr().out == "built x-1-py3-none-any.whl\n"
    with zipfile.ZipFile(tmp_path / "out" / "x-1-py3-none-any.whl") as zf:
        info = zf.getinfo("x/lib.so")
        assert zf.read(info) == b"ggml " * 200_000 and zf.testzip() is None
    assert info.compress_type == zipfile.ZIP_DEFLATED
    if intermediate:
        assert info.compress_size >= info.file_size  # stored blocks
    else:
        assert info.compress_size < info.file_size // 100


@pytest.mark.parametrize("extra", [("--fast",), ("--intermediate", "--intermediate")])
def test_the_pep517_script_refuses_arguments_it_does_not_know(
        extra: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit, match="unexpected arguments"):
        _run_hook(tmp_path, monkeypatch, "never_imported",
                  "raise AssertionError('the backend is not reached')\n", *extra)
    assert not (tmp_path / "out").exists()
