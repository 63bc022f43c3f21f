"""`buildtool build`: resolve → preflight → source → configure → build → package → smoke."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from buildtool import audit, cmd, package, preflight, smoke, vendor
from buildtool.errors import AuditError, BuildError, SmokeError
from buildtool.plan import BuildPlan, make_plan
from buildtool.resolve import Overrides, ResolvedTarget
from buildtool.session import Session


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


@dataclass(kw_only=True)
class BuildOutcome:
    plan: BuildPlan
    artifact: Path | None = None
    manifest: dict[str, Any] | None = None
    cached: bool = False
    smoke: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.plan.target.name, "key": self.plan.key,
            "build_dir": str(self.plan.build_dir),
            "artifact": str(self.artifact) if self.artifact else None,
            "cached": self.cached, "smoke": self.smoke,
            "timings": {k: round(v, 2) for k, v in self.timings.items()},
        }


def plan_for(session: Session, rt: ResolvedTarget, options: BuildOptions, *,
             tree_sha256: str | None) -> BuildPlan:
    return make_plan(rt, root=session.root, source_dir=session.vendor_dir,
                     tree_sha256=tree_sha256, jobs=options.jobs, use_ccache=options.ccache,
                     build_root=options.build_root, dist_dir=options.dist)


def dry_run(session: Session, options: BuildOptions) -> BuildOutcome:
    rt = session.resolve(options.target, options.overrides)
    marker = vendor.current(session.lock, session.vendor_dir)
    plan = plan_for(session, rt, options,
                    tree_sha256=marker.tree_sha256 if marker else session.lock.tree_sha256)
    return BuildOutcome(plan=plan)


def build(session: Session, options: BuildOptions) -> BuildOutcome:
    rep = session.reporter
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    rt = session.resolve(options.target, options.overrides)
    preflight.require(rt)
    source = vendor.current(session.lock, session.vendor_dir)
    if source is None:
        rep.step(f"fetching llama.cpp {session.lock.version} ({session.lock.short_commit})")
        source = vendor.materialize(session.lock, session.vendor_dir, local=options.source,
                                    progress=rep.info)
        rep.info(f"source: {source.source} (tree sha256 {source.tree_sha256[:16]}…)")
    plan = plan_for(session, rt, options, tree_sha256=source.tree_sha256)
    timings["prepare"] = time.monotonic() - t0
    outcome = BuildOutcome(plan=plan, timings=timings)

    if options.configure_only:
        configure(session, plan, options, timings)
        timings["total"] = time.monotonic() - t0
        rep.info(f"configured: {plan.build_dir} (--configure-only: nothing built)")
        return outcome

    existing = None if options.force else package.lookup(plan.dist_dir, plan.key)
    if existing is not None:
        rep.step(f"{rt.name}: inputs unchanged, artifact is up to date")
        rep.info(str(existing))
        outcome.artifact = existing
        outcome.cached = True
        outcome.manifest = package.read_json(package.sidecar(existing, "manifest"))
    else:
        _compile(session, plan, options, timings)
        t = time.monotonic()
        rep.step("ISA audit (objdump)")
        report = audit.audit_files(package.collect(plan), declared=rt.cpu_features,
                                   all_variants=rt.cpu_policy == "all-variants",
                                   platform=rt.platform,
                                   waivers=session.project.common.audit_allow)
        timings["audit"] = time.monotonic() - t
        if report["verdict"] == "fail":
            raise AuditError(
                f"ISA audit failed for {rt.name} (declared: {rt.cpu_level}):\n"
                + audit.violations_message(report),
                hint="the artifact would die of SIGILL on CPUs it claims to support; check "
                     "-D overrides and the CPU policy")
        rep.info(f"audit: {report['verdict']}" + (f" ({len(report.get('files', {}))} files)"
                                                  if report["verdict"] == "pass" else
                                                  f": {report.get('reason')}"))
        t = time.monotonic()
        rep.step("packaging")
        artifact, manifest = package.package(plan, session.lock, source, audit=report)
        package.record(plan.dist_dir, plan.key, artifact, manifest["artifact_sha256"])
        timings["package"] = time.monotonic() - t
        rep.info(f"{artifact} ({artifact.stat().st_size / 1e6:.1f} MB)")
        outcome.artifact = artifact
        outcome.manifest = manifest

    if options.smoke and outcome.artifact is not None:
        previous = smoke.stored(outcome.artifact) if outcome.cached else None
        reusable = previous is not None and previous.get("verdict") == "pass" and \
            options.model is None and (options.allow_cpu_fallback or not previous.get("waived"))
        if previous is not None and reusable:
            outcome.smoke = previous
            rep.info(f"smoke: passed earlier ({previous.get('ran_at')})")
        else:
            t = time.monotonic()
            outcome.smoke = run_smoke_step(session, outcome.artifact, rt, options.model,
                                           allow_cpu_fallback=options.allow_cpu_fallback)
            timings["smoke"] = time.monotonic() - t
    timings["total"] = time.monotonic() - t0
    return outcome


def run_smoke_step(session: Session, artifact: Path, rt: ResolvedTarget,
                   model: Path | None, *, allow_cpu_fallback: bool = False) -> dict[str, Any]:
    rep = session.reporter
    rep.step(f"smoke test ({'model ' + str(model) if model else 'synthetic model'})")
    result = smoke.run_smoke(artifact, host=session.host_cpu, model=model,
                             n_prompt=rt.smoke.n_prompt, n_gen=rt.smoke.n_gen,
                             repetitions=rt.smoke.repetitions,
                             allow_cpu_fallback=allow_cpu_fallback)
    data = result.to_json()
    for line in smoke.table(data).splitlines():
        rep.info(line)
    if not result.passed:
        failed = "; ".join(f"{c.name} ({c.detail})" for c in result.failures())
        raise SmokeError(f"smoke test failed for {artifact.name}: {failed}",
                         hint=f"results: {package.sidecar(artifact, 'smoke')}")
    return data


def configure(session: Session, plan: BuildPlan, options: BuildOptions,
              timings: dict[str, float]) -> Path:
    """Run CMake's configure step; return the log file (the build step appends to it)."""
    rep = session.reporter
    if options.fresh and plan.build_dir.exists():
        shutil.rmtree(plan.build_dir)
    plan.build_dir.mkdir(parents=True, exist_ok=True)
    log = plan.build_dir / "buildtool.log"
    log.write_text("")
    t = time.monotonic()
    rep.step(f"configure {plan.target.name} → {plan.build_dir}")
    rep.group(f"configure {plan.target.name}")
    cmd.run(plan.configure, env={**os.environ, **dict(plan.env)}, log=log, echo=rep.command,
            what="CMake configure failed", error_type=BuildError)
    rep.endgroup()
    timings["configure"] = time.monotonic() - t
    return log


def _compile(session: Session, plan: BuildPlan, options: BuildOptions,
             timings: dict[str, float]) -> None:
    rep = session.reporter
    log = configure(session, plan, options, timings)
    env = {**os.environ, **dict(plan.env)}
    t = time.monotonic()
    rep.step(f"build {', '.join(plan.target.build_targets)}")
    rep.group(f"build {plan.target.name}")
    cmd.run(plan.build, env=env, log=log, echo=rep.command, on_line=rep.ninja_line,
            what="compilation failed", error_type=BuildError)
    rep.endgroup()
    timings["build"] = time.monotonic() - t

