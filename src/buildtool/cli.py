"""The click layer: parse options, call the core, print. Errors are caught once, in main()."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import click

from buildtool import __version__
from buildtool.artifacts.image import CACHE_KINDS
from buildtool.config.resolve import Overrides
from buildtool.config.session import Session, open_session
from buildtool.errors import BuildtoolError, ExitCode, ToolchainError, UsageError
from buildtool.grammar import (
    ALL_PLATFORMS,
    CPU_POLICIES,
    CMakeName,
    EnvName,
    GpuArch,
    OneLine,
    Version,
)
from buildtool.paths import check_cache, find_root
from buildtool.progress import Reporter
from buildtool.schema import check_value
from buildtool.text import for_terminal, redact
from buildtool.toolchains.engines import ENGINES

# what `smoke` takes for an image in the engine's store (localhost/llama.cpp:cpu-b11312)
IMAGE_REFERENCE = re.compile(r"[a-z0-9][a-z0-9._/:@-]{0,254}")


def emit_json(data: Any) -> None:
    """Machine output: JSON escapes control characters itself; credentials are redacted."""
    click.echo(redact(json.dumps(data, indent=2)))


def echo(text: str) -> None:
    """Human output on stdout: redacted, terminal control characters shown as escapes."""
    click.echo(for_terminal(text))


def regular_file(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A click callback: an existing path given for reading must be a regular file (not
    /dev/zero, a FIFO or a directory)."""
    paths = value if isinstance(value, tuple) else (value,)
    for path in paths:
        if path is not None and not Path(path).is_file():
            raise click.BadParameter(f"{path} is not a regular file", ctx=ctx, param=param)
    return value


def file_or_directory(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None and not (Path(value).is_file() or Path(value).is_dir()):
        raise click.BadParameter(f"{value} is neither a regular file nor a directory",
                                 ctx=ctx, param=param)
    return value


def _session(ctx: click.Context) -> Session:
    obj = ctx.ensure_object(dict)
    if "session" not in obj:
        matrix: Path | None = obj.get("matrix")
        root = find_root(matrix.parent if matrix else None)
        obj["session"] = open_session(root, matrix,
                                      Reporter(quiet=obj.get("quiet", False)))
    session: Session = obj["session"]
    return session


def _key_values(values: tuple[str, ...], option: str, key_type: Any = EnvName
                ) -> tuple[tuple[str, str], ...]:
    """NAME=VALUE pairs; names and values checked by the model's grammar (a CMake value or a
    build argument on one line: CMake would cut a newline off and keep the rest)."""
    out = []
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"'{item}' is not NAME=VALUE", param_hint=option)
        check_value(key_type, key, option, error=UsageError)
        check_value(OneLine, value, option, name=key, error=UsageError)
        out.append((key, value))
    return tuple(out)


