"""Hostile configuration: every bad build_matrix.yaml, recipe or lock is a ConfigError (exit 3)
naming the file (and line), never a traceback, a hang or a memory blow-up."""

from __future__ import annotations

import json
import os
import time
import tracemalloc
from pathlib import Path

import pytest

from buildtool.config.project import load_project
from buildtool.errors import ConfigError, ExitCode
from buildtool.inputs import MAX_NODES, read_bytes
from buildtool.source import vendor
from tests.unit.helpers import ROOT, copy_project

MATRIX_HEAD = "version: 1\ntargets:\n  cpu:\n    recipe: cpu\n"


def _matrix_error(tmp_path: Path, text: str | bytes) -> ConfigError:
    copy_project(tmp_path)
    path = tmp_path / "build_matrix.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_project(tmp_path)
    assert info.value.exit_code == ExitCode.CONFIG
    assert str(path) in str(info.value)
    return info.value


def test_non_utf8_matrix_names_line_and_column(tmp_path: Path) -> None:
    err = _matrix_error(tmp_path, MATRIX_HEAD.encode() + b"    description: caf\xe9\n")
    assert err.line == 5 and "not UTF-8: byte 0xe9 at column 21" in err.message


def test_non_utf8_recipe(tmp_path: Path) -> None:
    copy_project(tmp_path)
    recipe = tmp_path / "recipes" / "cpu.yaml"
    recipe.write_bytes(recipe.read_bytes() + b"# \xff\n")
    with pytest.raises(ConfigError) as info:
        load_project(tmp_path)
    assert info.value.path == recipe and "not UTF-8" in info.value.message


def test_recursive_alias(tmp_path: Path) -> None:
    err = _matrix_error(tmp_path, MATRIX_HEAD + "    build-targets: &loop [a, *loop]\n")
    assert "refers to a mapping or list that contains it" in err.message and err.line == 5


