"""The smoke gate: run an artifact's llama-bench and decide pass or fail from its JSON.

Verdict (all must hold):

* the host has every CPU feature the manifest requires (checked *before* running, so an
  artifact cannot die of SIGILL — exit code 9 instead);
* llama-bench exited 0 and printed a JSON array;
* a prompt-processing test and a text-generation test both ran, with tokens/s > 0;
* the ``backends`` field names the backend the recipe promises (for the cpu family: only
  CPU-side backends, so a build that silently picked up a GPU backend is caught too);
* for GPU recipes: ``gpu_info`` names a device and layers were offloaded — ``backends``
  only lists what was compiled in, not what ran;
* its outputs are right: llama-results' logits for the F32, Q4_0 and Q4_K_M models agree
  with a reference within each type's tolerance (:mod:`buildtool.verify.numerics`).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from buildtool import abi, backends, cmd, inputs, records
from buildtool.abi import SystemAbi
from buildtool.artifacts import KINDS, kind_of
from buildtool.artifacts.base import Subject, check_system, foreign
from buildtool.cpudata import CPU
from buildtool.detect.cpu import CpuInfo
from buildtool.errors import (
    CommandError,
    DataError,
    HostIncompatibleError,
    SmokeError,
    UsageError,
)
from buildtool.grammar import ArtifactKind
from buildtool.inputs import sha256_file
from buildtool.outputs import sidecar, write_json
from buildtool.records import (
    BenchTest,
    CheckRecord,
    EmulatedRun,
    EmulatedVerdict,
    GpuRecord,
    Manifest,
    NumericsRecord,
    NumericsRun,
    NumericsVerdict,
    SmokeRecord,
    Speed,
    SystemRecord,
    Verdict,
)
from buildtool.toolchains import engines
from buildtool.verify import emulate, numerics
from buildtool.verify.synthetic import cached_model

Check = CheckRecord


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _test_kind(rec: BenchTest) -> str:
    n_prompt = rec.n_prompt or 0
    n_gen = rec.n_gen or 0
    if n_prompt > 0 and n_gen == 0:
        return f"pp{n_prompt}"
    if n_gen > 0 and n_prompt == 0:
        return f"tg{n_gen}"
    return f"pp{n_prompt}+tg{n_gen}"


def backend_names(tests: Iterable[BenchTest]) -> set[str]:
    """The backends llama-bench reported across its records ("CPU", "CUDA", ...)."""
    return {n.strip() for r in tests for n in (r.backends or "").split(",") if n.strip()}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Best:
    pp: Speed | None
    tg: Speed | None
    device: str


def best_speeds(tests: Iterable[BenchTest]) -> Best:
    """The fastest prompt and generation figures of benchmark rows, with the device (what
    release notes and lab reports show)."""
    rows = list(tests)

    def top(prefix: str) -> Speed | None:
        runs = [t for t in rows if t.test.startswith(prefix)]
        best = max(runs, key=lambda t: t.avg_ts or 0.0, default=None)
        return Speed(test=best.test, avg_ts=best.avg_ts) if best else None

    device = next((t.gpu_info for t in rows if t.gpu_info), "CPU")
    return Best(pp=top("pp"), tg=top("tg"), device=device)


def parse_bench(out: str) -> list[BenchTest]:
    """llama-bench's ``-o json`` output (after whatever it logged first): a JSON array of
    objects; fields it does not have are None, fields of the wrong type are refused."""
    start = out.find("[")
    if start < 0:
        raise SmokeError("llama-bench printed no JSON array:\n" + out[-2000:])
    where = "llama-bench output"
    data = records.cleaned(inputs.parse_json(out[start:], where, error=SmokeError))
    if not isinstance(data, list):
        raise SmokeError(f"{where}: expected a JSON array")
    tests = records.from_data(tuple[BenchTest, ...], data, where, error=SmokeError)
    return [dataclasses.replace(t, test=_test_kind(t)) for t in tests]


def verdict(records: list[BenchTest], *, backend: str, family: str,
            gpu: bool, allow_cpu_fallback: bool = False,
            unloadable: str | None = None, quantized: str | None = None) -> tuple[Check, ...]:
    """Checks on llama-bench's JSON records (tolerant of missing/extra fields).

    ``unloadable`` says why the artifact's backend module (a GGML_BACKEND_DL build) did not
    load on this host, e.g. "libggml-cuda.so: libcuda.so.1 not found": such a build lists
    only the CPU in ``backends``. --allow-cpu-fallback waives that too, with the reason; a
    module that is not shipped at all is never waived. ``quantized`` (e.g. "Q4_0") demands
    that a model of that type ran too: quantized kernels (repacking, AMX, dot products) are
    where real models spend their time and where ISA defects show."""
    checks: list[Check] = []
    kinds = [_test_kind(r) for r in records]
    pp = [r for r, k in zip(records, kinds, strict=True) if k.startswith("pp") and "+" not in k]
    tg = [r for r, k in zip(records, kinds, strict=True) if k.startswith("tg")]
    checks.append(Check(name="prompt test ran", ok=bool(pp),
                        detail=", ".join(kinds) or "no tests in output"))
    checks.append(Check(name="generation test ran", ok=bool(tg),
                        detail=", ".join(kinds) or "no tests in output"))
    if quantized:
        types = sorted({r.model_type or "?" for r in records})
        checks.append(Check(name=f"{quantized} model ran",
                            ok=any(quantized in (r.model_type or "") for r in records),
                            detail=", ".join(types) or "no tests in output"))
    speeds = [r.avg_ts or 0.0 for r in records]
    checks.append(Check(name="tokens/s > 0", ok=bool(records) and all(s > 0 for s in speeds),
                        detail=", ".join(f"{s:.1f}" for s in speeds) or "none"))
    names = backend_names(records)
    ok, want = backends.family(family).ran(names, backend)
    detail = f"backends: {', '.join(sorted(names)) or 'none reported'}"
    if not ok and unloadable:
        detail += f"; {unloadable}"
    backend_check = Check(name=f"backend is {want}", ok=ok, detail=detail)
    if not ok and gpu and allow_cpu_fallback and unloadable:
        backend_check = Check(name=backend_check.name, ok=True, waived=True,
                              detail=detail + " (allowed by --allow-cpu-fallback)")
    checks.append(backend_check)
    if gpu:
        gpu_info = {(r.gpu_info or "").strip() for r in records} - {""}
        layers = [r.n_gpu_layers or 0 for r in records]
        shown = ", ".join(sorted(gpu_info)) or "empty (no GPU device: ran on the CPU)"
        gpu_checks = [
            Check(name=f"ran on a {backend} device", ok=bool(gpu_info),
                  detail=f"gpu_info: {shown}"),
            Check(name="layers offloaded", ok=bool(layers) and min(layers) > 0,
                  detail=f"n_gpu_layers: {layers}"),
        ]
        if allow_cpu_fallback:
            gpu_checks = [c if c.ok else Check(name=c.name, ok=True, waived=True,
                                               detail=c.detail + " (allowed by "
                                               "--allow-cpu-fallback)")
                          for c in gpu_checks]
        checks.extend(gpu_checks)
    return tuple(checks)


def host_gpus() -> tuple[GpuRecord, ...]:
    """This machine's GPUs, as a lab records them."""
    from buildtool.detect.host import detect_gpus

    return tuple(g.record() for g in detect_gpus())


