"""A deliberately broken build fails the smoke's numerics check, with the deviation shown.

The pinned tree with one kernel patched — ggml's CPU RMS norm sums only the first 32
elements of each row, as a reduction that covers one warp of a GPU block would — built by
buildtool from a test project whose lock carries the change as a patch of its queue
(vendor/patches, applied after extraction like any fix the pin lacks). Everything else about
the artifact is right: it loads, runs at a positive speed on the promised backend, and
computes the wrong answer. Marked slow: the patched tree compiles cold (about 5 minutes on
2 cores the first time: other paths than the main builds', so only its own reruns hit ccache).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from buildtool.errors import ExitCode
from tests.integration.conftest import ROOT, buildtool

KERNEL = "ggml/src/ggml-cpu/ops.cpp"
RIGHT = """                for (int64_t i00 = 0; i00 < ne00; i00++) {
                    sum += (ggml_float)(x[i00] * x[i00]);
                }"""
WRONG = RIGHT.replace("i00 < ne00;", "i00 < 32 && i00 < ne00;")
PATCH = "patches/9001-rms-norm-one-warp.patch"  # after the project's own queue


def patched_project(tmp: Path) -> Path:
    """A project (matrix, recipes, lock with a patch queue) building the broken tree."""
    proc = buildtool("vendor")  # the pinned tree, when no earlier module materialized it
    assert proc.returncode == 0, proc.stderr[-3000:]
    original = (ROOT / "vendor" / "llama.cpp" / KERNEL).read_text()
    assert original.count(RIGHT) == 1, "the RMS norm loop moved: update the patch"
    diff = "".join(difflib.unified_diff(
        original.splitlines(True), original.replace(RIGHT, WRONG).splitlines(True),
        f"a/{KERNEL}", f"b/{KERNEL}"))
    project = tmp / "project"
    (project / "vendor").mkdir(parents=True)
    shutil.copytree(ROOT / "vendor" / "patches", project / "vendor" / "patches")  # the queue
    (project / "vendor" / PATCH).write_text(diff)
    shutil.copytree(ROOT / "recipes", project / "recipes")
    matrix = (ROOT / "build_matrix.yaml").read_text()
    # the programs the smoke needs, nothing more
    matrix = matrix.replace("build-targets: [llama-server, llama-cli, llama-bench, "
                            "llama-quantize, llama-results]",
                            "build-targets: [llama-bench, llama-quantize, llama-results]")
    assert "build-targets: [llama-bench," in matrix
    (project / "build_matrix.yaml").write_text(matrix)
    lock = json.loads((ROOT / "vendor" / "llama.cpp.lock.json").read_text())
    lock["patches"] = [*lock.get("patches", []), {
        "file": PATCH, "sha256": hashlib.sha256(diff.encode()).hexdigest(),
        "reason": "a reduction over one warp's worth of each row (a test)"}]
    (project / "vendor" / "llama.cpp.lock.json").write_text(json.dumps(lock, indent=2))
    return project


@pytest.mark.slow
def test_a_broken_kernel_fails_the_smoke_with_its_deviation(tmp_path: Path) -> None:
    project = patched_project(tmp_path)
    dist = tmp_path / "dist"
    # the pinned tree (verified by its digest), patched by the project's queue
    proc = buildtool("--matrix", str(project / "build_matrix.yaml"), "build", "--target",
                     "cpu", "--cpu", "x86-64-v2", "--dist", str(dist), "--build-root",
                     str(tmp_path / "build"), "--json",
                     env={"BUILDTOOL_LLAMA_SOURCE": str(ROOT / "vendor" / "llama.cpp")},
                     timeout=3600)
    assert proc.returncode == ExitCode.SMOKE, proc.stderr[-4000:]
    # the artifact ran: loaded, right backend, tokens/s > 0 ...
    assert "[ok] backend is CPU" in proc.stderr and "[ok] tokens/s > 0" in proc.stderr
    # ... and computed the wrong thing, every type of it, by orders of magnitude
    assert "[FAIL] outputs match the reference: F32 NMSE" in proc.stderr
    assert "smoke test failed" in proc.stderr and "outputs match the reference" in proc.stderr
    manifest = json.loads(next(dist.glob("*.manifest.json")).read_text())
    queue = json.loads((ROOT / "vendor" / "llama.cpp.lock.json").read_text())["patches"]
    assert [p["file"] for p in manifest["llama_cpp"]["patches"]] == \
        [*(p["file"] for p in queue), PATCH]
    pristine = json.loads((ROOT / "vendor" / "llama.cpp.lock.json").read_text())
    assert manifest["llama_cpp"]["tree_sha256"] != pristine["tree-sha256"]  # what was built
    smoke = json.loads(next(dist.glob("*.smoke.json")).read_text())
    numerics = smoke["numerics"]
    assert smoke["verdict"] == "fail" and numerics["verdict"] == "fail"
    assert [r["model_type"] for r in numerics["runs"]] == ["F32", "Q4_0", "Q4_K_M"]
    assert all(not r["ok"] and r["nmse"] > 100 * r["max_nmse"] for r in numerics["runs"])
    # and publish refuses it, naming the deviation
    proc = buildtool("publish", str(dist), "--out", str(tmp_path / "release"), "--json")
    assert proc.returncode == ExitCode.RELEASE_REFUSED, proc.stderr[-3000:]
    problems = json.loads(proc.stdout)["problems"]
    failed = [p["detail"] for p in problems if p["reason"] == "numerics-failed"]
    assert failed and "F32 NMSE" in failed[0] and "> 3e-04" in failed[0], problems
