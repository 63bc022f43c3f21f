"""Hostile artifacts and records through the CLI: each class of damage has its documented exit
code and a message naming the file — never a traceback, a hang, or a run that stops early."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from buildtool import records
from buildtool.detect.cpu import from_flag_list
from buildtool.errors import ExitCode
from buildtool.lab import runner as lab
from buildtool.outputs import sidecar
from buildtool.records import HostFacts
from tests.unit import release_data as data
from tests.unit.helpers import ROOT, run_cli

ZEN4 = from_flag_list(["sse4_2", "avx", "avx2", "fma", "f16c", "bmi2"], arch="x86_64",
                      model="AMD EPYC")


run = run_cli


@pytest.fixture(autouse=True)
def _host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("buildtool.detect.host.detect_cpu", lambda: ZEN4)


def _corrupt(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    return path


@pytest.mark.parametrize(("make", "fragment"), [
    (lambda d: _corrupt(data.tarball(d)), "cannot unpack"),
    (lambda d: _corrupt(data.wheel(d)), "cannot read"),
    (lambda d: _corrupt(data.oci_archive(d)), "is not a readable OCI archive"),
    (lambda d: (d / "empty.whl").write_bytes(b"") or d / "empty.whl", "cannot read"),
])
def test_smoke_of_a_damaged_artifact_is_exit_13(tmp_path: Path, make: Any, fragment: str,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("buildtool.toolchains.engines.choose", lambda *a, **k: _NoEngine())
    artifact = make(tmp_path)
    code, _, err = run(capsys, "smoke", str(artifact))
    assert code == ExitCode.BAD_DATA, err
    assert fragment in err and "Traceback" not in err


class _NoEngine:
    name = "podman"

    def load(self, archive: Path) -> list[str]:  # never reached: inspect fails first
        raise AssertionError("a damaged archive must be refused before it is loaded")


def test_smoke_of_a_tarball_with_a_malformed_manifest(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import io
    import tarfile

    bad = tmp_path / "llama.cpp-b1-cpu-linux-x86_64.tar.gz"
    with tarfile.open(bad, "w:gz") as tf:
        for name, content in (("manifest.json", b'{"schema": 1, "cpu": []}'),
                              ("llama-bench", b"x")):
            info = tarfile.TarInfo(f"top/{name}")
            info.size = len(content)
            tf.addfile(info, io.BytesIO(content))
    code, _, err = run(capsys, "smoke", str(bad))
    assert code == ExitCode.BAD_DATA
    assert f"{bad}:top/manifest.json: cpu: expected a mapping, got list" in err


def test_smoke_refuses_before_running_when_its_result_cannot_be_stored(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The verdict must not be lost after the run: a result path that is a directory (root
    cannot write it either) is refused first; --no-record only prints the verdict."""
    artifact = data.tarball(tmp_path)
    side = sidecar(artifact, "smoke")
    side.unlink()
    side.mkdir()
    ran: list[Path] = []
    monkeypatch.setattr("buildtool.verify.smoke.run_smoke", lambda a, **kw: ran.append(a))
    code, _, err = run(capsys, "smoke", str(artifact))
    assert code == ExitCode.USAGE and f"{side} is a directory" in err and ran == []


@pytest.mark.parametrize("args", [
    ["smoke", "placeholder", "--model", "/dev/zero"],
    ["lab", "report", "/dev/zero"],
    ["vendor", "--source", "/dev/zero"],
])
def test_device_files_are_refused(tmp_path: Path, args: list[str],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    args = [str(data.tarball(tmp_path)) if a == "placeholder" else a for a in args]
    code, _, err = run(capsys, "--matrix", str(ROOT / "build_matrix.yaml"), *args)
    assert code == ExitCode.USAGE
    assert "not a regular file" in err or "neither a regular file nor a directory" in err


def test_lab_run_records_malformed_artifacts_and_finishes(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    wrong_shape = data.tarball(dist, "cpu")
    sidecar(wrong_shape, "manifest").write_text("[]")
    not_json = data.tarball(dist, "cpu", name="llama.cpp-b11312-cpu-x86-64-v2-linux-x86_64")
    sidecar(not_json, "manifest").write_bytes(b"\xff\xfe")
    whl = _corrupt(data.wheel(dist))
    sidecar(whl, "manifest").unlink()
    out = tmp_path / "r.json"
    host = records.from_data(HostFacts, {"id": "h", "cpu": {"arch": "x86_64"}}, "host")
    doc = lab.run(dist, out, cpu=ZEN4, settings=lab.Settings(), host=host)
    by_name = {r.artifact: r for r in doc.results}
    assert by_name[wrong_shape.name].status == "error"
    assert "expected a mapping, got list" in (by_name[wrong_shape.name].reason or "")
    assert "not UTF-8" in (by_name[not_json.name].reason or "")
    assert by_name[whl.name].status == "error" and "cannot read" in (by_name[whl.name].reason
                                                                      or "")
    stored = json.loads(out.read_text())
    assert stored["finished_at"] and len(stored["results"]) == 3


@pytest.mark.parametrize(("shape", "fragment"), [
    ({"results": ["a", "b"]}, "results[0]: expected a mapping, got str"),
    ({"results": [{"artifact": "a", "status": "maybe"}]}, "'maybe' is not one of"),
    ({"host": {"id": "h", "cpu": {"arch": "x"}, "memory_bytes": 1e400}}, "invalid JSON"),
    ({"settings": {"n_prompt": [0], "n_gen": [1], "repetitions": 1, "model": "m"}},
     "must be at least 1"),
])
def test_lab_report_names_every_malformed_field(tmp_path: Path, shape: dict[str, Any],
                                                fragment: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    doc: dict[str, Any] = {
        "schema": "buildtool-lab/1", "buildtool_version": "0.1.0",
        "started_at": "2026-12-01T00:00:00+00:00",
        "settings": {"n_prompt": [64], "n_gen": [16], "repetitions": 1, "model": "s"},
        "host": {"id": "h", "cpu": {"arch": "x86_64"}}, "results": []}
    doc.update(shape)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc).replace('"memory_bytes": Infinity', '"memory_bytes": 1e400'))
    code, _, err = run(capsys, "lab", "report", str(path), "--out", str(tmp_path / "o.html"))
    assert code == ExitCode.BAD_DATA and str(path) in err and fragment in err


def test_index_skips_damaged_wheels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = data.wheel(tmp_path)
    bad = tmp_path / "llama_cpp_bin_cpu-11312.1-py3-none-manylinux_2_35_x86_64.whl"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("llama_cpp_bin_cpu/manifest.json", '{"kind": "wheel", "target": 5}')
    code, out, err = run(capsys, "index", str(tmp_path), "--out", str(tmp_path / "whl"),
                         "--json")
    assert code == 0, err
    assert json.loads(out)["indexes"][0]["wheels"] == [good.name]