def check_device_code(manifest: Manifest, gpus: Sequence[GpuRecord] | None) -> None:
    """Refuse, before anything runs, a GPU artifact without device code for any GPU here
    (exit 9 instead of "no kernel image is available for execution on the device")."""
    if manifest.device_code is None or manifest.device_code.verdict != "pass":
        return
    why = backends.family(manifest.family).device_fit(
        manifest.device_code, host_gpus() if gpus is None else gpus)
    if why:
        raise HostIncompatibleError(
            f"artifact {manifest.artifact}: {why}",
            hint="use an artifact built for this GPU's architecture (gpu-archs in "
                 "build_matrix.yaml, --gpu-archs), or one with PTX older than it")


@contextmanager
def opened(artifact: Path | str, *, host: CpuInfo, engine: engines.Engine | str | None = None,
           note: Callable[[str], None] | None = None, system: SystemAbi | None = None,
           root: Path | None = None, gpus: Sequence[GpuRecord] | None = None,
           kind: ArtifactKind | None = None) -> Iterator[tuple[Subject, Path]]:
    """The artifact made runnable by its kind (unpacked, installed into a venv, or loaded as
    an image) in a scratch directory, both removed afterwards. An unpacked tarball
    directory counts as a tarball. ``system``: the C library and C++ runtime the programs
    will load (checked against the artifact's ABI floor before anything runs; images bring
    their own). ``kind``: what ``artifact`` is, where its name does not say (a virtual
    environment a wheel is installed in). ``root``: a root file system (an older
    distribution) the tarball runs in.
    ``gpus``: the GPUs here (None: detected when the artifact carries device code). The
    subject carries the system its programs load (``Subject.system``)."""
    module = KINDS[kind or kind_of(artifact) or "tarball"]
    scratch = None
    if root is not None:
        if module.KIND != "tarball":
            raise UsageError(f"--root runs tarballs; {artifact} is a {module.KIND}")
        root = root_file_system(root)
        system = abi.system_abi(root, host.arch)
        scratch = root / "tmp"
    work = Path(tempfile.mkdtemp(prefix="buildtool-smoke-", dir=scratch))
    subject: Subject | None = None
    try:
        subject = module.subject(artifact, work, host, engine, note or (lambda _: None))
        if root is not None:
            subject = dataclasses.replace(subject, wrap=in_root(root), stage_models=True)
        check_device_code(subject.manifest, gpus)
        if not module.CONTAINER and foreign(subject.manifest, host):
            subject = emulate.foreign_subject(subject)
            assert subject.emulator_root is not None
            system = abi.system_abi(subject.emulator_root, emulate.arch_of(subject.manifest))
        if not module.CONTAINER:
            check_system(subject.manifest, system)
            subject = dataclasses.replace(subject, system=system)
        yield subject, work
    finally:
        if subject is not None and subject.close is not None:
            subject.close()
        shutil.rmtree(work, ignore_errors=True)


