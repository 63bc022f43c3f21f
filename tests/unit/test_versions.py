"""Choosing the llama.cpp version: the lock set in vendor/ (the default lock and the versions
kept beside it), chosen by --llama-cpp, the matrix's target or its defaults; the version
reaches the defines, the artifact name, the build key, the manifest and the image's build
arguments; a version without a lock is refused where it is named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from buildtool.artifacts import image
from buildtool.artifacts.base import base_manifest
from buildtool.config.plan import artifact_name, make_plan
from buildtool.config.project import load_project
from buildtool.config.resolve import Overrides, resolve
from buildtool.errors import ConfigError, ExitCode, UsageError
from buildtool.source import pin, vendor
from buildtool.source.vendor import LockSet, Materialized
from tests.standins import static_routes
from tests.unit.helpers import ROOT, copy_project, run_cli
from tests.unit.test_pin import COMMIT, pypi_routes, sdist, tree_files
from tests.unit.test_resolve import host

OLD = "cd" * 20


def keep(project: Path, build_number: int, commit: str = OLD, tree: str = "4" * 64) -> Path:
    """A kept lock beside the project's default one."""
    path = vendor.kept_lock_path(project / "vendor" / "llama.cpp.lock.json", f"b{build_number}")
    path.write_text(json.dumps(pin.lock_document(
        "https://github.com/ggml-org/llama.cpp", commit, build_number, tree, [])))
    return path


def matrix(project: Path, *, defaults: str | None = None, **targets: str) -> None:
    """Give the project's matrix a defaults.llama-cpp and targets' llama-cpp."""
    text = (project / "build_matrix.yaml").read_text()
    if defaults:
        text = text.replace("defaults:\n", f"defaults:\n  llama-cpp: {defaults}\n", 1)
    for name, version in targets.items():
        text = text.replace(f"\n  {name}:\n", f"\n  {name}:\n    llama-cpp: {version}\n", 1)
    (project / "build_matrix.yaml").write_text(text)


def test_the_repository_keeps_a_second_version_beside_the_default() -> None:
    locks = LockSet(ROOT / "vendor" / "llama.cpp.lock.json")
    assert locks.versions() == ["b10454", "b11312"]
    default, older = locks.get(None), locks.get("b10454")
    assert default is locks.get("b11312") and default.tree == ROOT / "vendor" / "llama.cpp"
    assert older.commit.startswith("4df29be4f") and older.tree == ROOT / "vendor" / \
        "llama.cpp-b10454"
    # llama-cpp-python 0.3.35's sdist, verified by its sha256 as the default's sources are
    (sdist_source,) = [s for s in older.sources if s.kind == "archive"]
    assert sdist_source.subdir == "llama_cpp_python-0.3.35/vendor/llama.cpp"
    with pytest.raises(KeyError):
        locks.get("b1")


