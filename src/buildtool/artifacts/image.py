"""Container images: the build context, build arguments, tags and bake file of a target.

An image is built from ``recipes/docker/<family>.Dockerfile``: the runtime stage (the
runtime base, a non-root user, the programs in /opt/llama.cpp) takes the programs from the
stage the build argument BUILT names.

- ``prebuilt`` (``buildtool build --artifact image``): the files buildtool compiled here,
  once, for the tarball and the wheel too — the context's ``prebuilt/`` holds exactly what the
  tarball ships (``base.stage_payload``), and after saving, the image's /opt/llama.cpp is
  checked to hold the same bytes. One compile, three kinds; the image's binaries are the
  tarball's, audited and proven by the same smoke.
- ``build`` (``buildtool bake``, ``build --emit``): the Dockerfile's build stage compiles the
  pinned llama.cpp through recipes/cmake, for users who only have Docker.

In the second case the CMake configuration is not written in the
Dockerfile: the build context carries ``targets/<target>/defines.cmake``, the target's
resolved definitions — ``plan.cmake_defines``, the list the tarball and the wheel are
configured with — minus what only holds on this machine, and CMake loads it as its initial
cache. One context serves any number of targets (``buildtool bake``): the CMake project and
the llama.cpp tree once, a ``targets/<name>/`` directory per target.

Build arguments (TGI-style): BUILT, BUILD_IMAGE and RUNTIME_IMAGE (the base images, from the recipe
or the target), LLAMA_CPP_VERSION / LLAMA_CPP_COMMIT, BUILDTOOL_TARGET, and per family the
toolkit version (CUDA_VERSION, ROCM_VERSION, ONEAPI_VERSION) and GPU architectures
(CUDA_ARCHITECTURES, AMDGPU_TARGETS; empty means "as in defines.cmake").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shlex
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from buildtool import backends, cmd, records
from buildtool.artifacts import assemble, oci
from buildtool.artifacts.base import (
    LICENSES_DIR,
    BuildJob,
    Made,
    Note,
    PackageError,
    Subject,
    base_manifest,
    check_host,
    stage_payload,
)
from buildtool.config.plan import CMAKE_PROJECT_FILES, BuildPlan, portable_defines
from buildtool.config.resolve import ResolvedTarget
from buildtool.detect.cpu import CpuInfo
from buildtool.errors import BuildError, CommandError, SmokeError, UsageError
from buildtool.grammar import ArtifactKind
from buildtool.inputs import sha256_file
from buildtool.outputs import atomic_path, record, sidecar, update_sums, write_json
from buildtool.paths import cache_dir, source_date_epoch
from buildtool.records import HostFacts, ImageRecord, Manifest
from buildtool.source.vendor import Materialized, copy_build_tree
from buildtool.text import cmake_string
from buildtool.toolchains import engines

DOCKER_DIR = Path("recipes") / "docker"
REPOSITORY = "llama.cpp"
LOCAL_REGISTRY = "localhost"
PROGRAMS_DIR = "/opt/llama.cpp"  # where the runtime stage puts programs, libraries, manifest
# buildtool's platform names → OCI platform names
OCI_PLATFORMS = {"linux-x86_64": "linux/amd64", "linux-aarch64": "linux/arm64"}
# the Dockerfile sets these itself: where the install component goes inside the build stage
DOCKERFILE_OWNS = ("BUILDTOOL_DESTINATION",)
# build arguments that change with every build and only feed labels: not part of the key
VOLATILE_ARGS = ("CREATED", "BUILD_KEY")
# the build argument naming the stage the runtime stage takes the programs from, and its
# two values (given always: podman and buildah do not follow an ARG's default into FROM)
BUILT = "BUILT"
COMPILED_IN_STAGE = "build"
PREBUILT = "prebuilt"


def require_image(rt: ResolvedTarget) -> None:
    """Refuse targets that have no container image (metal; recipes without docker)."""
    if rt.dockerfile is None or rt.build_image is None or rt.runtime_image is None:
        raise UsageError(f"target {rt.name} has no container image (recipes/"
                         f"{rt.recipe_name}.yaml names no docker section)",
                         hint="add a docker section (a Dockerfile and base images) to the recipe")
    if not any(p in OCI_PLATFORMS for p in rt.platforms):
        raise UsageError(f"target {rt.name} has no Linux platform; container images are "
                         "Linux images")


def arch_suffix(rt: ResolvedTarget) -> str:
    """``-arm64`` for an image of linux-aarch64 ('' for linux-x86_64, the default one)."""
    oci = OCI_PLATFORMS.get(rt.platform, "")
    return "" if oci in ("", "linux/amd64") else "-" + oci.split("/", 1)[1]


def tag_name(rt: ResolvedTarget) -> str:
    """``cpu-b11312``, ``cpu-host-x86-64-v4-b11312``, ``cublas12-b11312-r1``,
    ``cpu-b11312-arm64``."""
    name = f"{rt.name}-{rt.variant}" if rt.variant else rt.name
    name += f"-b{rt.build_number}" + (f"-r{rt.revision}" if rt.revision else "")
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name + arch_suffix(rt))[:128]


def tags(rt: ResolvedTarget, registry: str = LOCAL_REGISTRY) -> list[str]:
    """The version tag first, then the moving one (``:cpu``, ``:cpu-arm64``) for portable
    builds."""
    out = [f"{registry}/{REPOSITORY}:{tag_name(rt)}"]
    if not rt.variant:
        out.append(f"{registry}/{REPOSITORY}:{rt.name}{arch_suffix(rt)}")
    return out


def archive_name(plan: BuildPlan) -> str:
    return f"{plan.artifact_name}.oci.tar"


def created_at() -> str:
    """RFC 3339; SOURCE_DATE_EPOCH when set (reproducible builds)."""
    when = source_date_epoch() or datetime.now(UTC)
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def build_args(plan: BuildPlan, *, prebuilt: bool = False, created: str | None = None,
               overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The Dockerfile's build arguments for this target (``overrides``: --build-arg);
    ``prebuilt``: the runtime stage takes the files compiled here (the context's
    ``prebuilt/``), else the build stage compiles."""
    rt = plan.target
    require_image(rt)
    if overrides and BUILT in overrides:
        raise UsageError(f"--build-arg {BUILT} is buildtool's: `build --artifact image` "
                         f"packages what it compiled ({BUILT}={PREBUILT}); the build context "
                         f"of `bake` and `--emit` compiles in the image ({BUILT}="
                         f"{COMPILED_IN_STAGE})")
    args = {BUILT: PREBUILT if prebuilt else COMPILED_IN_STAGE,
            "BUILD_IMAGE": str(rt.build_image), "RUNTIME_IMAGE": str(rt.runtime_image),
            "BUILDTOOL_TARGET": rt.name, "LLAMA_CPP_VERSION": rt.lock.version,
            "LLAMA_CPP_COMMIT": rt.lock.commit}
    args.update(backends.family(rt.family).image_args(rt.toolkit, rt.define))
    args["BUILD_KEY"] = plan.key
    args["CREATED"] = created or created_at()
    for key, value in (overrides or {}).items():
        args[key] = value
    return args


