"""`buildtool lab`: host facts from captured data, which artifacts fit a host, a run that
keeps going past failures, and the merged report (one host, several, missing and failing
entries). The page in a real browser: tests/integration/test_release_lab.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from buildtool import records
from buildtool.abi import SystemAbi
from buildtool.artifacts.fit import unfit
from buildtool.detect.cpu import from_flag_list
from buildtool.detect.host import (
    parse_meminfo,
    parse_nvidia_smi,
    parse_os_release,
    vulkan_icds,
    with_capabilities,
)
from buildtool.errors import ExitCode, SmokeError
from buildtool.lab import report
from buildtool.lab import runner as lab
from buildtool.records import AbiVersions, BenchTest, HostFacts, Manifest, SmokeRecord, Verdict
from buildtool.verify import smoke
from tests.unit import release_data as data
from tests.unit.helpers import manifest, run_cli

NVIDIA_SMI = ("NVIDIA H100 80GB HBM3, 580.95.05, 81559 MiB\n"
              "NVIDIA H100 80GB HBM3, 580.95.05, 81559 MiB\n")
OS_RELEASE = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nID=debian\n'
ZEN4 = from_flag_list(["sse4_2", "avx", "avx2", "fma", "f16c", "bmi2", "avx512f", "avx512bw",
                       "avx512vl", "avx512cd", "avx512dq"], arch="x86_64", model="AMD EPYC 9354")
OLD = from_flag_list(["sse4_2", "avx"], arch="x86_64", model="Intel Xeon E5-2670")


run = run_cli


def test_host_facts_parsers(tmp_path: Path) -> None:
    gpus = parse_nvidia_smi(NVIDIA_SMI)
    assert next(g.to_json() for g in gpus) == {"vendor": "NVIDIA", "name": "NVIDIA H100 80GB HBM3",
                                             "driver": "580.95.05", "memory": "81559 MiB",
                                             "source": "nvidia-smi",
                                             "compute_capability": None}
    assert len(gpus) == 2
    # the capability is asked on its own (older drivers refuse the field); one line per GPU
    with_cc = with_capabilities(gpus, "9.0\n9.0\n")
    assert [g.compute_capability for g in with_cc] == ["9.0", "9.0"]
    assert with_capabilities(gpus, "9.0\n") == gpus  # another GPU count: not guessed
    assert with_capabilities(gpus, "[N/A]\n[N/A]\n") == gpus
    assert with_capabilities(gpus, "9.0\n123.4\n") == gpus  # no such capability: not taken
    assert [g.record().compute_capability for g in with_cc] == ["9.0", "9.0"]
    assert parse_os_release(OS_RELEASE) == "Debian GNU/Linux 12 (bookworm)"
    assert parse_meminfo("MemTotal:       24609636 kB\nMemFree: 1 kB\n") == 24609636 * 1024
    assert parse_meminfo("nothing") is None
    icd = tmp_path / "usr/share/vulkan/icd.d"
    icd.mkdir(parents=True)
    for name in ("lvp_icd.x86_64.json", "radeon_icd.x86_64.json", "nvidia_icd.json"):
        (icd / name).write_text("{}")
    assert vulkan_icds(tmp_path) == ["lvp", "nvidia", "radeon"]


def test_gpus_from_sysfs_carry_the_amdgpu_driver(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from buildtool import cmd
    from buildtool.detect.host import detect_gpus

    monkeypatch.setattr(cmd, "which", lambda name, **_: None)  # no nvidia-smi here
    for card, vendor in (("card0", "0x1002"), ("card1", "0x8086")):
        dev = tmp_path / "sys/class/drm" / card / "device"
        dev.mkdir(parents=True)
        (dev / "vendor").write_text(vendor + "\n")
        (dev / "device").write_text("0x744c\n")
    (tmp_path / "sys/module/amdgpu").mkdir(parents=True)
    (tmp_path / "sys/module/amdgpu/version").write_text("6.10.5\n")
    gpus = [g.to_json() for g in detect_gpus(tmp_path)]
    assert [(g["vendor"], g["driver"]) for g in gpus] == [("AMD", "6.10.5"), ("Intel", None)]


def _host(**kw: Any) -> HostFacts:
    data = {"id": "h1", "platform": "linux-x86_64", "cpu": {"arch": "x86_64"}, "gpus": [],
            "vulkan_icds": [],
            "engines": [],
            "devices": {"/dev/nvidiactl": False, "/dev/kfd": False, "/dev/dri": False}, **kw}
    return records.from_data(HostFacts, data, "test host")


def _m(**changes: Any) -> Manifest:
    return manifest(**changes)


@pytest.mark.parametrize(("kind", "manifest", "host", "cpu", "why"), [
    ("tarball", _m(platform="linux-aarch64"), _host(), ZEN4, "built for aarch64"),
    ("tarball", _m(platform="macos-arm64"), _host(), ZEN4, "built for macos-arm64"),
    ("tarball", _m(platform="linux-x86_64",
                   cpu={"policy": "x86-64-v3", "required_features": ["avx2", "fma"]}),
     _host(), OLD, "needs CPU features this host lacks: avx2, fma"),
    ("tarball", _m(platform="linux-x86_64", family="cuda"), _host(), ZEN4, "no NVIDIA GPU"),
    ("tarball", _m(platform="linux-x86_64", family="hip"), _host(), ZEN4, "no AMD GPU"),
    ("tarball", _m(platform="linux-x86_64", family="vulkan"), _host(), ZEN4,
     "no Vulkan driver"),
    ("image", _m(platform="linux-x86_64"), _host(), ZEN4, "no container engine"),
    ("wheel", _m(platform="linux-x86_64"), _host(), ZEN4, "wheel tags do not match"),
])
def test_artifacts_that_do_not_fit_say_why(kind: str, manifest: Manifest,
                                           host: HostFacts, cpu: Any, why: str) -> None:
    name = "x-1.0-cp27-cp27mu-manylinux1_x86_64.whl" if kind == "wheel" else "x.tar.gz"
    reason = unfit(kind, name, manifest, host, cpu)
    assert reason is not None and why in reason


def test_artifacts_that_fit() -> None:
    nvidia = _host(gpus=[{"vendor": "NVIDIA", "name": "H100", "driver": "580"}])
    cuda = _m(platform="linux-x86_64", family="cuda",
              cpu={"policy": "all-variants", "required_features": ["avx2"]})
    assert unfit("tarball", "x.tar.gz", cuda, nvidia, ZEN4) is None
    assert unfit("tarball", "x.tar.gz", _m(platform="linux-x86_64", family="vulkan"),
                     _host(vulkan_icds=["lvp"]), ZEN4) is None
    assert unfit("image", "x.oci.tar", _m(platform="linux-x86_64"),
                     _host(engines=["podman"]), ZEN4) is None
    assert unfit("wheel", "x-1.0-py3-none-any.whl", _m(platform="linux-x86_64"),
                     _host(), ZEN4) is None


def test_an_artifact_above_the_hosts_abi_floor_is_skipped_before_running(
        tmp_path: Path) -> None:
    needs = {"verdict": "pass", "floor": {"glibc": "2.34", "libstdcxx": "3.4.30"}}
    bullseye = SystemAbi(root=Path("/"), versions=AbiVersions(glibc="2.30",
                                                              libstdcxx="3.4.28"),
                         release="2.31")
    new = _m(platform="linux-x86_64", abi=needs)
    reason = unfit("tarball", "x.tar.gz", new, _host(), ZEN4, bullseye)
    assert reason == ("needs a newer C library or C++ runtime: glibc 2.34 is needed, "
                      "libc.so.6 here has 2.31; libstdcxx 3.4.30 is needed, libstdc++.so.6 "
                      "here has 3.4.28")
    # an image brings its own C library; a system new enough fits
    assert unfit("image", "x.oci.tar", new, _host(engines=["podman"]), ZEN4,
                     bullseye) is None
    bookworm = SystemAbi(root=Path("/"), versions=AbiVersions(glibc="2.36",
                                                              libstdcxx="3.4.30"))
    assert unfit("tarball", "x.tar.gz", new, _host(), ZEN4, bookworm) is None


def test_a_run_keeps_going_and_records_every_artifact(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Four artifacts: one passes, one fails its verdict, one cannot run (llama-bench
    crashes), one does not fit; the result file holds all four, and was rewritten as the run
    went (so an interrupted run keeps what it measured)."""
    dist = tmp_path / "dist"
    dist.mkdir()
    good = data.tarball(dist, "cpu")
    bad = data.tarball(dist, "cpu", name="llama.cpp-b11312-cpu-x86-64-v3-linux-x86_64")
    broken = data.tarball(dist, "cpu", name="llama.cpp-b11312-cpu-x86-64-v2-linux-x86_64")
    data.tarball(dist, "cublas12", gpu=True, backend="CUDA", family="cuda")
    out = tmp_path / "results" / "h1.json"
    seen: list[int] = []

    @contextmanager
    def opened(path: Path, **_: Any) -> Iterator[tuple[Any, Path]]:
        if out.exists():
            seen.append(len(json.loads(out.read_text())["results"]))
        yield path, tmp_path

    def smoke_subject(subject: Path, work: Path, artifact: Path, **_: Any) -> SmokeRecord:
        passed = subject != bad
        checks = (smoke.Check(name="tokens/s > 0", ok=passed, detail="0.0"),)
        return SmokeRecord(artifact=artifact.name, target="cpu",
                           verdict=Verdict.PASS if passed else Verdict.FAIL, checks=checks,
                           duration_s=0.1, model="synthetic:x")

    def bench(subject: Path, work: Path, models: list[Path], **kw: Any
              ) -> tuple[list[BenchTest], list[str]]:
        if subject == broken:
            raise SmokeError("llama-bench failed (killed by signal 11):\n    Segmentation fault")
        assert kw["n_prompt"] == "64,512" and kw["n_gen"] == "16" and kw["repetitions"] == 4
        return smoke.parse_bench(json.dumps([
            {"n_prompt": p, "n_gen": g, "avg_ts": 100.0 + p, "stddev_ts": 2.0,
             "samples_ts": [99.0, 101.0], "backends": "CPU", "gpu_info": "",
             "model_type": "llama ?B all F32"} for p, g in ((64, 0), (512, 0), (0, 16))])), []

    monkeypatch.setattr(smoke, "opened", opened)
    monkeypatch.setattr(smoke, "smoke_subject", smoke_subject)
    monkeypatch.setattr(smoke, "bench", bench)
    monkeypatch.setattr(smoke, "stage_model", lambda subject, work, model: model)
    monkeypatch.setattr("buildtool.verify.synthetic.cached_model", lambda: tmp_path / "m.gguf")
    doc = lab.run(dist, out, cpu=ZEN4, host=_host(), note=lambda _: None,
                  settings=lab.Settings(n_prompt=(64, 512), n_gen=(16,), repetitions=4))
    assert lab.load_results([out]) == [doc]
    assert seen == [1, 2]  # rewritten after each artifact (the 4th is not run)
    by_name = {r.artifact: r for r in doc.results}
    assert by_name[good.name].status == "pass"
    assert [b.test for b in by_name[good.name].bench] == ["pp64", "pp512", "tg16"]
    assert by_name[good.name].sha256 == data.file_sha(good)
    assert by_name[bad.name].status == "fail"
    assert by_name[bad.name].reason == "tokens/s > 0: 0.0"
    assert by_name[broken.name].status == "error"
    assert by_name[broken.name].reason == \
        "llama-bench failed (killed by signal 11): Segmentation fault"
    cuda = by_name["llama.cpp-b11312-cublas12-linux-x86_64.tar.gz"]
    assert cuda.status == "skipped" and cuda.reason == "no NVIDIA GPU"
    assert lab.counts(doc) == {"pass": 1, "fail": 1, "error": 1, "skipped": 1}
    assert doc.finished_at and doc.settings.n_prompt == (64, 512)


