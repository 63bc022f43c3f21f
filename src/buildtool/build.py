"""`buildtool build`: resolve → preflight → source → configure → build → package → smoke."""

from __future__ import annotations

import functools
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from buildtool import abi, backends, cmd, outputs, records
from buildtool.artifacts import KINDS, image, wheel
from buildtool.artifacts.base import Audits, BuildJob, base_manifest
from buildtool.config import preflight
from buildtool.config.plan import BuildPlan, make_plan
from buildtool.config.resolve import Overrides, ResolvedTarget
from buildtool.config.session import Session
from buildtool.cpudata import CPU
from buildtool.errors import AuditError, BuildError, DataError, SmokeError, UsageError
from buildtool.grammar import ArtifactKind
from buildtool.inputs import ByContent
from buildtool.paths import check_cache, writable_dir
from buildtool.records import AbiVersions, Manifest, SmokeRecord
from buildtool.source import vendor
from buildtool.toolchains import buildenv
from buildtool.toolchains import compile_cache as ccache
from buildtool.toolchains import engines as engine
from buildtool.toolchains.buildenv import BuildEnv
from buildtool.toolchains.compile_cache import CompileCache
from buildtool.verify import audit, emulate, smoke


@dataclass(frozen=True, kw_only=True)
class BuildOptions:
    target: str
    overrides: Overrides = Overrides()
    smoke: bool = True
    dry_run: bool = False
    force: bool = False
    fresh: bool = False
    jobs: int | None = None
    ccache: bool = True
    source: Path | None = None
    model: Path | None = None
    dist: Path | None = None
    build_root: Path | None = None
    allow_cpu_fallback: bool = False
    configure_only: bool = False  # stop after CMake configure (a cheap check of a target)
    artifacts: tuple[str, ...] = ()  # kinds to make (default: the target's, from the matrix)
    engine: str | None = None  # images: docker | podman | buildah (default: the first usable)
    build_args: tuple[tuple[str, str], ...] = ()  # images: --build-arg KEY=VALUE
    build_env: str | None = None  # tarballs: a root file system or image to compile in
    compile_cache: str | None = None  # --compile-cache URL|none
    compile_cache_read_only: bool = False


@dataclass(kw_only=True)
class ArtifactOutcome:
    kind: str  # tarball | wheel | image
    path: Path
    manifest: Manifest | None = None
    cached: bool = False
    smoke: SmokeRecord | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "artifact": str(self.path), "cached": self.cached,
                "smoke": records.to_json(self.smoke) if self.smoke else None}


@dataclass(kw_only=True)
class BuildOutcome:
    plan: BuildPlan
    artifacts: list[ArtifactOutcome] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    compile_cache: dict[str, Any] | None = None  # what ccache did for this build's compile

    @property
    def artifact(self) -> Path | None:
        return self.artifacts[0].path if self.artifacts else None

    @property
    def manifest(self) -> Manifest | None:
        return self.artifacts[0].manifest if self.artifacts else None

    def to_json(self) -> dict[str, Any]:
        first = self.artifacts[0] if self.artifacts else None
        return {
            "target": self.plan.target.name, "key": self.plan.key,
            "build_dir": str(self.plan.build_dir),
            "artifact": str(first.path) if first else None,
            "cached": first.cached if first else False,
            "smoke": records.to_json(first.smoke) if first and first.smoke else None,
            "artifacts": [a.to_json() for a in self.artifacts],
            "timings": {k: round(v, 4 if k == "cache_hit_rate" else 2)
                        for k, v in self.timings.items()},
            "compile_cache": self.compile_cache,
        }


def plan_for(session: Session, rt: ResolvedTarget, options: BuildOptions, *,
             tree_sha256: str | None, build_env: BuildEnv | None = None) -> BuildPlan:
    return make_plan(rt, root=session.root, source_dir=rt.lock.tree,
                     tree_sha256=tree_sha256, jobs=options.jobs, use_ccache=options.ccache,
                     build_root=options.build_root, dist_dir=options.dist,
                     build_env=build_env)