def dockerfile(root: Path, rt: ResolvedTarget) -> Path:
    require_image(rt)
    return root / DOCKER_DIR / str(rt.dockerfile)


def dockerfile_sha256(root: Path, rt: ResolvedTarget) -> str:
    return hashlib.sha256(dockerfile(root, rt).read_bytes()).hexdigest()


def image_key(plan: BuildPlan, root: Path, args: Mapping[str, str]) -> str:
    """What determines the image: the build key, the Dockerfile, the build arguments."""
    payload = {"build": plan.key, "kind": "image",
               "dockerfile": dockerfile_sha256(root, plan.target),
               "args": {k: v for k, v in sorted(args.items()) if k not in VOLATILE_ARGS}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def defines_cmake(plan: BuildPlan) -> str:
    """targets/<target>/defines.cmake: the plan's definitions as CMake's initial cache."""
    rt = plan.target
    lines = [f"# {rt.name}: the resolved CMake definitions (`buildtool plan --target {rt.name}`),",
             "# loaded with `cmake -C` in the image's build stage. Written by buildtool.", ""]
    for key, value in portable_defines(plan):
        if key in DOCKERFILE_OWNS:
            continue
        origin = rt.origins.get(f"-D{key}", "recipes/cmake")
        lines.append(f"set({key} {cmake_string(value)} CACHE STRING {cmake_string(origin)})")
    return "\n".join(lines) + "\n"


def image_manifest(plan: BuildPlan, base: Manifest, args: Mapping[str, str],
                   tag_list: Sequence[str], root: Path) -> Manifest:
    """The manifest.json the image carries in /opt/llama.cpp. Of prebuilt programs, the
    files (as the tarball's manifest lists them) and the toolchain that compiled them here;
    of programs compiled in the build stage, neither (this machine's compilers did not build
    them)."""
    rt = plan.target
    prebuilt = args.get(BUILT) == PREBUILT
    return dataclasses.replace(
        base, kind="image", artifact=plan.artifact_name,
        files=base.files if prebuilt else None,
        toolchain=base.toolchain if prebuilt else None,
        image=ImageRecord(tags=tuple(tag_list), dockerfile=f"{DOCKER_DIR}/{rt.dockerfile}",
                          dockerfile_sha256=dockerfile_sha256(root, rt),
                          build_args=dict(args), build_image=args.get("BUILD_IMAGE"),
                          runtime_image=args.get("RUNTIME_IMAGE"),
                          platform=OCI_PLATFORMS.get(rt.platform, rt.platform),
                          programs_dir=PROGRAMS_DIR))


def prepare_prebuilt(plan: BuildPlan, dest: Path) -> dict[str, str]:
    """``prebuilt/`` of a build context: ``bin/`` the files the tarball ships (programs,
    libraries, LICENSE), ``licenses/`` a bundled runtime's licenses — the build stage's
    /out layout. Returns the files as the manifest lists them (paths relative to
    /opt/llama.cpp, where the runtime stage puts both)."""
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "bin").mkdir(parents=True)
    files = stage_payload(plan, dest / "bin")
    licenses = dest / "bin" / LICENSES_DIR
    if licenses.is_dir():
        licenses.rename(dest / LICENSES_DIR)
    else:
        (dest / LICENSES_DIR).mkdir()
    return files


