"""The CLI layer in-process (no subprocess): matrix table/JSON/github, plan, dry-run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from buildtool import cli
from buildtool.detect import host as host_mod
from buildtool.detect.cpu import parse_proc_cpuinfo
from buildtool.errors import ExitCode
from tests.unit.helpers import ROOT

ARGS = ["--matrix", str(ROOT / "build_matrix.yaml")]


@pytest.fixture(autouse=True)
def _zen3_host(monkeypatch: pytest.MonkeyPatch, data, fake_tools) -> None:  # type: ignore[no-untyped-def]
    cpu = parse_proc_cpuinfo((data / "cpuinfo" / "linux-x86_64-ryzen9-5950x-zen3.txt")
                             .read_text(), "x86_64")
    monkeypatch.setattr("buildtool.config.session.detect_cpu", lambda: cpu)
    monkeypatch.setattr(host_mod, "detect_cpu", lambda: cpu)
    monkeypatch.setattr(host_mod, "detect_gpus", lambda sys_root=None: ())
    monkeypatch.setattr("buildtool.config.session.host_platform", lambda: "linux-x86_64")


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.cli, [*ARGS, *args], catch_exceptions=False)
    return result.exit_code, result.output


def test_matrix_json_says_why_not() -> None:
    code, out = run("matrix", "--json")
    assert code == 0
    rows = {r["target"]: r for r in json.loads(out)["targets"]}
    assert list(rows) == ["cpu", "cublas11", "cublas12", "cublas13", "hipblas", "intel",
                          "vulkan", "openvino", "metal"]
    assert rows["cpu"]["buildable_here"] is True and rows["cpu"]["reasons"] == []
    assert rows["metal"]["buildable_here"] is False
    assert "macOS arm64" in rows["metal"]["reasons"][0]
    assert "nvcc ==12.*" in rows["cublas12"]["reasons"][0]


def test_matrix_table() -> None:
    code, out = run("matrix")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["TARGET", "RECIPE", "BACKEND"]
    assert lines[1].split()[:6] == ["cpu", "cpu", "CPU", "-", "host", "yes"]


def test_matrix_github_format() -> None:
    code, out = run("matrix", "--format", "github")
    assert code == 0
    include = json.loads(out)["include"]
    assert {e["target"] for e in include} == {"cpu", "cublas11", "cublas12", "cublas13",
                                              "hipblas", "intel", "vulkan", "openvino",
                                              "metal"}
    metal = next(e for e in include if e["target"] == "metal")
    assert metal["runner"].startswith("macos") and metal["platform"] == "macos-arm64"
    # OpenVINO's CPU device needs no GPU: built on the runner itself, and smoke-tested there
    ov = next(e for e in include if e["target"] == "openvino")
    assert ov["runner"] == "ubuntu-24.04" and not ov.get("container") and ov["smoke"]


def test_plan_shows_origins_and_commands() -> None:
    code, out = run("plan", "--target", "cpu", "--cpu", "x86-64-v3", "-D", "LLAMA_CURL=OFF")
    assert code == 0
    assert "-DGGML_AVX2=ON" in out and "[CPU policy x86-64-v3]" in out
    assert "-DLLAMA_CURL=OFF" in out and "[-D (command line)]" in out
    assert "cmake --build" in out or "--build" in out
    assert "preflight    ok" in out


def test_plan_json_for_every_target_is_stable() -> None:
    for target in ["cpu", "cublas11", "cublas12", "cublas13", "hipblas", "intel", "vulkan",
                   "openvino", "metal"]:
        code, out = run("plan", "--target", target, "--json")
        assert code == 0
        data = json.loads(out)
        assert set(data) == {"target", "key", "source_dir", "project_dir", "build_dir",
                             "artifact", "env", "configure", "build", "toolchain", "preflight",
                             "build_env"}
        assert data["configure"][1:3] == ["-S", str(ROOT / "recipes" / "cmake")]
        assert f"-DLLAMA_CPP_SOURCE_DIR={ROOT / 'vendor' / 'llama.cpp'}" in data["configure"]
        assert data["target"]["target"] == target


def test_build_dry_run_prints_commands_without_building(tmp_path) -> None:  # type: ignore[no-untyped-def]
    code, out = run("build", "--target", "vulkan", "--dry-run")
    assert code == 0
    assert "-DGGML_VULKAN=ON" in out and "glslc" in out  # the preflight problem is shown


def test_build_without_target_uses_recommendation() -> None:
    code, out = run("build", "--dry-run")
    assert code == 0
    assert "no --target given: building 'cpu' (no GPU found)" in out


def test_detect_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("buildtool.toolchains.discovery.inventory", lambda names=None: {})
    monkeypatch.setattr("buildtool.toolchains.engines.detect", list)
    code, out = run("detect", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["cpu"]["level"] == "x86-64-v3"
    assert data["cpu"]["ggml_features"] == ["sse4_2", "avx", "avx2", "fma", "f16c", "bmi2"]
    assert data["recommended_target"] == "cpu" and data["reason"] == "no GPU found"
    assert set(data) >= {"os", "arch", "platform", "cpu", "gpus", "toolchains", "drivers",
                         "vulkan_icds", "devices", "engines"}
    assert data["platform"] == f"{data['os']}-{data['arch']}" and data["engines"] == []


def _main(*args: str) -> int:
    with pytest.raises(SystemExit) as exc:
        cli.main([*args])
    return int(exc.value.code or 0)


def test_emit_refuses_a_host_tuned_wheel_project(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "project"
    code = _main(*ARGS, "build", "--target", "cpu", "--artifact", "wheel", "--emit", str(dest))
    assert code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "CPU policy 'host' means this machine's CPU" in err and "--cpu all-variants" in err
    assert not dest.exists()
    code = _main(*ARGS, "build", "--target", "cpu", "--emit", str(dest))
    assert code == ExitCode.USAGE
    assert "use it with --artifact wheel" in capsys.readouterr().err


def test_artifact_kinds_that_cannot_be_built_are_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The matrix's default kinds drive `build`; a kind buildtool cannot make is refused."""
    from buildtool import build as build_mod
    from buildtool.errors import UsageError
    from buildtool.toolchains import engines as engine
    from tests.unit.helpers import copy_project

    root = copy_project(tmp_path)
    matrix = root / "build_matrix.yaml"
    matrix.write_text(matrix.read_text().replace("artifacts: [tarball]", "artifacts: [image]"))
    monkeypatch.setattr(engine.cmd, "which", lambda name, path=None: None)
    monkeypatch.delenv("BUILDTOOL_ENGINE", raising=False)
    code = _main("--matrix", str(matrix), "build", "--target", "cpu")
    assert code == ExitCode.TOOLCHAIN  # an image by default, and no engine here
    assert "no container engine found" in capsys.readouterr().err
    assert not (root / "build").exists() and not (root / "dist").exists()
    from tests.unit.test_resolve import res

    with pytest.raises(UsageError, match="cannot build deb artifacts; buildable: tarball, "
                                         "wheel, image"):
        build_mod.artifact_kinds(res("cpu", None, probe=False),  # type: ignore[arg-type]
                                 build_mod.BuildOptions(target="cpu", artifacts=("deb",)))
