"""Release and lab, for real, on the artifacts the other integration modules built (the cpu
tarball, wheel and image; cached builds when those modules ran first — this module runs
last): `buildtool publish` to a recording GitHub API stand-in, a PEP 503 index served over
HTTP and installed from with pip, a local registry (Debian's docker-registry on loopback)
and an OCI layout, twice; `buildtool lab run` on this machine, one artifact broken and one
for other hardware; `buildtool lab report` opened in headless chromium and screenshotted."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from buildtool import records
from buildtool.errors import ExitCode
from buildtool.outputs import sidecar
from buildtool.records import Manifest
from buildtool.release.publish import image_tags
from tests.integration.conftest import BASE, buildtool
from tests.standins import fake_github, loopback

GREEN, RED, ORANGE = (0x1A, 0x7F, 0x37), (0xCF, 0x22, 0x2E), (0xBC, 0x4C, 0x00)


def _run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=1800, **kw)


def _build(work: Path, env: dict[str, str], *extra: str, dist: str = "dist") -> Path:
    proc = buildtool("build", "--target", "cpu", "--dist", str(work / dist), "--build-root",
                     str(work / "build"), "--json", *extra, env=env, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    outcome = json.loads(proc.stdout)
    made = outcome.get("artifacts") or [outcome]
    return Path(made[0]["artifact"])


def _sidecars(artifact: Path) -> list[Path]:
    return [sidecar(artifact, k) for k in ("manifest", "smoke")]


@pytest.fixture(scope="module")
def artifacts(work: Path, engine_env: dict[str, str]) -> dict[str, Path]:
    """The three cpu artifacts with their sidecars, gathered into one directory."""
    made = {
        "tarball": _build(work, engine_env),
        "wheel": _build(work, engine_env, "--artifact", "wheel"),
        "image": _build(work, engine_env, "--artifact", "image", "--build-arg",
                        f"BUILD_IMAGE={BASE}", "--build-arg", f"RUNTIME_IMAGE={BASE}",
                        dist="image-dist"),
    }
    src = work / "release-src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir()
    out = {}
    for kind, path in made.items():
        for f in [path, *_sidecars(path)]:
            assert f.is_file(), f"{f} is missing"
            os.link(f, src / f.name)
        out[kind] = src / path.name
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's docker-registry (distribution 2.8) on loopback."""
    exe = shutil.which("docker-registry")
    assert exe, "docker-registry is needed (.ci/run installs it with apt-get)"
    root = tmp_path_factory.mktemp("registry")
    port = _free_port()
    (root / "config.yml").write_text(
        f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: "
        f"{root / 'data'}\nhttp:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen([exe, "serve", str(root / "config.yml")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def http_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A directory served over HTTP on loopback (what a web server does for an index)."""
    root = tmp_path_factory.mktemp("served")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None  # type: ignore[method-assign,assignment]
    with loopback(handler) as url:
        yield root, url


def test_publish_everywhere_then_again(artifacts: dict[str, Path], registry: str,
                                       http_dir: tuple[Path, str], work: Path,
                                       engine_env: dict[str, str]) -> None:
    src = artifacts["tarball"].parent
    served, url = http_dir
    index = served / "llama"
    with fake_github() as (api, gh):
        env = {**engine_env, "GITHUB_TOKEN": gh.token}
        argv = ["publish", str(src), "--github", gh.repo, "--github-api", api,
                "--index", str(index), "--registry", f"{registry}/lab", "--json"]
        first = buildtool(*argv, env=env, timeout=1800)
        assert first.returncode == 0, first.stderr[-4000:]
        doc = json.loads(first.stdout)
        rel = src / "release-b11312"
        names = sorted(p.name for p in rel.iterdir() if not p.name.startswith("."))
        # GitHub: one release, every file of the release directory as an asset, same bytes
        (release_,) = gh.releases.values()
        assert release_["body"] == (rel / "RELEASE_NOTES.md").read_text()
        assert sorted(a["name"] for a in gh.assets.values()) == names
        assert all(a["data"] == (rel / a["name"]).read_bytes() for a in gh.assets.values())
        assert gh.token not in first.stdout + first.stderr
        # registry: both tags, with the archive's manifest digest
        manifest = records.load(Manifest, _sidecars(artifacts["image"])[0])
        assert manifest.image is not None
        digest = manifest.image.manifest_digest
        tags = image_tags(manifest)
        assert tags and all(t.startswith("cpu") and "/" not in t for t in tags)
        for tag in tags:
            got = _run(["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}",
                        f"docker://{registry}/lab/llama.cpp:{tag}"])
            assert got.returncode == 0 and got.stdout.strip() == digest, got.stderr
        pushed = [a for a in doc["actions"] if a["destination"] == "registry"]
        assert [a["action"] for a in pushed] == ["pushed"] * len(tags)

        # the same release again: nothing uploaded, pushed, added, duplicated or lost
        writes = len(gh.writes())
        before = {p.relative_to(served): p.read_bytes() for p in served.rglob("*") if p.is_file()}
        second = buildtool(*argv, env=env, timeout=1800)
        assert second.returncode == 0, second.stderr[-4000:]
        assert {a["action"] for a in json.loads(second.stdout)["actions"]} == {"unchanged"}
        assert len(gh.writes()) == writes
        assert sorted(a["name"] for a in gh.assets.values()) == names
        after = {p.relative_to(served): p.read_bytes() for p in served.rglob("*") if p.is_file()}
        assert after == before

    # the index, served over HTTP, installs with real pip into a fresh environment
    venv = work / "index-venv"
    assert _run([sys.executable, "-m", "venv", str(venv)]).returncode == 0
    wheel = artifacts["wheel"]
    project = wheel.name.split("-")[0].replace("_", "-")
    # only our index: no pip configuration, no cache, no other index
    pip_env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_CACHE_DIR": "1"}
    got = _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-v",
                "--disable-pip-version-check", "--index-url", f"{url}/llama/simple/cpu/",
                project], env=pip_env)
    assert got.returncode == 0, got.stdout + got.stderr
    assert f"{url}/llama/files/llama_cpp_bin_cpu-" in got.stdout  # fetched over HTTP
    assert f"Successfully installed {project}-" in got.stdout
    module = project.replace("-", "_")
    info = json.loads(_run([str(venv / "bin" / "python"), "-m", module, "--json"],
                           cwd=work).stdout)
    assert info["target"] == "cpu" and info["version"] in wheel.name

    # an OCI layout as the destination (skopeo), and a dry run that pushes nothing
    layout = work / "oci-layout"
    proc = buildtool("publish", str(src), "--registry", f"oci:{layout}", env=engine_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = _run(["skopeo", "inspect", "--format", "{{.Digest}}", f"oci:{layout}:{tags[0]}"])
    assert got.stdout.strip() == digest, got.stderr
    dry = buildtool("publish", str(src), "--registry", f"oci:{work / 'never'}", "--dry-run",
                    env=engine_env)
    assert dry.returncode == 0 and not (work / "never").exists()


def test_install_the_published_release_from_http(artifacts: dict[str, Path],
                                                 http_dir: tuple[Path, str], work: Path,
                                                 engine_env: dict[str, str]) -> None:
    """`buildtool install` from the release `publish` wrote, served over HTTP: ranked for
    this host, verified, smoke-tested here, installed; again: nothing to do; its wheel into a
    virtual environment, from the release and from the PEP 503 index; its image into podman
    with a launcher; a tampered copy: refused, nothing installed."""
    served, url = http_dir
    out = work / "install-release"
    proc = buildtool("publish", str(artifacts["tarball"].parent), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    shutil.copytree(out, served / "rel")
    prefix = work / "llama-prefix"
    proc = buildtool("install", f"{url}/rel/", "--prefix", str(prefix), "--json",
                     timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    doc = json.loads(proc.stdout)
    assert doc["installed"] == artifacts["tarball"].name and doc["changed"]
    assert doc["release"] == "b11312" and doc["source"] == f"{url}/rel/"
    assert "provenance.intoto.jsonl say" in proc.stderr  # verified before the smoke
    server = prefix / "bin" / "llama-server"
    version = _run([str(server), "--version"])
    assert version.returncode == 0 and "11312" in version.stdout + version.stderr
    rec = json.loads((prefix / "install.json").read_text())
    assert rec["smoke"] == "pass" and rec["artifact"] == doc["installed"]
    again = buildtool("install", f"{url}/rel/", "--prefix", str(prefix), "--json")
    assert again.returncode == 0 and not json.loads(again.stdout)["changed"]

    # the wheel of the same release, into a virtual environment at the prefix
    wheel_prefix = work / "llama-venv"
    proc = buildtool("install", f"{url}/rel/", "--kind", "wheel", "--prefix",
                     str(wheel_prefix), "--json", timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    doc = json.loads(proc.stdout)
    assert doc["installed"] == artifacts["wheel"].name and doc["kind"] == "wheel"
    assert (wheel_prefix / "bin").readlink() == Path("current/bin")
    version = _run([str(wheel_prefix / "bin" / "llama-server"), "--version"])
    assert version.returncode == 0 and "11312" in version.stdout + version.stderr
    # and from the PEP 503 index `publish --index` writes, served over HTTP
    proc = buildtool("publish", str(artifacts["wheel"].parent), "--out",
                     str(work / "install-index-release"), "--index", str(served / "idx"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    index_prefix = work / "llama-index-venv"
    proc = buildtool("install", f"{url}/idx/simple/", "--kind", "wheel", "--prefix",
                     str(index_prefix), "--json", timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    doc = json.loads(proc.stdout)
    assert doc["installed"] == artifacts["wheel"].name and doc["release"] == "PEP 503 index"
    assert "as the index's link says" in proc.stderr
    rec = json.loads((index_prefix / "install.json").read_text())
    assert rec["kind"] == "wheel" and rec["smoke"] == "pass"
    assert _run([str(index_prefix / "bin" / "llama-server"), "--version"]).returncode == 0

    # the image of the same release: loaded into podman, PREFIX/bin/llama-server runs it
    image_prefix = work / "llama-image"
    proc = buildtool("install", f"{url}/rel/", "--kind", "image", "--prefix",
                     str(image_prefix), "--json", env=engine_env, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    doc = json.loads(proc.stdout)
    assert doc["installed"] == artifacts["image"].name and doc["kind"] == "image"
    launcher = image_prefix / "bin" / "llama-server"
    script = launcher.read_text()
    assert "--network host" in script and "podman run" in script
    # the image by its ID (what was verified and smoke-tested), not by a tag
    assert re.search(r" sha256:[0-9a-f]{64} ", script), script
    version = _run([str(launcher), "--version"], env={**os.environ, **engine_env}, cwd=work)
    assert version.returncode == 0 and "11312" in version.stdout + version.stderr, \
        version.stderr[-2000:]
    again = buildtool("install", f"{url}/rel/", "--kind", "image", "--prefix",
                      str(image_prefix), "--json", env=engine_env)
    assert again.returncode == 0 and not json.loads(again.stdout)["changed"]

    bad = served / "tampered"
    shutil.copytree(out, bad)
    target = bad / artifacts["tarball"].name
    target.write_bytes(target.read_bytes()[:-64] + bytes(64))
    proc = buildtool("install", f"{url}/tampered/", "--prefix", str(work / "never"))
    assert proc.returncode == ExitCode.SMOKE, proc.stderr
    assert "tampered download" in proc.stderr
    assert not (work / "never" / "current").exists()


def _portable_and_vulkan(work: Path) -> list[Path]:
    """The all-variants cpu tarball and the vulkan tarball test_portable_and_vulkan built
    (the same arguments: up to date when that module ran first)."""
    out = []
    for target, args in (("cpu", ("--cpu", "all-variants")), ("vulkan", ())):
        proc = buildtool("build", "--target", target, "--dist", str(work / f"dist-{target}"),
                         "--build-root", str(work / f"build-{target}"), "--artifact",
                         "tarball", "--json", *args, timeout=3600)
        assert proc.returncode == 0, proc.stderr[-4000:]
        outcome = json.loads(proc.stdout)
        out.append(Path((outcome.get("artifacts") or [outcome])[0]["artifact"]))
    return out


def test_install_ranks_tuned_portable_and_vulkan_builds(artifacts: dict[str, Path],
                                                         work: Path) -> None:
    """A release of the host-tuned and the all-variants cpu tarballs and the vulkan one:
    here (no GPU; lavapipe is Mesa's software Vulkan) the Vulkan build is rejected unless
    allowed, the tuned build is installed; allowed, the Vulkan build is installed and runs
    on lavapipe; the tuned one broken, install falls back to the portable one."""
    tuned = artifacts["tarball"]
    portable, vulkan = _portable_and_vulkan(work)
    src = work / "install-three"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir()
    for artifact in (tuned, portable, vulkan):
        for f in [artifact, *_sidecars(artifact)]:
            os.link(f, src / f.name)
    rel = work / "install-three-release"
    proc = buildtool("publish", str(src), "--out", str(rel), "--allow",
                     f"{vulkan.name}=proven on lavapipe only (no GPU here)")
    assert proc.returncode == 0, proc.stderr[-3000:]

    dry = buildtool("install", str(rel), "--prefix", str(work / "p-dry"), "--dry-run",
                    "--json")
    assert dry.returncode == 0, dry.stderr[-3000:]
    ranked = {c["artifact"]: c for c in json.loads(dry.stdout)["candidates"]}
    order = [c["artifact"] for c in json.loads(dry.stdout)["candidates"]]
    assert order == [tuned.name, portable.name, vulkan.name]
    assert "software renderer" in ranked[vulkan.name]["rejected"]
    assert ranked[tuned.name]["rejected"] is None and ranked[portable.name]["rejected"] is None
    assert not (work / "p-dry").exists()

    proc = buildtool("install", str(rel), "--prefix", str(work / "p-cpu"), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["installed"] == tuned.name

    proc = buildtool("install", str(rel), "--prefix", str(work / "p-vk"),
                     "--allow-software-gpu", "--json", timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["installed"] == vulkan.name  # smoke on lavapipe passed
    installed = json.loads((work / "p-vk" / "bin" / "manifest.json").read_text())
    assert installed["family"] == "vulkan"

    # the tuned build's bytes differ from what the release says: refused, the next is taken
    broken = work / "install-three-broken"
    shutil.copytree(rel, broken)
    target = broken / tuned.name
    target.write_bytes(target.read_bytes()[:-64] + bytes(64))
    proc = buildtool("install", str(broken), "--prefix", str(work / "p-fb"), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["installed"] == portable.name
    first = next(c for c in doc["candidates"] if c["artifact"] == tuned.name)
    assert first["stage"] == "verify" and "tampered" in first["rejected"]
    rec = json.loads((work / "p-fb" / "install.json").read_text())
    assert {r["artifact"]: r["stage"] for r in rec["rejected"]} == {
        tuned.name: "verify", vulkan.name: "fit"}


def test_publish_refuses_an_artifact_whose_smoke_result_is_gone(artifacts: dict[str, Path],
                                                                work: Path) -> None:
    other = work / "release-src-broken"
    shutil.rmtree(other, ignore_errors=True)
    shutil.copytree(artifacts["tarball"].parent, other, ignore=shutil.ignore_patterns(
        "release-*"), copy_function=os.link)
    (other / _sidecars(artifacts["wheel"])[1].name).unlink()
    # the manifest keeps a copy of the smoke result: remove that too
    side = other / _sidecars(artifacts["wheel"])[0].name
    manifest = json.loads(side.read_text())
    manifest.pop("smoke", None)
    side.unlink()
    side.write_text(json.dumps(manifest))
    proc = buildtool("publish", str(other))
    assert proc.returncode == ExitCode.RELEASE_REFUSED
    assert f"{artifacts['wheel'].name}\n    [smoke-missing]" in proc.stderr
    assert not list(other.glob("release-*"))


def _broken_copy(tarball: Path, dest: Path) -> Path:
    """The tarball under another name, its llama-bench replaced by a program that fails."""
    stage = dest / "stage"
    with tarfile.open(tarball) as tf:
        tf.extractall(stage, filter="data")
    (top,) = stage.iterdir()
    new = top.with_name(top.name.replace("-cpu-", "-cpu-broken-"))
    top.rename(new)
    bench = new / "llama-bench"
    bench.unlink()
    bench.write_text("#!/bin/sh\necho 'ggml: illegal hardware state' >&2\nexit 3\n")
    bench.chmod(0o755)
    out = dest / f"{new.name}.tar.gz"
    with tarfile.open(out, "w:gz") as tf:
        tf.add(new, arcname=new.name)
    manifest = json.loads(_sidecars(tarball)[0].read_text())
    manifest.update(artifact=new.name, artifact_file=out.name)
    (dest / f"{new.name}.manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(stage)
    return out


def _foreign_copy(tarball: Path, dest: Path) -> Path:
    """The tarball, described as built for arm64 (this host cannot run it)."""
    name = tarball.name.replace("x86_64", "aarch64")
    out = dest / name
    os.link(tarball, out)
    manifest = json.loads(_sidecars(tarball)[0].read_text())
    manifest.update(platform="linux-aarch64", artifact_file=name)
    (dest / name.replace(".tar.gz", ".manifest.json")).write_text(json.dumps(manifest))
    return out


def test_lab_run_and_report_in_a_browser(artifacts: dict[str, Path], work: Path,
                                         engine_env: dict[str, str]) -> None:
    from PIL import Image

    lab_dir = work / "lab-artifacts"
    shutil.rmtree(lab_dir, ignore_errors=True)
    lab_dir.mkdir()
    for path in artifacts.values():
        for f in [path, *_sidecars(path)]:
            os.link(f, lab_dir / f.name)
    broken = _broken_copy(artifacts["tarball"], lab_dir)
    foreign = _foreign_copy(artifacts["tarball"], lab_dir)
    result = work / "lab" / "this-host.json"
    proc = buildtool("lab", "run", str(lab_dir), "--out", str(result), "-p", "32,64",
                     "-n", "8,16", "-r", "2", env=engine_env, timeout=2400)
    assert proc.returncode == ExitCode.SMOKE, proc.stderr[-4000:]  # one failed; all reported
    doc = json.loads(result.read_text())
    by_name = {r["artifact"]: r for r in doc["results"]}
    assert len(by_name) == 5
    for kind in ("tarball", "wheel", "image"):
        entry = by_name[artifacts[kind].name]
        assert entry["status"] == "pass", entry
        assert entry["kind"] == kind and entry["smoke"]["verdict"] == "pass"
        tests = sorted({b["test"] for b in entry["bench"]})
        assert tests == ["pp32", "pp64", "tg16", "tg8"]
        assert all(b["avg_ts"] > 0 and len(b["samples_ts"]) == 2 for b in entry["bench"])
    assert by_name[broken.name]["status"] == "error"
    assert "exit code 3" in by_name[broken.name]["detail"]
    assert by_name[foreign.name]["status"] == "skipped"
    assert "aarch64" in by_name[foreign.name]["reason"]
    host = doc["host"]
    assert host["cpu"]["features"] and host["os"] and host["kernel"]
    assert "podman" in host["engines"]

    # a second host (a GPU box) from its result file: merged into one page
    other = work / "lab" / "gpu-box.json"
    gpu_doc = {**doc, "host": {**doc["host"], "id": "gpu-box", "hostname": "gpu-box",
                               "gpus": [{"vendor": "NVIDIA", "name": "NVIDIA L4",
                                         "driver": "580.95.05"}]},
               "results": [{**by_name[artifacts["tarball"].name], "status": "fail",
                            "reason": "backend is CPU only: backends: CPU, CUDA"}]}
    other.write_text(json.dumps(gpu_doc))
    page, summary = work / "lab" / "report.html", work / "lab" / "summary.md"
    proc = buildtool("lab", "report", str(result), str(other), "--out", str(page),
                     "--markdown", str(summary))
    assert proc.returncode == 0, proc.stderr
    assert "❌ fail" in summary.read_text() and "⚠️ error" in summary.read_text()

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is needed (.ci/run installs it with apt-get)"
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--window-size=1400,1600"]
    dom = _run([*flags, "--dump-dom", page.as_uri()])
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-host="gpu-box"' in dom.stdout and 'data-status="error"' in dom.stdout
    shot = work / "lab" / "report.png"
    got = _run([*flags, f"--screenshot={shot}", page.as_uri()])
    assert got.returncode == 0 and shot.is_file(), got.stderr[-2000:]
    with Image.open(shot) as img:
        assert img.size == (1400, 1600)
        colours = {c for _, c in img.convert("RGB").getcolors(maxcolors=1 << 20) or []}
    # the grid really rendered: pass, fail and error cells are on screen in their colours
    assert {GREEN, RED, ORANGE} <= colours


def test_an_image_built_elsewhere_is_adopted_by_its_smoke_test(artifacts: dict[str, Path],
                                                               work: Path,
                                                               engine_env: dict[str, str]
                                                               ) -> None:
    """`docker buildx bake` writes bare OCI archives: `buildtool smoke` writes the manifest
    beside one from the image's own, and the release gate then takes it."""
    bare = work / "baked"
    shutil.rmtree(bare, ignore_errors=True)
    bare.mkdir()
    archive = bare / artifacts["image"].name
    os.link(artifacts["image"], archive)
    assert buildtool("publish", str(bare)).returncode == ExitCode.RELEASE_REFUSED
    proc = buildtool("smoke", str(archive), env=engine_env, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads(sidecar(archive, "manifest").read_text())
    assert manifest["artifact_sha256"] == json.loads(
        sidecar(archive, "smoke").read_text())["artifact_sha256"]
    assert manifest["target"] == "cpu" and manifest["image"]["manifest_digest"].startswith(
        "sha256:")
    proc = buildtool("publish", str(bare), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (entry,) = json.loads(proc.stdout)["artifacts"]
    assert entry["kind"] == "image" and entry["tags"]


CUDA_TARGET, CUDA_ARCH = "cublas13", "89-real"


@pytest.mark.slow
def test_install_rejects_a_real_cuda_build_without_an_nvidia_gpu(artifacts: dict[str, Path],
                                                                 work: Path) -> None:
    """The release of issue 20: the host-tuned and all-variants cpu tarballs, the vulkan one
    and a real CUDA tarball (cublas13 with the toolkit buildtool provisions, one
    architecture: 20+ minutes on 2 cores, hence slow). Here, without an NVIDIA GPU, install
    ranks them, rejects CUDA (no device) and Vulkan (a software renderer) and installs the
    tuned CPU build; its dry run says every reason."""
    from buildtool import backends

    kit = backends.toolchain("cuda-13.0")
    assert kit is not None
    if kit.installed() is None:
        proc = buildtool("toolchain", "install", CUDA_TARGET, timeout=1800)
        assert proc.returncode == 0, proc.stderr[-3000:]
    # no GPU here: its smoke could only fail, so it ships by a recorded exception
    proc = buildtool("build", "--target", CUDA_TARGET, "--gpu-archs", CUDA_ARCH, "--no-smoke",
                     "--artifact", "tarball", "--dist", str(work / "dist-cuda"),
                     "--build-root", str(work / "build-cuda"), "--json", timeout=3 * 3600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    cuda = Path(json.loads(proc.stdout)["artifact"])
    manifest = json.loads(sidecar(cuda, "manifest").read_text())
    assert manifest["gpu"] and manifest["family"] == "cuda"
    assert manifest["gpu_archs"] == [CUDA_ARCH]

    tuned = artifacts["tarball"]
    portable, vulkan = _portable_and_vulkan(work)
    src = work / "install-four"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir()
    for artifact in (tuned, portable, vulkan, cuda):
        for f in [artifact, *_sidecars(artifact)]:
            if f.exists():
                os.link(f, src / f.name)
    rel = work / "install-four-release"
    proc = buildtool("publish", str(src), "--out", str(rel),
                     "--allow", f"{vulkan.name}=proven on lavapipe only (no GPU here)",
                     "--allow", f"{cuda.name}=built on a machine without an NVIDIA GPU")
    assert proc.returncode == 0, proc.stderr[-3000:]

    dry = buildtool("install", str(rel), "--prefix", str(work / "p4-dry"), "--dry-run",
                    "--json")
    assert dry.returncode == 0, dry.stderr[-3000:]
    doc = json.loads(dry.stdout)
    ranked = {c["artifact"]: c for c in doc["candidates"]}
    assert [c["artifact"] for c in doc["candidates"]][:2] == [tuned.name, portable.name]
    assert ranked[cuda.name]["stage"] == "fit" and "NVIDIA" in ranked[cuda.name]["rejected"]
    assert "software renderer" in ranked[vulkan.name]["rejected"]

    proc = buildtool("install", str(rel), "--prefix", str(work / "p4"), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["installed"] == tuned.name
    rec = json.loads((work / "p4" / "install.json").read_text())
    assert {r["artifact"]: r["stage"] for r in rec["rejected"]} == {
        cuda.name: "fit", vulkan.name: "fit"}
    assert "NVIDIA" in next(r["reason"] for r in rec["rejected"] if r["artifact"] == cuda.name)