def _empty_marks() -> Path:
    """images/nothing-in-opt-llama.cpp: one empty file per layer digest."""
    return cache_dir() / "images" / ("nothing-in-" + PROGRAMS_DIR.strip("/").replace("/", "-"))


def nothing_in_programs_dir() -> frozenset[str]:
    """Digests of image layers already read and found to hold nothing under PROGRAMS_DIR
    (not even a whiteout): a layer is its content, so the finding holds for good."""
    marks = _empty_marks()
    if not marks.is_dir():
        return frozenset()
    return frozenset(f"sha256:{p.name}" for p in marks.iterdir()
                     if re.fullmatch(r"[0-9a-f]{64}", p.name) and p.is_file())


def remember_nothing_in_programs_dir(digests: Iterable[str]) -> None:
    """Note the digests (a mark that cannot be written only means the layer is read again
    next time)."""
    marks = _empty_marks()
    for digest in digests:
        algo, _, hexdigest = digest.partition(":")
        if algo == "sha256" and re.fullmatch(r"[0-9a-f]{64}", hexdigest):
            try:
                marks.mkdir(parents=True, exist_ok=True)
                (marks / hexdigest).touch()
            except OSError:
                return


def differences(expected: Mapping[str, str], shipped: Mapping[str, str]) -> list[str]:
    """Where the image's /opt/llama.cpp differs from the files compiled here (``shipped``
    may hold more: the image's own manifest.json)."""
    out = []
    for rel, want in sorted(expected.items()):
        got = shipped.get(rel)
        if got is None:
            out.append(f"{rel}: missing")
        elif got != want:
            out.append(f"{rel}: {_short(got)} in the image, {_short(want)} compiled")
    return out


def _short(digest: str) -> str:
    return digest if digest.startswith("symlink:") else f"sha256 {digest[:12]}"


