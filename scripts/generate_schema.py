#!/usr/bin/env python3
"""Write schema/*.schema.json from the dataclasses (`nox -s generate_schema`).

Configuration (build_matrix.yaml, recipes, the lock) is validated strictly: unknown keys are
errors. Records buildtool writes (manifests, smoke and lab results, release.json) accept
fields a newer buildtool added. A unit test fails when the checked-in files differ from
what this script would write.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from buildtool.config.model import Matrix, Recipe
from buildtool.records import SCHEMAS as RECORDS
from buildtool.schema import json_schema
from buildtool.source.vendor import LockFile

# file name → (class, key spelling, configuration?)
SCHEMAS: dict[str, tuple[type[Any], str, bool]] = {
    "build_matrix.schema.json": (Matrix, "kebab", True),
    "recipe.schema.json": (Recipe, "kebab", True),
    "lock.schema.json": (LockFile, "kebab", True),
    **{name: (cls, "snake", False) for name, cls in RECORDS.items()},
}


def render(name: str) -> str:
    cls, keys, config = SCHEMAS[name]
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              "title": cls.__name__, **json_schema(cls, keys, lenient=config)}
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    out = Path(__file__).resolve().parent.parent / "schema"
    out.mkdir(exist_ok=True)
    for name in SCHEMAS:
        (out / name).write_text(render(name), encoding="utf-8")
        print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