def test_alias_bomb_is_bounded_in_time_and_memory(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    bomb = "\n".join(lines) + "\n" + MATRIX_HEAD  # 10^9 values if expanded
    tracemalloc.start()
    started = time.monotonic()
    try:
        err = _matrix_error(tmp_path, bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert f"expands to more than {MAX_NODES} values" in err.message
    assert time.monotonic() - started < 10
    assert peak < 200 << 20


def test_deep_nesting(tmp_path: Path) -> None:
    err = _matrix_error(tmp_path, MATRIX_HEAD + "    description: " + "[" * 5000 + "]" * 5000
                        + "\n")
    assert "nested deeper" in err.message


@pytest.mark.parametrize(("value", "fragment"), [
    ("!!python/object/apply:os.system ['true']", "unsupported YAML tag"),
    ("!!binary aGVsbG8=", "unsupported YAML tag"),
    ("!!set {a: null}", "unsupported YAML tag"),
    ("\"bell\\a\"", "control character"),
    ("\"esc\\e[2J\"", "control character"),
])
def test_unsafe_scalars(tmp_path: Path, value: str, fragment: str) -> None:
    err = _matrix_error(tmp_path, MATRIX_HEAD + f"    description: {value}\n")
    assert fragment in err.message and err.line == 5


def test_dates_and_floats_stay_text(tmp_path: Path) -> None:
    """YAML 1.1 would make `12.10` the float 12.1 and `2001-02-30` a ValueError."""
    copy_project(tmp_path)
    (tmp_path / "build_matrix.yaml").write_text(
        "version: 1\ntargets:\n  cublas12:\n    recipe: cuda\n    toolkit: 12.10\n"
        "    description: 2001-02-30\n")
    project = load_project(tmp_path)
    spec = project.matrix.targets["cublas12"]
    assert spec.toolkit == "12.10" and spec.description == "2001-02-30"


def test_merge_keys_are_refused_clearly(tmp_path: Path) -> None:
    err = _matrix_error(tmp_path, "base: &b {recipe: cpu}\nversion: 1\ntargets:\n"
                        "  cpu:\n    <<: *b\n")
    assert "merge keys" in (err.hint or "")


@pytest.mark.parametrize(("text", "fragment", "line"), [
    ("version: 1\ntargets:\n  cpu:\n    recipe: cpu\n    revision: -1\n",
     "targets.cpu.revision: -1: must be at least 0", 5),
    ("version: 1\ntargets:\n  cpu:\n    recipe: cpu\n    cmake-defines:\n"
     "      LLAMA_X: \"a\\nb\"\n", "expected a value on one line", 6),
    ("version: 1\ntargets:\n  cpu:\n    recipe: cpu\n    cmake-defines:\n"
     "      \"A B\": ON\n", "expected a CMake variable name", 6),
    ("version: 1\ntargets:\n  cpü:\n    recipe: cpu\n", "expected a name of lower-case", 3),
    ("version: 1\ntargets:\n  cpu:\n    recipe: ../../etc/passwd\n", "expected a name", 4),
    ("version: 1\nlock: ../../etc/lock.json\ntargets:\n  cpu:\n    recipe: cpu\n",
     "expected a relative path without '..'", 2),
    ("version: 1\nlock: /etc/lock.json\ntargets:\n  cpu:\n    recipe: cpu\n",
     "expected a relative path", 2),
    ("version: 1\ntargets:\n  cpu:\n    recipe: cpu\n    build-targets: [../../bin/sh]\n",
     "targets.cpu.build-targets[0]", 5),
    ("version: 1\ntargets:\n  cpu:\n    recipe: cpu\n    toolkit: \"12.4; rm -rf /\"\n",
     "expected a version such as 12.4", 5),
    ("version: 1\ndefaults:\n  smoke:\n    n-prompt: 0\ntargets:\n  cpu:\n    recipe: cpu\n",
     "must be at least 1", 4),
    ("version: 1\ntargets:\n  cpu:\n    recipe: cpu\n    revision: 99999999999999999999999\n",
     "integer out of range", 5),
])
def test_invalid_values(tmp_path: Path, text: str, fragment: str, line: int) -> None:
    err = _matrix_error(tmp_path, text)
    assert fragment in err.message and err.line == line


def test_recipe_version_range_is_checked(tmp_path: Path) -> None:
    copy_project(tmp_path)
    recipe = tmp_path / "recipes" / "cpu.yaml"
    recipe.write_text(recipe.read_text() + "requires:\n  - tool: cmake\n    version: '>>3'\n")
    with pytest.raises(ConfigError) as info:
        load_project(tmp_path)
    assert info.value.path == recipe and "not a PEP 440 version range" in info.value.message


def test_recipe_dockerfile_cannot_leave_recipes_docker(tmp_path: Path) -> None:
    copy_project(tmp_path)
    recipe = tmp_path / "recipes" / "cpu.yaml"
    recipe.write_text(recipe.read_text().replace("dockerfile: cpu.Dockerfile",
                                                 "dockerfile: ../../../etc/shadow"))
    with pytest.raises(ConfigError, match=r"docker\.dockerfile.*expected a file name"):
        load_project(tmp_path)


def test_matrix_that_is_not_a_regular_file(tmp_path: Path) -> None:
    copy_project(tmp_path)
    (tmp_path / "build_matrix.yaml").unlink()
    os.mkfifo(tmp_path / "build_matrix.yaml")  # opening a FIFO for reading would block
    started = time.monotonic()
    with pytest.raises(ConfigError, match="not a regular file"):
        load_project(tmp_path)
    assert time.monotonic() - started < 5


def test_device_files_are_refused() -> None:
    with pytest.raises(ConfigError, match="not a regular file"):
        read_bytes(Path("/dev/zero"), limit=1 << 20)


def test_oversized_matrix(tmp_path: Path) -> None:
    err = _matrix_error(tmp_path, MATRIX_HEAD + "#" * (2 << 20) + "\n")
    assert "too large" in err.message


def _lock(tmp_path: Path, **changes: object) -> ConfigError:
    data = json.loads((ROOT / "vendor" / "llama.cpp.lock.json").read_text())
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split("__")
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last.replace("_", "-")] = value
    path = tmp_path / "lock.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as info:
        vendor.load_lock(path)
    assert info.value.path == path
    return info.value


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"upstream__commit": 12345}, "upstream.commit: expected a string, got 12345"),
    ({"upstream__commit": "0c1e57098"}, "a full git commit"),
    ({"upstream__build_number": -3}, "must be at least 0"),
    ({"upstream__build_number": "11312"}, "expected an integer"),
    ({"sources__2__url": "not a url"}, "sources[2].url: 'not a url': expected an http(s)"),
    ({"sources__0__path_env": 7}, "sources[0].path-env: expected a string"),
    ({"sources__2__subdir": "../../etc"}, "expected a relative path without '..'"),
    ({"sources__2__sha256": "ABC"}, "expected a sha256"),
    ({"tree_sha256": None}, "tree-sha256: expected a string, got None"),
    ({"upstream": []}, "upstream: expected a mapping, got list"),
    ({"sources": []}, "sources: the lock names no source"),
    ({"sources__1__kind": "git"}, "sources[1].kind: 'git' is not one of archive, local"),
])
def test_malformed_lock_fields(tmp_path: Path, changes: dict[str, object], fragment: str) -> None:
    assert fragment in _lock(tmp_path, **changes).message


@pytest.mark.parametrize("text", ['{"upstream": NaN}', '{"a": 1e400}', "[" * 100_000,
                                  '{"a": ' + "9" * 5000 + "}"])
def test_lock_json_edge_cases(tmp_path: Path, text: str) -> None:
    path = tmp_path / "lock.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match="invalid JSON"):
        vendor.load_lock(path)


# ---------------------------------------------------------------------------------------
# Values from the command line and the environment


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    from buildtool import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(["--matrix", str(ROOT / "build_matrix.yaml"), *args])
    return int(exc.value.code or 0), capsys.readouterr().err