@dataclass(frozen=True, kw_only=True)
class ContextTarget:
    plan: BuildPlan
    manifest: Manifest


def render_context(targets: Sequence[ContextTarget], dest: Path, *, root: Path,
                   prebuilt: Path | None = None) -> Path:
    """Write one build context for the given targets into ``dest`` (replaced if present):
    with the CMake project, the llama.cpp tree and each target's definitions for the build
    stage to compile, or, given ``prebuilt`` (a directory of ``prepare_prebuilt``, moved
    in), the compiled files alone."""
    if not targets:
        raise UsageError("no target has a container image")
    if prebuilt is not None and len(targets) != 1:
        raise UsageError("prebuilt files are one target's")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    first = targets[0].plan
    if prebuilt is None:
        for name in CMAKE_PROJECT_FILES:
            shutil.copy2(first.project_dir / name, dest / name)
        copy_build_tree(first.source_dir, dest / "llama.cpp")
    else:
        shutil.move(prebuilt, dest / PREBUILT)
    (dest / "docker").mkdir()
    for item in targets:
        rt = item.plan.target
        shutil.copy2(dockerfile(root, rt), dest / "docker" / str(rt.dockerfile))
        tdir = dest / "targets" / rt.name
        tdir.mkdir(parents=True)
        if prebuilt is None:
            (tdir / "defines.cmake").write_text(defines_cmake(item.plan))
        (tdir / "manifest.json").write_text(json.dumps(records.to_json(item.manifest),
                                                       indent=2) + "\n")
    # what buildx writes beside the bake file is no part of the context; older buildx
    # versions do not create the output directory themselves
    (dest / ".dockerignore").write_text(f"docker-bake.hcl\n*.oci.tar\n{OUTPUT_DIR}/\n.cache/\n"
                                        ".buildtool-owner\n")
    (dest / OUTPUT_DIR).mkdir()
    return dest


# ------------------------------------------------------------------------------ bake

CACHE_KINDS = ("gha", "registry", "local", "none")
CONTEXT = "image-build-context"  # what a directory `bake --out` / `--emit` writes holds
OUTPUT_DIR = "images"  # the bake file's default OUTPUT_DIR, beside it
CACHE_DIR = ".cache/buildx"


def _hcl(value: Any) -> str:
    """An HCL value: JSON strings/lists are HCL, maps use `key = value`; `${` is escaped
    unless the value is a deliberate variable reference (a str subclass below)."""
    if isinstance(value, Var):
        return json.dumps(str(value))
    if isinstance(value, str):
        return json.dumps(value.replace("${", "$${"))
    if isinstance(value, Mapping):
        body = "".join(f"\n    {k} = {_hcl(v)}" for k, v in value.items())
        return "{" + body + "\n  }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_hcl(v) for v in value) + "]"
    return json.dumps(value)


class Var(str):
    """A string holding bake variable references (``${REGISTRY}``), written as is."""


def cache_settings(kind: str, target: str) -> tuple[list[str], list[str]]:
    """cache-from / cache-to for one bake target."""
    if kind == "gha":
        scope = f"buildtool-{target}"
        return [f"type=gha,scope={scope}"], [f"type=gha,scope={scope},mode=max"]
    if kind == "registry":
        ref = Var(f"${{REGISTRY}}/{REPOSITORY}:buildcache-{target}")
        return [Var(f"type=registry,ref={ref}")], [Var(f"type=registry,ref={ref},mode=max")]
    if kind == "local":
        path = Var(f"${{CACHE_DIR}}/{target}")
        return [Var(f"type=local,src={path}")], [Var(f"type=local,dest={path},mode=max")]
    if kind == "none":
        return [], []
    raise UsageError(f"unknown cache kind '{kind}'", hint="one of: " + ", ".join(CACHE_KINDS))


# the build stage's shared compile cache: a BuildKit secret from this environment variable
COMPILE_CACHE_SECRET = "id=compile-cache,env=BUILDTOOL_COMPILE_CACHE"


