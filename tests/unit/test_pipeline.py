"""The build pipeline kind by kind, without a compiler: each kind's build step on a job whose
``compile`` and ``audit`` are stand-ins, and the pipeline that asks the kinds (the cache, the
shared build directory, the order of kinds). Real builds: tests/integration."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from buildtool import build as pipeline
from buildtool import records
from buildtool.artifacts import KINDS, image, tarball
from buildtool.artifacts.base import Audits, BuildJob
from buildtool.config.plan import BuildPlan, make_plan
from buildtool.config.resolve import Overrides
from buildtool.config.session import open_session
from buildtool.outputs import lookup, read_sums, sidecar
from buildtool.progress import Reporter
from buildtool.records import AbiRecord, AbiVersions, AuditRecord, Manifest
from buildtool.source.vendor import Materialized
from tests.unit import helpers
from tests.unit import release_data as data
from tests.unit.helpers import ROOT
from tests.unit.test_resolve import host, res
from tests.unit.test_wheel import _source

PASS = AuditRecord(verdict="pass")
FLOOR = AbiRecord(verdict="pass", floor=AbiVersions(glibc="2.34", libstdcxx="3.4.30"))


def _compiler(plan: BuildPlan, calls: list[str]) -> Any:
    """A stand-in for CMake + Ninja: the programs and libraries appear in bin/."""
    def compile_() -> None:
        calls.append("compile")
        bin_dir = plan.build_dir / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        for program in plan.target.build_targets:
            (bin_dir / program).write_bytes(b"\x7fELF " + program.encode())
            (bin_dir / program).chmod(0o755)
        (bin_dir / "libggml.so.0.9.0").write_bytes(b"\x7fELF ggml")
        (bin_dir / "libggml.so.0").unlink(missing_ok=True)
        (bin_dir / "libggml.so.0").symlink_to("libggml.so.0.9.0")
    return compile_


def _job(plan: BuildPlan, source: Materialized, calls: list[str], **kw: Any) -> BuildJob:
    def audit(files: list[Path], *, own_runtime: bool = False) -> Audits:
        calls.append("audit:" + ",".join(sorted(f.name for f in files))
                     + (" (own runtime)" if own_runtime else ""))
        return Audits(isa=PASS, abi=FLOOR)
    return BuildJob(plan=plan, source=source, root=ROOT,
                    reporter=Reporter(quiet=True), timings={},
                    compile=_compiler(plan, calls), audit=audit, **kw)


def test_the_tarball_kind_compiles_audits_packages_and_records(
        tmp_path: Path, data: Path, fake_tools: object) -> None:
    source = _source(tmp_path)
    plan = make_plan(res("cpu", host(data)), root=ROOT, source_dir=source.tree,
                     tree_sha256="0" * 64, use_ccache=False, build_root=tmp_path / "build",
                     dist_dir=tmp_path / "dist")
    calls: list[str] = []
    made = tarball.build(_job(plan, source, calls))
    assert calls == ["compile", "audit:libggml.so.0,libggml.so.0.9.0,llama-bench,llama-cli,"
                     "llama-quantize,llama-results,llama-server"]
    assert made.kind == "tarball" and made.path == plan.artifact_path
    assert made.manifest.files is not None and made.manifest.isa_audit == PASS
    assert made.manifest.abi == FLOOR
    assert made.manifest.files["libggml.so.0"] == "symlink:libggml.so.0.9.0"
    assert records.load(Manifest, sidecar(made.path, "manifest")) == made.manifest
    assert read_sums(plan.dist_dir)[made.path.name] == made.manifest.artifact_sha256
    assert lookup(plan.dist_dir, tarball.key(_job(plan, source, []))) == made.path
    with tarfile.open(made.path) as tf:
        inner = json.loads(tf.extractfile(  # type: ignore[union-attr]
            f"{plan.artifact_name}/manifest.json").read())
    assert inner["kind"] == "tarball" and "artifact_sha256" not in inner
    assert tarball.contents(made.path, made.manifest) == []


def test_a_tarball_bundles_the_runtime_its_family_names(
        tmp_path: Path, data: Path, fake_tools: object) -> None:
    """A family's Bundle (a vendor runtime the backend module loads) ships beside the
    programs, is audited like them, and its licenses land in licenses/<name>/."""
    import dataclasses

    from buildtool.backends.base import Bundle

    vendor = tmp_path / "vendor-runtime"
    vendor.mkdir()
    (vendor / "libvendor.so.7").write_bytes(b"\x7fELF vendor")
    (vendor / "LICENSE").write_text("Apache-2.0\n")
    (vendor / "third-party.txt").write_text("notices\n")
    source = _source(tmp_path)
    rt = dataclasses.replace(res("cpu", host(data)), runtime=(Bundle(
        name="vendorrt", version="7.0", files=(vendor / "libvendor.so.7",),
        licenses=(("LICENSE", vendor / "LICENSE"),
                  ("licensing/third-party.txt", vendor / "third-party.txt"))),))
    plan = make_plan(rt, root=ROOT, source_dir=source.tree, tree_sha256="0" * 64,
                     use_ccache=False, build_root=tmp_path / "build",
                     dist_dir=tmp_path / "dist")
    calls: list[str] = []
    made = tarball.build(_job(plan, source, calls))
    assert "libvendor.so.7" in calls[1]  # audited with what was built
    files = made.manifest.files or {}
    assert files["libvendor.so.7"] == data_sha(vendor / "libvendor.so.7")
    assert files["licenses/vendorrt/licensing/third-party.txt"] == data_sha(
        vendor / "third-party.txt")
    with tarfile.open(made.path) as tf:
        names = set(tf.getnames())
        sums = tf.extractfile(  # type: ignore[union-attr]
            f"{plan.artifact_name}/SHA256SUMS").read().decode()
    assert {f"{plan.artifact_name}/libvendor.so.7",
            f"{plan.artifact_name}/licenses/vendorrt/LICENSE"} <= names
    assert "  licenses/vendorrt/LICENSE\n" in sums
    assert tarball.contents(made.path, made.manifest) == []


def data_sha(path: Path) -> str:
    return data.file_sha(path)


class StandInEngine:
    """`podman build`, `podman save` and `podman image inspect` as far as the image kind
    sees them. Of the runtime stage (`--target runtime`), `save` writes a base whose layer
    holds /usr/bin/bash; of a whole Dockerfile, an archive whose /opt/llama.cpp holds the
    context's prebuilt/bin (``alter``: changed first)."""

    def __init__(self, tmp_path: Path, alter: Any = None) -> None:
        self.ran: list[list[str]] = []
        self.tmp, self.alter, self.context, self.target = tmp_path, alter, Path(), ""

    def capture(self, argv: list[str], **_: Any) -> str:
        self.ran.append([str(a) for a in argv])
        assert argv[1:3] == ["image", "inspect"], argv
        return "sha256:" + "b" * 64 + "\n"

    def run(self, argv: list[str], **_: Any) -> list[str]:
        from tests.unit.test_image import _archive

        self.ran.append([str(a) for a in argv])
        if argv[1] == "build":
            self.context = Path(argv[-1])
            self.target = argv[argv.index("--target") + 1] if "--target" in argv else ""
        if argv[1] == "save" and self.target == "runtime":
            _archive(Path(argv[argv.index("--output") + 1]),
                     [{"usr/bin/bash": b"bash", "opt/other": b"x"}])
        elif argv[1] == "save":  # podman save ... --output <archive> <tag>
            held: dict[str, bytes | str] = {}
            for path in sorted((self.context / "prebuilt" / "bin").iterdir()):
                held[f"opt/llama.cpp/{path.name}"] = str(path.readlink()) \
                    if path.is_symlink() else path.read_bytes()
            held["opt/llama.cpp/manifest.json"] = (
                self.context / "targets" / "cpu" / "manifest.json").read_bytes()
            if self.alter:
                self.alter(held)
            _archive(Path(argv[argv.index("--output") + 1]), [held])
        return []