# ---------------------------------------------------------------------------------------
# The report


def result_doc(host: str, started: str, results: list[dict[str, Any]], **facts: Any
               ) -> dict[str, Any]:
    return {"schema": lab.SCHEMA, "buildtool_version": "0.1.0", "started_at": started,
            "finished_at": started, "settings": {"n_prompt": [64], "n_gen": [16],
                                                 "repetitions": 3, "model": "synthetic"},
            "host": {"id": host, "hostname": host, "os": "Debian GNU/Linux 12", "kernel": "6.1",
                     "cpu": {"model": f"{host} CPU", "arch": "x86_64", "level": "x86-64-v3",
                             "cores": 16, "ggml_features": ["avx2"]},
                     "memory_bytes": 64 * 2**30, "gpus": [], "vulkan_icds": [],
                     "engines": ["podman"], **facts},
            "results": results}


def entry(artifact: str, target: str, kind: str, status: str, *, pp: float = 0.0,
          tg: float = 0.0, reason: str | None = None, gpu: str = "",
          nmse: dict[str, float] | None = None) -> dict[str, Any]:
    """``nmse``: the smoke's deviation from the reference per model type (past the
    tolerance: not ok)."""
    bench = [] if status in ("skipped", "error") else [
        {"test": "pp64", "avg_ts": pp, "stddev_ts": pp / 50, "gpu_info": gpu,
         "model_type": "llama ?B all F32"},
        {"test": "tg16", "avg_ts": tg, "stddev_ts": tg / 50, "gpu_info": gpu,
         "model_type": "llama ?B all F32"}]
    smoke = None
    if nmse is not None:
        runs = [data.numerics_run(t, v, ok=v <= (1e-5 if t == "F32" else 2e-3))
                for t, v in nmse.items()]
        smoke = {"artifact": artifact, "target": target, "verdict": status, "numerics": {
            "verdict": "pass" if all(r["ok"] for r in runs) else "fail", "runs": runs}}
    return {"artifact": artifact, "target": target, "kind": kind, "status": status,
            "reason": reason, "bench": bench, "smoke": smoke}


