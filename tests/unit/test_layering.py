"""The architecture as import contracts (import-linter; the contracts live in pyproject.toml):
the layers from the commands down to the foundation, artifact kinds that never import each
other, and backend families that never import each other — whichever modules the families
are. A copy of the package with planted violations shows that the contracts catch them."""

from __future__ import annotations

import json
import pkgutil
import re
import shutil
import tomllib
from pathlib import Path

import pytest

import buildtool.backends
from buildtool.backends.base import Backend
from tests.unit.helpers import ROOT


def _families(package: str = "buildtool") -> list[str]:
    """The modules of buildtool.backends that define a family (have a BACKEND)."""
    import importlib

    names = []
    for info in pkgutil.iter_modules(buildtool.backends.__path__):
        module = importlib.import_module(f"buildtool.backends.{info.name}")
        if isinstance(getattr(module, "BACKEND", None), Backend):
            names.append(f"{package}.backends.{info.name}")
    return names


RENAME = re.compile(r"buildtool(?=[.\"])")


def _config(dest: Path, package: str = "buildtool") -> Path:
    """pyproject.toml's contracts (renamed for a copy of the package) plus the families'."""
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contracts = [*options["contracts"], {
        "name": "backend families never import each other", "type": "independence",
        "modules": _families()}]
    lines = ["[tool.importlinter]", f"root_package = {json.dumps(package)}"]
    for contract in contracts:
        lines.append("[[tool.importlinter.contracts]]")
        for key, value in contract.items():
            text = RENAME.sub(package, json.dumps(value))
            lines.append(f"{key} = {text}")
    dest.write_text("\n".join(lines) + "\n")
    return dest


def _lint(config: Path) -> bool:
    from importlinter import configuration
    from importlinter.application.use_cases import lint_imports

    configuration.configure()
    return lint_imports(config_filename=str(config), cache_dir=None, no_logo=True)


def test_the_package_keeps_its_contracts(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert len(_families()) >= 7 and "buildtool.backends.openvino" in _families()
    kept = _lint(_config(tmp_path / "contracts.toml"))
    out = capsys.readouterr().out
    assert kept, out
    assert "3 kept, 0 broken" in out


@pytest.mark.parametrize(("module", "line", "broken"), [
    ("records.py", "import btcopy.config.project", "layers"),  # foundation → config
    ("backends/cuda.py", "import btcopy.config.resolve", "layers"),  # a family → the core
    ("config/resolve.py", "import btcopy.artifacts.wheel", "layers"),  # the core → a kind
    ("artifacts/wheel.py", "import btcopy.artifacts.tarball", "artifact kinds"),
    ("backends/openvino.py", "import btcopy.backends.vulkan", "backend families"),
])
def test_a_planted_violation_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str], module: str,
                                       line: str, broken: str) -> None:
    """A copy of the package renamed btcopy (so that it does not shadow the one under test),
    with one forbidden import added."""
    copy = tmp_path / "btcopy"
    shutil.copytree(ROOT / "src" / "buildtool", copy,
                    ignore=shutil.ignore_patterns("__pycache__", "*.yaml", "py.typed"))
    for path in copy.rglob("*.py"):
        path.write_text(re.sub(r"\bbuildtool\b(?=\.|\s+import)", "btcopy", path.read_text()))
    target = copy / module
    target.write_text(target.read_text() + f"\n{line}  # planted\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert not _lint(_config(tmp_path / "contracts.toml", "btcopy"))
    out = capsys.readouterr().out
    assert "0 broken" not in out and broken in out.split("Broken contracts", 1)[1]