def test_a_kept_lock_must_pin_the_version_its_name_says(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    path = keep(project, 900)
    path.rename(path.with_name("llama.cpp-b901.lock.json"))
    locks = LockSet(project / "vendor" / "llama.cpp.lock.json")
    assert locks.versions() == ["b901", "b11312"]  # known by name; refused when chosen
    with pytest.raises(ConfigError) as info:
        locks.get("b901")
    assert "llama.cpp-b901.lock.json" in str(info.value)
    assert "named for b901 but pins b900" in info.value.message
    assert "llama.cpp-b900.lock.json" in (info.value.hint or "")


def test_command_line_over_target_over_defaults(tmp_path: Path, data: Path,
                                               fake_tools: object) -> None:
    project = copy_project(tmp_path)
    keep(project, 900)
    keep(project, 950, commit="ef" * 20, tree="5" * 64)
    matrix(project, defaults="b900", vulkan="b950")
    proj = load_project(project)
    locks = LockSet(project / "vendor" / "llama.cpp.lock.json")

    def res(name: str, version: str | None = None):  # type: ignore[no-untyped-def]
        return resolve(proj, name, lock=locks, host_cpu=host(data),
                       host_platform="linux-x86_64", env={},
                       overrides=Overrides(llama_cpp=version))

    cpu, vulkan, chosen = res("cpu"), res("vulkan"), res("vulkan", "b11312")
    assert (cpu.lock.version, vulkan.lock.version, chosen.lock.version) == \
        ("b900", "b950", "b11312")
    assert cpu.origins["llama_cpp"] == "build_matrix.yaml:defaults → llama.cpp-b900.lock.json"
    assert vulkan.origins["llama_cpp"] == \
        "build_matrix.yaml:targets.vulkan → llama.cpp-b950.lock.json"
    assert chosen.origins["llama_cpp"] == "--llama-cpp → llama.cpp.lock.json"
    # the version reaches the build's own defines, the name, the tree and the key
    assert dict(cpu.defines)["LLAMA_BUILD_NUMBER"] == "900"
    assert dict(cpu.defines)["LLAMA_BUILD_COMMIT"] == OLD[:9]
    assert artifact_name(cpu).startswith("llama.cpp-b900-cpu-")
    assert cpu.to_json()["llama_cpp"] == {"version": "b900", "commit": OLD,
                                          "lock": "llama.cpp-b900.lock.json"}
    plans = {v.lock.version: make_plan(v, root=project, source_dir=v.lock.tree,
                                       tree_sha256=v.lock.tree_sha256)
             for v in (vulkan, chosen)}
    assert plans["b950"].key != plans["b11312"].key
    assert plans["b950"].source_dir == project / "vendor" / "llama.cpp-b950"
    assert ("LLAMA_CPP_SOURCE_DIR", str(project / "vendor" / "llama.cpp-b950")) in \
        plans["b950"].cmake_defines
    # the manifest and the image's build arguments say the version the plan built
    source = Materialized(tree=plans["b950"].source_dir, source="pypi-sdist",
                          archive_sha256=None, tree_sha256="5" * 64, commit="ef" * 20,
                          fetched_at="2026-12-01T00:00:00+00:00")
    manifest = base_manifest(plans["b950"], source)
    assert (manifest.llama_cpp.version, manifest.llama_cpp.commit) == ("b950", "ef" * 20)
    args = image.build_args(plans["b950"], created="2026-12-01T00:00:00Z")
    assert (args["LLAMA_CPP_VERSION"], args["LLAMA_CPP_COMMIT"]) == ("b950", "ef" * 20)
    # a version the set lacks: a usage error for --llama-cpp, listing what there is
    with pytest.raises(UsageError) as info:
        res("cpu", "b1")
    assert "b1 (from --llama-cpp) has no lock" in info.value.message
    assert "b900, b950, b11312" in info.value.message
    assert "vendor lock b1 --keep" in (info.value.hint or "")


def test_a_matrix_naming_a_version_without_a_lock_is_refused_at_its_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = copy_project(tmp_path)
    matrix(project, vulkan="b777")
    line = next(i for i, text in enumerate(
        (project / "build_matrix.yaml").read_text().splitlines(), 1) if "b777" in text)
    code, _, err = run_cli(capsys, "--matrix", str(project / "build_matrix.yaml"), "plan",
                           "-t", "cpu")
    assert code == ExitCode.CONFIG
    assert f"build_matrix.yaml:{line}: targets.vulkan.llama-cpp: no lock for llama.cpp " \
           "b777" in err
    assert "llama.cpp-b777.lock.json" in err and "Traceback" not in err
    matrix(project, defaults="11312")
    code, _, err = run_cli(capsys, "--matrix", str(project / "build_matrix.yaml"), "plan",
                           "-t", "cpu")
    assert code == ExitCode.CONFIG and "a llama.cpp build tag such as b11312" in err


def test_plan_and_vendor_choose_a_kept_version(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               fake_tools: object,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    project = copy_project(tmp_path)
    tree = tmp_path / "tree"
    for name, content in tree_files().items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(content)
    keep(project, 900, tree=vendor.tree_digest(tree))
    mx = str(project / "build_matrix.yaml")
    code, out, err = run_cli(capsys, "--matrix", mx, "plan", "-t", "cpu", "--llama-cpp",
                             "b900", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["target"]["llama_cpp"]["version"] == "b900"
    assert Path(doc["artifact"]).name.startswith("llama.cpp-b900-cpu-")
    assert doc["source_dir"] == str(project / "vendor" / "llama.cpp-b900")
    code, out, err = run_cli(capsys, "--matrix", mx, "plan", "-t", "cpu", "--llama-cpp",
                             "b900")
    assert f"llama.cpp    b900 ({OLD[:9]}), tree {project / 'vendor' / 'llama.cpp-b900'} " \
           "[--llama-cpp → llama.cpp-b900.lock.json]" in out
    code, _, err = run_cli(capsys, "--matrix", mx, "plan", "-t", "cpu", "--llama-cpp", "900")
    assert code == ExitCode.USAGE and "expected a llama.cpp build tag" in err
    # `vendor --llama-cpp` materializes the kept version's tree beside the default's
    code, out, err = run_cli(capsys, "--matrix", mx, "vendor", "--llama-cpp", "b900",
                             "--source", str(tree), "--json")
    assert code == 0, err
    made = json.loads(out)
    assert made["version"] == "b900" and made["tree"] == str(project / "vendor" /
                                                             "llama.cpp-b900")
    assert (project / "vendor" / "llama.cpp-b900" / "ggml" / "CMakeLists.txt").is_file()
    assert not (project / "vendor" / "llama.cpp").exists()
    code, _, err = run_cli(capsys, "--matrix", mx, "vendor", "--llama-cpp", "b900",
                           "--verify")
    assert code == 0, err


def test_bake_holds_one_version(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                fake_tools: object) -> None:
    project = copy_project(tmp_path)
    keep(project, 900)
    matrix(project, vulkan="b900")
    code, _, err = run_cli(capsys, "--matrix", str(project / "build_matrix.yaml"), "bake",
                           "-t", "cpu", "-t", "vulkan", "--out", str(tmp_path / "bake"))
    assert code == ExitCode.USAGE
    assert "one build context holds one llama.cpp tree" in err and "b900 (vulkan" in err
    assert "--llama-cpp VERSION" in err and not (tmp_path / "bake").exists()


def test_vendor_lock_keep_writes_beside_the_default(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    project = copy_project(tmp_path)
    default = project / "vendor" / "llama.cpp.lock.json"
    before = default.read_bytes()
    mx = str(project / "build_matrix.yaml")
    with static_routes(pypi_routes("", {"0.3.40": sdist("0.3.40", tree_files())})) as pypi:
        index = f"{pypi}/pypi"
        code, out, err = run_cli(capsys, "--matrix", mx, "vendor", "lock", "--pypi", "0.3.40",
                                 "--build-number", "900", "--pypi-index", index, "--keep",
                                 "--json")
        assert code == 0, err
        assert json.loads(out)["lock"] == str(project / "vendor" / "llama.cpp-b900.lock.json")
        assert default.read_bytes() == before  # the default pin stays
        kept = LockSet(default).get("b900")
        assert kept.commit == COMMIT and kept.tree == project / "vendor" / "llama.cpp-b900"
        # the default's own version is not kept twice; --keep and --out exclude each other
        code, _, err = run_cli(capsys, "--matrix", mx, "vendor", "lock", "--pypi", "0.3.40",
                               "--build-number", "11312", "--pypi-index", index, "--keep")
        assert code == ExitCode.USAGE and "b11312 is the default pin" in err
        code, _, err = run_cli(capsys, "--matrix", mx, "vendor", "lock", "--pypi", "0.3.40",
                               "--build-number", "900", "--keep", "--out",
                               str(tmp_path / "x.json"))
        assert code == ExitCode.USAGE and "give one" in err
    assert not (project / "vendor" / "llama.cpp-b11312.lock.json").exists()
    shutil.rmtree(project / "vendor" / "llama.cpp-b900", ignore_errors=True)


def test_ci_bakes_each_version_apart(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     fake_tools: object) -> None:
    project = copy_project(tmp_path)
    keep(project, 900)
    matrix(project, vulkan="b900")
    code, out, err = run_cli(capsys, "--matrix", str(project / "build_matrix.yaml"), "matrix",
                             "--format", "github-images")
    assert code == 0, err
    x86 = {e["llama_cpp"]: e for e in json.loads(out)["include"]
           if e["platform"] == "linux-x86_64"}
    assert x86["b900"]["targets"] == "-t vulkan"
    assert "-t cpu" in x86["b11312"]["targets"] and "vulkan" not in x86["b11312"]["targets"]