def open_build_env(session: Session, rt: ResolvedTarget, options: BuildOptions,
                   kinds: tuple[ArtifactKind, ...]) -> BuildEnv | None:
    """The build environment --build-env names (None: build on this host)."""
    if options.build_env is None:
        return None
    others = [k for k in kinds if k != "tarball"]
    if others:
        raise UsageError(f"--build-env builds tarballs; {', '.join(others)} "
                         f"{'is' if len(others) == 1 else 'are'} built in their own "
                         "environments (wheels: cibuildwheel's manylinux containers; images: "
                         "the Dockerfile's build stage, BUILD_IMAGE)")
    if not rt.platform.startswith("linux-") or rt.platform != rt.host_platform:
        raise UsageError(f"--build-env builds for this host's platform ({rt.host_platform}) "
                         f"on Linux; {rt.name} is for {rt.platform}")
    eng = engine.choose(options.engine) if buildenv.is_image(options.build_env) else None
    env = buildenv.open_env(options.build_env, engine=eng,
                            extra_tools=backends.family(rt.family).tools)
    session.reporter.info(f"build environment: {env.describe()}")
    return env


def dry_run(session: Session, options: BuildOptions) -> BuildOutcome:
    rt = session.resolve(options.target, options.overrides)
    compile_cache(session, options)  # a URL no build could use fails a dry run as well
    marker = vendor.current(rt.lock, rt.lock.tree)
    build_env = open_build_env(session, rt, options, artifact_kinds(rt, options))
    plan = plan_for(session, rt, options,
                    tree_sha256=marker.tree_sha256 if marker else rt.lock.tree_sha256,
                    build_env=build_env)
    return BuildOutcome(plan=plan)


def emit_wheel_project(session: Session, options: BuildOptions, dest: Path) -> Path:
    """Write the target's self-contained wheel project (see wheel.render) into ``dest``."""
    writable_dir(dest, "--emit")
    outputs.check_owned(dest, wheel.EMITTED)
    plan, source = _portable_plan(session, options, "a wheel project")
    inner = wheel.wheel_manifest(plan, base_manifest(plan, source))
    project = wheel.render(plan, inner, dest, root=session.root, emit=True)
    return outputs.mark_owned(project, wheel.EMITTED)


def _portable_plan(session: Session, options: BuildOptions, what: str, *,
                   image_only: bool = False) -> tuple[BuildPlan, vendor.Materialized]:
    """The plan of something built elsewhere (``what``): refused for a host-tuned target."""
    rt = session.resolve(options.target, options.overrides)
    if image_only:
        image.require_image(rt)
    if rt.cpu_policy == "host":
        raise UsageError(f"target {rt.name}: CPU policy 'host' means this machine's CPU; "
                         f"{what} built elsewhere needs a portable one",
                         hint="add --cpu all-variants (or a named level such as x86-64-v3)")
    source = _source(session, rt.lock, options.source)
    return plan_for(session, rt, options, tree_sha256=source.tree_sha256), source


def _source(session: Session, lock: vendor.Lock, local: Path | None) -> vendor.Materialized:
    """The lock's tree, fetched (or taken from ``local``) and verified if not there yet."""
    source = vendor.current(lock, lock.tree)
    if source is None:
        session.reporter.step(f"fetching llama.cpp {lock.version} ({lock.short_commit})")
        source = vendor.materialize(lock, lock.tree, local=local,
                                    progress=session.reporter.info)
        session.reporter.info(f"source: {source.source} (tree sha256 "
                              f"{source.tree_sha256[:16]}…)")
    return source


def emit_image_context(session: Session, options: BuildOptions, dest: Path) -> Path:
    """Write the target's image build context (Dockerfile, CMake project, llama.cpp tree,
    defines.cmake, manifest) and a docker-bake.hcl building it into ``dest``."""
    writable_dir(dest, "--emit")
    outputs.check_owned(dest, image.CONTEXT)
    plan, source = _portable_plan(session, options, "an image build context", image_only=True)
    entry, args = image.context_target(plan, source, session.root,
                                       dict(options.build_args))
    image.render_context([entry], dest, root=session.root)
    outputs.mark_owned(dest, image.CONTEXT)
    (dest / "docker-bake.hcl").write_text(image.bake_file([(plan, args)], cache="none"))
    return dest


