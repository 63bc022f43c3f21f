"""Build a wheel through the PEP 517 hook of a project's backend, in this environment:
``python build_wheel.py PROJECT OUTDIR BUILD_DIR [--intermediate]``.

What `python -m build --wheel --no-isolation -C build-dir=BUILD_DIR` does, in one process:
that frontend adds two (one asks for build requirements this environment already has).
Run as a file, not as a module of buildtool: nothing of buildtool is imported.

``--intermediate``: the wheel is an intermediate file that `auditwheel repair` rewrites
(every member deflated again, or the repair cache's wheel taken instead), so its members are
written at deflate level 0 — stored blocks, still ``ZIP_DEFLATED`` as the backend asks, a
valid zip for every reader — instead of spending a second per 20 MB compressing bytes that
are read once and thrown away.
"""

import importlib
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

project, out, build_dir = (Path(a).resolve() for a in sys.argv[1:4])
if sys.argv[4:] == ["--intermediate"]:
    import zlib

    _compressobj = zlib.compressobj

    def _level_0(level: int = zlib.Z_DEFAULT_COMPRESSION, *args: Any, **kwargs: Any) -> Any:
        return _compressobj(0, *args, **kwargs)

    zlib.compressobj = _level_0  # zipfile asks zlib for each member's compressor
elif sys.argv[4:]:
    sys.exit(f"build_wheel.py: unexpected arguments {sys.argv[4:]}")
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
