"""Unit tests start no process: any subprocess call fails the test (cibuildwheel's pattern)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from buildtool.toolchains import discovery as toolchain
from buildtool.toolchains.discovery import Program


class _NoProcess(subprocess.Popen):  # type: ignore[type-arg]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"unit tests must not start processes: {args!r}")


@pytest.fixture(autouse=True)
def _forbid_subprocess(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess, "Popen", _NoProcess)


@pytest.fixture
def fake_tools(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[Program]]]:
    """Replace tool discovery with a dict the test fills: name → [Program, ...]."""
    from packaging.version import Version

    tools: dict[str, list[Program]] = {
        "cmake": [Program("cmake", Path("/opt/cmake/bin/cmake"), Version("3.31.6"))],
        "ninja": [Program("ninja", Path("/usr/bin/ninja"), Version("1.12.1"))],
        "cc": [Program("cc", Path("/usr/bin/cc"), Version("12.2.0"))],
        "cxx": [Program("cxx", Path("/usr/bin/c++"), Version("12.2.0"))],
    }

    def find_all(name: str) -> tuple[Program, ...]:
        return tuple(tools.get(name, ()))

    monkeypatch.setattr(toolchain, "find_all", find_all)
    yield tools
