#!/usr/bin/env python3
"""The shared compile cache and one compile for every kind, measured in one run on a real
server on loopback.

Machines are simulated as separate clones of this repository (their own paths, build roots
and empty local ccache directories) sharing one Redis server (Debian's redis-server) through
`buildtool build --compile-cache redis://127.0.0.1:PORT`:

1. cold:         machine A builds the target's tarball; nothing is cached anywhere (fills
                 Redis)
2. warm-remote:  machine B — a fresh clone, fresh build root, empty local ccache — builds it
3. warm-local:   machine A again with --fresh (its build directory deleted), no remote
4. three-kinds warm: machine A again like 3, making the tarball, the wheel and the image of
                 the one compile (needs a container engine; --image-base names a local base
                 image where none can be pulled). As 3 follows a tarball A built before, this
                 follows a build of the three kinds A made before (not timed): its runtime
                 stage and its wheel repair are in buildtool's cache, as its objects are in
                 ccache
5. three-kinds cold: machine D — fresh, empty local ccache, Redis flushed: as cold as A —
                 makes the three kinds
6. server-down:  machine C, fresh like B, while the server is stopped after STOP_AFTER s:
                 the build must still succeed (the rest compiled here, errors counted)

Figures: wall seconds (of a warm phase: the median of --repeat runs, alternating with the
other warm phase), ccache hit rate and remote hits/errors of each; the ratios
warm-remote/cold (goal <= 0.15) and three kinds / tarball alone, cold and warm (goal <=
1.15). Each build is `--no-smoke` (the compile and the packaging are what is measured).
Usage: .venv/bin/python scripts/bench_cache.py [--target cpu] [--cpu x86-64-v2] [--stop-after 60]
[--image-base IMAGE] [--skip PHASE ...] [--repeat 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_redis(port: int, work: Path) -> subprocess.Popen[bytes]:
    server = shutil.which("redis-server")
    if server is None:
        sys.exit("[bench] redis-server not found (apt-get install redis-server)")
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(work)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(50):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    sys.exit("[bench] redis-server did not start")


def machine(work: Path, name: str) -> Path:
    """A fresh clone of this repository (committed state), as another machine has it."""
    clone = work / name
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    return clone


TARBALL = ["--artifact", "tarball"]
PHASES = ("cold", "warm-remote", "warm-local", "three-kinds-warm", "three-kinds-cold",
          "server-down")


def three_kinds(base: str | None) -> list[str]:
    out = ["--artifact", "tarball", "--artifact", "wheel", "--artifact", "image"]
    if base:
        out += ["--build-arg", f"BUILD_IMAGE={base}", "--build-arg", f"RUNTIME_IMAGE={base}"]
    return out


def build(clone: Path, ccache_dir: Path, label: str, target: str, cpu: str,
          extra: list[str], kinds: list[str] = TARBALL) -> dict[str, Any]:
    env = {**os.environ, "CCACHE_DIR": str(ccache_dir), "CI": "1"}
    env.pop("BUILDTOOL_COMPILE_CACHE", None)
    argv = [sys.executable, "-m", "buildtool", "--matrix", str(clone / "build_matrix.yaml"),
            "build", "--target", target, "--cpu", cpu, "--no-smoke", *kinds,
            "--dist", str(clone / "dist"), "--json", *extra]
    print(f"[bench] {label}: {' '.join(argv[3:])}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=clone, env=env, capture_output=True, text=True,
                          check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"[bench] {label} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout)
    stats = out.get("compile_cache") or {}
    warned = [ln.strip() for ln in proc.stderr.splitlines() if "compile cache" in ln]
    print(f"[bench] {label}: {wall:.1f} s; {'; '.join(warned)}", flush=True)
    return {"wall_s": round(wall, 1), "build_s": out["timings"].get("build"),
            "kinds": [a["kind"] for a in out["artifacts"]],
            "hit_rate": stats.get("hit_rate"), "calls": stats.get("calls"),
            "remote_hits": stats.get("remote_hits"), "remote_errors": stats.get("remote_errors")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="cpu")
    parser.add_argument("--cpu", default="x86-64-v2")
    parser.add_argument("--stop-after", type=float, default=60.0,
                        help="seconds into machine C's build when the server is stopped")
    parser.add_argument("--image-base", default=None,
                        help="base image for the image's stages (a local one where nothing "
                             "can be pulled: scripts/local-base-image.sh)")
    parser.add_argument("--skip", nargs="*", default=[], choices=PHASES,
                        help="phases to leave out")
    parser.add_argument("--repeat", type=int, default=5,
                        help="runs of each warm phase (their median is reported)")
    parser.add_argument("--json", type=Path, default=None, help="also write figures here")
    args = parser.parse_args()
    if importlib.util.find_spec("buildtool") is None:  # it runs `python -m buildtool`
        sys.exit(f"[bench_cache] buildtool cannot be imported by {sys.executable}:"
                 " run it with the project's environment"
                 " (.venv/bin/python scripts/bench_cache.py, or nox -s bench_cache)")
    skip = set(args.skip)
    work = Path(tempfile.mkdtemp(prefix="buildtool-bench-cache-"))
    port = free_port()
    redis = start_redis(port, work)
    url = f"redis://127.0.0.1:{port}"
    results: dict[str, dict[str, Any]] = {}
    kinds3 = three_kinds(args.image_base)

    def flush() -> None:
        subprocess.run(["redis-cli", "-p", str(port), "flushall"], check=False,
                       capture_output=True)

    try:
        a = machine(work, "machine-a")
        remote = ["--compile-cache", url]
        local_fresh = ["--compile-cache", "none", "--fresh", "--force"]
        results["cold"] = build(a, work / "ccache-a", "cold (A)", args.target, args.cpu,
                                remote)
        if "warm-remote" not in skip:
            results["warm-remote"] = build(machine(work, "machine-b"), work / "ccache-b",
                                           "warm-remote (B)", args.target, args.cpu, remote)
        # a warm build takes seconds: each warm phase runs --repeat times, the two
        # alternating, and the median run of each is compared
        warm: dict[str, list[dict[str, Any]]] = {}
        if "three-kinds-warm" not in skip:
            build(a, work / "ccache-a", "three kinds, once before (not timed)", args.target,
                  args.cpu, local_fresh, kinds3)
        for i in range(args.repeat):
            if "warm-local" not in skip:
                warm.setdefault("warm-local", []).append(build(
                    a, work / "ccache-a", f"warm-local (A --fresh) {i + 1}/{args.repeat}",
                    args.target, args.cpu, local_fresh))
            if "three-kinds-warm" not in skip:
                warm.setdefault("three-kinds-warm", []).append(build(
                    a, work / "ccache-a", f"three kinds, warm-local (A --fresh) "
                    f"{i + 1}/{args.repeat}", args.target, args.cpu, local_fresh, kinds3))
        for name, runs in warm.items():
            ordered = sorted(runs, key=lambda r: r["wall_s"])
            results[name] = {**ordered[len(ordered) // 2],
                             "runs_s": [r["wall_s"] for r in runs]}
        if "three-kinds-cold" not in skip:
            flush()  # as cold as A was: nothing local, nothing remote
            results["three-kinds-cold"] = build(
                machine(work, "machine-d"), work / "ccache-d", "three kinds, cold (D)",
                args.target, args.cpu, remote, kinds3)
        if "server-down" not in skip:
            # C: the server goes away mid-build (its contents are flushed first, so C has
            # something to ask it for and to write after it is gone)
            flush()
            stopper = threading.Timer(args.stop_after, redis.terminate)
            stopper.start()
            results["server-down"] = build(machine(work, "machine-c"), work / "ccache-c",
                                           "server stopped halfway (C)", args.target,
                                           args.cpu, remote)
            stopper.cancel()
    finally:
        redis.terminate()
        redis.wait()
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"{'run':<17} {'kinds':<21} {'wall s':>8} {'build s':>8} {'hit rate':>9} "
          f"{'remote hits':>12} {'remote errors':>14}")
    for name, r in results.items():
        rate = f"{100 * r['hit_rate']:.1f} %" if r["hit_rate"] is not None else "-"
        print(f"{name:<17} {'+'.join(r['kinds']):<21} {r['wall_s']:>8} {r['build_s']:>8} "
              f"{rate:>9} {r['remote_hits'] or 0:>12} {r['remote_errors'] or 0:>14}")
    for name, r in results.items():
        if "runs_s" in r:
            print(f"{name}: runs {', '.join(f'{w} s' for w in r['runs_s'])}; "
                  f"median {r['wall_s']} s")
    ratios: dict[str, float] = {}
    for name, (num, den, goal) in {
            "warm-remote / cold": ("warm-remote", "cold", 0.15),
            "three kinds / tarball, cold": ("three-kinds-cold", "cold", 1.15),
            "three kinds / tarball, warm": ("three-kinds-warm", "warm-local", 1.15)}.items():
        if num in results and den in results:
            ratios[name] = results[num]["wall_s"] / results[den]["wall_s"]
            print(f"{name} = {ratios[name]:.3f} (goal <= {goal})")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "ratios": ratios}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
