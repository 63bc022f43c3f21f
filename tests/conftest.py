from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def data() -> Path:
    return DATA


# hypothesis (tests/unit/test_fuzz.py): the default run is derandomized and bounded, so CI
# gives the same answer every time; `nox -s fuzz` runs the long, random profile.
settings.register_profile("ci", max_examples=40, derandomize=True, database=None,
                          print_blob=True)
settings.register_profile("fuzz", max_examples=3000, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