def bake_file(items: Sequence[tuple[BuildPlan, Mapping[str, str]]], *, cache: str,
              compile_cache_read_only: bool = False) -> str:
    """docker-bake.hcl for the given (plan, build arguments), context = its directory (one
    llama.cpp tree: the plans build one version). The build stages take the shared compile
    cache from ``$BUILDTOOL_COMPILE_CACHE`` as a secret (none set: their local cache mount
    alone), read-only as the configuration said when the file was written."""
    names = [plan.target.name for plan, _ in items]
    lock = items[0][0].target.lock
    out = [
        f"# llama.cpp {lock.version} ({lock.short_commit}) images for {', '.join(names)}.",
        "# Written by `buildtool bake`; build them all with `docker buildx bake` in this",
        "# directory (REGISTRY, OUTPUT_DIR and CACHE_DIR can be set in the environment).", "",
        'variable "REGISTRY" {\n  default = "localhost"\n}',
        f'variable "OUTPUT_DIR" {{\n  default = "{OUTPUT_DIR}"\n}}',
        f'variable "CACHE_DIR" {{\n  default = "{CACHE_DIR}"\n}}', "",
        'group "default" {\n  targets = ' + _hcl(names) + "\n}",
    ]
    for plan, args in items:
        rt = plan.target
        cache_from, cache_to = cache_settings(cache, rt.name + arch_suffix(rt))
        tag_list = [Var(t.replace(f"{LOCAL_REGISTRY}/", "${REGISTRY}/", 1)) for t in tags(rt)]
        archive = Var(f"type=oci,dest=${{OUTPUT_DIR}}/{archive_name(plan)}")
        fields: list[tuple[str, Any]] = [
            ("context", "."), ("dockerfile", f"docker/{rt.dockerfile}"),
            ("args", {**args, "CREATED": Var("${timestamp()}"),
                      "COMPILE_CACHE_READ_ONLY": "true" if compile_cache_read_only else ""}),
            ("secret", [COMPILE_CACHE_SECRET]),
            # one platform: the definitions were resolved for it (CPU variants differ)
            ("tags", tag_list), ("platforms", [OCI_PLATFORMS[rt.platform]]),
            ("cache-from", cache_from), ("cache-to", cache_to),
            ("output", [archive]),
        ]
        body = "".join(f"\n  {k} = {_hcl(v)}" for k, v in fields)
        out += ["", f'target "{rt.name}" {{' + body + "\n}"]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------- the kind

KIND: ArtifactKind = "image"
SUFFIX = ".oci.tar"
TAKES_BUILD_ARGS = True
CONTAINER = True  # runs in a container engine; published to a registry
INDEXED = False
INSTALLED_PROGRAMS = "."  # `install`: a launcher of the image's llama-server
COMPILES_HERE = True  # packages the plan's build directory (bake/--emit compile in a stage)


def accepts(rt: ResolvedTarget) -> None:
    require_image(rt)
    if rt.cross:
        raise UsageError(
            f"an image for {rt.platform} is built on a {rt.platform} host: its Dockerfile's "
            f"build stage compiles natively (this host is {rt.host_platform})",
            hint=f"`buildtool bake --platform {rt.platform}` writes its build for "
                 "`docker buildx bake` on such a host (CI: an arm64 runner); tarballs and "
                 "wheels cross-compile here")


def owns(name: str) -> bool:
    return name.endswith(SUFFIX)


def context_target(plan: BuildPlan, source: Materialized, root: Path,
                   overrides: Mapping[str, str]) -> tuple[ContextTarget, dict[str, str]]:
    """The target's entry in an image build context (its manifest) and its build arguments."""
    args = build_args(plan, overrides=overrides)
    inner = image_manifest(plan, base_manifest(plan, source), args, tags(plan.target),
                           root)
    return ContextTarget(plan=plan, manifest=inner), args


def key(job: BuildJob) -> str:
    return image_key(job.plan, job.root,
                     build_args(job.plan, prebuilt=True, overrides=job.build_args))


def begin(job: BuildJob) -> None:
    return None  # it packages the compiled files after the other kinds: nothing to start