def test_the_image_kind_packages_the_compile_and_checks_what_it_reads_back(
        tmp_path: Path, data: Path, fake_tools: object,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine is a stand-in: it builds and saves the Dockerfile's runtime stage (once:
    the second build takes it from the cache), and the kind applies the last stage itself —
    the compiled files and the manifest as layers, the labels — then checks and audits the
    files it reads back out of the archive and records engine, digests, files and audit."""
    from buildtool import cmd
    from buildtool.artifacts import oci
    from buildtool.toolchains.engines import Engine

    monkeypatch.setenv("BUILDTOOL_CACHE", str(tmp_path / "cache"))
    source = _source(tmp_path)
    plan = make_plan(res("cpu", host(data), overrides=Overrides(cpu="all-variants")),
                     root=ROOT, source_dir=source.tree, tree_sha256="0" * 64,
                     use_ccache=False, build_root=tmp_path / "build",
                     dist_dir=tmp_path / "dist")
    engine = StandInEngine(tmp_path)
    monkeypatch.setattr(cmd, "run", engine.run)
    monkeypatch.setattr(cmd, "capture", engine.capture)
    eng = Engine(name="podman", path="/usr/bin/podman", version="4.3.1")
    calls: list[str] = []
    made = image.build(_job(plan, source, calls, engine=eng, build_args={"X": "1"}))
    ran = engine.ran
    assert [argv[1] for argv in ran] == ["image", "build", "image", "save"]
    build = ran[1]
    assert "X=1" in build and "BUILT=prebuilt" in build
    assert build[build.index("--file") + 1].endswith("cpu.Dockerfile")
    assert build[build.index("--target") + 1] == "runtime"  # the engine builds the settings
    # compiled here, then what the archive holds in /opt/llama.cpp is audited (the image
    # brings its own C library)
    assert calls == ["compile", "audit:LICENSE,libggml.so.0.9.0,llama-bench,llama-cli,"
                     "llama-quantize,"
                     "llama-results,llama-server (own runtime)"]
    img = made.manifest.image
    assert img is not None and img.engine == "podman" and img.last_stage == "buildtool"
    base = next((tmp_path / "cache" / "images").glob("runtime-*.oci.tar"))
    assert img.runtime_base == oci.inspect(base).config_digest
    assert img.manifest_digest and made.manifest.isa_audit == PASS
    assert img.build_args["X"] == "1"
    # the labels of the Dockerfile's last stage, its build arguments substituted
    assert img.labels["dev.buildtool.target"] == "cpu"
    assert img.labels["dev.buildtool.build-key"] == plan.key
    assert img.labels["org.opencontainers.image.version"] == "b11312"
    assert img.ref == img.tags[0] and img.layers == 3  # the base's, the programs', manifest
    assert img.user == "10001"  # the runtime base's settings are kept
    # the runtime base's layer holds nothing under /opt/llama.cpp: noted, not read again
    marks = tmp_path / "cache" / "images" / "nothing-in-opt-llama.cpp"
    assert {f"sha256:{p.name}" for p in marks.iterdir()} == {
        digest for _, digest in oci.inspect(base).layers}
    assert image.nothing_in_programs_dir() == {digest for _, digest in oci.inspect(base).layers}
    assert made.manifest.files is not None
    assert made.manifest.files["libggml.so.0"] == "symlink:libggml.so.0.9.0"
    assert image.contents(made.path, made.manifest) == []
    held = oci.digests(made.path, "/opt/llama.cpp")
    assert {k: held[k] for k in made.manifest.files} == dict(made.manifest.files)
    assert oci.digests(made.path, "/usr/bin") == {"bash": hashlib.sha256(b"bash").hexdigest()}
    assert lookup(plan.dist_dir, image.key(_job(plan, source, [], build_args={"X": "1"}))) \
        == made.path
    # the release gate checks the files too: a manifest naming other bytes is refused
    other = dict(made.manifest.files, **{"llama-bench": "0" * 64})
    assert image.contents(made.path, dataclasses.replace(made.manifest, files=other)) == [
        "llama-bench: sha256 " + made.manifest.files["llama-bench"][:12]
        + " in the image, sha256 000000000000 compiled"]
    # again: the runtime stage comes from the cache, the engine is only asked for the base
    # image's ID
    ran.clear()
    again = image.build(_job(plan, source, [], engine=eng, build_args={"X": "1"}))
    assert [argv[1] for argv in ran] == ["image"]
    assert again.manifest.image is not None and again.manifest.image.runtime_base == \
        img.runtime_base
    # a runtime stage damaged in the cache is built again, not used and not fatal
    base.write_bytes(b"damaged")
    ran.clear()
    image.build(_job(plan, source, [], engine=eng, build_args={"X": "1"}))
    assert [argv[1] for argv in ran] == ["image", "build", "image", "save"]
    assert oci.inspect(base).config_digest == img.runtime_base


def test_an_image_that_does_not_hold_the_compiled_bytes_is_refused(
        tmp_path: Path, data: Path, fake_tools: object,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A last stage only an engine can make (here: said so by the Dockerfile reader) is
    built whole by the engine; what it holds is checked all the same."""
    from buildtool import cmd
    from buildtool.artifacts import assemble
    from buildtool.artifacts.base import PackageError
    from buildtool.toolchains.engines import Engine

    source = _source(tmp_path)
    plan = make_plan(res("cpu", host(data)), root=ROOT, source_dir=source.tree,
                     tree_sha256="0" * 64, use_ccache=False, build_root=tmp_path / "build",
                     dist_dir=tmp_path / "dist")

    def alter(held: dict[str, bytes | str]) -> None:  # a runtime stage that strips, drops
        held["opt/llama.cpp/llama-bench"] = b"\x7fELF stripped"
        del held["opt/llama.cpp/llama-cli"]

    def engine_only(*_: Any) -> Any:
        raise assemble.NotHere("line 80: RUN in the last stage")

    engine = StandInEngine(tmp_path, alter)
    monkeypatch.setattr(cmd, "run", engine.run)
    monkeypatch.setattr(assemble, "last_stage", engine_only)
    eng = Engine(name="podman", path="/usr/bin/podman", version="4.3.1")
    with pytest.raises(PackageError, match="not what was compiled here") as exc:
        image.build(_job(plan, source, [], engine=eng))
    assert [argv[1] for argv in engine.ran] == ["build", "save"]
    assert "--target" not in engine.ran[0]  # every stage, by the engine
    assert "llama-bench: sha256 " in str(exc.value) and "llama-cli: missing" in str(exc.value)
    assert not plan.dist_dir.exists() or not any(plan.dist_dir.iterdir())  # nothing written