CPU_TGZ = "llama.cpp-b11312-cpu-linux-x86_64.tar.gz"
CUDA_TGZ = "llama.cpp-b11312-cublas12-linux-x86_64.tar.gz"
VULKAN_TGZ = "llama.cpp-b11312-vulkan-linux-x86_64.tar.gz"
CPU_WHL = "llama_cpp_bin_cpu-11312.0-py3-none-manylinux_2_35_x86_64.whl"


def lab_files(tmp_path: Path) -> list[Path]:
    docs = {
        # gpu-1: an old run with the wheel, then a newer one where the cpu tarball regressed
        "gpu-1-old": result_doc("gpu-1", "2026-11-20T08:00:00+00:00", [
            entry(CPU_TGZ, "cpu", "tarball", "pass", pp=500, tg=50),
            entry(CPU_WHL, "cpu", "wheel", "pass", pp=480, tg=48)]),
        "gpu-1": result_doc("gpu-1", "2026-11-21T08:00:00+00:00", [
            entry(CPU_TGZ, "cpu", "tarball", "fail", pp=1, tg=0.5,
                  reason="outputs match the reference: Q4_0 NMSE 1.3e+00 > 2e-03",
                  nmse={"F32": 5.5e-8, "Q4_0": 1.3}),
            entry(CUDA_TGZ, "cublas12", "tarball", "pass", pp=9000, tg=180,
                  gpu="NVIDIA H100 80GB HBM3", nmse={"F32": 1e-7, "Q4_K_M": 3.1e-5})],
            gpus=[{"vendor": "NVIDIA", "name": "NVIDIA H100 80GB HBM3", "driver": "580.95.05"}]),
        "cpu-2": result_doc("cpu-2", "2026-11-21T09:00:00+00:00", [
            entry(CPU_TGZ, "cpu", "tarball", "pass", pp=300, tg=30,
                  nmse={"F32": 5.5e-8, "Q4_0": 1.6e-4}),
            entry(CPU_TGZ.replace("-cpu-", "-cpu-x86-64-v4-"), "cpu", "tarball", "skipped",
                  reason="needs CPU features this host lacks: avx512f"),
            entry(CUDA_TGZ, "cublas12", "tarball", "skipped", reason="no NVIDIA GPU"),
            entry(VULKAN_TGZ, "vulkan", "tarball", "error",
                  reason="llama-bench failed (killed by signal 11)")]),
    }
    paths = []
    for name, doc in docs.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(doc))
        paths.append(path)
    return paths


class Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str], list[str]] = {}
        self.svgs = 0
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "td" and a.get("data-status"):
            self.cells.setdefault((str(a["data-target"]), str(a["data-host"])), []).append(
                str(a["data-status"]))
        if tag == "svg":
            self.svgs += 1
        for key in ("src", "href"):
            if a.get(key):
                self.external.append(str(a[key]))
        if tag in {"link", "script"}:
            self.external.append(tag)


def test_merge_keeps_the_newest_per_artifact_and_shows_missing(tmp_path: Path) -> None:
    merged = report.merge(lab.load_results(lab_files(tmp_path)))
    assert sorted(merged.results) == ["cpu-2", "gpu-1"]
    gpu1 = merged.results["gpu-1"]
    assert gpu1[CPU_TGZ].status == "fail"  # the newer run wins
    assert gpu1[CPU_WHL].status == "pass"  # kept from the older run
    assert merged.hosts["gpu-1"].gpus[0].driver == "580.95.05"  # newest facts
    assert merged.rows() == [("cpu", "tarball"), ("cpu", "wheel"), ("cublas12", "tarball"),
                             ("vulkan", "tarball")]
    status = {(t, k, h): report.cell_status(merged.cell(h, t, k))
              for t, k in merged.rows() for h in merged.results}
    assert status == {
        ("cpu", "tarball", "gpu-1"): "fail", ("cpu", "tarball", "cpu-2"): "pass",
        ("cpu", "wheel", "gpu-1"): "pass", ("cpu", "wheel", "cpu-2"): "missing",
        ("cublas12", "tarball", "gpu-1"): "pass", ("cublas12", "tarball", "cpu-2"): "skipped",
        ("vulkan", "tarball", "gpu-1"): "missing", ("vulkan", "tarball", "cpu-2"): "error"}