def bake(session: Session, names: tuple[str, ...], out: Path, *, cache: str,
         cpu: str = "all-variants", platform: str | None = None,
         llama_cpp: str | None = None,
         build_args: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    """Write ``out``/docker-bake.hcl and the build context shared by the targets' images
    (for ``platform``: each target resolved for it; its image is built natively there)."""
    image.cache_settings(cache, "check")  # an unknown cache kind fails before any work
    writable_dir(out, "--out")
    outputs.check_owned(out, image.CONTEXT)
    wanted = names or tuple(session.project.matrix.targets)
    resolved: list[ResolvedTarget] = []
    skipped: dict[str, str] = {}
    for name in wanted:
        try:
            rt = session.resolve(name, Overrides(platform=platform, llama_cpp=llama_cpp))
            if rt.cpu_policy == "host":  # images are for other machines
                rt = session.resolve(name, Overrides(cpu=cpu, platform=platform,
                                                     llama_cpp=llama_cpp))
            image.require_image(rt)
        except UsageError as exc:
            if names:
                raise
            skipped[name] = exc.message
            continue
        resolved.append(rt)
    if not resolved:
        raise UsageError("no target has a container image")
    versions = {rt.lock.version: rt.name for rt in resolved}
    if len(versions) > 1:  # the context holds one llama.cpp tree (the Dockerfiles' COPY)
        raise UsageError("one build context holds one llama.cpp tree; these targets build "
                         + ", ".join(f"{v} ({n}…)" for v, n in versions.items()),
                         hint="bake each version apart: `buildtool bake --llama-cpp VERSION "
                              "[TARGET...]`")
    lock = resolved[0].lock
    source = _source(session, lock, None)
    items: list[tuple[BuildPlan, dict[str, str]]] = []
    contexts = []
    for rt in resolved:
        plan = make_plan(rt, root=session.root, source_dir=lock.tree,
                         tree_sha256=source.tree_sha256)
        entry, args = image.context_target(plan, source, session.root,
                                           dict(build_args))
        contexts.append(entry)
        items.append((plan, args))
    session.reporter.step(f"writing the build context for {len(items)} images into {out}")
    image.render_context(contexts, out, root=session.root)
    outputs.mark_owned(out, image.CONTEXT)
    bake_path = out / "docker-bake.hcl"
    spec = session.project.matrix.compile_cache
    bake_path.write_text(image.bake_file(
        items, cache=cache,
        compile_cache_read_only=ccache.is_read_only(os.environ, bool(spec and spec.read_only))))
    return {"bake_file": str(bake_path), "context": str(out), "cache": cache,
            "targets": {p.target.name: image.tags(p.target)[0] for p, _ in items},
            "skipped": skipped}


def artifact_kinds(rt: ResolvedTarget, options: BuildOptions) -> tuple[ArtifactKind, ...]:
    """The kinds to make, in order, each accepting the target."""
    wanted = options.artifacts or rt.artifacts
    unknown = [k for k in wanted if k not in KINDS]
    if unknown:
        raise UsageError(f"cannot build {', '.join(unknown)} artifacts; buildable: "
                         f"{', '.join(KINDS)}")
    kinds = tuple(name for w in dict.fromkeys(wanted) for name in KINDS if name == w)
    for name in kinds:
        KINDS[name].accepts(rt)
    if options.build_args and not any(KINDS[k].TAKES_BUILD_ARGS for k in kinds):
        raise UsageError("--build-arg applies to images", hint="add --artifact image")
    return kinds


def check_outputs(session: Session, options: BuildOptions, lock: vendor.Lock) -> None:
    """Every place a build writes, checked before any long work: the dist and build
    directories, the cache (source archives, the synthetic model) and, when the lock's tree
    is not there yet, vendor/."""
    writable_dir(options.dist or session.root / "dist", "--dist")
    writable_dir(options.build_root or session.root / "build", "--build-root")
    check_cache()
    if vendor.current(lock, lock.tree) is None:
        writable_dir(lock.tree, "the llama.cpp tree")
        vendor.check_replaceable(lock.tree)


def build(session: Session, options: BuildOptions) -> BuildOutcome:
    rep = session.reporter
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    rt = session.resolve(options.target, options.overrides)
    kinds = artifact_kinds(rt, options)
    check_outputs(session, options, rt.lock)
    build_env = open_build_env(session, rt, options, kinds)
    eng = engine.choose(options.engine) if any(KINDS[k].CONTAINER for k in kinds) else None
    if build_env is None:
        preflight.require(rt)
    cache = compile_cache(session, options)  # a bad URL fails here, before any work
    source = _source(session, rt.lock, options.source)
    plan = plan_for(session, rt, options, tree_sha256=source.tree_sha256, build_env=build_env)
    fresh = options.fresh  # delete the build directory once: the artifact kinds share it
    timings["prepare"] = time.monotonic() - t0
    outcome = BuildOutcome(plan=plan, timings=timings)

    if options.configure_only:
        _fresh_start(plan, fresh)
        configure(session, plan, options, timings)
        timings["total"] = time.monotonic() - t0
        rep.info(f"configured: {plan.build_dir} (--configure-only: nothing built)")
        return outcome

    memo = ByContent()  # the kinds ship the same files: each is disassembled and read once
    waiting: list[ArtifactKind] = []  # the kinds not built yet

    def compile_once() -> None:
        _compile(session, plan, options, outcome, cache)
        for later in waiting:  # each kind still to come starts what needs only the compile
            KINDS[later].begin(job)

    job = BuildJob(plan=plan, source=source, root=session.root,
                   reporter=rep, timings=timings,
                   # each kind made of the compile asks for it; it runs the first time only
                   compile=functools.cache(compile_once),
                   audit=lambda files, **kw: _audit(session, plan, files, timings, memo,
                                                    **kw),
                   engine=eng, build_args=dict(options.build_args), no_cache=options.fresh)
    existing = {name: None if options.force else outputs.lookup(plan.dist_dir,
                                                                KINDS[name].key(job))
                for name in kinds}
    waiting.extend(name for name in kinds if existing[name] is None)
    try:
        for kind_name in kinds:
            kind = KINDS[kind_name]
            if kind_name in waiting:
                waiting.remove(kind_name)
            made = _cached(session, plan, kind_name, existing[kind_name])
            if made is None:
                if kind.COMPILES_HERE:  # the kinds that compile here share the build directory
                    _fresh_start(plan, fresh)
                    fresh = False
                built = kind.build(job)
                made = ArtifactOutcome(kind=built.kind, path=built.path,
                                       manifest=built.manifest)
            outcome.artifacts.append(made)
            if options.smoke:
                _smoke(session, made, rt, options, timings, eng)
    finally:
        for left in job.begun.values():  # a kind failed or was interrupted before these
            left.stop()
    timings["total"] = time.monotonic() - t0
    return outcome


def _fresh_start(plan: BuildPlan, fresh: bool) -> None:
    if fresh and plan.build_dir.exists():
        shutil.rmtree(plan.build_dir)


def _cached(session: Session, plan: BuildPlan, kind: str,
            existing: Path | None) -> ArtifactOutcome | None:
    """The artifact the dist directory holds for the same inputs (outputs.lookup; None
    with --force), said and taken, unless its manifest is damaged."""
    if existing is None:
        return None
    rep = session.reporter
    rep.step(f"{plan.target.name}: inputs unchanged, {kind} is up to date")
    rep.info(str(existing))
    try:
        manifest = records.load(Manifest, outputs.sidecar(existing, "manifest"))
    except DataError:
        return None  # its manifest was damaged: build it again
    return ArtifactOutcome(kind=kind, path=existing, cached=True, manifest=manifest)


def _audit(session: Session, plan: BuildPlan, files: list[Path],
           timings: dict[str, float], memo: ByContent, *,
           own_runtime: bool = False) -> Audits:
    rt = plan.target
    t = time.monotonic()
    session.reporter.step("ISA audit (disassembly)")
    seen = memo.hits
    report = audit.audit_files(files, declared=rt.cpu_features,
                               all_variants=rt.cpu_policy == "all-variants",
                               platform=rt.platform, waivers=rt.audit_allow,
                               level=rt.cpu_level, memo=memo)
    if report.verdict == "fail":
        raise AuditError(
            f"ISA audit failed for {rt.name} (declared: {rt.cpu_level}):\n"
            + audit.violations_message(report),
            hint="the artifact would die of SIGILL on CPUs it claims to support; check "
                 "-D overrides and the CPU policy")
    again = memo.hits - seen
    session.reporter.info(f"audit: {report.verdict}" + (
        f" ({len(report.files)} files" + (f"; {again} of them the same bytes as another "
                                          "kind's, read once" if again else "") + ")"
        if report.verdict == "pass" else f": {report.reason}"))
    session.reporter.step("ABI floor (ELF symbol versions)")
    floor = abi.floor_of(files, platform=rt.platform,
                         declared=None if own_runtime else rt.abi_floor, memo=memo)
    timings["audit"] = timings.get("audit", 0.0) + time.monotonic() - t
    if floor.verdict == "fail":
        raise AuditError(
            f"{rt.name} needs a newer C library or C++ runtime than {rt.platform}'s floor "
            f"({describe_floor(rt.abi_floor)}, from {rt.origins.get('abi_floor', '?')}):\n"
            + abi.violations_message(floor),
            hint="build it in an older build environment (--build-env; README \"What an "
                 "artifact claims\") or raise the floor in build_matrix.yaml platforms")
    session.reporter.info(f"ABI floor: {describe_floor(floor.floor) or floor.reason}"
                          + (f" (within {describe_floor(floor.declared)})"
                             if floor.declared else ""))
    device = backends.family(rt.family).device_code(
        files, tools=plan.toolchain, toolkit=rt.toolkit, gpu_archs=rt.gpu_archs)
    if device is not None:
        session.reporter.step("device code")
        if device.verdict == "fail":
            raise AuditError(
                f"{rt.name}'s device code is not what gpu-archs "
                f"({';'.join(rt.gpu_archs)}, from {rt.origins.get('gpu_archs', '?')}) asks "
                "for:\n" + "\n".join(f"  {v}" for v in device.violations),
                hint="GPUs outside what it carries fail with \"no kernel image is available "
                     "for execution on the device\"; check CMAKE_CUDA_ARCHITECTURES overrides")
        session.reporter.info(f"device code: {device.verdict} ({device.summary or device.reason})")
    return Audits(isa=report, abi=floor, device=device)


def describe_floor(versions: AbiVersions | None) -> str:
    if versions is None:
        return ""
    return ", ".join(f"{runtime} {v}" for runtime in abi.RUNTIMES
                     if (v := getattr(versions, runtime)))


def _smoke(session: Session, made: ArtifactOutcome, rt: ResolvedTarget,
           options: BuildOptions, timings: dict[str, float],
           eng: engine.Engine | None = None) -> None:
    previous = smoke.stored(made.path) if made.cached else None
    reusable = previous is not None and previous.passed and \
        options.model is None and (options.allow_cpu_fallback or not previous.waived)
    if previous is not None and reusable:
        made.smoke = previous
        session.reporter.info(f"smoke: passed earlier ({previous.ran_at})")
        return
    t = time.monotonic()
    models: list[str] = []
    if made.manifest is not None and not KINDS[made.manifest.kind].CONTAINER:
        models = emulate.claimed_models(made.manifest, rt.cpu_models)
        if rt.cpu_models and not models:
            session.reporter.info(f"emulated CPU models: {emulate.why_none(made.manifest)}")
        if models and not emulate.installed(made.manifest):
            session.reporter.warn(
                f"emulated CPU models {', '.join(models)} skipped: "
                f"{CPU.emulator(emulate.arch_of(made.manifest))} is not installed "
                "(apt-get install qemu-user); `buildtool publish` asks for this proof")
            models = []
    made.smoke = run_smoke_step(session, made.path, rt, options.model,
                                allow_cpu_fallback=options.allow_cpu_fallback,
                                engine=eng or options.engine, cpu_models=models)
    key = "smoke" if made.kind == "tarball" else f"smoke_{made.kind}"
    timings[key] = time.monotonic() - t


def run_smoke_step(session: Session, artifact: Path, rt: ResolvedTarget,
                   model: Path | None, *, allow_cpu_fallback: bool = False,
                   engine: engine.Engine | str | None = None,
                   cpu_models: list[str] | None = None) -> SmokeRecord:
    rep = session.reporter
    rep.step(f"smoke test ({'model ' + str(model) if model else 'synthetic model'})")
    result = smoke.run_smoke(artifact, host=session.host_cpu, model=model,
                             n_prompt=rt.smoke.n_prompt, n_gen=rt.smoke.n_gen,
                             repetitions=rt.smoke.repetitions,
                             allow_cpu_fallback=allow_cpu_fallback, engine=engine,
                             note=rep.info, system=session.host_system,
                             cpu_models=cpu_models or ())
    for line in smoke.table(result).splitlines():
        rep.info(line)
    if not result.passed:
        failed = "; ".join(f"{c.name} ({c.detail})" for c in result.failures())
        raise SmokeError(f"smoke test failed for {artifact.name}: {failed}",
                         hint=f"results: {outputs.sidecar(artifact, 'smoke')}")
    return result


def configure(session: Session, plan: BuildPlan, options: BuildOptions,
              timings: dict[str, float]) -> Path:
    """Run CMake's configure step; return the log file (the build step appends to it)."""
    rep = session.reporter
    plan.build_dir.mkdir(parents=True, exist_ok=True)
    plan.write_cross_file()
    log = plan.build_dir / "buildtool.log"
    log.write_text("")
    t = time.monotonic()
    rep.step(f"configure {plan.target.name} → {plan.build_dir}")
    rep.group(f"configure {plan.target.name}")
    cmd.run(plan.command(plan.configure), env={**os.environ, **dict(plan.env)}, log=log,
            echo=rep.command,
            what="CMake configure failed", error_type=BuildError)
    rep.endgroup()
    timings["configure"] = time.monotonic() - t
    return log


def compile_cache(session: Session, options: BuildOptions) -> CompileCache | None:
    """The shared compile cache this build uses: the matrix's ``compile-cache`` <
    ``$BUILDTOOL_COMPILE_CACHE`` < ``--compile-cache``."""
    spec = session.project.matrix.compile_cache
    return ccache.configure(
        matrix_url=spec.url if spec else None,
        matrix_read_only=spec.read_only if spec else False,
        matrix_origin=f"{session.project.matrix_path.name}:compile-cache.url",
        env=os.environ, option=options.compile_cache,
        option_read_only=options.compile_cache_read_only)


def _cache_env(session: Session, plan: BuildPlan, cache: CompileCache | None,
               stats_log: Path) -> dict[str, str]:
    """ccache's settings for this compile: its stats log, and the remote cache when it
    answers (a cache that does not is said and left out: the build compiles without it)."""
    rep = session.reporter
    env = {"CCACHE_STATSLOG": str(stats_log)}
    if cache is None:
        return env
    if plan.build_env is not None:
        version = (plan.build_env.tools.get("ccache") or {}).get("version")
        if version and not ccache.has_remote_storage(version):
            rep.warn(f"compile cache {cache.shown}: the build environment's ccache {version} "
                     "has no remote storage (4.4 or newer): compiling with its local cache")
            return env
    why = ccache.probe(cache)
    if why is not None:
        rep.warn(f"compile cache {cache.shown} does not answer ({why}): compiling without it")
        return env
    rep.info(f"compile cache: {cache.describe()}")
    return {**env, **cache.env()}


def _compile(session: Session, plan: BuildPlan, options: BuildOptions,
             outcome: BuildOutcome, cache: CompileCache | None) -> None:
    rep = session.reporter
    timings = outcome.timings
    log = configure(session, plan, options, timings)
    cached = plan.ccache
    stats_log = plan.build_dir / ccache.STATS_LOG
    stats_log.unlink(missing_ok=True)
    extra = _cache_env(session, plan, cache, stats_log) if cached else {}
    env = {**os.environ, **dict(plan.env), **extra}
    t = time.monotonic()
    rep.step(f"build {', '.join(plan.target.build_targets)}")
    rep.group(f"build {plan.target.name}")
    cmd.run(plan.command(plan.build, extra), env=env, log=log, echo=rep.command,
            on_line=rep.ninja_line,
            what="compilation failed", error_type=BuildError)
    rep.endgroup()
    timings["build"] = time.monotonic() - t
    if cached:
        stats = ccache.read_stats_log(stats_log)
        timings["cache_hit_rate"] = stats.hit_rate
        outcome.compile_cache = {**stats.to_json(),
                                 "remote": cache.shown if "CCACHE_REMOTE_STORAGE" in extra
                                 and cache else None}
        rep.info(f"compile cache: {stats.describe()}" if stats.calls else
                 "compile cache: nothing compiled (the build directory was up to date)")
        if stats.remote_errors:
            rep.warn(f"compile cache: {stats.remote_errors} compilations could not reach "
                     "the remote cache and were compiled here")

