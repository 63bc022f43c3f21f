#!/usr/bin/env python3
"""Write schema/*.schema.json from the dataclasses in buildtool.model (`nox -s generate_schema`).

A unit test fails when the checked-in files differ from what this script would write.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from buildtool.model import Matrix, Recipe
from buildtool.schema import json_schema

SCHEMAS = {"build_matrix.schema.json": Matrix, "recipe.schema.json": Recipe}


def render(cls: type) -> str:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              "title": cls.__name__, **json_schema(cls)}
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    out = Path(__file__).resolve().parent.parent / "schema"
    out.mkdir(exist_ok=True)
    for name, cls in SCHEMAS.items():
        (out / name).write_text(render(cls), encoding="utf-8")
        print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