def root_file_system(root: Path) -> Path:
    """``root`` checked: a directory with a C library and a /tmp and /proc to use."""
    root = root.resolve()
    if not (root / "tmp").is_dir() or not (root / "proc").is_dir():
        raise UsageError(f"{root} is not a root file system (no /tmp or /proc in it)",
                         hint="make one with debootstrap (README: \"What an artifact "
                              "claims\")")
    if abi.find_library(root, "libc.so.6", "x86_64") is None and \
            abi.find_library(root, "libc.so.6", "aarch64") is None:
        raise UsageError(f"{root} has no C library (libc.so.6)")
    if os.geteuid() != 0:
        raise UsageError("--root needs root (it runs chroot in a private mount namespace)")
    return root


def in_root(root: Path) -> Callable[[list[str], Mapping[str, str]], list[str]]:
    """A wrapper that runs a command inside ``root``: a private mount namespace (nothing stays
    mounted afterwards) with the root's /proc mounted (the loader resolves $ORIGIN through
    it), then chroot. Paths below ``root`` become paths inside it."""
    prefix = str(root) + "/"

    def wrap(argv: list[str], env: Mapping[str, str]) -> list[str]:
        inner = ["/" + a.removeprefix(prefix) if a.startswith(prefix) else a for a in argv]
        return ["unshare", "--mount", "--fork", "--", "sh", "-c",
                'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"', str(root), *inner]

    return wrap


def stage_model(subject: Subject, work: Path, model: Path) -> Path:
    """Where the subject's programs see ``model`` (a container sees the work directory only)."""
    if not subject.stage_models:
        return model
    staged = work / model.name
    if not staged.exists():
        shutil.copyfile(model, staged)
        staged.chmod(0o644)
    return staged


