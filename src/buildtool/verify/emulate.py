"""The smoke on emulated CPU models: an artifact's claim proven on CPUs this host is not.

QEMU's user-mode emulator (``qemu-x86_64 -cpu Nehalem ./llama-bench``) runs one program as if
on another CPU model: CPUID answers with that model's features and an instruction the model
does not have raises SIGILL, as on the real CPU. The models and their features are data
(``cpu-models`` in ``data/cpu.yaml``). For each model:

* a model the emulator cannot execute (AVX-512 under QEMU 7.2's TCG) is ``not-emulated``,
  said so, and not run;
* a model lacking a feature the manifest requires is ``refused`` before running (as the
  native smoke refuses a host) unless ``run_anyway``: then it runs and dies of SIGILL,
  reported as such;
* otherwise llama-bench runs the smoke's models (F32 and Q4_0) under the emulator; it must
  exit 0 with both tests at tokens/s > 0, and an all-variants build must load the
  ``libggml-cpu-<variant>`` that fits the model best (ggml's loader scores the variants by
  the features they need; the best one the model has must win).

Emulated runs prove the CPU code of an artifact (``-ngl 0``); its device is proven by the
native smoke. Images run in a container engine and are not emulated.

An artifact of **another architecture** (a linux-aarch64 tarball or wheel on an x86-64 host)
runs entirely under its emulator (:func:`foreign_subject`): the main smoke on the highest
emulated model its claim covers, the models the same way, all with ``qemu -L SYSROOT`` so its
programs load the target's C library and C++ runtime from the platform's sysroot
(:mod:`buildtool.toolchains.cross`) — whose versions are checked against the artifact's ABI
floor first, as a host's are.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path

from buildtool import cmd
from buildtool.artifacts.base import Subject, check_host
from buildtool.cpudata import CPU
from buildtool.detect.cpu import CpuInfo
from buildtool.errors import (
    CommandError,
    HostIncompatibleError,
    SmokeError,
    ToolchainError,
    UsageError,
)
from buildtool.records import BenchTest, EmulatedRun, EmulatedVerdict, Manifest, NumericsRun
from buildtool.toolchains import cross
from buildtool.verify.numerics import describe

# the emulator's command, the environment and threads → each model type's logits, held
Numerics = Callable[[list[str], Mapping[str, str], int], tuple[NumericsRun, ...]]

_LOADED = re.compile(r"loaded CPU backend from \S*?libggml-cpu-([A-Za-z0-9_.]+?)\.so")
# the bench under emulation: short (TCG runs AVX2 code 30-100x slower than the host)
N_PROMPT = "16"
N_GEN = "4"


def arch_of(manifest: Manifest) -> str:
    return CPU.arch(manifest.platform.split("-", 1)[1])


def check_models(manifest: Manifest, models: Iterable[str]) -> list[str]:
    """The models, checked: known, and of the artifact's architecture (UsageError names
    what is wrong)."""
    arch = arch_of(manifest)
    out: list[str] = []
    for model in models:
        model_arch = CPU.model_arch(model)
        if model_arch is None:
            known = ", ".join(CPU.covering_models(arch, ())) or "none"
            raise UsageError(f"unknown CPU model '{model}'; {arch} models: {known}",
                             hint="cpu-models in buildtool's data/cpu.yaml lists them")
        if model_arch != arch:
            raise UsageError(f"CPU model '{model}' is {model_arch}; {manifest.artifact} is "
                             f"built for {manifest.platform}")
        if model not in out:
            out.append(model)
    return out


def claimed_models(manifest: Manifest, listed: Iterable[str]) -> list[str]:
    """Of the ``listed`` models (the matrix's), those the artifact's claim covers."""
    covering = set(CPU.covering_models(arch_of(manifest), manifest.cpu.required_features))
    return [m for m in listed if m in covering]


def why_none(manifest: Manifest) -> str:
    """Why no emulated run proves an artifact's claim (none of the listed models covers it)."""
    arch = arch_of(manifest)
    covering = CPU.covering_models(arch, manifest.cpu.required_features)
    if not covering:
        return f"no {arch} CPU model has everything it requires"
    lacks = list(dict.fromkeys(f for m in covering for f in CPU.unemulated(m)))
    if lacks and all(CPU.unemulated(m) for m in covering):
        return (f"only {', '.join(covering)} {'has' if len(covering) == 1 else 'have'} what it "
                f"requires, and {CPU.emulator(arch)} cannot execute {', '.join(lacks)}")
    return (f"the platform's models do not include {', '.join(covering)}, which "
            f"{'has' if len(covering) == 1 else 'have'} what it requires")


def installed(manifest: Manifest) -> bool:
    """Whether the emulator for the artifact's architecture is installed here."""
    name = CPU.emulator(arch_of(manifest))
    return name is not None and cmd.which(name) is not None


def emulator(manifest: Manifest) -> str:
    arch = arch_of(manifest)
    name = CPU.emulator(arch)
    path = cmd.which(name) if name else None
    if name is None or path is None:
        raise ToolchainError(
            f"{name or 'an emulator for ' + arch} is not installed: CPU models cannot be "
            "emulated", hint="apt-get install qemu-user (Debian, Ubuntu)")
    return path


def expected_variant(manifest: Manifest, features: frozenset[str]) -> str | None:
    """The ``libggml-cpu`` variant ggml's loader must choose on a CPU with ``features``
    (all-variants builds; None for others): of the variants the CPU has everything for, the
    one the loader scores highest (``loader-score`` in data/cpu.yaml)."""
    if manifest.cpu.policy != "all-variants":
        return None
    arch = arch_of(manifest)
    best: tuple[int, str] | None = None
    for variant in CPU.variants_of(arch):
        if variant in manifest.cpu.dropped_variants:
            continue
        needs = CPU.variant_features(arch, variant)
        if needs is None or not CPU.closure(needs) <= features:
            continue
        score = CPU.loader_score(arch, variant)
        if best is None or score > best[0]:
            best = (score, variant)
    return best[1] if best else None


def loaded_variant(stderr: str) -> str | None:
    m = _LOADED.search(stderr)
    return m[1] if m else None


def under(qemu: str, model: str, root: Path | None) -> list[str]:
    """The emulator's command line for running a program as CPU ``model`` (``root``: where a
    foreign program's C library and C++ runtime come from)."""
    return [qemu, *(["-L", str(root)] if root else []), "-cpu", model]


def emulated_cpu(model: str) -> CpuInfo:
    """A CPU model as if it were the host: what the smoke checks a foreign artifact against."""
    return CpuInfo(arch=CPU.model_arch(model) or "", model=f"{model} (emulated)",
                   features=CPU.model_features(model))


def sysroot(manifest: Manifest) -> Path:
    """The root the programs of a foreign artifact load their C library and C++ runtime
    from: the platform's sysroot (``buildtool toolchain install sysroot-<platform>``)."""
    cp = cross.for_platform(manifest.platform)
    if cp is None:
        raise ToolchainError(f"{manifest.platform} programs cannot run on this host: "
                             "buildtool has no sysroot for that platform")
    root = cross.installed_sysroot(cp)
    if root is None:
        raise ToolchainError(f"running {manifest.platform} programs here needs their C library "
                             f"and C++ runtime (Debian {cp.suite} {cp.debian_arch}): not "
                             "installed", hint=f"buildtool toolchain install {cp.sysroot_name}")
    return root


def main_model(manifest: Manifest) -> str:
    """The model the main smoke of a foreign artifact runs on: the highest emulated model its
    claim covers (an all-variants build loads its best variant there)."""
    arch = arch_of(manifest)
    models = [m for m in CPU.covering_models(arch, manifest.cpu.required_features)
              if not CPU.unemulated(m)]
    if not models:
        raise HostIncompatibleError(f"artifact {manifest.artifact} is built for "
                                    f"{manifest.platform}: {why_none(manifest)}")
    return models[-1]


def foreign_subject(subject: Subject) -> Subject:
    """The subject with its programs run under the emulator of their architecture (see the
    module's docstring)."""
    manifest = subject.manifest
    if subject.wrap is not None:
        raise UsageError(f"{manifest.artifact} is built for {manifest.platform}: its programs "
                         "run under an emulator here, not in a container or another root")
    qemu = emulator(manifest)
    root = sysroot(manifest)
    model = main_model(manifest)
    check_host(manifest, emulated_cpu(model))

    def wrap(argv: list[str], env: object) -> list[str]:
        return [*under(qemu, model, root), *argv]

    return replace(subject, wrap=wrap, emulator_root=root)


def require(subject: Subject) -> str:
    """The emulator for the subject, checked before anything runs: the subject runs here
    (not in a container or another root) and the emulator is installed."""
    if subject.wrap is not None and subject.emulator_root is None:
        raise UsageError(f"{subject.kind}s run in a container or another root: CPU models are "
                         "emulated for tarballs and wheels run here")
    return emulator(subject.manifest)


def run_models(subject: Subject, work: Path, models: list[Path], names: list[str], *,
               threads: int, run_anyway: bool = False,
               parse: Callable[[str], list[BenchTest]],
               note: Callable[[str], None] = lambda _: None,
               numerics: Numerics | None = None) -> list[EmulatedRun]:
    """The smoke's llama-bench on each CPU model in ``names`` (see the module's docstring);
    ``numerics``: the logits on the model (given its emulator command, environment and
    threads), held against the smoke's references."""
    manifest = subject.manifest
    qemu = require(subject)
    bench = subject.lib_dir / Path(subject.bench).name
    if not bench.is_file():
        bench = subject.lib_dir / "llama-bench"
    env = dict(subject.env) if subject.env is not None else None
    run_env = {**manifest.smoke_env, **(env or os.environ)}
    runs: list[EmulatedRun] = []
    for model in names:
        features = CPU.model_features(model)
        level = CPU.level_of(arch_of(manifest), features)
        base = EmulatedRun(model=model, emulator=Path(qemu).name, level=level,
                           verdict=EmulatedVerdict.NOT_EMULATED)
        lacks = CPU.unemulated(model)
        if lacks:
            runs.append(replace(base, verdict=EmulatedVerdict.NOT_EMULATED,
                                reason=f"{Path(qemu).name} cannot execute "
                                           f"{', '.join(lacks)}"))
            note(f"  {model}: not emulated ({runs[-1].reason})")
            continue
        missing = [f for f in manifest.cpu.required_features if f not in features]
        expected = expected_variant(manifest, features)
        if missing and not run_anyway:
            runs.append(replace(base, verdict=EmulatedVerdict.REFUSED,
                                reason=f"the model lacks {', '.join(missing)}, which the "
                                           "artifact requires"))
            note(f"  {model}: refused ({runs[-1].reason})")
            continue
        argv = [*under(qemu, model, subject.emulator_root), str(bench),
                *(a for m in models for a in ("-m", str(m))), "-p", N_PROMPT, "-n", N_GEN,
                "-r", "1", "-o", "json", "-ngl", "0", "-t", str(threads)]
        started = time.monotonic()
        try:
            out = cmd.capture_all(argv, cwd=work, env=run_env, timeout=1800)
        except CommandError as exc:
            raise SmokeError(f"llama-bench under {model}: {' '.join(exc.tail)}") from exc
        duration = round(time.monotonic() - started, 2)
        variant = loaded_variant(out.stderr)
        run = replace(base, variant=variant, expected_variant=expected, duration_s=duration)
        if out.returncode != 0:
            sigill = out.returncode in (-4, 132) or "signal 4" in out.stderr
            reason = (f"killed by SIGILL (illegal instruction) on {model}" if sigill
                      else f"llama-bench failed: {cmd.describe_exit(out.returncode)}: "
                           + " ".join(out.stderr.strip().splitlines()[-2:]))
            runs.append(replace(run, verdict=EmulatedVerdict.FAIL, reason=reason))
        else:
            try:
                tests = parse(out.stdout)
            except SmokeError as exc:
                runs.append(replace(run, verdict=EmulatedVerdict.FAIL,
                                    reason=exc.message.splitlines()[0]))
            else:
                problems = []
                kinds = {t.test[:2] for t in tests}
                if not {"pp", "tg"} <= kinds:
                    problems.append("a prompt and a generation test did not both run")
                if not tests or any((t.avg_ts or 0) <= 0 for t in tests):
                    problems.append("tokens/s is not > 0")
                if expected is not None and variant != expected:
                    problems.append(f"the loader chose {variant or 'no CPU variant'}, "
                                    f"{expected} fits {model}")
                held: tuple[NumericsRun, ...] = ()
                if numerics is not None:
                    try:
                        held = numerics(under(qemu, model, subject.emulator_root),
                                        run_env, threads)
                    except SmokeError as exc:
                        problems.append(exc.message.splitlines()[0])
                    wrong = [r for r in held if not r.ok]
                    if wrong:
                        problems.append("outputs differ from the reference: "
                                        + describe(wrong))
                runs.append(replace(
                    run, tests=tuple(tests), numerics=held,
                    verdict=EmulatedVerdict.FAIL if problems else EmulatedVerdict.PASS,
                    reason="; ".join(problems) or (f"ran {variant}" if variant else "ran")))
        note(f"  {model}: {runs[-1].verdict.value} ({runs[-1].reason}, {duration:.1f} s)")
    return runs
