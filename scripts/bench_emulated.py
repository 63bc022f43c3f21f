#!/usr/bin/env python3
"""What the smoke on emulated CPUs costs and what it runs: every artifact given, on every CPU
model its claim covers (and the emulator can execute), side by side in one run.

    python scripts/bench_emulated.py dist/llama.cpp-b11312-cpu-linux-x86_64.tar.gz \\
        dist/llama_cpp_bin_cpu-11312.0-py3-none-manylinux_2_35_x86_64.whl

For each artifact: `buildtool smoke ARTIFACT --cpu-model M ... --json --no-record` (the
native smoke — under the emulator for another architecture's — then llama-bench -p 16 -n 4
-r 1 on the F32 and Q4_0 synthetic models under `qemu-x86_64 -cpu M` or `qemu-aarch64 -cpu
M`). Printed per model: the variant ggml's loader chose, the prompt and
generation tokens/s under emulation (F32 / Q4_0) and the seconds the emulated run took.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from buildtool import records
from buildtool.cpudata import CPU
from buildtool.records import Manifest

ROOT = Path(__file__).resolve().parents[1]


def claim(artifact: Path) -> list[str]:
    """The emulable models the artifact's manifest (beside it) claims."""
    side = artifact.with_name(artifact.name.removesuffix(".tar.gz").removesuffix(".whl")
                              + ".manifest.json")
    manifest = records.load(Manifest, side)
    arch = CPU.arch(manifest.platform.split("-", 1)[1])
    return [m for m in CPU.covering_models(arch, manifest.cpu.required_features)
            if not CPU.unemulated(m)]


def run(artifact: Path, models: list[str]) -> dict[str, Any]:
    argv = [sys.executable, "-m", "buildtool", "smoke", str(artifact), "--json", "--no-record"]
    for m in models:
        argv += ["--cpu-model", m]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"smoke failed for {artifact.name}:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts", nargs="+", type=Path)
    args = parser.parse_args()
    rows: list[list[str]] = []
    for artifact in args.artifacts:
        models = claim(artifact)
        if not models:
            print(f"{artifact.name}: no emulated model covers its claim")
            continue
        result = run(artifact, models)
        for r in result["emulated"]:
            by = {(t["test"][:2], str(t["model_type"]).split()[-1]): t["avg_ts"] or 0.0
                  for t in r["tests"]}
            rows.append([result["kind"], r["model"], r["level"] or "?", r["verdict"],
                         r["variant"] or "-",
                         f"{by.get(('pp', 'F32'), 0):.0f} / {by.get(('pp', 'Q4_0'), 0):.0f}",
                         f"{by.get(('tg', 'F32'), 0):.0f} / {by.get(('tg', 'Q4_0'), 0):.0f}",
                         f"{r['duration_s']:.1f}"])
    head = ["kind", "model", "level", "verdict", "variant", "pp16 t/s F32/Q4_0",
            "tg4 t/s F32/Q4_0", "seconds"]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=False)]
    for line in (head, *rows):
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)))


if __name__ == "__main__":
    main()
