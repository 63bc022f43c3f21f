"""The console scripts: each runs the bundled executable of the same name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from . import environment, manifest, missing_cpu_features, path, programs, too_old

HOST_INCOMPATIBLE = 9  # buildtool's exit code for "this host cannot run the artifact"


def main() -> None:
    program = Path(sys.argv[0]).name
    for suffix in (".exe", "-script.py", ".py"):
        program = program.removesuffix(suffix)
    if program not in programs():
        sys.exit(f"error: {program!r} is not one of this wheel's programs: "
                 f"{', '.join(programs())}")
    missing = missing_cpu_features()
    if missing:
        m = manifest()
        sys.stderr.write(
            f"error: {m['wheel']['distribution']} {m['wheel']['version']} was built for CPU "
            f"features this host lacks: {', '.join(missing)}\n"
            "hint: install a portable build (CPU policy all-variants) instead of one tuned "
            "to the build host\n")
        sys.exit(HOST_INCOMPATIBLE)
    old = too_old()
    if old:
        m = manifest()
        sys.stderr.write(
            f"error: {m['wheel']['distribution']} {m['wheel']['version']} needs a newer C "
            f"library or C++ runtime than this system has: {'; '.join(old)}\n"
            "hint: install a wheel built for an older system (a lower manylinux tag), or use "
            "a newer distribution\n")
        sys.exit(HOST_INCOMPATIBLE)
    exe = str(path(program))
    env = environment()
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        os.execve(exe, [exe, *sys.argv[1:]], env)
    sys.exit(subprocess.call([exe, *sys.argv[1:]], env=env))