def test_report_for_several_hosts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    html_out, md_out = tmp_path / "out" / "report.html", tmp_path / "summary.md"
    code, stdout, err = run(capsys, "lab", "report", *map(str, lab_files(tmp_path)), "--out",
                            str(html_out), "--markdown", str(md_out), "--json")
    assert code == 0, err
    grid = {(g["target"], g["kind"]): g["hosts"] for g in json.loads(stdout)["grid"]}
    assert grid[("cpu", "wheel")] == {"gpu-1": "pass", "cpu-2": "missing"}
    page = html_out.read_text()
    cells = Cells()
    cells.feed(page)
    assert cells.cells[("cpu", "gpu-1")] == ["fail", "pass"]  # tarball row, wheel row
    assert cells.cells[("vulkan", "cpu-2")] == ["error"]
    assert cells.cells[("vulkan", "gpu-1")] == ["missing"]
    assert cells.external == []  # self-contained: nothing to load
    assert cells.svgs == 4  # cpu and cublas12: prompt and generation charts
    assert "NVIDIA H100 80GB HBM3 (580.95.05)" in page  # host details
    assert "killed by signal 11" in page and "9,000.0" in page
    md = md_out.read_text()
    assert "| target | kind | cpu-2 | gpu-1 |" in md
    # the deviation from the reference beside tokens/s: the largest, or the one past its
    # tolerance
    assert "| cpu | tarball | ✅ pass (pp 300.0 / tg 30.0 t/s; max NMSE 1.6e-04 (Q4_0)) "\
        "\\[2 artifacts: 1 pass, 1 skipped\\] | ❌ fail (pp 1.0 / tg 0.5 t/s; NMSE 1.3e+00 > "\
        "2e-03 (Q4_0)) |" in md
    assert "| cublas12 | tarball | ⏭️ skipped | ✅ pass (pp 9,000.0 / tg 180.0 t/s; max NMSE "\
        "3.1e-05 (Q4_K_M)) |" in md
    assert '<small class="numerics">max NMSE 3.1e-05 (Q4_K_M)</small>' in page
    # a result without a numerics record says so (an older buildtool's lab run)
    assert "(pp 480.0 / tg 48.0 t/s; numerics missing)" in md
    assert "2 artifacts: 1 pass, 1 skipped" in page
    assert "| vulkan | tarball | ⚠️ error | — missing |" in md
    assert "- **cpu-2** `llama.cpp-b11312-vulkan-linux-x86_64.tar.gz`: error" in md


def test_report_for_one_host(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = lab_files(tmp_path)[2]
    out = tmp_path / "one.html"
    code, stdout, _ = run(capsys, "lab", "report", str(one), "--out", str(out))
    assert code == 0
    assert "1 host(s), 3 row(s)" in stdout
    cells = Cells()
    cells.feed(out.read_text())
    assert {h for _, h in cells.cells} == {"cpu-2"}
    assert "Failures" in out.read_text()


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "invalid JSON"),
    ('{"schema": "other/1"}', "not a lab result (schema 'other/1'"),
    (f'{{"schema": "{lab.SCHEMA}"}}', "missing required key 'buildtool_version'"),
])
def test_report_names_a_bad_file(tmp_path: Path, content: str, message: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    out = tmp_path / "r.html"
    code, _, err = run(capsys, "lab", "report", str(lab_files(tmp_path)[0]), str(bad),
                       "--out", str(out))
    assert code == ExitCode.BAD_DATA
    assert f"{bad}:" in err and message in err
    assert not out.exists()


def test_lab_run_checks_its_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "lab", "run", str(tmp_path), "-p", "64,x")
    assert code == ExitCode.USAGE and "comma-separated list" in err
    code, _, err = run(capsys, "lab", "run", str(tmp_path), "--out", str(tmp_path / "r.json"))
    assert code == ExitCode.USAGE and "no artifacts" in err
    assert not (tmp_path / "r.json").exists()
