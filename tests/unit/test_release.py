"""`buildtool publish`: the release gate (every refusal reason), what a release holds, and
the uploads against loopback stand-ins (GitHub API recorder; index and OCI destinations are
exercised for real in tests/integration/test_release_lab.py)."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from buildtool.artifacts import find
from buildtool.errors import ExitCode
from buildtool.release import gate as release
from buildtool.release import publish
from buildtool.text import md
from tests.standins import fake_github
from tests.unit import release_data as data
from tests.unit.helpers import manifest, run_cli

run = run_cli


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    d = tmp_path / "dist"
    d.mkdir()
    data.tarball(d, "cpu")
    data.wheel(d, "cpu")
    data.oci_archive(d, "cpu")
    data.tarball(d, "cublas12", gpu=True, backend="CUDA", family="cuda",
                 gpu_info="NVIDIA H100 80GB HBM3", ngl=99)
    return d


def _tamper_bytes(p: Path) -> None:
    with p.open("ab") as fh:
        fh.write(b"\0")


def _recompress_with_bad_file(p: Path) -> None:
    """Same tarball, one file inside changed; the manifest's artifact sha256 is updated (as if
    the sidecar had been regenerated), its per-file checksum is not."""
    with tarfile.open(p) as tf:
        members = [(m, tf.extractfile(m).read() if m.isfile() else None)  # type: ignore[union-attr]
                   for m in tf.getmembers()]
    with tarfile.open(p, "w:gz") as tf:
        for m, original in members:
            content = original
            if content is not None and m.name.endswith("llama-bench"):
                content = b"\x7fELF patched"
                m.size = len(content)
            tf.addfile(m, None if content is None else io.BytesIO(content))
    data.rewrite_sidecar(p, "manifest", artifact_sha256=data.file_sha(p))
    data.rewrite_sidecar(p, "smoke", artifact_sha256=data.file_sha(p))
    sums = p.parent / "SHA256SUMS"
    sums.write_text("".join(ln + "\n" for ln in sums.read_text().splitlines()
                            if not ln.endswith(p.name)))


def _bad_wheel_record(p: Path) -> None:
    tmp = p.with_suffix(".tmp")
    with zipfile.ZipFile(p) as src, zipfile.ZipFile(tmp, "w") as dst:
        for item in src.infolist():
            content = src.read(item)
            if item.filename.endswith("__init__.py"):
                content = b"TARGET = 'evil'\n"
            dst.writestr(item, content)
    tmp.replace(p)
    for kind in ("manifest", "smoke"):
        data.rewrite_sidecar(p, kind, artifact_sha256=data.file_sha(p))
    (p.parent / "SHA256SUMS").unlink()


def _bad_oci_blob(p: Path) -> None:
    with tarfile.open(p) as tf:
        members = [(m, tf.extractfile(m).read()) for m in tf.getmembers()]  # type: ignore[union-attr]
    with tarfile.open(p, "w") as tf:
        for m, content in members:
            evil = content.replace(b"\x7fELF bench", b"\x7fELF evil!") \
                if m.name.startswith("blobs/") else content  # same size, other bytes
            tf.addfile(m, io.BytesIO(evil))
    for kind in ("manifest", "smoke"):
        data.rewrite_sidecar(p, kind, artifact_sha256=data.file_sha(p))
    (p.parent / "SHA256SUMS").unlink()


def _cuda(d: Path) -> Path:
    return d / "llama.cpp-b11312-cublas12-linux-x86_64.tar.gz"


def _cpu(d: Path) -> Path:
    return d / "llama.cpp-b11312-cpu-linux-x86_64.tar.gz"


def _side(p: Path, kind: str) -> Path:
    return p.parent / p.name.replace(".tar.gz", f".{kind}.json")


CASES: dict[str, tuple[str, Callable[[Path], None]]] = {
    "manifest missing": ("manifest-missing", lambda d: _side(_cpu(d), "manifest").unlink()),
    "manifest of the wrong shape": ("manifest-invalid", lambda d: data.rewrite_sidecar(
        _cpu(d), "manifest", cpu=None)),
    "manifest that is not JSON": ("manifest-invalid", lambda d: _side(_cpu(d), "manifest")
                                  .write_bytes(b"\xff{")),
    "manifest of another file": ("manifest-mismatch", lambda d: data.rewrite_sidecar(
        _cpu(d), "manifest", artifact_file="other.tar.gz")),
    "artifact bytes changed": ("checksum-mismatch", lambda d: _tamper_bytes(_cpu(d))),
    "SHA256SUMS disagrees": ("checksum-mismatch", lambda d: (d / "SHA256SUMS").write_text(
        f"{'0' * 64}  {_cpu(d).name}\n")),
    "a file inside the tarball changed": ("checksum-mismatch",
                                          lambda d: _recompress_with_bad_file(_cpu(d))),
    "a wheel file differs from RECORD": ("checksum-mismatch", lambda d: _bad_wheel_record(
        next(d.glob("*.whl")))),
    "an OCI blob differs from its digest": ("checksum-mismatch", lambda d: _bad_oci_blob(
        next(d.glob("*.oci.tar")))),
    "no smoke result": ("smoke-missing", lambda d: _side(_cpu(d), "smoke").unlink()),
    "smoke result of the wrong shape": ("smoke-invalid", lambda d: data.rewrite_sidecar(
        _cpu(d), "smoke", checks=["ok", "ok"])),
    "smoke result with an unknown verdict": ("smoke-invalid", lambda d: data.rewrite_sidecar(
        _cpu(d), "smoke", verdict="maybe")),
    "SHA256SUMS that is not one": ("checksum-mismatch", lambda d: (d / "SHA256SUMS")
                                   .write_text("garbage line\n")),
    "smoke failed": ("smoke-failed", lambda d: data.rewrite_sidecar(_cpu(d), "smoke",
                                                                    verdict="fail")),
    "smoke of other bytes": ("smoke-stale", lambda d: data.rewrite_sidecar(
        _cpu(d), "smoke", artifact_sha256="f" * 64)),
    "smoke of another target": ("smoke-stale", lambda d: data.rewrite_sidecar(
        _cpu(d), "smoke", target="vulkan")),
    "smoke with a waived check": ("smoke-waived", lambda d: data.rewrite_sidecar(
        _cuda(d), "smoke", waived=["ran on a CUDA device"])),
    "GPU target smoke-tested on the CPU": ("gpu-not-proven", lambda d: data.tarball(
        d, "cublas12", gpu=True, backend="CPU", family="cuda")),
    "GPU target on no device": ("gpu-not-proven", lambda d: data.tarball(
        d, "cublas12", gpu=True, backend="CUDA", family="cuda", gpu_info="", ngl=99)),
    "vulkan on a software renderer": ("gpu-not-proven", lambda d: data.tarball(
        d, "vulkan", gpu=True, backend="Vulkan", family="vulkan",
        gpu_info="llvmpipe (LLVM 15.0.6, 256 bits)", ngl=99)),
    "GPU target with nothing offloaded": ("gpu-not-proven", lambda d: data.tarball(
        d, "cublas12", gpu=True, backend="CUDA", family="cuda", gpu_info="NVIDIA L4", ngl=0)),
    "portable artifact with no emulated run": ("cpu-not-proven", lambda d: data.rewrite_sidecar(
        _cpu(d), "smoke", emulated=[])),
    "portable artifact proven only above its lowest model": (
        "cpu-not-proven", lambda d: data.rewrite_sidecar(
            _cpu(d), "smoke", emulated=[data.emulated_run("Haswell", "haswell")])),
    "portable artifact failing on its lowest model": (
        "cpu-not-proven", lambda d: data.rewrite_sidecar(
            _cpu(d), "smoke", emulated=[data.emulated_run("qemu64", "x64", "fail")])),
    "outputs differ from the reference": ("numerics-failed", lambda d: data.rewrite_sidecar(
        _cpu(d), "smoke", numerics={"verdict": "fail", "tokens": 63, "reference": "NumPy",
                                    "runs": [data.numerics_run("Q4_0", 1.3, ok=False)]})),
    "outputs wrong on an emulated CPU": ("numerics-failed", lambda d: data.rewrite_sidecar(
        _cpu(d), "smoke", emulated=[{**data.emulated_run("qemu64", "x64"), "numerics": [
            data.numerics_run("Q4_K_M", 0.9, ok=False)]}])),
    "outputs never compared": ("numerics-missing", lambda d: data.rewrite_sidecar(
        _cpu(d), "smoke", numerics=None)),
    "an artifact without llama-results": ("numerics-missing", lambda d: data.rewrite_sidecar(
        _cpu(d), "smoke", numerics={"verdict": "missing", "reason": "no llama-results"})),
    "one artifact with a patch the others lack": ("mixed-source", lambda d: data.rewrite_sidecar(
        _cpu(d), "manifest", llama_cpp={**data.base_manifest("cpu")["llama_cpp"], "patches": [
            {"file": "patches/0001-amx.patch", "sha256": "a" * 64, "reason": "AMX"}]})),
    "two llama.cpp commits": ("mixed-source", lambda d: data.rewrite_sidecar(
        _cpu(d), "manifest", llama_cpp={"commit": "1" * 40, "version": "b99999",
                                        "repository": "https://github.com/ggml-org/llama.cpp"})),
}


def _in_toto_accepts(statement: dict[str, Any]) -> None:
    """The in-toto attestation framework's own bindings parse and validate the statement, and
    its predicate parses as SLSA provenance v1 (field names, types, RFC 3339 times)."""
    from google.protobuf import json_format
    from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
    from in_toto_attestation.v1.statement import Statement
    from in_toto_attestation.v1.statement_pb2 import Statement as StatementProto

    proto = json_format.ParseDict(statement, StatementProto())
    Statement.copy_from_pb(proto).validate()
    json_format.ParseDict(statement["predicate"], provenance_pb2.Provenance())


def test_every_reason_has_a_case() -> None:
    assert {reason for reason, _ in CASES.values()} == set(release.REASONS)


@pytest.mark.parametrize("case", list(CASES))
def test_each_reason_refuses_the_whole_release(case: str, dist: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    reason, breaks = CASES[case]
    breaks(dist)
    out = tmp_path / "rel"
    code, stdout, err = run(capsys, "publish", str(dist), "--out", str(out), "--json")
    assert code == ExitCode.RELEASE_REFUSED, err
    problems = json.loads(stdout)["problems"]
    assert reason in {p["reason"] for p in problems}, problems
    assert f"[{reason}]" in err
    assert not out.exists() and not list(tmp_path.glob(".rel*"))  # nothing half-written


def test_refusal_names_every_offender_and_what_to_do(dist: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    _side(_cpu(dist), "smoke").unlink()
    data.tarball(dist, "cublas12", gpu=True, backend="CPU", family="cuda")
    code, _, err = run(capsys, "publish", str(dist))
    assert code == ExitCode.RELEASE_REFUSED
    assert "2 of 4 artifacts are not proven" in err
    assert _cpu(dist).name in err and _cuda(dist).name in err
    assert "--allow ARTIFACT=REASON" in err
    assert not list(dist.glob("release-*"))


def test_allow_ships_by_recorded_exception(dist: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    data.tarball(dist, "cublas12", gpu=True, backend="CPU", family="cuda")
    out = tmp_path / "rel"
    code, stdout, err = run(capsys, "publish", str(dist), "--out", str(out), "--json",
                            "--allow", "*-cublas12-*=no GPU in the lab this week")
    assert code == 0, err
    doc = json.loads(stdout)
    (exc,) = doc["exceptions"]
    assert exc["artifact"] == _cuda(dist).name and exc["reason"] == "no GPU in the lab this week"
    assert exc["problems"][0]["reason"] == "gpu-not-proven"
    notes = (out / release.NOTES).read_text()
    assert "## Exceptions" in notes and "no GPU in the lab this week" in notes
    assert json.loads((out / release.RELEASE_RECORD).read_text())["exceptions"] == doc["exceptions"]
    statements = [json.loads(x) for x in (out / release.PROVENANCE).read_text().splitlines()]
    cuda = next(s for s in statements if s["subject"][0]["name"] == _cuda(dist).name)
    assert {"name": "release-exception", "annotations": {"reason": "no GPU in the lab this week"}} \
        in cuda["predicate"]["runDetails"]["byproducts"]
    assert "ships by exception" in err


@pytest.mark.parametrize(("allow", "message"), [
    ("llama.cpp-b11312-cpu-linux-x86_64.tar.gz", "needs a reason"),
    ("nothing-like-this=because", "matches no artifact"),
])
def test_allow_is_checked(dist: Path, allow: str, message: str,
                          capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "publish", str(dist), "--allow", allow, "--dry-run")
    assert code == ExitCode.USAGE and message in err


def test_release_directory_contents(dist: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    out = tmp_path / "rel"
    code, stdout, err = run(capsys, "publish", str(dist), "--out", str(out), "--json")
    assert code == 0, err
    artifacts = sorted(p.name for p in find(dist))
    assert len(artifacts) == 4
    # SHA256SUMS covers the artifacts, and they are the same bytes as in dist
    sums = dict(reversed(line.split("  ")) for line in (out / "SHA256SUMS").read_text()
                .splitlines())
    assert sorted(sums) == artifacts
    assert all(sums[n] == data.file_sha(dist / n) == data.file_sha(out / n) for n in artifacts)
    # notes: one table row per artifact with size and smoke figures
    notes = (out / release.NOTES).read_text()
    assert "| Target | Artifact | Kind | Size | Smoke | Prompt t/s | Generation t/s | Device |" \
        in notes
    row = next(ln for ln in notes.splitlines() if "cublas12" in ln and ln.startswith("|"))
    assert "| pass | 812.5 (pp32) | 95.2 (tg16) | NVIDIA H100 80GB HBM3 |" in row
    assert "`localhost/llama.cpp:cpu-b11312`" in notes
    # provenance: one in-toto statement per artifact with the SLSA v1 predicate
    statements = [json.loads(x) for x in (out / release.PROVENANCE).read_text().splitlines()]
    assert len(statements) == 4
    for s in statements:
        assert s["_type"] == "https://in-toto.io/Statement/v1"
        assert s["predicateType"] == "https://slsa.dev/provenance/v1"
        (subject,) = s["subject"]
        assert subject["digest"]["sha256"] == sums[subject["name"]]
        definition = s["predicate"]["buildDefinition"]
        assert definition["resolvedDependencies"][0] == {
            "uri": f"git+https://github.com/ggml-org/llama.cpp@{data.COMMIT}",
            "digest": {"gitCommit": data.COMMIT}}
        assert definition["resolvedDependencies"][1]["digest"] == {"sha256": "8" * 64}
        assert definition["externalParameters"]["llama_cpp"] == "b11312"  # the version chosen
        assert definition["internalParameters"]["cmake_defines"]["CMAKE_BUILD_TYPE"] == "Release"
        builder = s["predicate"]["runDetails"]["builder"]
        assert builder["id"] == "urn:buildtool:host:ci-runner-7"  # SLSA: a URI
        assert urlsplit(builder["id"]).scheme
        _in_toto_accepts(s)
        assert builder["version"] == {"buildtool": "0.1.0", "cmake": "3.31.6", "cc": "12.2.0"}
    # SBOM: valid CycloneDX 1.6 with every artifact and its hash, depending on the source
    text = (out / release.SBOM).read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    bom = json.loads(text)
    files = {c["name"]: c for c in bom["components"] if c["type"] == "file"}
    assert sorted(files) == artifacts
    assert all(files[n]["hashes"] == [{"alg": "SHA-256", "content": sums[n]}] for n in files)
    deps = {d["ref"]: d.get("dependsOn", []) for d in bom["dependencies"]}
    assert all("source" in deps[f"artifact:{n}"] for n in artifacts)
    assert "tool:cmake@3.31.6" in deps[f"artifact:{artifacts[0]}"]
    # the JSON outcome
    doc = json.loads(stdout)
    assert doc["refused"] is False and doc["tag"] == "b11312" and doc["actions"] == []


def test_a_second_release_is_byte_identical(dist: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rel"
    assert run(capsys, "publish", str(dist), "--out", str(out))[0] == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert run(capsys, "publish", str(dist), "--out", str(out))[0] == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    # a release directory inside dist is not taken for more artifacts
    inner = dist / "release-b11312"
    assert run(capsys, "publish", str(dist))[0] == 0
    assert run(capsys, "publish", str(dist))[0] == 0
    assert {p.name for p in inner.iterdir()} == set(first)


def test_dry_run_writes_and_sends_nothing(dist: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with fake_github() as (api, gh):
        code, stdout, err = run(capsys, "publish", str(dist), "--dry-run", "--json",
                                "--github", gh.repo, "--github-api", api,
                                "--index", str(tmp_path / "index"),
                                "--registry", "127.0.0.1:5000/lab")
        assert code == 0, err
        assert gh.calls == []
    doc = json.loads(stdout)
    assert not list(dist.glob("release-*")) and not (tmp_path / "index").exists()
    actions = {(a["destination"], a["action"]) for a in doc["actions"]}
    assert actions == {("github", "would-create-or-update"), ("github", "would-upload"),
                       ("index", "would-add"), ("registry", "would-push")}
    pushes = sorted(a["item"] for a in doc["actions"] if a["destination"] == "registry")
    assert pushes == ["docker://127.0.0.1:5000/lab/llama.cpp:cpu",
                      "docker://127.0.0.1:5000/lab/llama.cpp:cpu-b11312"]


# ---------------------------------------------------------------------------------------
# GitHub, against the recording stand-in


def _publish_github(capsys: pytest.CaptureFixture[str], dist: Path, api: str, repo: str,
                    monkeypatch: pytest.MonkeyPatch, token: str) -> tuple[int, dict[str, Any],
                                                                         str]:
    monkeypatch.setenv("GITHUB_TOKEN", token)
    code, stdout, err = run(capsys, "publish", str(dist), "--github", repo, "--github-api", api,
                            "--json")
    return code, json.loads(stdout) if stdout.strip() else {}, err


def test_github_release_is_created_then_left_alone(dist: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with fake_github() as (api, gh):
        code, doc, err = _publish_github(capsys, dist, api, gh.repo, monkeypatch, gh.token)
        assert code == 0, err
        (rel,) = gh.releases.values()
        assert rel["tag_name"] == "b11312" and rel["body"].startswith("# llama.cpp b11312")
        released = dist / "release-b11312"
        names = sorted(p.name for p in released.iterdir() if not p.name.startswith("."))
        assets = {a["name"]: a for a in gh.assets.values()}
        assert sorted(assets) == names
        assert all(a["data"] == (released / n).read_bytes() for n, a in assets.items())
        assert all(a["content_type"] == "application/octet-stream" for a in assets.values())
        uploaded = [a for a in doc["actions"] if a["action"] == "uploaded"]
        assert len(uploaded) == len(names)
        # every request carried the token in its header; no output carries it
        assert all(c.headers["Authorization"] == f"Bearer {gh.token}" for c in gh.calls)
        assert gh.token not in err and gh.token not in json.dumps(doc)

        # the same release again: only reads, nothing duplicated or lost
        writes = len(gh.writes())
        code, doc, err = _publish_github(capsys, dist, api, gh.repo, monkeypatch, gh.token)
        assert code == 0, err
        assert len(gh.writes()) == writes
        assert {a["action"] for a in doc["actions"]} == {"unchanged"}
        assert sorted(a["name"] for a in gh.assets.values()) == names


def test_github_replaces_a_changed_asset_and_updates_the_notes(
        dist: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with fake_github() as (api, gh):
        assert _publish_github(capsys, dist, api, gh.repo, monkeypatch, gh.token)[0] == 0
        count = len(gh.assets)
        data.tarball(dist, "cpu", rebuild=400)  # rebuilt: 12 KiB more, new manifest and smoke
        code, doc, err = _publish_github(capsys, dist, api, gh.repo, monkeypatch, gh.token)
        assert code == 0, err
        by_action = {a["item"]: a["action"] for a in doc["actions"]}
        stem = _cpu(dist).name.removesuffix(".tar.gz")
        assert by_action[_cpu(dist).name] == "replaced"
        assert by_action[f"{stem}.manifest.json"] == "replaced"
        assert by_action["SHA256SUMS"] == "replaced"
        assert by_action["llama.cpp-b11312-cublas12-linux-x86_64.tar.gz"] == "unchanged"
        assert by_action[f"{gh.repo}@b11312"] == "updated"  # the notes name the new size
        assert len(gh.assets) == count  # replaced, not duplicated
        cpu_asset = next(a for a in gh.assets.values() if a["name"] == _cpu(dist).name)
        assert cpu_asset["data"] == _cpu(dist).read_bytes()
        (rel,) = gh.releases.values()
        assert rel["body"] == (dist / "release-b11312" / release.NOTES).read_text()


def test_github_retries_a_broken_upload(dist: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with fake_github() as (api, gh):
        gh.fail_upload_of = "SHA256SUMS"
        code, _, err = _publish_github(capsys, dist, api, gh.repo, monkeypatch, gh.token)
        assert code == ExitCode.PUBLISH and "answered 500" in err
        assert gh.token not in err
        starter = [a for a in gh.assets.values() if a["state"] == "starter"]
        assert [a["name"] for a in starter] == ["SHA256SUMS"]
        code, doc, err = _publish_github(capsys, dist, api, gh.repo, monkeypatch, gh.token)
        assert code == 0, err
        by_action = {a["item"]: a["action"] for a in doc["actions"]}
        assert by_action["SHA256SUMS"] == "replaced"
        assert by_action[release.NOTES] == "unchanged"  # uploaded by the first attempt
        names = [a["name"] for a in gh.assets.values()]
        assert len(names) == len(set(names)) == len(release.files(dist / "release-b11312"))
        assert all(a["state"] == "uploaded" for a in gh.assets.values())


def test_github_refuses_without_or_with_a_bad_token(dist: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.delenv("GH_TOKEN", raising=False)
    code, _, err = run(capsys, "publish", str(dist), "--github", "lab/x")
    assert code == ExitCode.USAGE and "GITHUB_TOKEN" in err
    assert not list(dist.glob("release-*"))  # refused before anything was written
    with fake_github() as (api, gh):
        wrong = "ghp_wrongtoken_abcdef123456"
        code, _, err = _publish_github(capsys, dist, api, gh.repo, monkeypatch, wrong)
        assert code == ExitCode.PUBLISH
        assert "answered 401: Bad credentials" in err and wrong not in err
        assert "may write releases" in err
    assert "s3cr3t" not in repr(publish.GitHub("a/b", "s3cr3t"))


# ---------------------------------------------------------------------------------------
# Index and registry pieces that need no process


def test_index_publish_adds_and_never_changes_a_wheel(dist: Path, tmp_path: Path) -> None:
    whl = next(dist.glob("*.whl"))
    index = tmp_path / "index"
    notes: list[str] = []
    assert [a.action for a in publish.publish_index([whl], index, dry_run=False,
                                                    note=notes.append)] == ["added"]
    assert (index / "files" / whl.name).read_bytes() == whl.read_bytes()
    assert [a.action for a in publish.publish_index([whl], index, dry_run=False,
                                                    note=notes.append)] == ["unchanged"]
    other = tmp_path / "other" / whl.name
    other.parent.mkdir()
    shutil.copy(whl, other)
    with other.open("ab") as fh:
        fh.write(b"x")
    with pytest.raises(publish.PublishError, match="exists with different contents"):
        publish.publish_index([other], index, dry_run=False, note=notes.append)


def test_registry_destinations_and_commands(tmp_path: Path) -> None:
    tags = ["cpu-b11312", "cpu"]
    assert publish.destinations("ghcr.io/lab", tags) == [
        "docker://ghcr.io/lab/llama.cpp:cpu-b11312", "docker://ghcr.io/lab/llama.cpp:cpu"]
    assert publish.destinations(f"oci:{tmp_path}/layout", tags[:1]) == [
        f"oci:{tmp_path}/layout:cpu-b11312"]
    assert publish.image_tags(manifest(image={"tags": [
        "localhost:5000/llama.cpp:cpu-b1", "localhost/llama.cpp:cpu", "x:../../etc"]})) == \
        ["cpu-b1", "cpu"]
    local = "docker://127.0.0.1:5000/lab/llama.cpp:cpu"
    assert publish.skopeo_copy(Path("/a.oci.tar"), local) == [
        "skopeo", "copy", "--preserve-digests", "--dest-tls-verify=false",
        "oci-archive:/a.oci.tar", local]
    assert "--dest-tls-verify=false" not in publish.skopeo_copy(
        Path("/a.oci.tar"), "docker://ghcr.io/lab/llama.cpp:cpu")
    assert publish.engine_push("docker", "localhost/llama.cpp:cpu",
                               "docker://ghcr.io/lab/llama.cpp:cpu") == [
        ["docker", "tag", "localhost/llama.cpp:cpu", "ghcr.io/lab/llama.cpp:cpu"],
        ["docker", "push", "ghcr.io/lab/llama.cpp:cpu"]]
    with pytest.raises(publish.PublishError, match="cannot write an OCI layout"):
        publish.publish_images([], "oci:/x", dry_run=False, note=print, tool="docker")


def test_a_tarball_and_an_image_of_one_build_keep_their_own_sidecars(tmp_path: Path,
                                                                     capsys: pytest.
                                                                     CaptureFixture[str]) -> None:
    """Both are named after the build (llama.cpp-b11312-cpu-linux-x86_64): their manifests
    and smoke results must not overwrite each other in one directory."""
    data.tarball(tmp_path, "cpu")
    data.oci_archive(tmp_path, "cpu", name="llama.cpp-b11312-cpu-linux-x86_64")
    sides = sorted(p.name for p in tmp_path.glob("*.json"))
    assert sides == ["llama.cpp-b11312-cpu-linux-x86_64.manifest.json",
                     "llama.cpp-b11312-cpu-linux-x86_64.oci.manifest.json",
                     "llama.cpp-b11312-cpu-linux-x86_64.oci.smoke.json",
                     "llama.cpp-b11312-cpu-linux-x86_64.smoke.json"]
    code, _, err = run(capsys, "publish", str(tmp_path), "--out", str(tmp_path / "rel"))
    assert code == 0, err


def test_the_notes_list_the_gpus_each_cuda_artifact_covers(dist: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    cuda = dist / "llama.cpp-b11312-cublas12-linux-x86_64.tar.gz"
    summary = ("SASS sm_86, sm_89; PTX compute_90: GPUs of compute capability 8.6+, 8.9+ "
               "natively, >= 9.0 by JIT; driver >= 525.60.13")
    data.rewrite_sidecar(cuda, "manifest", device_code={
        "verdict": "pass", "tool": "cuobjdump 12.4", "toolkit": "12.4",
        "min_driver": "525.60.13", "min_driver_ptx": "550.54.14",
        "expected": {"sass": ["86", "89"], "ptx": ["90"]},
        "files": {"libggml-cuda.so": {"sass": ["86", "89"], "ptx": ["90"]}},
        "summary": summary})
    out = tmp_path / "rel"
    code, _, err = run(capsys, "publish", str(dist), "--out", str(out), "--json")
    assert code == 0, err
    notes = (out / release.NOTES).read_text()
    section = notes.split("## GPUs covered", 1)[1]
    # escaped like every value that came from an artifact
    assert f"- `{cuda.name}`: {md(summary)}" in section
    assert "8.6\\+, 8.9\\+ natively, &gt;= 9.0 by JIT" in section
    assert "cpu" not in section.split("##", 1)[0]  # only GPU artifacts are listed
    record = json.loads((out / "release.json").read_text())
    by_file = {a["file"]: a for a in record["artifacts"]}
    assert by_file[cuda.name]["gpus"] == summary


def test_a_numerics_refusal_shows_the_deviation(dist: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    CASES["outputs differ from the reference"][1](dist)
    code, stdout, _ = run(capsys, "publish", str(dist), "--json")
    assert code == ExitCode.RELEASE_REFUSED
    failed = [p for p in json.loads(stdout)["problems"] if p["reason"] == "numerics-failed"]
    assert [p["detail"] for p in failed] == [
        "Q4_0 NMSE 1.3e+00 > 2e-03, KL 2.0e+00 > 2e-03 (against the NumPy)"]


def test_patched_sources_are_named_in_the_notes_and_the_provenance(
        dist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    patch = {"file": "patches/0001-amx-xtiledata.patch", "sha256": "b" * 64,
             "reason": "ggml-org/llama.cpp#26954: request XTILEDATA per thread"}
    for artifact in find(dist):
        data.rewrite_sidecar(artifact, "manifest", llama_cpp={
            **data.base_manifest("cpu")["llama_cpp"], "patches": [patch]})
    out = tmp_path / "rel"
    code, _, err = run(capsys, "publish", str(dist), "--out", str(out), "--json")
    assert code == 0, err
    notes = (out / release.NOTES).read_text()
    assert "Patched: `patches/0001-amx-xtiledata.patch` (ggml-org/llama.cpp\\#26954: request " \
        "XTILEDATA per thread) (applied in this order; sha256 in the lock)." in notes
    statement = json.loads((out / "provenance.intoto.jsonl").read_text().splitlines()[0])
    deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert {"uri": "buildtool-patch:patches/0001-amx-xtiledata.patch",
            "digest": {"sha256": "b" * 64},
            "annotations": {"reason": patch["reason"]}} in deps
