#!/usr/bin/env python3
"""Build the CUDA targets for real with toolkits buildtool provisions, and report wall times.

    python scripts/prove_cuda.py                      # cublas13, cublas12, cublas11; sm_89
    python scripts/prove_cuda.py cublas12 --gpu-archs 90-real --no-ccache

For each target: `buildtool toolchain install <target>` when its toolkit is not provisioned
yet, `buildtool build --target T --gpu-archs A --no-smoke --json` (one architecture keeps a
2-core build near 20 minutes), then `buildtool smoke`: on a host with an NVIDIA GPU the real
verdict, elsewhere with --allow-cpu-fallback (the artifact must still load and run on the
CPU, and the waiver is recorded). Prints one line of figures per target and, with --json
FILE, writes them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ["cublas13", "cublas12", "cublas11"]


def buildtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "buildtool", *args], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, check=False)


def has_nvidia_gpu() -> bool:
    smi = shutil.which("nvidia-smi")
    return bool(smi) and subprocess.run([smi, "-L"], capture_output=True,   # type: ignore[list-item]
                                        check=False).returncode == 0


def prove(target: str, archs: str, extra: list[str], gpu: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"target": target, "gpu_archs": archs}
    t = time.monotonic()
    installed = buildtool("toolchain", "list", "--json")
    wanted = json.loads(buildtool("plan", "--target", target, "--json").stdout)
    toolkit = wanted["target"]["toolkit"]
    if json.loads(installed.stdout).get(f"cuda-{toolkit}") is None:
        proc = buildtool("toolchain", "install", target)
        if proc.returncode:
            return {**row, "error": f"toolchain install failed ({proc.returncode})"}
    row["provision_s"] = round(time.monotonic() - t, 1)

    t = time.monotonic()
    proc = buildtool("build", "--target", target, "--gpu-archs", archs, "--no-smoke", "--json",
                     *extra)
    row["wall_s"] = round(time.monotonic() - t, 1)
    if proc.returncode:
        return {**row, "error": f"build failed (exit {proc.returncode})"}
    outcome = json.loads(proc.stdout)
    row.update(cached=outcome["cached"], artifact=outcome["artifact"],
               configure_s=outcome["timings"].get("configure"),
               build_s=outcome["timings"].get("build"),
               size_mb=round(Path(outcome["artifact"]).stat().st_size / 1e6, 1))
    smoke_args = ["smoke", outcome["artifact"], "--json"]
    if not gpu:
        smoke_args.append("--allow-cpu-fallback")
    proc = buildtool(*smoke_args)
    result = json.loads(proc.stdout) if proc.stdout.strip() else {}
    row["smoke"] = result.get("verdict", f"exit {proc.returncode}")
    row["smoke_waived"] = result.get("waived", [])
    row["smoke_tokens_per_s"] = {
        f"{t['test']} {(str(t.get('model_type') or '?').split() or ['?'])[-1]}": t["avg_ts"]
        for t in result.get("tests", [])}
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", default=DEFAULT)
    parser.add_argument("--gpu-archs", default="89-real")
    parser.add_argument("--no-ccache", action="store_true", help="measure cold compiles")
    parser.add_argument("--force", action="store_true", help="rebuild existing artifacts")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()
    if importlib.util.find_spec("buildtool") is None:  # it runs `python -m buildtool`
        sys.exit(f"[prove_cuda] buildtool cannot be imported by {sys.executable}:"
                 " run it with the project's environment"
                 " (.venv/bin/python scripts/prove_cuda.py, or nox -s cuda)")
    extra = (["--no-ccache"] if args.no_ccache else []) + (["--force"] if args.force else [])
    gpu = has_nvidia_gpu()
    print(f"NVIDIA GPU on this host: {'yes' if gpu else 'no (smoke with --allow-cpu-fallback)'}")
    rows = []
    for target in args.targets:
        row = prove(target, args.gpu_archs, extra, gpu)
        rows.append(row)
        if "error" in row:
            print(f"{target:<9} {row['error']}")
            continue
        print(f"{target:<9} archs {row['gpu_archs']:<8} wall {row['wall_s']:>7.1f} s "
              f"(configure {row['configure_s'] or 0:.1f} s, build {row['build_s'] or 0:.1f} s"
              f"{', cached' if row['cached'] else ''}), {row['size_mb']} MB, "
              f"smoke {row['smoke']}{' (cpu fallback waived)' if row['smoke_waived'] else ''}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 1 if any("error" in r or r.get("smoke") != "pass" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