def build(job: BuildJob) -> Made:
    """Compile (once: the tarball and the wheel of this build share it), put the shipped
    files into a build context (BUILT=prebuilt), make the OCI archive — the runtime stage
    from the engine (cached) with the Dockerfile's last stage applied here, or, where that
    stage does more than copy and label, the whole Dockerfile built and saved by the
    engine — check that the archive's /opt/llama.cpp holds the compiled bytes, audit them
    and record the image."""
    plan, rep, eng = job.plan, job.reporter, job.engine
    assert eng is not None, "the pipeline chooses an engine for images"
    rt = plan.target
    job.compile()
    t = time.monotonic()
    context, staged = plan.build_dir / "image-context", plan.build_dir / "image-prebuilt"
    prebuilt = prepare_prebuilt(plan, staged)
    args = build_args(plan, prebuilt=True, overrides=job.build_args)
    tag_list = tags(rt)
    inner = image_manifest(plan, base_manifest(plan, job.source, prebuilt), args, tag_list,
                           job.root)
    render_context([ContextTarget(plan=plan, manifest=inner)], context, root=job.root,
                   prebuilt=staged)
    log = plan.build_dir / "buildtool-image.log"
    log.write_text("")
    dockerfile_path = context / "docker" / str(rt.dockerfile)
    archive = plan.dist_dir / archive_name(plan)
    try:
        stage: assemble.LastStage | None = assemble.last_stage(dockerfile_path.read_text(),
                                                               args, context)
        why = ""
    except assemble.NotHere as exc:
        stage, why = None, str(exc)
    rep.group(f"image {rt.name}")
    with atomic_path(archive) as tmp:
        if stage is not None:
            rep.step(f"image {tag_list[0]}: the runtime stage with {eng.describe()}, the "
                     f"last stage applied here ({len(prebuilt)} files compiled here)")
            rep.info(f"runtime base: {args['RUNTIME_IMAGE']}")
            base, runtime, built_now = assemble.runtime_base(
                eng, context, dockerfile_path, stage, args, log=log, echo=rep.command,
                no_cache=job.no_cache)
            rep.info(f"runtime stage: {'built now' if built_now else 'cached'} ({base})")
            epoch = source_date_epoch()
            assemble.apply(stage, base, tmp, ref=tag_list[0], created=created_at(),
                           clamp_mtime=epoch.timestamp() if epoch else None,
                           deflated=job.deflated)
            base_info: oci.ImageInfo | None = runtime
        else:
            rep.step(f"image {tag_list[0]} with {eng.describe()} ({len(prebuilt)} files "
                     f"compiled here; recipes/docker/{rt.dockerfile}: {why}, so the engine "
                     "builds every stage)")
            rep.info(f"runtime base: {args['RUNTIME_IMAGE']}")
            cmd.run(eng.build(context=context, dockerfile=dockerfile_path, tags=tag_list,
                              args=args, no_cache=job.no_cache),
                    log=log, echo=rep.command,
                    what=f"image build ({eng.name}) failed", error_type=BuildError)
            rep.step(f"saving {archive.name} (OCI archive)")
            tmp.unlink()  # the engine creates the file
            cmd.run(eng.save(tag_list[0], tmp), log=log, echo=rep.command,
                    what=f"saving the image ({eng.name}) failed", error_type=BuildError)
            base_info = None
        rep.endgroup()
        job.timings["image"] = time.monotonic() - t
        t = time.monotonic()
        info = oci.inspect(tmp)
        # read once: checked here, audited below; the runtime base's layers are read the
        # first time only (a layer known to hold nothing under PROGRAMS_DIR is skipped)
        held = oci.tree(tmp, PROGRAMS_DIR, empty=nothing_in_programs_dir())
        remember_nothing_in_programs_dir(held.empty)
        differ = differences(prebuilt, held.digests())
        if differ:  # the atomic path leaves nothing behind
            raise PackageError(
                f"the image's {PROGRAMS_DIR} is not what was compiled here:\n  "
                + "\n  ".join(differ[:20]),
                hint=f"the last stage of recipes/docker/{rt.dockerfile} must copy the "
                     f"{BUILT} stage's /out/bin as it is")
        rep.info(f"{PROGRAMS_DIR}: the {len(prebuilt)} files compiled here, byte for byte")
        with tempfile.TemporaryDirectory(prefix="buildtool-image-") as tmp_dir:
            shipped = [f for f in held.write(Path(tmp_dir)) if f.name != "manifest.json"]
            report = job.audit(shipped, own_runtime=True)
    job.timings["save"] = time.monotonic() - t
    digest = sha256_file(archive)
    built = dataclasses.replace(
        inner.image or ImageRecord(), engine=eng.name, engine_version=eng.version,
        last_stage="buildtool" if stage is not None else eng.name,
        runtime_base=base_info.config_digest if base_info is not None else None)
    manifest = dataclasses.replace(inner, artifact_file=archive.name, artifact_sha256=digest,
                                   isa_audit=report.isa, abi=report.abi,
                                   image=info.merged_into(built))
    write_json(sidecar(archive, "manifest"), records.to_json(manifest))
    update_sums(plan.dist_dir, archive.name, digest)
    record(plan.dist_dir, key(job), archive, digest)
    rep.info(f"{archive} ({archive.stat().st_size / 1e6:.1f} MB, image {info.config_digest[:19]})")
    return Made(kind=KIND, path=archive, manifest=manifest)