def _parse_defines(values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    items = tuple(v.removeprefix("-D") for v in values)
    for item in items:
        key = item.partition("=")[0]
        if ":" in key:
            raise UsageError(f"-D {key}: give NAME=VALUE without a :TYPE",
                             hint="CMake takes the type from the project's definition")
    return _key_values(items, "-D", CMakeName)


def _overrides(cpu: str | None, toolkit: str | None, gpu_archs: str | None,
               defines: tuple[str, ...], abi_floor: str | None = None,
               platform: str | None = None, llama_cpp: str | None = None) -> Overrides:
    from buildtool.config.resolve import parse_abi_floor

    archs = tuple(a for a in gpu_archs.replace(",", ";").split(";") if a) \
        if gpu_archs else None
    return Overrides(
        cpu=cpu, platform=platform, llama_cpp=llama_cpp,
        toolkit=check_value(Version, toolkit, "--toolkit", error=UsageError)
        if toolkit is not None else None,
        gpu_archs=check_value(tuple[GpuArch, ...], archs, "--gpu-archs", error=UsageError)
        if archs is not None else None,
        defines=_parse_defines(defines),
        abi_floor=parse_abi_floor(abi_floor, "--abi-floor", UsageError) if abi_floor
        else None)


target_options = [
    click.option("--cpu", type=click.Choice(CPU_POLICIES), default=None,
                 help="CPU instructions: host (detected), a named level, or all-variants "
                      "(GGML_BACKEND_DL + GGML_CPU_ALL_VARIANTS)."),
    click.option("--toolkit", default=None, help="Toolkit version (CUDA 12.4, ROCm 6.4, ...)."),
    click.option("--gpu-archs", default=None,
                 help="GPU architectures, ';' or ',' separated (e.g. 89-real;90)."),
    click.option("-D", "--define", "defines", multiple=True, metavar="NAME=VALUE",
                 help="Extra CMake definition (overrides everything else; repeatable)."),
    click.option("--platform", type=click.Choice(ALL_PLATFORMS), default=None,
                 help="Build for this platform of the target (default: this host's); another "
                      "Linux architecture is cross-compiled (README \"Arm64\")."),
    click.option("--abi-floor", default=None, metavar="FAMILY=VERSION,...",
                 help="The glibc/libstdc++ symbol versions the binaries may need, over "
                      "build_matrix.yaml's platforms (e.g. glibc=2.31,libstdcxx=3.4.28)."),
    click.option("--llama-cpp", "llama_cpp", default=None, metavar="VERSION",
                 callback=lambda ctx, param, v: _build_tag(v, "--llama-cpp"),
                 help="The llama.cpp version to build (b10454): the default lock's or one "
                      "kept beside it (vendor/llama.cpp-VERSION.lock.json)."),
]


def _build_tag(value: str | None, option: str) -> str | None:
    from buildtool.grammar import BuildTag

    return check_value(BuildTag, value, option, error=UsageError) if value is not None \
        else None


def with_target_options(f: Any) -> Any:
    for option in reversed(target_options):
        f = option(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="buildtool")
@click.option("--matrix", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="build_matrix.yaml to use (default: found upward from the current directory).")
@click.option("-q", "--quiet", is_flag=True, help="Only headlines and errors.")
@click.pass_context
def cli(ctx: click.Context, matrix: Path | None, quiet: bool) -> None:
    """Build, package and smoke-test llama.cpp for every hardware target."""
    ctx.ensure_object(dict)
    ctx.obj["matrix"] = matrix.resolve() if matrix else None
    ctx.obj["quiet"] = quiet


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def detect(ctx: click.Context, as_json: bool) -> None:
    """Show CPU features, ISA level, OS/arch, toolchains, GPUs and the recommended target."""
    from buildtool.config.matrix import recommend
    from buildtool.detect.host import detect_host

    session = _session(ctx)
    host = detect_host()
    session.host_cpu_override = host.cpu
    target, reason = recommend(session, host.gpus)
    if as_json:
        emit_json({**host.to_json(), "recommended_target": target, "reason": reason})
        return
    cpu = host.cpu
    echo(f"platform     {host.platform}")
    echo(f"cpu          {cpu.model or 'unknown'} ({cpu.vendor or '?'})")
    echo(f"isa level    {cpu.level or 'unknown'}")
    echo(f"features     {' '.join(cpu.ggml_features) or '(none of interest to ggml)'}")
    gpus = ", ".join(f"{g.vendor} {g.name}" for g in host.gpus) or "none found"
    echo(f"gpus         {gpus}")
    echo("toolchains")
    for name, progs in host.toolchains.items():
        best = progs[0].describe() if progs else "not found"
        echo(f"  {name:<10} {best}")
    echo(f"recommended  {target}  ({reason})")


@cli.command(name="matrix")
@click.option("--format", "fmt",
              type=click.Choice(["table", "json", "github", "github-wheels", "github-images"]),
              default="table", help="github: the build jobs (a target per platform with a "
                                    "runner); github-wheels: the wheel jobs (a target per OS "
                                    "its platforms name, per Linux platform); github-images: "
                                    "the image jobs (a bake per Linux platform and llama.cpp "
                                    "version).")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.pass_context
def matrix_cmd(ctx: click.Context, fmt: str, as_json: bool) -> None:
    """List the targets and whether each can be built on this host (and if not, why)."""
    from buildtool.config import matrix

    session = _session(ctx)
    if as_json:
        fmt = "json"
    if fmt == "github":
        echo(json.dumps(matrix.github_matrix(session), separators=(",", ":")))
        return
    if fmt == "github-wheels":
        echo(json.dumps(matrix.github_wheel_matrix(session), separators=(",", ":")))
        return
    if fmt == "github-images":
        echo(json.dumps(matrix.github_image_matrix(session), separators=(",", ":")))
        return
    rows = matrix.rows(session)
    if fmt == "json":
        emit_json({"targets": [r.to_json() for r in rows]})
        return
    echo(f"{'TARGET':<10} {'RECIPE':<7} {'BACKEND':<7} {'TOOLKIT':<8} {'CPU':<13} "
               f"{'HERE':<5} WHY NOT")
    for r in rows:
        rt = r.target
        why = r.reasons[0] if r.reasons else ""
        echo(f"{rt.name:<10} {rt.recipe_name:<7} {rt.backend:<7} {rt.toolkit or '-':<8} "
                   f"{rt.cpu_policy:<13} {'yes' if r.buildable else 'no':<5} {why}")
        for more in r.reasons[1:]:
            echo(f"{'':<55}{more}")


@cli.command()
@click.option("--target", "-t", required=True, help="Target name from build_matrix.yaml.")
@with_target_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def plan(ctx: click.Context, target: str, cpu: str | None, toolkit: str | None,
         gpu_archs: str | None, defines: tuple[str, ...], platform: str | None,
         abi_floor: str | None, llama_cpp: str | None, as_json: bool) -> None:
    """Show the resolved target (with where each value came from) and the exact commands."""
    from buildtool.build import BuildOptions, dry_run
    from buildtool.config import preflight

    session = _session(ctx)
    outcome = dry_run(session, BuildOptions(target=target,
                                            overrides=_overrides(cpu, toolkit, gpu_archs,
                                                                 defines, abi_floor,
                                                                 platform, llama_cpp)))
    problems = preflight.check(outcome.plan.target)
    if as_json:
        emit_json({**outcome.plan.to_json(),
                   "preflight": [{"what": p.what, "fix": p.fix} for p in problems]})
        return
    _print_plan(outcome.plan, problems)


def _print_plan(plan: Any, problems: list[Any]) -> None:
    rt = plan.target
    echo(f"target       {rt.name}: {rt.description}")
    echo(f"recipe       recipes/{rt.recipe_name}.yaml (family {rt.family}, backend "
               f"{rt.backend})")
    echo(f"llama.cpp    {rt.lock.version} ({rt.lock.short_commit}), tree {rt.lock.tree} "
         f"[{rt.origins.get('llama_cpp', rt.lock.path.name)}]")
    echo(f"platform     {rt.platform}" + (f" [{rt.origins['platform']}]"
                                             if "platform" in rt.origins else ""))
    if rt.cross:
        tools = plan.toolchain
        echo(f"cross        from {rt.host_platform}: {tools['cc']['path'] or 'clang (missing)'}"
             f", sysroot {tools['sysroot']['path'] or '(not installed)'}; toolchain file "
             f"{plan.cross_file_path}")
    if rt.abi_floor is not None:
        floor = ", ".join(f"{k} {v}" for k, v in vars(rt.abi_floor).items() if v)
        echo(f"abi floor    {floor} [{rt.origins.get('abi_floor', '')}]")
    if rt.cpu_models:
        echo(f"cpu models   {' '.join(rt.cpu_models)} (emulated; those its claim covers) "
             f"[{rt.origins.get('cpu_models', '')}]")
    echo(f"cpu          {rt.cpu_policy} [{rt.origins.get('cpu', '')}] requires: "
               f"{' '.join(rt.cpu_features) or '-'}")
    if rt.dropped_variants:
        echo(f"left out     libggml-cpu-{{{','.join(rt.dropped_variants)}}} "
                   "[recipes/common.yaml avoid-cpu-features (known defect)]")
    if rt.toolkit:
        echo(f"toolkit      {rt.toolkit} [{rt.origins.get('toolkit', '')}]")
    if rt.gpu_archs:
        echo(f"gpu archs    {';'.join(rt.gpu_archs)} [{rt.origins.get('gpu_archs', '')}]")
    echo(f"artifact     {plan.artifact_path}")
    echo("defines")
    for key, value in rt.defines:
        echo(f"  -D{key}={value}".ljust(52) + f"  [{rt.origins.get('-D' + key, '')}]")
    if problems:
        echo("preflight    cannot build on this host:")
        for p in problems:
            echo(f"  - {p.what}\n    fix: {p.fix}")
    else:
        echo("preflight    ok")
    echo("commands")
    for line in plan.shell_script().splitlines():
        echo(f"  {line}")


@cli.command()
@click.option("--target", "-t", default=None,
              help="Target name (default: what `buildtool detect` recommends for this host).")
@with_target_options
@click.option("--dry-run", is_flag=True, help="Print the exact commands; build nothing.")
@click.option("--configure-only", is_flag=True,
              help="Preflight, fetch the source and run CMake's configure step; build nothing.")
@click.option("--artifact", "artifacts", multiple=True,
              type=click.Choice(["tarball", "wheel", "image"]),
              help="Artifact kind to make (repeatable; default: the target's `artifacts` in "
                   "build_matrix.yaml).")
@click.option("--emit", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="With --artifact wheel: write the self-contained wheel project (for "
                   "cibuildwheel or another machine); with --artifact image: the Dockerfile, "
                   "build context and a docker-bake.hcl. Into this directory; build nothing.")
@click.option("--engine", type=click.Choice(ENGINES), default=None,
              help="Images: the container engine (default: $BUILDTOOL_ENGINE, else docker "
                   "with buildx and a daemon, podman, buildah — the first usable).")
@click.option("--build-arg", "build_args", multiple=True, metavar="KEY=VALUE",
              help="Images: a build argument over the rendered ones (BUILD_IMAGE=..., "
                   "RUNTIME_IMAGE=..., CUDA_ARCHITECTURES=...; repeatable).")
@click.option("--smoke/--no-smoke", default=True, help="Smoke-test the artifact (default on).")
@click.option("--force", is_flag=True, help="Rebuild even if an artifact with the same inputs "
                                            "exists.")
@click.option("--fresh", is_flag=True, help="Delete the build directory first.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, help="Parallel jobs.")
@click.option("--ccache/--no-ccache", default=True, help="Use ccache when installed.")
@click.option("--source", type=click.Path(path_type=Path, exists=True), default=None,
              callback=file_or_directory,
              help="Local llama.cpp tree or archive (verified against the lock).")
@click.option("--model", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              default=None, callback=regular_file,
              help="GGUF model for the smoke test (default: synthetic).")
@click.option("--dist", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Where artifacts go (default: ./dist).")
@click.option("--build-root", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Where build directories go (default: ./build).")
@click.option("--build-env", default=None, metavar="DIR|IMAGE",
              help="Tarballs: compile in this root file system or container image (an older "
                   "distribution: a lower glibc floor); see README \"What an artifact "
                   "claims\".")
@click.option("--compile-cache", "compile_cache", default=None, metavar="URL|none",
              help="The shared compile cache (ccache remote storage: redis://HOST[:PORT], "
                   "http://HOST/PATH, file:///DIR), over $BUILDTOOL_COMPILE_CACHE and the "
                   "matrix's compile-cache; none: this machine's ccache only.")
@click.option("--compile-cache-read-only", is_flag=True,
              help="Read the shared compile cache, never write it (untrusted builds).")
@click.option("--allow-cpu-fallback", is_flag=True,
              help="Smoke: pass a GPU artifact that ran on the CPU (recorded as waived).")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON on stdout.")
@click.pass_context
def build(ctx: click.Context, target: str | None, cpu: str | None, toolkit: str | None,
          gpu_archs: str | None, defines: tuple[str, ...], platform: str | None,
          abi_floor: str | None, llama_cpp: str | None, build_env: str | None,
          dry_run: bool, configure_only: bool,
          artifacts: tuple[str, ...], emit: Path | None, engine: str | None,
          build_args: tuple[str, ...], smoke: bool, force: bool,
          fresh: bool, jobs: int | None, ccache: bool,
          source: Path | None, model: Path | None, dist: Path | None, build_root: Path | None,
          compile_cache: str | None, compile_cache_read_only: bool,
          allow_cpu_fallback: bool, as_json: bool) -> None:
    """Build a target: fetch source, configure, compile, package, smoke-test."""
    from buildtool import build as build_mod
    from buildtool.config import preflight

    session = _session(ctx)
    if target is None:
        from buildtool.config.matrix import recommend
        from buildtool.detect.host import detect_gpus

        target, reason = recommend(session, detect_gpus())
        session.reporter.step(f"no --target given: building '{target}' ({reason})")
    options = build_mod.BuildOptions(
        target=target, overrides=_overrides(cpu, toolkit, gpu_archs, defines, abi_floor,
                                            platform, llama_cpp),
        build_env=build_env, smoke=smoke,
        force=force, fresh=fresh, jobs=jobs, ccache=ccache, source=source, model=model,
        dist=dist.resolve() if dist else None,
        build_root=build_root.resolve() if build_root else None,
        allow_cpu_fallback=allow_cpu_fallback, configure_only=configure_only,
        artifacts=artifacts, engine=engine, build_args=_key_values(build_args, "--build-arg"),
        compile_cache=compile_cache, compile_cache_read_only=compile_cache_read_only)
    if emit is not None:
        if artifacts == ("image",):
            context = build_mod.emit_image_context(session, options, emit.resolve())
            session.reporter.step(f"image build context for {target}: {context} (build it "
                                  f"with `docker buildx bake` there)")
            echo(str(context))
            return
        if artifacts != ("wheel",):
            raise click.UsageError("--emit writes a wheel project or an image build context: "
                                   "use it with --artifact wheel or --artifact image")
        project = build_mod.emit_wheel_project(session, options, emit.resolve())
        session.reporter.step(f"wheel project for {target}: {project}")
        echo(str(project))
        return
    if dry_run:
        outcome = build_mod.dry_run(session, options)
        if as_json:
            emit_json(outcome.plan.to_json())
        else:
            _print_plan(outcome.plan, preflight.check(outcome.plan.target))
        return
    outcome = build_mod.build(session, options)
    if as_json:
        emit_json(outcome.to_json())
    elif configure_only:
        session.reporter.step(f"done: {outcome.plan.target.name} configured in "
                              f"{outcome.plan.build_dir}")
    else:
        for made in outcome.artifacts:
            session.reporter.step(f"done: {made.path}" + (" (cached)" if made.cached else ""))


def _reporter(ctx: click.Context) -> Reporter:
    """Messages for commands that need no repository (a lab machine, a release host)."""
    return Reporter(quiet=ctx.ensure_object(dict).get("quiet", False))


@cli.command(name="smoke")
@click.argument("artifact")
@click.option("--model", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              default=None, callback=regular_file,
              help="GGUF model (default: a cached synthetic llama model).")
@click.option("-p", "--n-prompt", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("-n", "--n-gen", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("-r", "--repetitions", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--allow-cpu-fallback", is_flag=True,
              help="Pass a GPU artifact that ran on the CPU (recorded as a waived check).")
@click.option("--engine", type=click.Choice(ENGINES), default=None,
              help="Images: the container engine that runs it (default: the first usable).")
@click.option("--record/--no-record", default=True,
              help="Write the result beside the artifact (X.smoke.json; default) or only "
                   "print it.")
@click.option("--cpu-model", "cpu_models", multiple=True, metavar="NAME",
              help="Also run it on this emulated CPU model (QEMU user mode; repeatable): "
                   "qemu64, Nehalem, SandyBridge, IvyBridge, Haswell, ... A model lacking a "
                   "feature the artifact requires is refused (exit code 9).")
@click.option("--run-anyway", is_flag=True,
              help="Run on CPU models that lack required features too (they die of SIGILL, "
                   "reported as such).")
@click.option("--root", "root_fs", type=click.Path(path_type=Path, file_okay=False,
                                                   exists=True), default=None,
              help="Tarballs: run inside this root file system (an older distribution made "
                   "by debootstrap), against its C library; needs root.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.pass_context
def smoke_cmd(ctx: click.Context, artifact: str, model: Path | None, n_prompt: int, n_gen: int,
              repetitions: int, allow_cpu_fallback: bool, engine: str | None, record: bool,
              cpu_models: tuple[str, ...], run_anyway: bool, root_fs: Path | None,
              as_json: bool) -> None:
    """Run ARTIFACT's llama-bench on a model and pass or fail it (exit code 8 on failure).

    ARTIFACT is a tarball (or its unpacked directory), a wheel, an image's OCI archive
    (*.oci.tar) or an image reference (localhost/llama.cpp:cpu-b11312). A wheel is installed
    into a fresh virtual environment and run through its installed entry points; an image
    runs llama-bench inside its container, as its own user, with the GPU devices its backend
    needs (--gpus all, --device /dev/kfd, ...).

    Before anything runs, the artifact is refused (exit code 9) on a host, a root file
    system or a CPU model that cannot run it: another architecture, a CPU feature it
    lacks, or a C library / C++ runtime older than the artifact's ABI floor."""
    from buildtool import records
    from buildtool.detect.host import detect_cpu, host_system, os_name
    from buildtool.errors import SmokeError
    from buildtool.outputs import sidecar
    from buildtool.paths import writable_file
    from buildtool.verify import smoke

    path = Path(artifact)
    subject: Path | str
    if path.exists():
        if not (path.is_file() or path.is_dir()):
            raise click.BadParameter(f"{artifact} is neither a regular file nor a directory",
                                     param_hint="ARTIFACT")
        subject = path.resolve()
        if record and path.is_file():  # the verdict must not be lost after the run
            for kind in ("smoke", "manifest"):
                writable_file(sidecar(subject, kind), "the smoke result")
    elif artifact.startswith((".", "/")) or artifact.endswith((".tar.gz", ".whl", ".tar")):
        raise click.BadParameter(f"no such file: {artifact}", param_hint="ARTIFACT")
    elif not IMAGE_REFERENCE.fullmatch(artifact):
        raise click.BadParameter(f"{artifact!r} is neither a file nor an image reference",
                                 param_hint="ARTIFACT")
    else:
        subject = artifact  # an image reference (localhost/llama.cpp:cpu-b11312)
    if model is None:
        check_cache()  # the synthetic model is written there
    host = detect_cpu()
    result = smoke.run_smoke(subject, host=host, model=model,
                             n_prompt=n_prompt, n_gen=n_gen, repetitions=repetitions,
                             allow_cpu_fallback=allow_cpu_fallback, engine=engine,
                             store=record, note=_reporter(ctx).info,
                             system=host_system(os_name(), host.arch), root=root_fs,
                             cpu_models=cpu_models, run_anyway=run_anyway)
    if as_json:
        emit_json(records.to_json(result))
    else:
        echo(smoke.table(result))
    if not result.passed:
        raise SmokeError(f"smoke test failed for {path.name}: "
                         + "; ".join(c.name for c in result.failures()))


@cli.command(name="install")
@click.argument("source")
@click.option("--prefix", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Where to install (default: ~/.local/share/llama.cpp); PREFIX/bin/"
                   "llama-server is the stable path.")
@click.option("--kind", type=click.Choice(("tarball", "wheel", "image")), default="tarball",
              show_default=True,
              help="The kind of artifact to install: a tarball (unpacked), a wheel (into a "
                   "virtual environment at PREFIX) or an image (loaded into docker or podman, "
                   "PREFIX/bin/llama-server runs it).")
@click.option("--engine", type=click.Choice(["docker", "podman"]), default=None,
              help="--kind image: the container engine (default: BUILDTOOL_ENGINE, else the "
                   "first usable).")
@click.option("--dry-run", is_flag=True,
              help="Show the ranking and the reasons; download and change nothing.")
@click.option("--upgrade", is_flag=True,
              help="Replace what PREFIX holds with the best of this release, once that "
                   "passed its smoke test here.")
@click.option("--no-fallback", is_flag=True,
              help="The first candidate that fails here is final (no next best).")
@click.option("--allow-software-gpu", is_flag=True,
              help="Count a software renderer (Mesa's lavapipe) as a Vulkan device.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON on stdout.")
@click.pass_context
def install_cmd(ctx: click.Context, source: str, prefix: Path | None, kind: str,
                engine: str | None, dry_run: bool, upgrade: bool, no_fallback: bool,
                allow_software_gpu: bool, as_json: bool) -> None:
    """Install the best artifact of a release for this machine, proven here.

    SOURCE is a release directory (`buildtool publish --out`), a PEP 503 index (`publish
    --index DIR` writes DIR/simple/), or the http(s) URL one is served at. Each artifact is
    judged against this host (platform, CPU features, C library, a GPU of its backend with a
    driver new enough and covered by its device code); the fitting
    ones are tried best first — downloaded, checked against SHA256SUMS, release.json and the
    provenance statement (an index: the link's sha256 and the wheel's RECORD), smoke-tested
    here — and the first that passes is installed atomically into PREFIX. Exit code 8 when
    none can be."""
    from buildtool.detect.host import detect_host, host_facts
    from buildtool.release import install as installer
    from buildtool.verify.smoke import run_smoke

    rep = _reporter(ctx)
    where = (prefix or Path.home() / ".local" / "share" / "llama.cpp").absolute()
    if not dry_run:
        check_cache()  # the synthetic model is written there
    host = detect_host(with_toolchains=False)
    chosen = None
    if kind == "image" and not dry_run:
        from buildtool.toolchains import engines
        chosen = engines.choose(engine)
    outcome = installer.install(
        source, where, kind=next(k for k in installer.INSTALLABLE if k == kind),
        host=host_facts(host), cpu=host.cpu,
        system=host.system, upgrade=upgrade, dry_run=dry_run, fallback=not no_fallback,
        allow_software_gpu=allow_software_gpu,
        smoke=lambda subject, kind: run_smoke(subject, host=host.cpu, store=False,
                                              note=rep.info, system=host.system, kind=kind,
                                              engine=chosen),
        note=rep.info, step=rep.step, engine=chosen,
        progress=lambda done, total, label: rep.progress(done, total, label, "download"))
    if as_json:
        emit_json(outcome.to_json())
        return
    for c in outcome.candidates:
        mark = "installed" if c is outcome.installed else \
            "next" if c.rejected is None else "rejected"
        echo(f"{mark:<9} {c.name}" + (f"  ({c.stage}: {c.rejected})" if c.rejected else ""))
    if outcome.installed is not None and not dry_run:
        echo(f"{where / 'bin' / 'llama-server'}: {outcome.installed.name} (release "
             f"{outcome.release})" + ("" if outcome.changed else ", already installed"))


@cli.command(name="publish")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--tag", default=None, help="Release tag (default: the llama.cpp build, b11312).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Release directory to write (default: DIRECTORY/release-TAG).")
@click.option("--allow", "allow", multiple=True, metavar="ARTIFACT=REASON",
              help="Ship an artifact that fails the gate, recording why (file name or glob; "
                   "repeatable).")
@click.option("--github", "github_repo", default=None, metavar="OWNER/REPO",
              help="Create/update the GitHub release TAG and upload every file as an asset "
                   "(token: GITHUB_TOKEN or GH_TOKEN).")
@click.option("--github-api", default=None, metavar="URL",
              help="GitHub API root (default: $GITHUB_API_URL or https://api.github.com).")
@click.option("--index", "index_dir", type=click.Path(path_type=Path, file_okay=False),
              default=None, help="Add the wheels to the PEP 503 index in this directory "
                                 "(files/ + simple/<target>/), for a web server to serve.")
@click.option("--registry", default=None, metavar="HOST[:PORT][/NS] | oci:DIR",
              help="Push each image under its tags (skopeo; else podman/docker).")
@click.option("--dry-run", is_flag=True,
              help="Verify and show what would be written and uploaded; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def publish_cmd(ctx: click.Context, directory: Path, tag: str | None, out: Path | None,
                allow: tuple[str, ...], github_repo: str | None, github_api: str | None,
                index_dir: Path | None, registry: str | None, dry_run: bool,
                as_json: bool) -> None:
    """Verify DIRECTORY's artifacts, write a release and upload it.

    Every artifact (tarball, wheel, OCI archive) needs its manifest, matching checksums and a
    passing smoke result for its own bytes — for a GPU target, one that ran on a GPU of its
    backend. Any failure refuses the whole release (exit code 11) and names every offender.
    The release directory gets SHA256SUMS, RELEASE_NOTES.md, provenance.intoto.jsonl (SLSA
    v1) and sbom.cdx.json (CycloneDX 1.6). Publishing the same release again uploads nothing
    new."""
    from buildtool.release import gate as release
    from buildtool.release import publish

    rep = _reporter(ctx)
    request = publish.Request(directory=directory, tag=tag, out=out,
                              allow=release.parse_allow(allow), github_repo=github_repo,
                              github_api=github_api, index_dir=index_dir, registry=registry,
                              dry_run=dry_run)
    try:
        outcome = publish.run(request, step=rep.step, info=rep.info, warn=rep.warn)
    except release.ReleaseRefused as exc:
        if as_json:
            emit_json({"refused": True, "problems": [p.to_json() for p in exc.problems]})
        raise
    if as_json:
        emit_json(outcome.to_json(dry_run))
        return
    for a in outcome.actions:
        echo(f"{a.destination:<9} {a.action:<22} {a.item}")
    echo(f"release {outcome.tag}: {len(outcome.verification.artifacts)} artifacts"
         + (" (dry run: nothing written or uploaded)" if dry_run else f" in {outcome.dest}"))


@cli.group(name="lab")
def lab_group() -> None:
    """Validate artifacts on lab machines and report across them."""


@lab_group.command(name="run")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Result file (default: lab-results/<hostname>.json).")
@click.option("--model", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              default=None, callback=regular_file,
              help="A real GGUF model (default: the synthetic one).")
@click.option("-p", "--n-prompt", default="64,256", show_default=True,
              help="Prompt sizes (comma-separated).")
@click.option("-n", "--n-gen", default="16,64", show_default=True,
              help="Generation sizes (comma-separated).")
@click.option("-r", "--repetitions", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("-t", "--threads", type=click.IntRange(min=1), default=None,
              help="Threads (default: all cores).")
@click.option("--engine", type=click.Choice(ENGINES), default=None,
              help="Container engine for images (default: the first usable).")
@click.option("--cpu-model", "cpu_models", multiple=True, metavar="NAME",
              help="Also run each tarball and wheel on this emulated CPU model (repeatable); "
                   "models outside an artifact's claim are recorded as refused.")
@click.option("--json", "as_json", is_flag=True, help="Print the result document on stdout.")
@click.pass_context
def lab_run(ctx: click.Context, directory: Path, out: Path | None, model: Path | None,
            n_prompt: str, n_gen: str, repetitions: int, threads: int | None,
            engine: str | None, cpu_models: tuple[str, ...], as_json: bool) -> None:
    """Smoke-test and benchmark every artifact in DIRECTORY that fits this host.

    Artifacts for other hardware are recorded as skipped with the reason; one that fails
    does not stop the run. Exit code 8 when any artifact failed or could not run."""
    from buildtool import records
    from buildtool.detect.host import detect_host, host_facts
    from buildtool.errors import SmokeError
    from buildtool.lab import runner as lab
    from buildtool.paths import writable_file

    try:
        settings = lab.Settings(n_prompt=lab.sizes(n_prompt), n_gen=lab.sizes(n_gen),
                                repetitions=repetitions, model=model, threads=threads,
                                cpu_models=tuple(dict.fromkeys(cpu_models)))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    rep = _reporter(ctx)
    dest = writable_file(out or lab.default_out(), "--out")
    if model is None:
        check_cache()  # the synthetic model is written there
    rep.step(f"lab run on {directory} → {dest}")
    lab.artifacts_in(directory)  # before detecting anything
    host = detect_host(with_toolchains=False)
    doc = lab.run(directory, dest, cpu=host.cpu, host=host_facts(host), settings=settings,
                  engine=engine, note=rep.info, system=host.system)
    totals = lab.counts(doc)
    if as_json:
        emit_json(records.to_json(doc))
    else:
        for r in doc.results:
            echo(f"{r.status.value:<8} {r.artifact}" + (f"  ({r.reason})" if r.reason else ""))
        echo(f"{dest}: " + ", ".join(f"{n} {s}" for s, n in totals.items()))
    if totals["fail"] or totals["error"]:
        raise SmokeError(f"{totals['fail'] + totals['error']} artifact(s) failed on this host",
                         hint=f"details: {dest}")


@lab_group.command(name="report")
@click.argument("files", nargs=-1, required=True, callback=regular_file,
                type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
              default=Path("lab-report.html"), show_default=True, help="The HTML page.")
@click.option("--markdown", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write a Markdown summary (append it to $GITHUB_STEP_SUMMARY in CI).")
@click.option("--json", "as_json", is_flag=True, help="Print the merged grid as JSON.")
def lab_report(files: tuple[Path, ...], out: Path, markdown: Path | None,
               as_json: bool) -> None:
    """Merge lab result FILES from many hosts into one HTML page (grid, plots, hosts)."""
    from buildtool.lab import report
    from buildtool.lab import runner as lab
    from buildtool.outputs import atomic_path
    from buildtool.paths import writable_file

    writable_file(out, "--out")
    if markdown is not None:
        writable_file(markdown, "--markdown")
    merged = report.merge(lab.load_results(files))
    with atomic_path(out) as tmp:
        tmp.write_text(report.render_html(merged))
    if markdown is not None:
        with atomic_path(markdown) as tmp:
            tmp.write_text(report.render_markdown(merged))
    if as_json:
        emit_json({"hosts": sorted(merged.results), "html": str(out),
                   "markdown": str(markdown) if markdown else None,
                   "grid": [{"target": t, "kind": k, "hosts": {
                       h: report.cell_status(merged.cell(h, t, k)) for h in merged.results}}
                       for t, k in merged.rows()]})
        return
    echo(f"{out}: {len(merged.results)} host(s), {len(merged.rows())} row(s); "
               + ", ".join(f"{n} {s}" for s, n in sorted(report.summary_counts(merged).items())))


@cli.command(name="bake")
@click.option("--target", "-t", "targets", multiple=True,
              help="Target to include (repeatable; default: every target with an image).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False),
              default=Path("build/bake"), show_default=True,
              help="Directory for docker-bake.hcl and the shared build context.")
@click.option("--cache", type=click.Choice(CACHE_KINDS),
              default="gha", show_default=True,
              help="BuildKit cache: GitHub Actions cache, ${REGISTRY}/llama.cpp:buildcache-*, "
                   "a local directory (${CACHE_DIR}), or none.")
@click.option("--cpu", type=click.Choice(CPU_POLICIES), default="all-variants",
              show_default=True,
              help="CPU policy for targets whose own is 'host' (images run on other machines).")
@click.option("--platform", type=click.Choice(ALL_PLATFORMS), default=None,
              help="The Linux platform the images are for (default: this host's); targets not "
                   "built for it are skipped. CI bakes each on a runner of that platform.")
@click.option("--build-arg", "build_args", multiple=True, metavar="KEY=VALUE",
              help="A build argument for every target (repeatable).")
@click.option("--llama-cpp", "llama_cpp", default=None, metavar="VERSION",
              callback=lambda ctx, param, v: _build_tag(v, "--llama-cpp"),
              help="The llama.cpp version every image builds (one context holds one tree).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def bake_cmd(ctx: click.Context, targets: tuple[str, ...], out: Path, cache: str, cpu: str,
             platform: str | None, build_args: tuple[str, ...], llama_cpp: str | None,
             as_json: bool) -> None:
    """Write docker-bake.hcl and one shared build context for the matrix's images, so that
    `docker buildx bake` builds them all in one call (BuildKit schedules and caches)."""
    from buildtool import build as build_mod

    session = _session(ctx)
    result = build_mod.bake(session, targets, out.resolve(), cache=cache, cpu=cpu,
                            platform=platform, llama_cpp=llama_cpp,
                            build_args=_key_values(build_args, "--build-arg"))
    if as_json:
        emit_json(result)
        return
    for name, tag in result["targets"].items():
        echo(f"{name:<10} {tag}")
    for name, why in result["skipped"].items():
        echo(f"{name:<10} skipped: {why}")
    echo(f"wrote {result['bake_file']}")
    echo(f"build: cd {result['context']} && docker buildx bake")


@cli.command(name="index")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Where the index goes (default: DIRECTORY/whl).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def index_cmd(directory: Path, out: Path | None, as_json: bool) -> None:
    """Write PEP 503 simple indexes for the buildtool wheels in DIRECTORY, one per target
    (whl/cpu/, whl/cublas12/, ...): pip install --index-url file://.../whl/cpu/ NAME."""
    from buildtool.paths import writable_dir
    from buildtool.release import index

    dest = (out or directory / "whl").resolve()
    writable_dir(dest, "--out")
    written = index.write(directory.resolve(), dest)
    if as_json:
        emit_json({"indexes": [i.to_json() for i in written]})
        return
    for entry in written:
        echo(f"{entry.target:<10} {entry.url}  ({', '.join(entry.projects)}; "
                   f"{len(entry.wheels)} wheel{'s' if len(entry.wheels) != 1 else ''})")


@cli.group(name="vendor", invoke_without_command=True)
@click.option("--source", type=click.Path(path_type=Path, exists=True), default=None,
              callback=file_or_directory, help="Local llama.cpp tree or archive to use first.")
@click.option("--force", is_flag=True, help="Fetch again even if the tree is present.")
@click.option("--verify", is_flag=True, help="Re-hash the present tree against its record.")
@click.option("--llama-cpp", "llama_cpp", default=None, metavar="VERSION",
              callback=lambda ctx, param, v: _build_tag(v, "--llama-cpp"),
              help="A kept version's tree (vendor/llama.cpp-VERSION) instead of the default "
                   "lock's (vendor/llama.cpp).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def vendor_cmd(ctx: click.Context, source: Path | None, force: bool, verify: bool,
               llama_cpp: str | None, as_json: bool) -> None:
    """Materialize vendor/llama.cpp from the pinned sources (verified), or check it;
    `vendor lock` moves the pin."""
    from buildtool.paths import writable_dir
    from buildtool.source import vendor

    if ctx.invoked_subcommand is not None:
        if source or force or verify or as_json or llama_cpp:
            raise UsageError(f"--source, --force, --verify, --llama-cpp and --json belong "
                             f"after '{ctx.invoked_subcommand}' or to `buildtool vendor` "
                             "alone")
        return
    session = _session(ctx)
    lock = session.lock_for(llama_cpp)
    dest = lock.tree
    if not verify:
        writable_dir(dest, "the llama.cpp tree")
        check_cache()  # downloaded archives are kept there
    if verify:
        made = vendor.verify(lock, dest)
    else:
        made = vendor.materialize(lock, dest, local=source, force=force,
                                  progress=session.reporter.info)
    if as_json:
        emit_json({"tree": str(dest), "commit": lock.commit, "version": lock.version,
                   **made.to_json()})
    else:
        echo(f"{dest}: llama.cpp {lock.version} ({lock.short_commit}) from {made.source}"
                   f", tree sha256 {made.tree_sha256}")


@vendor_cmd.command(name="lock")
@click.argument("ref", required=False, metavar="[TAG|COMMIT]")
@click.option("--pypi", "pypi_version", metavar="VERSION",
              help="A llama-cpp-python release whose sdist vendors the tree (0.3.36).")
@click.option("--local", type=click.Path(path_type=Path, exists=True), default=None,
              callback=file_or_directory, help="A local llama.cpp tree or archive.")
@click.option("--build-number", type=click.IntRange(min=0), default=None,
              help="The commit's build number (its bN tag), when no source says it.")
@click.option("--commit", type=str, default=None,
              help="The full upstream commit, when no source says it (a local tree).")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="The lock to write (default: the one build_matrix.yaml names).")
@click.option("--keep", is_flag=True,
              help="Keep this version beside the default pin (llama.cpp-bN.lock.json, built "
                   "with --llama-cpp bN or the matrix's llama-cpp); the default stays.")
@click.option("--repository", default=None,
              help="Upstream repository URL (default: the current lock's).")
@click.option("--pypi-index", default=None, envvar="BUILDTOOL_PYPI_JSON",
              help="PyPI's JSON API (default https://pypi.org/pypi).")
@click.option("--dry-run", is_flag=True, help="Fetch, measure and compare; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def vendor_lock(ctx: click.Context, ref: str | None, pypi_version: str | None,
                local: Path | None, build_number: int | None, commit: str | None,
                out: Path | None, keep: bool, repository: str | None,
                pypi_index: str | None, dry_run: bool, as_json: bool) -> None:
    """Write the lock for another llama.cpp version: an upstream build tag (b11400) or
    commit, a llama-cpp-python release (--pypi), or a local tree or archive (--local).

    Each source is fetched and hashed; all must hold the same tree. What changed against
    the current lock is shown (version, commit, ggml, CMake options, CPU variants)."""
    from buildtool.errors import ConfigError as _ConfigError
    from buildtool.paths import writable_file
    from buildtool.source import pin, vendor

    session = _session(ctx)
    if commit is not None and not pin.COMMIT.fullmatch(commit):
        raise UsageError(f"--commit {commit!r}: a full commit is 40 lower-case hex digits")
    if keep and out is not None:
        raise UsageError("--keep writes the lock beside the default one, --out where you say: "
                         "give one")
    lock_path = out or session.project.lock_path
    if not dry_run:  # where the lock goes, before anything is fetched
        writable_file(lock_path, "--out" if out else "the lock")
    if out is not None and out.exists():
        try:
            vendor.load_lock(out)
        except _ConfigError as exc:
            raise UsageError(f"--out {out} exists and is not a llama.cpp lock; refusing to "
                             "replace it", hint="name a new file or an existing lock") from exc
    try:
        previous: vendor.Lock | None = session.lock
    except _ConfigError:
        previous = None
    check_cache()  # downloaded archives are kept there
    outcome = pin.make_lock(
        lock_path=lock_path, repository=repository or (
            previous.repository if previous else "https://github.com/ggml-org/llama.cpp"),
        upstream=ref, pypi=pypi_version, local=local, build_number=build_number,
        commit=commit, previous=previous, keep=keep,
        previous_tree=previous.tree if previous else None,
        recipes_dir=session.root / "recipes", pypi_index=pypi_index or pin.PYPI,
        dry_run=dry_run, progress=session.reporter.info)
    # each known defect steered around: does it still apply to the new build?
    outcome.changes += [a.at(outcome.build_number)
                        for a in session.project.common.avoid_cpu_features]
    if as_json:
        emit_json(outcome.to_json())
    else:
        echo(pin.report(outcome))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Show the tools found (all candidates, with versions) and which targets they enable."""
    from buildtool.config import matrix
    from buildtool.toolchains import discovery as toolchain

    session = _session(ctx)
    uses = matrix.tool_uses(session)
    rows = matrix.rows(session)
    if as_json:
        emit_json({
            "tools": {n: [u.to_json() for u in us] for n, us in uses.items()},
            "targets": {r.target.name: {"buildable_here": r.buildable, "reasons":
                                        list(r.reasons)} for r in rows},
        })
        return
    for name, candidates in uses.items():
        if not candidates:
            echo(f"{name:<14} not found — {toolchain.install_hint(name)}")
        for i, use in enumerate(candidates):
            p = use.program
            what = f"({use.unusable})" if use.unusable else \
                ("→ " + ", ".join(use.enables) if use.enables else "")
            echo(f"{name if i == 0 else '':<14} {p.version or '?'!s:<10} {p.path}  {what}"
                       .rstrip())
    echo("")
    for r in rows:
        state = "ok" if r.buildable else "no: " + "; ".join(r.reasons)
        echo(f"{r.target.name:<10} {state}")


@cli.group(name="toolchain")
def toolchain_group() -> None:
    """Provision toolchain pieces into a private prefix (~/.cache/buildtool/toolchains)."""


def _installable(ctx: click.Context, name: str) -> str:
    """An installer name, or a target name mapped to the toolchain it needs."""
    from buildtool import backends
    from buildtool.schema import suggest

    known = backends.toolchains()
    if backends.toolchain(name) is not None:
        return name
    session = _session(ctx)
    if name in session.project.matrix.targets:
        rt = session.resolve(name)
        wanted = backends.family(rt.family).toolchain_for(rt.toolkit)
        if wanted is not None and backends.toolchain(wanted) is not None:
            return wanted
        raise ToolchainError(f"target '{name}' needs no toolchain buildtool can provision "
                             f"({rt.family}); `buildtool doctor` says what to install")
    close = suggest(name, [*known, *session.project.matrix.targets])
    hint = f" Did you mean '{close}'?" if close else ""
    raise click.BadParameter(f"'{name}' is not installable.{hint} Known: {', '.join(known)}, "
                             "or a target name.", param_hint="NAME")


@toolchain_group.command(name="install")
@click.argument("name")
@click.pass_context
def toolchain_install(ctx: click.Context, name: str) -> None:
    """Fetch NAME (a toolchain `buildtool toolchain list` names, a versioned one a family
    provides, or a target such as cublas12) from package registries into a private prefix;
    the system is not touched."""
    from buildtool import backends

    name = _installable(ctx, name)
    check_cache()  # toolchains are assembled there
    reporter = Reporter(quiet=ctx.obj.get("quiet", False))
    reporter.step(f"installing {name}")
    chosen = backends.toolchain(name)
    assert chosen is not None  # _installable checked it
    path = chosen.install(reporter.info)
    echo(f"{name}: {path}")


@toolchain_group.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def toolchain_list(as_json: bool) -> None:
    """What can be provisioned and what already is."""
    from buildtool import backends

    found = {name: t.installed() for name, t in backends.toolchains().items()}
    if as_json:
        emit_json({n: str(p) if p else None for n, p in found.items()})
        return
    width = max((len(name) for name in found), default=0) + 1
    for name, path in found.items():
        echo(f"{name:<{width}} {path or 'not installed'}")


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="buildtool", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted: nothing that looks finished was left behind", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except KeyboardInterrupt:
        click.echo("interrupted: nothing that looks finished was left behind", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        text = for_terminal(exc.format_message())
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            click.echo(exc.ctx.get_usage(), err=True)
            click.echo(f"Try '{exc.ctx.command_path} {exc.ctx.help_option_names[0]}' for "
                       "help.\n", err=True)
        click.echo(f"Error: {text}", err=True)
        sys.exit(ExitCode.USAGE if exc.exit_code == 2 else exc.exit_code)
    except BuildtoolError as exc:
        click.echo(f"error: {for_terminal(str(exc))}", err=True)
        sys.exit(int(exc.exit_code))
    sys.exit(0)
