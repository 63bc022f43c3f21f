#!/usr/bin/env python3
"""Portable vs tuned: tokens/s of the all-variants cpu artifact against the host-flags one.

    python scripts/bench_cpu_variants.py            # builds both (ccache), ~400 MB model
    python scripts/bench_cpu_variants.py --host-artifact A.tar.gz --variants-artifact B.tar.gz

Both artifacts run llama-bench side by side in one run on the same model, interleaved
round by round (host, variants, host, variants, ...) so that drift of a noisy machine hits
both alike; the figure per artifact and test is the median over rounds of llama-bench's own
mean. The model is a synthetic llama (random weights, F32) of ~1.6 GB written with the
gguf package, quantized to Q4_0 (~230 MB) by the host artifact's llama-quantize; both are
cached in ~/.cache/buildtool/models. Goal: variants >= 0.97 x host for prompt processing
and for generation.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from buildtool.artifacts.tarball import unpack
from buildtool.paths import cache_dir
from buildtool.verify.synthetic import ModelParams, cached_model

ROOT = Path(__file__).resolve().parents[1]
GOAL = 0.97
# ~411 M parameters: 8 layers of a 2048-wide llama block with a 5632-wide FFN
PARAMS = ModelParams(n_embd=2048, n_layer=8, n_head=16, n_head_kv=16, n_ff=5632, n_ctx=2048)


def build(cpu: str) -> Path:
    proc = subprocess.run([sys.executable, "-m", "buildtool", "build", "--target", "cpu",
                           "--cpu", cpu, "--no-smoke", "--json"], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, check=False)
    if proc.returncode:
        sys.exit(f"building cpu --cpu {cpu} failed (exit {proc.returncode})")
    return Path(json.loads(proc.stdout)["artifact"])


def quantized(f32: Path, quantize: Path, qtype: str) -> Path:
    out = f32.with_name(f32.stem + f"-{qtype}.gguf")
    if out.is_file():
        return out
    tmp = out.with_name(".part-" + out.name)
    subprocess.run([str(quantize), str(f32), str(tmp), qtype], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp.replace(out)
    return out


def bench(root: Path, model: Path, args: argparse.Namespace) -> dict[str, float]:
    argv = [str(root / "llama-bench"), "-m", str(model), "-p", str(args.n_prompt),
            "-n", str(args.n_gen), "-r", str(args.repetitions), "-t", str(args.threads),
            "-o", "json"]
    out = subprocess.run(argv, cwd=root.parent, text=True, capture_output=True, check=True)
    records = json.loads(out.stdout[out.stdout.index("["):])
    return {("pp" if r["n_gen"] == 0 else "tg") + str(r["n_prompt"] or r["n_gen"]):
            float(r["avg_ts"]) for r in records}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host-artifact", type=Path, default=None)
    parser.add_argument("--variants-artifact", type=Path, default=None)
    parser.add_argument("--model", type=Path, default=None, help="a GGUF instead of synthetic")
    parser.add_argument("--quant", default="Q4_0")
    parser.add_argument("-p", "--n-prompt", type=int, default=128)
    parser.add_argument("-n", "--n-gen", type=int, default=32)
    parser.add_argument("-r", "--repetitions", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("-t", "--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()

    host_art = args.host_artifact or build("host")
    var_art = args.variants_artifact or build("all-variants")
    work = Path(tempfile.mkdtemp(prefix="bench-variants-"))
    try:
        host_root, host_manifest = unpack(host_art, work / "host")
        var_root, var_manifest = unpack(var_art, work / "variants")
        if args.model:
            model = args.model
        else:
            f32 = cached_model(PARAMS, cache_dir() / "models")
            model = quantized(f32, host_root / "llama-quantize", args.quant)
        print(f"model: {model} ({model.stat().st_size / 1e6:.0f} MB)")
        print(f"host:     {host_art.name} ({host_manifest.cpu.level})")
        print(f"variants: {var_art.name} ({var_manifest.cpu.policy})")
        runs: dict[str, list[dict[str, float]]] = {"host": [], "variants": []}
        for i in range(args.rounds):
            for name, root in (("host", host_root), ("variants", var_root)):
                runs[name].append(bench(root, model, args))
                print(f"  round {i + 1} {name:<8} " + "  ".join(
                    f"{k} {v:8.2f} t/s" for k, v in runs[name][-1].items()), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    figures: dict[str, Any] = {"model": str(model), "rounds": args.rounds,
                               "threads": args.threads, "goal": GOAL, "tests": {}}
    ok = True
    print(f"\n{'test':<8}{'host t/s':>12}{'variants t/s':>15}{'ratio':>8}")
    for test in runs["host"][0]:
        h = statistics.median(r[test] for r in runs["host"])
        v = statistics.median(r[test] for r in runs["variants"])
        ratio = v / h
        ok &= ratio >= GOAL
        figures["tests"][test] = {"host": h, "variants": v, "ratio": ratio}
        print(f"{test:<8}{h:>12.2f}{v:>15.2f}{ratio:>8.3f}")
    figures["verdict"] = "pass" if ok else "fail"
    print(f"goal: variants >= {GOAL} x host in every test: {figures['verdict']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