def bench(subject: Subject, work: Path, models: list[Path], *, n_prompt: str, n_gen: str,
          repetitions: int, threads: int | None = None,
          env: Mapping[str, str] | None = None) -> tuple[list[BenchTest], list[str]]:
    """Run the subject's llama-bench (``n_prompt``/``n_gen``: llama-bench's comma lists) and
    return its JSON records and the command that ran."""
    manifest = subject.manifest
    inside = {**manifest.smoke_env, **(env or {})}
    run_env = {**manifest.smoke_env, **os.environ, **(env or {})}
    argv = [str(subject.bench), *(a for m in models for a in ("-m", str(m))),
            "-p", n_prompt, "-n", n_gen,
            "-r", str(repetitions), "-o", "json", "-ngl", "99" if manifest.gpu else "0",
            "-t", str(threads or max(1, os.cpu_count() or 1))]
    argv = subject.command(argv, inside)
    # Run from an unrelated directory: proves the binaries find their libraries by RPATH.
    try:
        out = cmd.capture(argv, cwd=work, env=run_env, timeout=1800)
    except CommandError as exc:
        raise SmokeError(f"llama-bench failed ({cmd.describe_exit(exc.returncode)}):\n    "
                         + "\n    ".join(exc.tail[-8:]), hint=cmd.SIGILL_HINT
                         if exc.returncode in (-4, 132) else None) from exc
    return parse_bench(out), argv


def run_smoke(artifact: Path | str, *, host: CpuInfo, model: Path | None = None,
              n_prompt: int = 32, n_gen: int = 16, repetitions: int = 2,
              threads: int | None = None, env: Mapping[str, str] | None = None,
              store: bool = True, allow_cpu_fallback: bool = False,
              engine: engines.Engine | str | None = None,
              note: Callable[[str], None] | None = None, system: SystemAbi | None = None,
              root: Path | None = None, cpu_models: Iterable[str] = (),
              run_anyway: bool = False, kind: ArtifactKind | None = None) -> SmokeRecord:
    """Smoke-test a tarball (or its unpacked directory), a wheel or an image (an OCI archive
    or, as a string, an image reference); the same verdict for all. ``cpu_models``: also run
    it on these emulated CPU models (see :mod:`buildtool.verify.emulate`)."""
    with opened(artifact, host=host, engine=engine, note=note, system=system,
                root=root, kind=kind) as (subject, work):
        models = emulate.check_models(subject.manifest, cpu_models)
        if models:
            emulate.require(subject)
        refuse_models(subject.manifest, models, run_anyway)
        result = smoke_subject(subject, work, artifact, model=model, n_prompt=n_prompt,
                               n_gen=n_gen, repetitions=repetitions, threads=threads, env=env,
                               allow_cpu_fallback=allow_cpu_fallback, cpu_models=models,
                               run_anyway=run_anyway, note=note,
                               system=subject.system.record() if subject.system else None)
    if store and isinstance(artifact, Path) and artifact.is_file():
        if not sidecar(artifact, "manifest").is_file():
            adopted = KINDS[subject.kind].adopt(artifact, subject.manifest,
                                                result.artifact_sha256)
            if adopted is not None:
                write_json(sidecar(artifact, "manifest"), records.to_json(adopted))
        save(artifact, result)
    return result


def refuse_models(manifest: Manifest, models: list[str], run_anyway: bool) -> None:
    """Exit code 9 before anything runs when a CPU model asked for lacks a feature the
    artifact requires (``run_anyway``: run it, and see it die of SIGILL)."""
    if run_anyway:
        return
    lacking = {m: [f for f in manifest.cpu.required_features
                   if f not in CPU.model_features(m)] for m in models}
    lacking = {m: missing for m, missing in lacking.items() if missing}
    if lacking:
        raise HostIncompatibleError(
            f"artifact {manifest.artifact} needs CPU features "
            + "; ".join(f"CPU model {m} lacks: {', '.join(missing)}"
                        for m, missing in lacking.items()),
            hint="choose models its claim covers, or --run-anyway to run it there (it dies "
                 "of SIGILL)")


