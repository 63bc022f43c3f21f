"""The cpu wheel for real: built through the scikit-build-core template (in the build tree the
tarball test used, when it ran first), repaired by auditwheel, checked by check-wheel-contents,
installed into fresh virtual environments from a PEP 503 index served over HTTP, and
smoke-tested through its entry points."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import buildtool
from tests.standins import loopback


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=1800,
                          **kwargs)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def built(work: Path) -> dict[str, object]:
    dist, build_root = work / "dist", work / "build"
    proc = buildtool("build", "--target", "cpu", "--artifact", "wheel", "--dist", str(dist),
                     "--build-root", str(build_root), "--json")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {"outcome": json.loads(proc.stdout), "stderr": proc.stderr, "dist": dist,
            "build_root": build_root}


def _wheel(built: dict[str, object]) -> Path:
    outcome = built["outcome"]
    assert isinstance(outcome, dict)
    (made,) = outcome["artifacts"]
    assert made["kind"] == "wheel"
    return Path(made["artifact"])


def test_wheel_is_built_repaired_and_smoke_tested(built: dict[str, object]) -> None:
    whl = _wheel(built)
    assert re.fullmatch(r"llama_cpp_bin_cpu-11312\.0\+host\.x86\.64\.v\d-py3-none-"
                        r"manylinux_2_\d+_x86_64\.whl", whl.name), whl.name
    outcome = built["outcome"]
    assert isinstance(outcome, dict)
    smoke = outcome["artifacts"][0]["smoke"]
    assert smoke["verdict"] == "pass" and smoke["kind"] == "wheel"
    # it ran the installed entry point of a fresh venv, not a file inside the wheel
    assert re.search(r"/venv/(bin|Scripts)/llama-bench", smoke["command"][0])
    tests = {(t["test"], str(t["model_type"]).split()[-1]) for t in smoke["tests"]}
    assert tests == {("pp32", "F32"), ("tg16", "F32"), ("pp32", "Q4_0"), ("tg16", "Q4_0")}
    stderr = str(built["stderr"])
    assert "scikit-build-core" in stderr and "auditwheel show: consistent with manylinux_2_" \
        in stderr
    manifest = json.loads(whl.with_name(whl.name.removesuffix(".whl") + ".manifest.json")
                          .read_text())
    assert manifest["kind"] == "wheel" and manifest["isa_audit"]["verdict"] == "pass"
    assert manifest["repair"]["tag"] in whl.name
    sums = (whl.parent / "SHA256SUMS").read_text()
    assert f"{manifest['artifact_sha256']}  {whl.name}" in sums


def test_auditwheel_show_agrees_and_the_contents_are_what_ships(
        built: dict[str, object]) -> None:
    whl = _wheel(built)
    tag = re.search(r"(manylinux_2_\d+_x86_64)\.whl$", whl.name)
    assert tag is not None
    shown = _run([sys.executable, "-m", "auditwheel", "show", str(whl)])
    assert shown.returncode == 0, shown.stderr
    assert f'consistent with the following platform tag: "{tag.group(1)}"' in \
        " ".join(shown.stdout.split())
    with zipfile.ZipFile(whl) as zf:
        infos = zf.infolist()
    names = [i.filename for i in infos]
    bin_files = sorted(Path(n).name for n in names if n.startswith("llama_cpp_bin_cpu/bin/")
                       and not n.endswith("/"))
    for program in ("llama-server", "llama-cli", "llama-bench", "llama-quantize"):
        assert program in bin_files
    # each library once, under the name the loader asks for; no symlinks in a wheel
    assert "libggml.so.0" in bin_files and "libllama.so.0" in bin_files
    assert not [n for n in bin_files if re.fullmatch(r"lib.*\.so\.\d+\.\d+\.\d+", n)]
    assert "libggml.so" not in bin_files
    assert not [i for i in infos if (i.external_attr >> 16) & 0o170000 == 0o120000]
    # OpenMP is not a manylinux library: auditwheel grafted it
    assert any(re.fullmatch(r"llama_cpp_bin_cpu\.libs/libgomp-[0-9a-f]+\.so.*", n)
               for n in names)
    assert "llama_cpp_bin_cpu/manifest.json" in names
    # the raw wheel was written uncompressed for the repair; the wheel that ships is not
    libs = [i for i in infos if i.filename.endswith(".so.0")]
    assert libs and all(i.compress_type == zipfile.ZIP_DEFLATED for i in libs)
    assert sum(i.compress_size for i in libs) < sum(i.file_size for i in libs) // 2


def test_check_wheel_contents_passes_with_the_projects_configuration(
        built: dict[str, object]) -> None:
    """The real wheel, checked by check-wheel-contents with pyproject.toml's configuration
    (run from the repository root, where it is read)."""
    from tests.conftest import ROOT

    whl = _wheel(built)
    checked = _run([sys.executable, "-m", "check_wheel_contents", str(whl)], cwd=ROOT)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip().endswith(f"{whl}: OK")


@contextlib.contextmanager
def served(directory: Path) -> Iterator[str]:
    """``directory`` alone over HTTP on loopback, as a web server would publish an index."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    with loopback(handler) as url:
        yield url