def data_oci(where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    return data.oci_archive(where)


def test_each_kind_knows_its_files_and_keys(tmp_path: Path, data: Path,
                                            fake_tools: object) -> None:
    source = _source(tmp_path)
    plan = make_plan(res("cpu", host(data)), root=ROOT, source_dir=source.tree,
                     tree_sha256="0" * 64, use_ccache=False)
    job = _job(plan, source, [])
    keys = {name: kind.key(job) for name, kind in KINDS.items()}
    assert keys["tarball"] == plan.key and keys["wheel"] == f"{plan.key}-wheel"
    assert len(set(keys.values())) == 3
    owners = {name: [n for n in ("a.tar.gz", "a.whl", "a.oci.tar", "a.txt") if kind.owns(n)]
              for name, kind in KINDS.items()}
    assert owners == {"tarball": ["a.tar.gz"], "wheel": ["a.whl"], "image": ["a.oci.tar"]}


@pytest.fixture
def session(tmp_path: Path, data: Path, fake_tools: object,
            monkeypatch: pytest.MonkeyPatch) -> Any:
    from tests.unit.helpers import copy_project

    copy_project(tmp_path)
    (tmp_path / "recipes" / "cmake").mkdir(exist_ok=True)
    monkeypatch.setattr("buildtool.config.session.detect_cpu", lambda: host(data))
    monkeypatch.setattr("buildtool.config.session.host_platform", lambda: "linux-x86_64")
    monkeypatch.setenv("BUILDTOOL_CACHE", str(tmp_path / "cache"))
    s = open_session(tmp_path)
    source = _source(tmp_path / "elsewhere")  # as --source PATH: vendor/ stays untouched
    monkeypatch.setattr(pipeline, "_source", lambda session, lock, local: source)
    return s


class _Begun:
    """What a fake kind's begin() leaves in job.begun: says when it is stopped."""

    def __init__(self, name: str, order: list[str]) -> None:
        self.name, self.order = name, order

    def stop(self) -> None:
        self.order.append(f"{self.name}:stopped")


def _fake_kinds(monkeypatch: pytest.MonkeyPatch, order: list[str],
                fail: str | None = None) -> None:
    """tarball and wheel kinds that record what the pipeline asks of them: the wheel's begin
    leaves work in job.begun, which its build takes; ``fail``: that kind raises after the
    compile."""
    monkeypatch.setattr(pipeline, "_compile", lambda *a, **k: order.append("compile"))
    for name in ("tarball", "wheel"):
        def begin(job: BuildJob, name: str = name) -> None:
            order.append(f"{name}:begin")
            job.begun[name] = _Begun(name, order)  # type: ignore[index]

        def fake(job: BuildJob, name: str = name) -> Any:
            order.append(f"{name}:{'fresh' if not job.plan.build_dir.exists() else 'kept'}"
                         + (":took-begun" if job.begun.pop(name, None) else ""))  # type: ignore[call-overload]
            job.compile()
            if name == fail:
                raise pipeline.BuildError(["audit"], 1, [], what=f"{name} failed")
            job.plan.build_dir.mkdir(parents=True, exist_ok=True)
            path = job.plan.dist_dir / f"{name}-artifact.{'tar.gz' if name == 'tarball' else 'whl'}"
            job.plan.dist_dir.mkdir(parents=True, exist_ok=True)
            path.write_bytes(name.encode())
            manifest = helpers.manifest(kind=name, artifact_file=path.name,
                                        artifact_sha256=data.file_sha(path))
            from buildtool.outputs import record, write_json

            write_json(sidecar(path, "manifest"), records.to_json(manifest))
            record(job.plan.dist_dir, KINDS[name].key(job), path, data.file_sha(path))
            from buildtool.artifacts.base import Made

            return Made(kind=name, path=path, manifest=manifest)  # type: ignore[arg-type]
        monkeypatch.setattr(KINDS[name], "build", fake)
        monkeypatch.setattr(KINDS[name], "begin", begin)
    monkeypatch.setattr("buildtool.config.preflight.require", lambda rt: None)


def test_the_pipeline_asks_each_kind_and_shares_the_build_directory(
        session: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """tarball then wheel with --fresh: the build directory is emptied once, before the
    first kind that compiles here; both are made of one compile (each asks for it, it runs
    once); once it is done the wheel begins (in the background) what its build then takes;
    a second run takes both from the cache and begins nothing."""
    order: list[str] = []
    _fake_kinds(monkeypatch, order)
    options = pipeline.BuildOptions(target="cpu", artifacts=("tarball", "wheel"), smoke=False,
                                    fresh=True)
    plan = pipeline.dry_run(session, options).plan
    plan.build_dir.mkdir(parents=True)
    (plan.build_dir / "stale").write_text("from an earlier build")
    first = pipeline.build(session, options)
    assert order == ["tarball:fresh", "compile", "wheel:begin", "wheel:kept:took-begun"]
    assert [a.kind for a in first.artifacts] == ["tarball", "wheel"]
    assert not any(a.cached for a in first.artifacts)
    second = pipeline.build(session, pipeline.BuildOptions(target="cpu", smoke=False,
                                                          artifacts=("tarball", "wheel")))
    assert order[4:] == []  # nothing built again, nothing begun
    assert all(a.cached for a in second.artifacts)
    # the tarball made again (--force would make both): the wheel, up to date, begins nothing
    first.artifacts[0].path.unlink()  # type: ignore[union-attr]
    third = pipeline.build(session, pipeline.BuildOptions(target="cpu", smoke=False,
                                                         artifacts=("tarball", "wheel")))
    assert order[4:] == ["tarball:kept", "compile"]
    assert [a.cached for a in third.artifacts] == [False, True]


def test_what_a_kind_began_is_stopped_when_the_kind_before_it_fails(
        session: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tarball fails after the compile (its audit, say): the wheel's backend, begun in
    the background, is stopped, not left running in the build directory."""
    order: list[str] = []
    _fake_kinds(monkeypatch, order, fail="tarball")
    with pytest.raises(pipeline.BuildError, match="tarball failed"):
        pipeline.build(session, pipeline.BuildOptions(target="cpu", smoke=False,
                                                      artifacts=("tarball", "wheel")))
    assert order == ["tarball:fresh", "compile", "wheel:begin", "wheel:stopped"]


def test_the_pipeline_refuses_what_a_kind_cannot_make(session: Any) -> None:
    from buildtool.errors import UsageError

    with pytest.raises(UsageError, match="has no container image"):
        pipeline.build(session, pipeline.BuildOptions(target="metal", artifacts=("image",)))
    with pytest.raises(UsageError, match="--build-arg applies to images"):
        pipeline.build(session, pipeline.BuildOptions(target="cpu", artifacts=("tarball",),
                                                      build_args=(("A", "1"),)))


def test_the_builds_smoke_runs_the_claimed_models_or_says_why_not(
        tmp_path: Path, data: Path, fake_tools: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """The platform's cpu-models its claim covers go to the smoke; without the emulator they
    are skipped with a warning (the release gate asks for the proof), never silently."""
    import io

    from buildtool import cmd
    from buildtool.config.project import load_project
    from buildtool.config.session import Session
    from tests.unit import release_data

    stream = io.StringIO()
    session = Session(project=load_project(ROOT), reporter=Reporter(stream=stream),
                      host_cpu_override=host(data))
    rt = res("cpu", host(data), overrides=Overrides(cpu="all-variants"))
    manifest = records.from_data(Manifest, {**release_data.base_manifest("cpu"), "kind": "tarball",
                                            "artifact": "a"}, "test")
    asked: list[list[str] | None] = []
    monkeypatch.setattr(pipeline, "run_smoke_step",
                        lambda *a, cpu_models=None, **kw: asked.append(cpu_models))
    made = pipeline.ArtifactOutcome(kind="tarball", path=tmp_path / "a.tar.gz",
                                    manifest=manifest)
    options = pipeline.BuildOptions(target="cpu")
    monkeypatch.setattr(cmd, "which", lambda name, path=None: f"/usr/bin/{name}")
    pipeline._smoke(session, made, rt, options, {})
    assert asked[-1] == ["qemu64", "Nehalem", "SandyBridge", "IvyBridge", "Haswell"]
    monkeypatch.setattr(cmd, "which", lambda name, path=None: None)
    pipeline._smoke(session, made, rt, options, {})
    assert asked[-1] == []
    assert "warning: emulated CPU models qemu64, Nehalem, SandyBridge, IvyBridge, Haswell " \
           "skipped: qemu-x86_64 is not installed (apt-get install qemu-user)" in stream.getvalue()