def smoke_subject(subject: Subject, work: Path, artifact: Path | str, *,
                  model: Path | None = None, n_prompt: int = 32, n_gen: int = 16,
                  repetitions: int = 2, threads: int | None = None,
                  env: Mapping[str, str] | None = None,
                  allow_cpu_fallback: bool = False, cpu_models: Iterable[str] = (),
                  run_anyway: bool = False, note: Callable[[str], None] | None = None,
                  system: SystemRecord | None = None) -> SmokeRecord:
    """The smoke verdict on an opened subject."""
    manifest = subject.manifest
    model_path = stage_model(subject, work, model or cached_model())
    gpu = manifest.gpu
    # The recipe's smoke environment (from the manifest) unless the caller's says otherwise
    inside = {**manifest.smoke_env, **(env or {})}
    run_env = {**manifest.smoke_env, **os.environ, **(env or {})}
    models = [model_path]
    typed = {numerics.model_type(model_path): model_path}
    quantized = None
    if model is None and subject.quantize is not None:
        # the artifact's own llama-quantize makes a Q4_0 and a K-quant copy: proves the tool
        # and runs the quantized kernels, which an F32 model never reaches
        typed = {"F32": model_path}
        kinds = manifest.smoke_quantized or numerics.QUANTIZED
        for model_type in kinds:
            typed[model_type] = quantize(subject, work, model_path, model_type, inside,
                                         run_env)
        models.append(typed[kinds[0]])
        quantized = kinds[0]
    threads = threads or max(1, os.cpu_count() or 1)
    run = None if subject.results is None else numerics.Runner(
        subject, work, inside=inside, run_env=run_env, threads=threads)
    refs = None
    if run is None:
        checked = NumericsRecord(verdict=NumericsVerdict.MISSING, reason=(
            "the artifact ships no llama-results (build-targets)"))
    else:
        checked, refs = numerics.main_run(typed, run, synthetic=model is None, gpu=gpu)
        if manifest.smoke_quantized and model is None:
            checked = dataclasses.replace(checked, note=(
                f"{', '.join(manifest.smoke_quantized)} instead of "
                f"{', '.join(numerics.QUANTIZED)}: the recipe's smoke-quantized"))
    started = time.monotonic()
    tests, argv = bench(subject, work, models, n_prompt=str(n_prompt), n_gen=str(n_gen),
                        repetitions=repetitions, threads=threads, env=env)
    duration = time.monotonic() - started
    unloadable = None
    if gpu and manifest.backend not in backend_names(tests):
        unloadable = why_unloadable(subject.lib_dir, manifest.family, subject.env,
                                    subject=subject)
    checks = verdict(tests, backend=manifest.backend, family=manifest.family, gpu=gpu,
                     allow_cpu_fallback=allow_cpu_fallback, unloadable=unloadable,
                     quantized=quantized)
    if checked.verdict is not NumericsVerdict.MISSING:
        checks += (Check(name="outputs match the reference",
                         ok=checked.verdict is NumericsVerdict.PASS,
                         detail=f"{numerics.describe(checked.runs)} (against the "
                                f"{checked.reference}, {checked.tokens} tokens)"),)
    emulated: list[EmulatedRun] = []
    names = list(cpu_models)
    if names:
        (note or (lambda _: None))(f"emulated CPU models: {', '.join(names)}")
        held = None
        if run is not None and refs is not None:
            def held(prefix: list[str], env: Mapping[str, str], threads: int,
                     refs: numerics.References = refs,
                     run: numerics.Runner = run) -> tuple[NumericsRun, ...]:
                return refs.hold({t: run(path, offload=False, emulator=prefix, env=env,
                                         threads=threads) for t, path in typed.items()})
        emulated = emulate.run_models(subject, work, models, names,
                                      threads=min(4, threads), run_anyway=run_anyway,
                                      parse=parse_bench, note=note or (lambda _: None),
                                      numerics=held)
        failed = [r for r in emulated if r.verdict is EmulatedVerdict.FAIL]
        checks += (Check(name="emulated CPU models", ok=not failed, detail="; ".join(
            f"{r.model}: {r.verdict.value} ({r.reason})" for r in emulated)),)
    name = artifact if isinstance(artifact, str) else artifact.name
    return SmokeRecord(
        artifact=name if subject.kind in ("wheel", "image") else manifest.artifact,
        target=manifest.target, kind=subject.kind,
        verdict=Verdict.PASS if all(c.ok for c in checks) else Verdict.FAIL,
        checks=checks, waived=tuple(c.name for c in checks if c.waived), tests=tuple(tests),
        command=tuple(argv), duration_s=round(duration, 2),
        model=str(model_path) if model else f"synthetic:{model_path.name}",
        artifact_sha256=sha256_file(artifact) if isinstance(artifact, Path)
        and artifact.is_file() else None, ran_at=now(),
        system=system if not KINDS[subject.kind].CONTAINER else None,
        emulated=tuple(emulated), numerics=checked)


