"""A kept llama.cpp version builds and passes the smoke, beside the default one.

`--llama-cpp b10454` chooses vendor/llama.cpp-b10454.lock.json (the tree llama-cpp-python
0.3.35 vendors, three months before the default pin): its sdist is fetched from PyPI and
verified by the lock's sha256, extracted into its own tree, built and smoke-tested with the
numerics check; the artifact's name, manifest, build key and the build number llama-bench
reports are the kept version's. The default version's build is proven by
test_cpu_build.py. Marked slow: another tree compiles cold (about 13 minutes on 2 cores).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, buildtool

KEPT = json.loads((ROOT / "vendor" / "llama.cpp-b10454.lock.json").read_text())


@pytest.mark.slow
def test_a_kept_version_builds_and_passes_the_smoke(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    common = ("--target", "cpu", "--cpu", "x86-64-v2", "--dist", str(dist))
    proc = buildtool("build", *common, "--llama-cpp", "b10454", "--json", timeout=5400)
    assert proc.returncode == 0, proc.stderr[-4000:]
    outcome = json.loads(proc.stdout)
    (made,) = outcome["artifacts"]
    assert Path(made["artifact"]).name == "llama.cpp-b10454-cpu-x86-64-v2-linux-x86_64.tar.gz"
    assert made["smoke"]["verdict"] == "pass"
    manifest = json.loads(next(dist.glob("llama.cpp-b10454-*.manifest.json")).read_text())
    source = manifest["llama_cpp"]
    assert (source["version"], source["commit"]) == ("b10454", KEPT["upstream"]["commit"])
    assert source["tree_sha256"] == KEPT["tree-sha256"]
    assert source["source"] == "pypi-sdist"
    assert (ROOT / "vendor" / "llama.cpp-b10454" / ".buildtool-source.json").is_file()
    # llama-bench of the artifact reports the kept version's build
    smoke = json.loads(next(dist.glob("llama.cpp-b10454-*.smoke.json")).read_text())
    assert {(t["build_commit"], t["build_number"]) for t in smoke["tests"]} == {
        (KEPT["upstream"]["commit"][:9], 10454)}
    assert smoke["numerics"]["verdict"] == "pass"
    assert {r["model_type"]: r["ok"] for r in smoke["numerics"]["runs"]} == {
        "F32": True, "Q4_0": True, "Q4_K_M": True}
    # the default version is another build: another key, another name
    plan = buildtool("plan", *common[:4], "--json")
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert json.loads(plan.stdout)["key"] != outcome["key"]
    assert Path(json.loads(plan.stdout)["artifact"]).name.startswith("llama.cpp-b11312-")