def test_pip_installs_it_from_the_index_and_it_runs(built: dict[str, object],
                                                    tmp_path: Path) -> None:
    whl = _wheel(built)
    dist = Path(str(built["dist"]))
    out = tmp_path / "index"
    proc = buildtool("index", str(dist), "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    (entry,) = json.loads(proc.stdout)["indexes"]
    assert entry["target"] == "cpu" and entry["projects"] == ["llama-cpp-bin-cpu"]
    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", str(venv)]).returncode == 0
    py = venv / "bin" / "python"
    # only our index, served over HTTP from its own directory (a link that leaves it would
    # be a 404): no pip configuration, no cache, no other index
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_CACHE_DIR": "1"}
    with served(out) as url:
        pip = _run([str(py), "-m", "pip", "install", "--disable-pip-version-check",
                    "--index-url", f"{url}/cpu/", "llama-cpp-bin-cpu"], env=env)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert whl.name in pip.stdout or "llama-cpp-bin-cpu" in pip.stdout
    info = _run([str(py), "-m", "llama_cpp_bin_cpu", "--json"], cwd=tmp_path)
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    assert data["target"] == "cpu" and data["version"] in whl.name
    assert data["llama_cpp"]["commit"].startswith("0c1e57098")
    assert data["cpu"]["missing_here"] == []
    assert Path(data["programs"]["llama-server"]).is_file()
    text = _run([str(py), "-m", "llama_cpp_bin_cpu"], cwd=tmp_path)
    assert text.returncode == 0 and "llama-cpp-bin-cpu" in text.stdout
    # the console script runs the bundled binary (from an unrelated directory)
    version = _run([str(venv / "bin" / "llama-cli"), "--version"], cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert "build 11312, commit 0c1e57098" in version.stdout + version.stderr
    api = _run([str(py), "-c", "import llama_cpp_bin_cpu as m; r = m.run('llama-bench', "
                "['--help'], capture_output=True, text=True); print(r.returncode)"],
               cwd=tmp_path)
    assert api.returncode == 0 and api.stdout.strip() == "0", api.stderr


def test_smoke_command_on_the_wheel_and_a_cached_rebuild(built: dict[str, object]) -> None:
    whl = _wheel(built)
    proc = buildtool("smoke", str(whl), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["verdict"] == "pass" and result["kind"] == "wheel"
    assert result["artifact"] == whl.name
    again = buildtool("build", "--target", "cpu", "--artifact", "wheel", "--dist",
                      str(built["dist"]), "--build-root", str(built["build_root"]), "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    (made,) = json.loads(again.stdout)["artifacts"]
    assert made["cached"] is True and made["artifact"] == str(whl)


def _members(whl: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(whl) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()
                if not i.filename.endswith(("manifest.json", "RECORD"))}


def test_a_forced_rebuild_takes_auditwheels_result_from_the_repair_cache(
        built: dict[str, object]) -> None:
    whl = _wheel(built)
    before = _members(whl)
    # smoke-tested again: the rebuilt wheel's bytes differ (its manifest's build time), and
    # the release test publishes this directory's wheel with its smoke result
    again = buildtool("build", "--target", "cpu", "--artifact", "wheel",
                      "--force", "--dist", str(built["dist"]), "--build-root",
                      str(built["build_root"]), "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    (made,) = json.loads(again.stdout)["artifacts"]
    assert made["artifact"] == str(whl) and made["cached"] is False
    assert "from the repair cache" in again.stderr
    sidecar = json.loads(Path(str(whl).removesuffix(".whl") + ".manifest.json").read_text())
    assert sidecar["repair"]["cached"] is True
    assert sidecar["repair"]["tag"] in whl.name
    # what auditwheel made the first time, member for member; the manifest is this build's
    assert _members(whl) == before
    with zipfile.ZipFile(whl) as zf:
        inner = json.loads(zf.read("llama_cpp_bin_cpu/manifest.json"))
        record = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/RECORD")))
    assert inner["built_at"] == sidecar["built_at"]
    assert b"llama_cpp_bin_cpu/manifest.json,sha256=" in record
    shown = _run([sys.executable, "-m", "auditwheel", "show", str(whl)])
    assert shown.returncode == 0 and sidecar["repair"]["tag"] in shown.stdout
