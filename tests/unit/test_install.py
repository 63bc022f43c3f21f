"""`buildtool install` without running anything: a release directory written here (the files
`publish` writes: release.json, SHA256SUMS, provenance statements, manifests beside the
artifacts), served from the directory or over HTTP on loopback; the smoke test is a
stand-in that passes or fails by artifact. The real artifacts, published and installed:
tests/integration/test_install.py."""

from __future__ import annotations

import functools
import gzip
import http.server
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from buildtool import records
from buildtool.errors import DataError, HostIncompatibleError, UsageError
from buildtool.records import SmokeRecord
from buildtool.release import install as inst
from buildtool.release.publish import publish_index
from tests.standins import loopback
from tests.unit import release_data as data
from tests.unit.test_lab import OLD, ZEN4, _host

CUDA_GPU = {"vendor": "NVIDIA", "name": "NVIDIA H100 80GB HBM3", "driver": "580.95.05",
            "source": "nvidia-smi", "compute_capability": "9.0"}


def _artifact(rel: Path, target: str, *, family: str = "cpu", policy: str = "all-variants",
              features: tuple[str, ...] = (), level: str | None = None) -> dict[str, Any]:
    """A tarball with a llama-server and a manifest inside, its manifest beside it."""
    name = f"llama.cpp-b11312-{target}-linux-x86_64"
    gpu = family != "cpu"
    manifest = {**data.base_manifest(target, gpu=gpu, family=family,
                                      backend={"cpu": "CPU", "cuda": "CUDA",
                                               "vulkan": "Vulkan"}[family]),
                "kind": "tarball", "artifact": name,
                "cpu": {"policy": policy, "level": level, "required_features": list(features)}}
    files = {"llama-server": b"\x7fELF server " + target.encode(),
             "llama-bench": b"\x7fELF bench " + target.encode(),
             "manifest.json": json.dumps(manifest).encode()}
    path = rel / f"{name}.tar.gz"
    with gzip.GzipFile(path, "wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tf:
        for member, content in files.items():
            info = tarfile.TarInfo(f"{name}/{member}")
            info.size, info.mode = len(content), 0o755
            tf.addfile(info, io.BytesIO(content))
    digest = data.file_sha(path)
    (rel / f"{name}.manifest.json").write_text(json.dumps(
        {**manifest, "artifact_file": path.name, "artifact_sha256": digest}))
    return {"file": path.name, "kind": "tarball", "target": target, "size": path.stat().st_size,
            "sha256": digest, "platform": "linux-x86_64", "smoke": {"verdict": "pass"}}


def write_release(rel: Path, tag: str = "b11312") -> Path:
    """cpu (all-variants), cpu tuned to x86-64-v3, cublas12 and vulkan, as publish writes
    them."""
    rel.mkdir(parents=True)
    arts = [_artifact(rel, "cpu"),
            _artifact(rel, "cpu-x86-64-v3", policy="x86-64-v3", level="x86-64-v3",
                      features=("avx", "avx2", "fma", "f16c")),
            _artifact(rel, "cublas12", family="cuda"),
            _artifact(rel, "vulkan", family="vulkan")]
    (rel / "release.json").write_text(json.dumps({
        "schema": 1, "tag": tag, "released_at": "2026-12-01T00:00:00Z",
        "buildtool_version": "0.1.0", "artifacts": arts}))
    (rel / "SHA256SUMS").write_text("".join(f"{a['sha256']}  {a['file']}\n" for a in arts))
    (rel / "provenance.intoto.jsonl").write_text("".join(json.dumps({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": a["file"], "digest": {"sha256": a["sha256"]}}]}) + "\n"
        for a in arts))
    return rel


@pytest.fixture
def release(tmp_path: Path) -> Path:
    return write_release(tmp_path / "rel")


class Smoke:
    """The smoke test here, as a stand-in: fails the artifacts named in ``failing``; refuses
    (as this host's C library would) those named in ``refused``."""

    def __init__(self, *failing: str, refused: tuple[str, ...] = ()) -> None:
        self.failing, self.refused, self.ran = failing, refused, []  # type: ignore[var-annotated]

    def __call__(self, root: Path, kind: str = "tarball") -> SmokeRecord:
        assert (root / "llama-server").is_file() and (root / "manifest.json").is_file()
        self.ran.append(root.name)
        if any(r in root.name for r in self.refused):
            raise HostIncompatibleError("needs a newer C library than this host has: "
                                        "GLIBC_2.38")
        failed = any(f in root.name for f in self.failing)
        return records.from_data(SmokeRecord, {
            "artifact": root.name, "target": "cpu", "kind": "tarball",
            "verdict": "fail" if failed else "pass",
            "checks": [{"name": "backend is the artifact's", "ok": not failed,
                        "detail": "CUDA error: no CUDA-capable device" if failed else "",
                        "waived": False}],
            "tests": [], "command": [], "duration_s": 0.1, "model": "synthetic",
            "ran_at": "2026-12-01T00:00:00Z"}, "stand-in smoke")


def run(release: Path | str, prefix: Path, smoke: Smoke | None = None, *,
        host: Any = None, cpu: Any = ZEN4, kind: Any = "tarball", **kw: Any) -> inst.Outcome:
    lines: list[str] = []
    return inst.install(str(release), prefix, kind=kind, host=host or _host(),
                        cpu=cpu, system=None, smoke=smoke or Smoke(), note=lines.append,
                        step=lines.append, **kw)


def test_ranking_says_why_each_artifact_does_or_does_not_fit(release: Path,
                                                              tmp_path: Path) -> None:
    # Mesa's package installs every driver's manifest; detection names them (no GPU here)
    lavapipe = _host(vulkan_icds=["intel", "lvp", "radeon"])
    out = run(release, tmp_path / "p", host=lavapipe, dry_run=True)
    got = [(c.name.split("-b11312-")[1].removesuffix("-linux-x86_64.tar.gz"), c.rejected)
           for c in out.candidates]
    assert got[0] == ("cpu-x86-64-v3", None)  # tuned to this CPU first,
    assert got[1] == ("cpu", None)  # then the portable one
    reasons = dict(got[2:])
    assert "no NVIDIA GPU" in str(reasons["cublas12"])
    assert "no GPU here: its Vulkan device would be a software renderer (lvp)" in \
        str(reasons["vulkan"])
    assert "--allow-software-gpu" in str(reasons["vulkan"])
    assert not (tmp_path / "p").exists()  # a dry run downloads and writes nothing
    # a CPU without AVX2: the tuned build does not fit, the portable one does
    old = run(release, tmp_path / "p", cpu=OLD, dry_run=True)
    assert [c.rejected is None for c in old.candidates][:2] == [True, False]
    assert "needs CPU features this host lacks: avx2" in str(old.candidates[1].rejected)
    # a real GPU and lavapipe allowed: CUDA first, then Vulkan, then the CPU builds
    gpu = _host(gpus=[CUDA_GPU], drivers={"nvidia": "580.95.05"},
                devices={"/dev/nvidiactl": True, "/dev/kfd": False, "/dev/dri": True},
                vulkan_icds=["lvp", "nvidia"])
    best = run(release, tmp_path / "p", host=gpu, dry_run=True, allow_software_gpu=True)
    assert [c.target for c in best.candidates if c.rejected is None] == \
        ["cublas12", "vulkan", "cpu-x86-64-v3", "cpu"]
    # an AMD GPU with Mesa's drivers: the Vulkan build fits without the option
    radeon = _host(vulkan_icds=["lvp", "radeon"], gpus=[
        {"vendor": "AMD", "name": "Radeon RX 7900 XTX", "source": "sysfs"}],
        devices={"/dev/nvidiactl": False, "/dev/kfd": True, "/dev/dri": True})
    out = run(release, tmp_path / "p", host=radeon, dry_run=True)
    assert [c.target for c in out.candidates if c.rejected is None] == \
        ["vulkan", "cpu-x86-64-v3", "cpu"]


def test_install_falls_back_to_the_next_best_and_records_why(release: Path,
                                                               tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    gpu = _host(gpus=[CUDA_GPU], drivers={"nvidia": "580.95.05"},
                devices={"/dev/nvidiactl": True, "/dev/kfd": False, "/dev/dri": False})
    smoke = Smoke("cublas12")  # the GPU is there, but not usable: the smoke fails here
    out = run(release, prefix, smoke, host=gpu)
    assert out.installed is not None and out.installed.target == "cpu-x86-64-v3"
    # each smoke-tested where it would stay, versions/<artifact>; the failed one removed
    assert smoke.ran == ["llama.cpp-b11312-cublas12-linux-x86_64.tar.gz",
                         "llama.cpp-b11312-cpu-x86-64-v3-linux-x86_64.tar.gz"]
    assert [p.name for p in (prefix / "versions").iterdir()] == [smoke.ran[1]]
    assert (prefix / "bin" / "llama-server").read_bytes() == b"\x7fELF server cpu-x86-64-v3"
    assert (prefix / "current").is_symlink() and (prefix / "bin").is_symlink()
    rec = json.loads((prefix / "install.json").read_text())
    assert rec["artifact"] == out.installed.name and rec["release"] == "b11312"
    rejected = {r["artifact"].split("-b11312-")[1]: r for r in rec["rejected"]}
    assert rejected["cublas12-linux-x86_64.tar.gz"]["stage"] == "smoke"
    assert "no CUDA-capable device" in rejected["cublas12-linux-x86_64.tar.gz"]["reason"]
    assert rejected["vulkan-linux-x86_64.tar.gz"]["stage"] == "fit"
    assert not list(prefix.glob(".install-*"))  # nothing left of the failed try
    assert sorted(p.name for p in (prefix / "versions").iterdir()) == [out.installed.name]
    # again: the best that passed here is installed; nothing is tried again
    again = Smoke()
    second = run(release, prefix, again, host=gpu)
    assert not second.changed and again.ran == []
    assert second.installed is not None and second.installed.name == out.installed.name


def test_an_artifact_this_host_refuses_is_passed_over(release: Path, tmp_path: Path) -> None:
    out = run(release, tmp_path / "p", Smoke(refused=("x86-64-v3",)))
    assert out.installed is not None and out.installed.target == "cpu"
    assert "GLIBC_2.38" in str(out.candidates[0].rejected)


def test_no_fallback_makes_the_first_failure_final(release: Path, tmp_path: Path) -> None:
    with pytest.raises(inst.InstallError, match=r"cpu-x86-64-v3.*cannot be installed here"):
        run(release, tmp_path / "p", Smoke("x86-64-v3"), fallback=False)
    assert not (tmp_path / "p" / "current").exists()
    with pytest.raises(inst.InstallError, match="failed here") as exc:
        run(release, tmp_path / "p", Smoke("cpu"))
    assert exc.value.exit_code == 8


def test_rerunning_is_idempotent_and_an_upgrade_waits_for_its_smoke(
        release: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    first = run(release, prefix)
    assert first.changed
    smoke = Smoke()
    again = run(release, prefix, smoke)
    assert not again.changed and smoke.ran == []  # nothing downloaded, nothing run
    newer = write_release(tmp_path / "rel2", tag="b11400")
    _rebuild(newer, "cpu-x86-64-v3")  # other bytes: a newer build
    with pytest.raises(UsageError, match="--upgrade installs it"):
        run(newer, prefix)
    # the new one fails its smoke: the old one stays current and whole
    before = (prefix / "bin" / "llama-server").resolve()
    failing = Smoke("x86-64-v3")
    out = run(newer, prefix, failing, upgrade=True)
    assert out.installed is not None and out.installed.target == "cpu"
    assert (prefix / "bin" / "llama-server").is_file()
    assert json.loads((prefix / "install.json").read_text())["release"] == "b11400"
    assert not before.exists()  # the old version went once the new one was current
    assert len(list((prefix / "versions").iterdir())) == 1


def _rebuild(rel: Path, target: str) -> None:
    """Rewrite one artifact of a release directory with other bytes (and its records)."""
    doc = json.loads((rel / "release.json").read_text())
    for a in doc["artifacts"]:
        if a["target"] == target:
            path = rel / a["file"]
            path.write_bytes(path.read_bytes() + b"\0" * 16)  # gzip ignores trailing zeros
            a["sha256"] = data.file_sha(path)
    (rel / "release.json").write_text(json.dumps(doc))
    (rel / "SHA256SUMS").write_text("".join(f"{a['sha256']}  {a['file']}\n"
                                            for a in doc["artifacts"]))
    (rel / "provenance.intoto.jsonl").write_text("".join(json.dumps({
        "subject": [{"name": a["file"], "digest": {"sha256": a["sha256"]}}]}) + "\n"
        for a in doc["artifacts"]))


def test_a_tampered_download_is_refused_and_the_next_is_tried(release: Path,
                                                                tmp_path: Path) -> None:
    tuned = next(release.glob("*cpu-x86-64-v3*.tar.gz"))
    tuned.write_bytes(tuned.read_bytes()[:-1] + b"X")  # the release's records say otherwise
    out = run(release, tmp_path / "p")
    first = out.candidates[0]
    assert first.stage == "verify" and "tampered" in str(first.rejected)
    assert "release.json, SHA256SUMS, provenance.intoto.jsonl" in str(first.rejected)
    assert out.installed is not None and out.installed.target == "cpu"
    # a provenance statement naming other bytes is enough to refuse
    doc = (release / "provenance.intoto.jsonl").read_text().replace(
        json.loads((release / "release.json").read_text())["artifacts"][0]["sha256"], "0" * 64)
    (release / "provenance.intoto.jsonl").write_text(doc)
    with pytest.raises(inst.InstallError, match=r"provenance\.intoto\.jsonl say"):
        run(release, tmp_path / "q", Smoke("x86-64-v3"), cpu=ZEN4)


def test_the_prefix_must_be_buildtools(release: Path, tmp_path: Path) -> None:
    mine = tmp_path / "Documents"
    mine.mkdir()
    (mine / "thesis.tex").write_text("x")
    with pytest.raises(UsageError, match=r"holds no install\.json"):
        run(release, mine)
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UsageError, match=r"afile is not a directory"):
        run(release, tmp_path / "afile" / "p")
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "install.json").write_text("{}")
    with pytest.raises(DataError, match=r"p/install.json: missing required key .artifact."):
        run(release, tmp_path / "p")


def test_bad_sources_and_records_are_named(tmp_path: Path, release: Path) -> None:
    with pytest.raises(UsageError, match="is not a directory"):
        run(tmp_path / "nope", tmp_path / "p")
    with pytest.raises(UsageError, match="a release directory, a PEP 503 index or an http"):
        run("ftp://example.org/rel", tmp_path / "p")
    (release / "SHA256SUMS").write_text("not a sums line\n")
    with pytest.raises(DataError, match=r"SHA256SUMS:1: not a '<sha256>  <file name>' line"):
        run(release, tmp_path / "p")


@pytest.fixture
def served(release: Path) -> Iterator[str]:
    with loopback(functools.partial(_Quiet, directory=str(release))) as url:
        yield url + "/"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_release_served_over_http(served: str, tmp_path: Path) -> None:
    shown: list[tuple[int, int, str]] = []
    out = run(served, tmp_path / "p", progress=lambda *a: shown.append(a))
    assert out.installed is not None and out.source == served
    assert shown and shown[-1] == (1, 1, f"MiB of {out.installed.name}")  # the download
    assert (tmp_path / "p" / "bin" / "llama-server").is_file()
    with pytest.raises(DataError, match=r"missing/ has neither release\.json \(a release\) nor "
                                        r"index\.html \(a PEP 503 index\)"):
        run(served + "missing/", tmp_path / "q")


def test_json_outcome_names_the_stable_path(release: Path, tmp_path: Path) -> None:
    out = run(release, tmp_path / "p").to_json()
    assert out["llama_server"] == str(tmp_path / "p" / "bin" / "llama-server")
    assert out["changed"] and out["release"] == "b11312"
    assert {c["artifact"] for c in out["candidates"]} == {
        p.name for p in (tmp_path / "p").parent.glob("rel/*.tar.gz")}
    assert [c["rejected"] is None for c in out["candidates"]] == [True, True, False, False]


def test_the_manifest_beside_an_artifact_is_read_as_typed(release: Path,
                                                          tmp_path: Path) -> None:
    side = next(release.glob("*vulkan*.manifest.json"))
    side.write_text(json.dumps({**json.loads(side.read_text()), "platform": 7}))
    with pytest.raises(DataError, match=r"vulkan-linux-x86_64\.manifest\.json"):
        run(release, tmp_path / "p", dry_run=True)


# ------------------------------------------------------------------------------ wheels

TUNED = {"policy": "x86-64-v3", "level": "x86-64-v3",
         "required_features": ["avx", "avx2", "fma", "f16c"]}


@pytest.fixture
def index(tmp_path: Path) -> Path:
    """A PEP 503 index `publish --index` wrote: a portable and a tuned cpu wheel, their
    manifests beside them in files/."""
    dist = tmp_path / "dist"
    dist.mkdir()
    wheels = [data.wheel(dist, "cpu"), data.wheel(dist, "cpu-x86-64-v3", cpu=TUNED)]
    publish_index(wheels, tmp_path / "idx", dry_run=False, note=lambda _: None)
    return tmp_path / "idx"


def test_a_pep503_index_offers_its_wheels_judged_by_the_manifests_beside_them(
        index: Path, tmp_path: Path) -> None:
    assert sorted(p.name for p in (index / "files").glob("*.manifest.json")) == [
        "llama_cpp_bin_cpu-11312.0-py3-none-manylinux_2_35_x86_64.manifest.json",
        "llama_cpp_bin_cpu_x86_64_v3-11312.0-py3-none-manylinux_2_35_x86_64.manifest.json"]
    # from buildtool's page of targets: both, the tuned one first (this CPU has AVX2)
    out = run(index / "simple", tmp_path / "p", kind="wheel", dry_run=True)
    assert [(c.target, c.rejected) for c in out.candidates] == [
        ("cpu-x86-64-v3", None), ("cpu", None)]
    assert out.release == inst.INDEX_NAME and out.to_json()["kind"] == "wheel"
    assert {c.offer.release for c in out.candidates} == {"11312.0"}
    # one target's PEP 503 root: that target's wheel only
    one = run(index / "simple" / "cpu", tmp_path / "p", kind="wheel", dry_run=True)
    assert [c.target for c in one.candidates] == ["cpu"]
    # a CPU without AVX2: the tuned wheel does not fit
    old = run(index / "simple", tmp_path / "p", kind="wheel", dry_run=True, cpu=OLD)
    assert [c.rejected is None for c in old.candidates] == [True, False]
    assert "avx2" in str(old.candidates[1].rejected)
    # the index has no tarballs
    with pytest.raises(inst.InstallError, match="the PEP 503 index offers no tarball"):
        run(index / "simple", tmp_path / "p", dry_run=True)
    assert not (tmp_path / "p").exists()


def test_an_index_served_over_http(index: Path, tmp_path: Path) -> None:
    with loopback(functools.partial(_Quiet, directory=str(index))) as url:
        out = run(url + "/simple/", tmp_path / "p", kind="wheel", dry_run=True)
    assert [c.target for c in out.candidates] == ["cpu-x86-64-v3", "cpu"]
    assert out.candidates[0].offer.url.startswith(url + "/files/")


def test_an_index_wheel_is_verified_against_its_link_record_and_manifest(
        index: Path, tmp_path: Path) -> None:
    files = index / "files"
    tuned = next(files.glob("*v3*.whl"))
    original = tuned.read_bytes()
    tuned.write_bytes(original[:-1] + b"X")  # its link's #sha256= says otherwise
    with pytest.raises(inst.InstallError, match=r"not what the index's link say"):
        run(index / "simple", tmp_path / "p", kind="wheel", fallback=False)
    # the manifest beside it claims less than the one inside: judged by a false claim
    tuned.write_bytes(original)
    beside = next(files.glob("*v3*.manifest.json"))
    beside.write_text(json.dumps({**json.loads(beside.read_text()), "cpu": {
        "policy": "x86-64-v2", "level": "x86-64-v2", "required_features": ["sse4_2"]}}))
    with pytest.raises(inst.InstallError, match="the manifest beside it is not the one inside"):
        run(index / "simple", tmp_path / "p", kind="wheel", fallback=False)
    # a link without a sha256 cannot be verified
    for page in (index / "simple").rglob("index.html"):
        page.write_text(page.read_text().replace("#sha256=", "#md5="))
    with pytest.raises(inst.InstallError, match="has no sha256 in the index's link"):
        run(index / "simple", tmp_path / "p", kind="wheel", fallback=False)
    assert not (tmp_path / "p" / "current").exists()


def test_a_release_offers_wheels_by_kind_and_a_prefix_holds_one_kind(
        release: Path, tmp_path: Path) -> None:
    # the tarball release has no wheels
    with pytest.raises(inst.InstallError, match="release b11312 offers no wheel"):
        run(release, tmp_path / "q", kind="wheel", dry_run=True)
    run(release, tmp_path / "p")
    with pytest.raises(UsageError, match=r"holds a tarball .*; a wheel goes into another"):
        run(release, tmp_path / "p", kind="wheel")
    with pytest.raises(inst.InstallError, match="release b11312 offers no image"):
        run(release, tmp_path / "q", kind="image")


def test_a_source_that_is_neither_is_named(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty has neither release\.json"):
        run(tmp_path / "empty", tmp_path / "p", dry_run=True)
    (tmp_path / "empty" / "index.html").write_text("<a href='x.tar.gz'>x</a>")
    with pytest.raises(DataError, match="the index links no wheels"):
        run(tmp_path / "empty", tmp_path / "p", dry_run=True)


def test_what_is_inside_must_be_what_the_manifest_records(release: Path,
                                                          tmp_path: Path) -> None:
    """Every witness agrees on the download, but a file inside is not the one the manifest
    lists (the release gate's contents check): refused before anything runs."""
    side = next(release.glob("*cpu-x86-64-v3*.manifest.json"))
    side.write_text(json.dumps({**json.loads(side.read_text()),
                                "files": {"llama-server": "0" * 64}}))
    smoke = Smoke()
    out = run(release, tmp_path / "p", smoke)
    first = out.candidates[0]
    assert first.stage == "verify" and "llama-server" in str(first.rejected)
    assert "differs from its record" in str(first.rejected)
    assert out.installed is not None and out.installed.target == "cpu"
    assert smoke.ran == [out.installed.name]


def test_a_prefix_that_cannot_be_made_is_a_usage_error(release: Path) -> None:
    """Root may write anywhere by the mode bits, but not create a directory in /proc: said,
    exit code 2, not a traceback."""
    with pytest.raises(UsageError, match="cannot create /proc/buildtool-test-prefix"):
        run(release, Path("/proc/buildtool-test-prefix"))