def quantize(subject: Subject, work: Path, model: Path, model_type: str,
             inside: Mapping[str, str], run_env: Mapping[str, str]) -> Path:
    """A copy of ``model`` quantized by the artifact's own llama-quantize."""
    assert subject.quantize is not None
    out = work / f"{model.stem}-{model_type}.gguf"
    try:
        cmd.capture(subject.command([str(subject.quantize), str(model), str(out), model_type],
                                    inside), cwd=work, env=run_env, timeout=600)
    except CommandError as exc:
        raise SmokeError(f"llama-quantize {model_type} failed "
                         f"({cmd.describe_exit(exc.returncode)}):\n    "
                         + "\n    ".join(exc.tail)) from exc
    return out


def why_unloadable(root: Path, family: str, env: Mapping[str, str] | None = None, *,
                   subject: Subject | None = None) -> str | None:
    """Why the backend module shipped in ``root`` cannot load here (the libraries the dynamic
    loader cannot find, per ldd in ``env``: a wheel's programs run with its runtime wheels on
    the library path; an image's ldd runs inside the container), or None when it is not
    shipped / nothing is missing."""
    module_file = backends.family(family).module_file
    if module_file is None:
        return None
    module = root / module_file
    inside = subject is not None and subject.wrap is not None
    if not inside and not module.is_file():
        return None
    ldd = "ldd" if inside else cmd.which("ldd")
    if ldd is None:
        return f"{module.name} is shipped but was not loaded"
    try:
        argv = [ldd, str(module)]
        if subject is not None and inside:
            argv = subject.command(argv, {})
        out = cmd.capture(argv, timeout=60, check=False, env=env)
    except (CommandError, OSError):
        return f"{module.name} is shipped but was not loaded"
    if inside and "No such file" in out:
        return None  # not shipped in the image
    missing = [line.split("=>")[0].strip() for line in out.splitlines() if "not found" in line]
    if not missing:
        return None
    return f"{module.name} is shipped but cannot load here: {', '.join(missing)} not found " \
           "(the GPU driver or runtime libraries are not installed here)"


def save(artifact: Path, result: SmokeRecord) -> None:
    """The verdict beside the artifact (``X.smoke.json``) and in its outer manifest."""
    write_json(sidecar(artifact, "smoke"), records.to_json(result))
    manifest_path = sidecar(artifact, "manifest")
    if manifest_path.is_file():
        outer = records.load(Manifest, manifest_path)
        write_json(manifest_path, records.to_json(dataclasses.replace(outer, smoke=result)))


def stored(artifact: Path) -> SmokeRecord | None:
    """The smoke result recorded beside the artifact (None: none, or an unreadable one)."""
    path = sidecar(artifact, "smoke")
    if not path.exists():
        return None
    try:
        return records.load(SmokeRecord, path)
    except DataError:
        return None


def table(result: SmokeRecord) -> str:
    lines = [f"smoke {result.artifact}",
             f"  {'test':<10} {'model':<8} {'backends':<14} {'device':<28} {'t/s':>16}"]
    for t in result.tests:
        ts = f"{t.avg_ts or 0:.1f} ± {t.stddev_ts or 0:.1f}"
        device = (t.gpu_info or "CPU")[:28]
        model = (t.model_type or "").split()[-1:] or ["?"]
        lines.append(f"  {t.test:<10} {model[0]:<8} {t.backends!s:<14} {device:<28} "
                     f"{ts:>16}")
    for c in result.checks:
        state = "WAIVED" if c.waived else "ok" if c.ok else "FAIL"
        lines.append(f"  [{state}] {c.name}: {c.detail}")
    for r in result.emulated:
        figures = ", ".join(f"{t.test} {t.avg_ts or 0:.1f}" for t in r.tests)
        lines.append(f"  [{r.verdict.value}] {r.emulator} -cpu {r.model} ({r.level or '?'}): "
                     f"{r.reason}" + (f"; {figures} t/s" if figures else "")
                     + (f", {r.duration_s:.1f} s" if r.tests else ""))
    if result.system is not None:
        lines.append(f"  ran on glibc {result.system.glibc or '?'}, libstdc++ "
                     f"{result.system.libstdcxx or '?'}"
                     + (f" (root {result.system.root})" if result.system.root != "/" else ""))
    lines.append(f"  verdict: {result.verdict.value.upper()}")
    return "\n".join(lines)
