"""build_matrix.yaml and recipes: parsing, and errors that name file, line and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from buildtool.cli import main
from buildtool.config.project import load_project
from buildtool.errors import ConfigError, ExitCode, UnknownTargetError
from tests.unit.helpers import ROOT, copy_project

ALL_TARGETS = ["cpu", "cublas11", "cublas12", "cublas13", "hipblas", "intel", "vulkan",
               "openvino", "metal"]


def test_real_matrix_declares_every_target() -> None:
    project = load_project(ROOT)
    assert list(project.matrix.targets) == ALL_TARGETS
    families = {n: project.recipes[t.recipe].family for n, t in project.matrix.targets.items()}
    assert families == {"cpu": "cpu", "cublas11": "cuda", "cublas12": "cuda",
                        "cublas13": "cuda", "hipblas": "hip",
                        "intel": "sycl", "vulkan": "vulkan", "openvino": "openvino",
                        "metal": "metal"}


def _write(tmp_path: Path, text: str) -> Path:
    copy_project(tmp_path)
    (tmp_path / "build_matrix.yaml").write_text(text)
    return tmp_path


def _error(tmp_path: Path, text: str) -> ConfigError:
    _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_project(tmp_path)
    return info.value


def test_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    err = _error(tmp_path, "version: 1\ntargets:\n  cpu:\n    recipe: [cpu\n")
    assert err.path == tmp_path / "build_matrix.yaml"
    assert err.line == 5
    assert "invalid YAML" in err.message and str(tmp_path / "build_matrix.yaml") in str(err)


def test_unknown_key_suggests_nearest(tmp_path: Path) -> None:
    err = _error(tmp_path, "version: 1\ntargets:\n  cpu:\n    recipie: cpu\n")
    assert err.line == 4
    assert "unknown key 'recipie'" in err.message
    assert err.hint == "did you mean 'recipe'?"


def test_wrong_type(tmp_path: Path) -> None:
    err = _error(tmp_path, "version: 1\ntargets:\n  cpu:\n    recipe: cpu\n    artifacts: 5\n")
    assert err.line == 5
    assert "targets.cpu.artifacts" in err.message and "expected a list" in err.message


def test_bad_enum_value_suggests(tmp_path: Path) -> None:
    err = _error(tmp_path, "version: 1\ntargets:\n  cpu:\n    recipe: cpu\n    cpu: hots\n")
    assert err.line == 5
    assert err.hint == "did you mean 'host'?"


def test_missing_required_key(tmp_path: Path) -> None:
    err = _error(tmp_path, "version: 1\ntargets:\n  cpu:\n    description: x\n")
    assert "missing required key 'recipe'" in err.message
    assert err.line == 3  # the line of the mapping that lacks it


def test_duplicate_key(tmp_path: Path) -> None:
    err = _error(tmp_path, "version: 1\ntargets:\n  cpu:\n    recipe: cpu\n    recipe: cpu\n")
    assert "duplicate key 'recipe'" in err.message and err.line == 5


def test_unknown_recipe_suggests(tmp_path: Path) -> None:
    err = _error(tmp_path, "version: 1\ntargets:\n  gpu:\n    recipe: cudaa\n")
    assert err.line == 4 and err.hint == "did you mean 'cuda'?"


def test_recipe_errors_name_the_recipe_file(tmp_path: Path) -> None:
    copy_project(tmp_path)
    recipe = tmp_path / "recipes" / "cpu.yaml"
    recipe.write_text(recipe.read_text() + "backnd: CPU\n")
    with pytest.raises(ConfigError) as info:
        load_project(tmp_path)
    assert info.value.path == recipe and info.value.hint == "did you mean 'backend'?"


def test_unknown_target_suggests() -> None:
    project = load_project(ROOT)
    with pytest.raises(UnknownTargetError) as info:
        project.target("cublass12")
    assert "did you mean 'cublas12'?" in info.value.message
    assert info.value.exit_code == ExitCode.UNKNOWN_TARGET


def test_cli_exit_code_for_malformed_matrix(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path, "version: 1\ntargets:\n  cpu:\n    recipie: cpu\n")
    with pytest.raises(SystemExit) as info:
        main(["--matrix", str(tmp_path / "build_matrix.yaml"), "plan", "--target", "cpu"])
    assert info.value.code == ExitCode.CONFIG
    err = capsys.readouterr().err
    assert f"{tmp_path / 'build_matrix.yaml'}:4:" in err and "did you mean 'recipe'?" in err


def test_cli_exit_code_for_unknown_target(capsys: pytest.CaptureFixture[str],
                                          fake_tools: object) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--matrix", str(ROOT / "build_matrix.yaml"), "plan", "--target", "vulcan"])
    assert info.value.code == ExitCode.UNKNOWN_TARGET
    assert "did you mean 'vulkan'?" in capsys.readouterr().err


def test_schema_matches_model() -> None:
    """The checked-in JSON schema is generated from the model: run `nox -s generate_schema`."""
    from scripts.generate_schema import SCHEMAS, render

    for name in SCHEMAS:
        checked_in = (ROOT / "schema" / name).read_text()
        assert checked_in == render(name), f"schema/{name} is stale: run nox -s generate_schema"
    assert {p.name for p in (ROOT / "schema").glob("*.json")} == set(SCHEMAS)


def test_matrix_and_recipes_validate_against_schema() -> None:
    import json

    import jsonschema
    import yaml

    matrix_schema = json.loads((ROOT / "schema" / "build_matrix.schema.json").read_text())
    jsonschema.validate(yaml.safe_load((ROOT / "build_matrix.yaml").read_text()), matrix_schema)
    recipe_schema = json.loads((ROOT / "schema" / "recipe.schema.json").read_text())
    for path in (ROOT / "recipes").glob("*.yaml"):
        if path.stem != "common":
            jsonschema.validate(yaml.safe_load(path.read_text()), recipe_schema)
    lock_schema = json.loads((ROOT / "schema" / "lock.schema.json").read_text())
    jsonschema.validate(json.loads((ROOT / "vendor" / "llama.cpp.lock.json").read_text()),
                        lock_schema)