@pytest.mark.parametrize(("args", "fragment"), [
    (["-D", "LLAMA_X=a\nb"], "-D: LLAMA_X: 'a\\nb': expected a value on one line"),
    (["-D", "A B=1"], "expected a CMake variable name"),
    (["-D", "GGML_AVX:BOOL=ON"], "without a :TYPE"),
    (["-D", "X=\x00"], "expected a value on one line"),
    (["--toolkit", "12.4;rm -rf /"], "--toolkit: '12.4;rm -rf /': expected a version"),
    (["--gpu-archs", "89;../x"], "--gpu-archs: [1]: '../x': expected a GPU architecture"),
])
def test_command_line_values_are_checked(capsys: pytest.CaptureFixture[str], args: list[str],
                                         fragment: str) -> None:
    code, err = _cli(capsys, "plan", "--target", "cpu", *args)
    assert code == ExitCode.USAGE and fragment in err, err


def test_a_build_arg_on_two_lines_is_refused(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    code, err = _cli(capsys, "bake", "--out", str(tmp_path / "b"), "--build-arg",
                     "BUILD_IMAGE=x\nRUN evil")
    assert code == ExitCode.USAGE and "expected a value on one line" in err


def test_a_launcher_given_with_d_wins_over_ccache(fake_tools: dict[str, list[object]]) -> None:
    """README: -D has the highest precedence — also over the ccache launcher buildtool adds."""
    from buildtool.config.plan import make_plan
    from buildtool.config.resolve import Overrides
    from buildtool.toolchains.discovery import Program
    from tests.unit.test_resolve import host, res

    fake_tools["ccache"] = [Program("ccache", Path("/usr/bin/ccache"), None)]
    cpu = host(ROOT / "tests" / "data")
    plain = make_plan(res("cpu", cpu), root=ROOT, source_dir=ROOT, tree_sha256=None)
    assert "-DCMAKE_C_COMPILER_LAUNCHER=/usr/bin/ccache" in plain.configure
    mine = make_plan(res("cpu", cpu, overrides=Overrides(defines=(
        ("CMAKE_C_COMPILER_LAUNCHER", "/opt/sccache"),))), root=ROOT, source_dir=ROOT,
        tree_sha256=None)
    launchers = [a for a in mine.configure if a.startswith("-DCMAKE_C_COMPILER_LAUNCHER=")]
    assert launchers == ["-DCMAKE_C_COMPILER_LAUNCHER=/opt/sccache"]
    assert "-DCMAKE_CXX_COMPILER_LAUNCHER=/usr/bin/ccache" in mine.configure


def test_unknown_cpu_policy_from_the_environment(capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUILDTOOL_CPU", "x86-64-v9")
    code, err = _cli(capsys, "plan", "--target", "cpu")
    assert code == ExitCode.CONFIG and "environment BUILDTOOL_CPU" in err


@pytest.mark.parametrize(("args", "env", "code", "says"), [
    (("--abi-floor", "glibc=2.31;rm -rf /"), None, ExitCode.USAGE, "--abi-floor: 'glibc=2.31;rm"),
    (("--abi-floor", "musl=1.2"), None, ExitCode.USAGE, "FAMILY one of glibc, libstdcxx"),
    ((), "glibc=latest", ExitCode.CONFIG, "environment BUILDTOOL_ABI_FLOOR: 'glibc=latest'"),
])
def test_a_bad_abi_floor_is_refused(args: tuple[str, ...], env: str | None, code: int,
                                    says: str, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    if env is not None:
        monkeypatch.setenv("BUILDTOOL_ABI_FLOOR", env)
    got, err = _cli(capsys, "plan", "--target", "cpu", *args)
    assert got == code and says in err and "Traceback" not in err


def test_unknown_cpu_models_in_the_matrix_are_refused_with_the_line(tmp_path: Path) -> None:
    text = (ROOT / "build_matrix.yaml").read_text().replace(
        "cpu-models: [qemu64, Nehalem,", "cpu-models: [qemu64, Pentium4,")
    assert "Pentium4" in text
    bad = tmp_path / "build_matrix.yaml"
    bad.write_text(text)
    line = text.splitlines().index(next(ln for ln in text.splitlines() if "Pentium4" in ln)) + 1
    with pytest.raises(ConfigError) as info:
        load_project(ROOT, bad)
    assert info.value.line == line and "Pentium4" in info.value.message


def test_a_build_environment_that_is_not_one_is_refused_even_in_a_dry_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _cli(capsys, "build", "--target", "cpu", "--build-env", str(tmp_path),
                     "--dry-run")
    assert code == ExitCode.USAGE and "not a root file system" in err
    code, err = _cli(capsys, "build", "--target", "cpu", "--build-env", "/etc/passwd",
                     "--dry-run")
    assert code == ExitCode.USAGE and "neither a directory nor an image reference" in err
