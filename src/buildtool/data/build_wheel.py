"""Build a wheel through the PEP 517 hook of a project's backend, in this environment:
``python build_wheel.py PROJECT OUTDIR BUILD_DIR``.

What `python -m build --wheel --no-isolation -C build-dir=BUILD_DIR` does, in one process:
that frontend adds two (one asks for build requirements this environment already has).
Run as a file, not as a module of buildtool: nothing of buildtool is imported.
"""

import importlib
import os
import sys
import tomllib
from pathlib import Path

project, out, build_dir = (Path(a).resolve() for a in sys.argv[1:4])
os.chdir(project)
with Path("pyproject.toml").open("rb") as fh:
    system = tomllib.load(fh)["build-system"]
sys.path[:0] = [str(project / p) for p in system.get("backend-path", [])]
name, _, attr = system["build-backend"].partition(":")
backend = importlib.import_module(name)
for part in filter(None, attr.split(".")):
    backend = getattr(backend, part)
out.mkdir(parents=True, exist_ok=True)
print("built", backend.build_wheel(str(out), {"build-dir": str(build_dir)}))
