"""Hardware-lab validation: run every fitting artifact on this machine, record everything.

``lab run`` detects the host (CPU features, GPUs and their drivers, Vulkan ICDs, container
engines), finds the artifacts in a directory that fit it, and for each one: the smoke
verdict, then llama-bench over several prompt and generation sizes with repetitions. A
failing, broken or malformed artifact is recorded and the run goes on; artifacts that cannot
run here are recorded as skipped with the reason. The result file
(:class:`buildtool.records.LabResults`, ``buildtool-lab/1``, schema in
``schema/lab-results.schema.json``) is rewritten atomically after every artifact, so an
interrupted run keeps what it measured.
"""

from __future__ import annotations

import dataclasses
import platform as _platform
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from buildtool import __version__, inputs, records
from buildtool.abi import SystemAbi
from buildtool.artifacts import KINDS, find, kind_of
from buildtool.artifacts.fit import artifact_manifest, unfit
from buildtool.detect.cpu import CpuInfo
from buildtool.errors import BuildtoolError, DataError, ToolchainError, UsageError
from buildtool.grammar import ArtifactKind
from buildtool.outputs import write_json
from buildtool.records import (
    BenchTest,
    HostFacts,
    LabEntry,
    LabResults,
    LabSettings,
    LabStatus,
    Manifest,
)

SCHEMA = records.LAB_SCHEMA
Note = Callable[[str], None]


# ---------------------------------------------------------------------------------------
# Running


@dataclass(frozen=True, kw_only=True)
class Settings:
    n_prompt: tuple[int, ...] = (64, 256)
    n_gen: tuple[int, ...] = (16, 64)
    repetitions: int = 3
    model: Path | None = None
    threads: int | None = None
    cpu_models: tuple[str, ...] = ()  # emulated CPU models to run each artifact on too

    def record(self) -> LabSettings:
        return LabSettings(n_prompt=self.n_prompt, n_gen=self.n_gen,
                           repetitions=self.repetitions,
                           model=str(self.model) if self.model else "synthetic",
                           threads=self.threads, cpu_models=self.cpu_models)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


BENCH_FIELDS = ("test", "model_type", "backends", "gpu_info", "n_gpu_layers", "n_prompt",
                "n_gen", "n_threads", "avg_ts", "stddev_ts", "samples_ts")


def bench_rows(tests: Iterable[BenchTest]) -> tuple[BenchTest, ...]:
    """What the lab keeps of llama-bench's rows (the smoke result keeps more)."""
    keep = set(BENCH_FIELDS)
    return tuple(BenchTest(**{f.name: getattr(t, f.name) for f in dataclasses.fields(t)
                              if f.name in keep}) for t in tests)


def error_reason(exc: BuildtoolError) -> str:
    lines = [ln.strip() for ln in exc.message.splitlines() if ln.strip()]
    # "llama-bench failed (exit code 3):" + its first line of output
    return " ".join(lines[:2] if lines and lines[0].endswith(":") else lines[:1]) \
        or type(exc).__name__


def run_one(path: Path, kind: ArtifactKind, manifest: Manifest, host: HostFacts,
            cpu: CpuInfo, settings: Settings, engine: Any, note: Note,
            system: SystemAbi | None = None) -> LabEntry:
    from buildtool.inputs import sha256_file
    from buildtool.verify import smoke
    from buildtool.verify.synthetic import cached_model

    entry = LabEntry(artifact=path.name, kind=kind, target=manifest.target,
                     backend=manifest.backend, family=manifest.family,
                     status=LabStatus.SKIPPED)
    why = unfit(kind, path.name, manifest, host, cpu, system)
    if why:
        return dataclasses.replace(entry, reason=why)
    started = time.monotonic()
    entry = dataclasses.replace(entry, sha256=sha256_file(path))
    # emulated CPU models: for what runs here (not images); those outside its claim are
    # recorded as refused, not run
    models = list(settings.cpu_models) if not KINDS[kind].CONTAINER else []
    try:
        with smoke.opened(path, host=cpu, engine=engine, note=note,
                          system=system, gpus=host.gpus) as (subject, work):
            result = smoke.smoke_subject(subject, work, path, model=settings.model,
                                         threads=settings.threads, cpu_models=models,
                                         note=note, system=system.record() if system else None)
            entry = dataclasses.replace(entry, smoke=result)
            model = smoke.stage_model(subject, work, settings.model or cached_model())
            tests, _ = smoke.bench(subject, work, [model],
                                   n_prompt=",".join(map(str, settings.n_prompt)),
                                   n_gen=",".join(map(str, settings.n_gen)),
                                   repetitions=settings.repetitions, threads=settings.threads)
            entry = dataclasses.replace(entry, bench=bench_rows(tests))
        if result.passed:
            entry = dataclasses.replace(entry, status=LabStatus.PASS)
        else:
            entry = dataclasses.replace(entry, status=LabStatus.FAIL, reason="; ".join(
                f"{c.name}: {c.detail}" for c in result.failures()))
    except BuildtoolError as exc:
        entry = dataclasses.replace(entry, status=LabStatus.ERROR, reason=error_reason(exc),
                                    detail=str(exc))
    except Exception as exc:  # one broken artifact must not end the lab run
        entry = dataclasses.replace(entry, status=LabStatus.ERROR,
                                    reason=f"{type(exc).__name__}: {exc}")
    return dataclasses.replace(entry, duration_s=round(time.monotonic() - started, 1))