def load(eng: engines.Engine, archive: Path) -> oci.ImageInfo:
    """Load an OCI archive into the engine's store; what the archive says of itself."""
    info = oci.inspect(archive)
    try:
        cmd.capture(eng.load(archive), timeout=1800)
    except CommandError as exc:
        raise SmokeError(f"{eng.name} cannot load {archive.name}:\n    "
                         + "\n    ".join(exc.tail[-8:])) from exc
    return info


def subject(artifact: Path | str, work: Path, host: CpuInfo,
            engine: engines.Engine | str | None, note: Note) -> Subject:
    """Load an OCI archive into the engine (or take an image reference as it is) and run its
    programs inside containers of it: as the image's own user, with the work directory
    mounted at the same path and the GPU devices its backend needs. ``engine``: one already
    chosen, or the name to choose (None: the first usable)."""
    eng = engine if isinstance(engine, engines.Engine) else engines.choose(engine)
    if isinstance(artifact, Path):
        info = load(eng, artifact)
        ref = info.ref or info.config_digest
    else:
        ref = artifact
    work.chmod(0o1777)  # the image's non-root user writes the quantized model here
    state: dict[str, str | None] = {"container": None}

    def start(devices: list[str]) -> None:
        if eng.name != "buildah":
            return
        stop()
        out = cmd.capture(eng.create(ref, devices), timeout=600)
        state["container"] = out.strip().splitlines()[-1]

    def stop() -> None:
        if state["container"]:
            cmd.capture(eng.remove(state["container"]), timeout=120, check=False)
            state["container"] = None

    devices: list[str] = []

    def wrap(argv: list[str], env: Mapping[str, str]) -> list[str]:
        return eng.run(ref, argv[0], argv[1:], mounts=[(work, str(work))], env=env,
                       devices=devices, workdir=str(work), container=state["container"])

    try:
        start([])
        raw = cmd.capture(wrap(["cat", f"{PROGRAMS_DIR}/manifest.json"], {}), timeout=600)
    except CommandError as exc:
        stop()
        raise SmokeError(f"cannot run {ref} with {eng.name} "
                         f"({cmd.describe_exit(exc.returncode)}):\n    "
                         + "\n    ".join(exc.tail[-8:]),
                         hint=f"only images made by `buildtool build --artifact image` "
                              f"qualify (they carry {PROGRAMS_DIR}/manifest.json)") from exc
    try:
        manifest = records.from_text(Manifest, raw, f"{ref}:{PROGRAMS_DIR}/manifest.json")
        check_host(manifest, host)
        wanted = backends.family(manifest.family).container_devices(os.path.exists)
        flags = eng.device_flags(wanted)
        if wanted.absent and manifest.gpu:
            note(f"this host has no {', '.join(wanted.absent)}: the container gets no "
                 f"{manifest.backend} device")
        if flags:
            devices.extend(flags)
            start(devices)
    except BaseException:
        stop()
        raise
    bin_dir = Path(PROGRAMS_DIR)
    return Subject(kind=KIND, manifest=manifest, bench=bin_dir / "llama-bench",
                   quantize=bin_dir / "llama-quantize", lib_dir=bin_dir, wrap=wrap,
                   close=stop, stage_models=True,
                   results=bin_dir / "llama-results"
                   if "llama-results" in manifest.build_targets else None)