def examine(path: Path, host: HostFacts, cpu: CpuInfo, settings: Settings, engine: Any,
            note: Note, system: SystemAbi | None = None) -> LabEntry:
    """One artifact's entry: a missing or malformed manifest is recorded, not raised."""

    kind = kind_of(path)
    assert kind is not None
    try:
        manifest = artifact_manifest(path, kind)
    except DataError as exc:
        return LabEntry(artifact=path.name, kind=kind, status=LabStatus.ERROR,
                        reason=error_reason(exc), detail=str(exc))
    if manifest is None:
        return LabEntry(artifact=path.name, kind=kind, status=LabStatus.SKIPPED,
                        reason="no buildtool manifest")
    return run_one(path, kind, manifest, host, cpu, settings, engine, note, system)


def artifacts_in(directory: Path) -> list[Path]:
    """The artifacts a lab run examines (UsageError when there are none)."""
    paths = find(directory)
    if not paths:
        raise UsageError(f"no artifacts (*.tar.gz, *.whl, *.oci.tar) under {directory}",
                         hint="download a build's artifacts into it first")
    return paths


def run(directory: Path, out: Path, *, cpu: CpuInfo, host: HostFacts, settings: Settings,
        engine: str | None = None, note: Note = lambda _: None,
        system: SystemAbi | None = None) -> LabResults:
    """Run every artifact under ``directory`` on this host (``host``: its record, made by
    :func:`host_facts` from the one detection; ``cpu`` and ``system``: the same detection's
    CPU and C library / C++ runtime)."""
    from buildtool.toolchains import engines

    paths = artifacts_in(directory)
    facts = host
    eng = None
    if any(KINDS[kind].CONTAINER for p in paths if (kind := kind_of(p))) and facts.engines:
        try:
            eng = engines.choose(engine)
        except ToolchainError as exc:
            facts = dataclasses.replace(facts, engines=())
            note(f"images will be skipped: {exc.message}")
    doc = LabResults(buildtool_version=__version__, host=facts, settings=settings.record(),
                     started_at=now())
    for i, path in enumerate(paths, 1):
        note(f"[{i}/{len(paths)}] {path.name}")
        entry = examine(path, facts, cpu, settings, eng, note, system)
        note(f"    {entry.status.value}" + (f": {entry.reason}" if entry.reason else ""))
        doc = dataclasses.replace(doc, results=(*doc.results, entry))
        write_json(out, records.to_json(doc))
    doc = dataclasses.replace(doc, finished_at=now())
    write_json(out, records.to_json(doc))
    return doc


def counts(doc: LabResults) -> dict[str, int]:
    out = {s.value: 0 for s in LabStatus}
    for r in doc.results:
        out[r.status.value] += 1
    return out


def default_out() -> Path:
    return Path("lab-results") / f"{_platform.node() or 'host'}.json"


def sizes(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1 or max(values) > 1_000_000:
        raise ValueError(f"{text!r} is not a comma-separated list of sizes from 1 to 1000000")
    return values


def load_results(paths: Iterable[Path]) -> list[LabResults]:
    """Read result files; a file that is not one names itself and what is wrong (DataError,
    exit code 13)."""
    docs = []
    for path in paths:
        data = inputs.load_json(path, limit=inputs.RECORD_LIMIT, error=DataError).data
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            found = data.get("schema") if isinstance(data, dict) else None
            raise DataError(f"not a lab result (schema {found!r:.60}, expected {SCHEMA!r})",
                            path=path, hint="pass files written by `buildtool lab run`")
        docs.append(records.from_data(LabResults, data, path))
    return docs