def install(artifact: Path, dest: Path, manifest: Manifest,
            engine: engines.Engine | None) -> str:
    """Load the image into docker or podman and write ``dest/llama-server``: a launcher that
    runs llama-server in a throwaway container of that image — by its ID, so that what was
    verified and smoke-tested is what runs, whatever a tag says later — with the host's
    network (the server's port is the host's), the current directory mounted at the same
    path (a model named by a path below it) and the devices its backend needs. Returns the
    image's ID."""
    if engine is None or engine.name == "buildah":
        raise UsageError("installing an image needs docker or podman (a container that runs "
                         "llama-server)", hint="install one, or --kind tarball")
    ref = load(engine, artifact).config_digest
    dest.mkdir()
    launcher = dest / "llama-server"
    launcher.write_text(launcher_script(engine, ref, manifest, artifact.name, os.path.exists))
    launcher.chmod(0o755)
    return ref


def launcher_script(engine: engines.Engine, ref: str, manifest: Manifest, name: str,
                    exists: Callable[[str], bool]) -> str:
    """The shell script that runs the image's llama-server with the arguments it is given."""
    devices = engine.device_flags(backends.family(manifest.family).container_devices(exists))
    argv = engine.run(ref, f"{PROGRAMS_DIR}/llama-server", [], devices=devices)
    at = argv.index("--entrypoint")
    return ("#!/bin/sh\n"
            f"# Written by `buildtool install`: llama-server of {name}, image {ref},\n"
            f"# in a throwaway {engine.name} container.\n"
            f"exec {shlex.join(argv[:at])} --network host --volume \"$PWD:$PWD\" "
            f"--workdir \"$PWD\" {shlex.join(argv[at:])} \"$@\"\n")


def own_manifest(path: Path) -> Manifest | None:
    return None  # beside the archive (X.oci.manifest.json), or adopted from inside


def adopt(path: Path, inner: Manifest, digest: str | None) -> Manifest | None:
    """An archive built elsewhere (``docker buildx bake``) has no manifest beside it: one
    from the manifest the image carries, the archive's sha256 and what the archive says of
    itself, so that it can be released like one `buildtool build` made."""
    info = oci.inspect(path)
    return dataclasses.replace(
        inner, artifact_file=path.name, artifact_sha256=digest,
        image=info.merged_into(inner.image),
        adopted="manifest written by `buildtool smoke` from the image's own")


def contents(path: Path, manifest: Manifest | None) -> list[str]:
    """Blobs of the OCI archive whose content does not hash to their name, and — for an
    image of prebuilt files, whose manifest lists them — each file of /opt/llama.cpp that is
    not what was compiled."""
    bad = _blob_contents(path)
    if not bad and manifest is not None and manifest.files:
        bad.extend(differences(manifest.files, oci.digests(path, PROGRAMS_DIR)))
    return bad


def _blob_contents(path: Path) -> list[str]:
    bad: list[str] = []
    with tarfile.open(path) as tf:
        for member in tf:
            name = member.name.removeprefix("./")
            if not member.isfile() or not name.startswith("blobs/"):
                continue
            parts = name.split("/")
            if len(parts) != 3:
                bad.append(name)
                continue
            _, algo, hexdigest = parts
            handle = tf.extractfile(member)
            h = hashlib.new(algo)
            while handle is not None and (chunk := handle.read(1 << 20)):
                h.update(chunk)
            if h.hexdigest() != hexdigest:
                bad.append(name)
    return bad


def host_fit(name: str, host: HostFacts) -> str | None:
    return None if host.engines else "no container engine (docker, podman or buildah)"
