"""Everything a command needs, loaded once: project, lock, host facts, reporter."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

from buildtool.abi import SystemAbi
from buildtool.config.project import Project, load_project
from buildtool.config.resolve import Overrides, ResolvedTarget, choose_lock, resolve
from buildtool.detect.cpu import CpuInfo
from buildtool.detect.host import detect_cpu, host_platform, host_system, os_name
from buildtool.progress import Reporter
from buildtool.source.vendor import Lock, LockSet


@dataclass
class Session:
    project: Project
    reporter: Reporter = field(default_factory=Reporter)
    host_cpu_override: CpuInfo | None = None

    @functools.cached_property
    def locks(self) -> LockSet:
        """The llama.cpp versions a target may build: the default lock and those kept."""
        return LockSet(self.project.lock_path)

    @property
    def lock(self) -> Lock:
        """The default lock (a target's own is ``resolve(...).lock``)."""
        return self.locks.default

    def lock_for(self, version: str | None) -> Lock:
        """The lock of ``version`` as --llama-cpp names it (None: the default)."""
        return choose_lock(self.locks, version, {"llama_cpp": "--llama-cpp"})

    @functools.cached_property
    def host_cpu(self) -> CpuInfo:
        return self.host_cpu_override or detect_cpu()

    @functools.cached_property
    def host_platform(self) -> str:
        return host_platform()

    @functools.cached_property
    def host_system(self) -> SystemAbi | None:
        """This host's C library and C++ runtime versions (None off Linux)."""
        return host_system(os_name(), self.host_cpu.arch)

    @property
    def root(self) -> Path:
        return self.project.root

    def resolve(self, name: str, overrides: Overrides = Overrides(), *,
                probe: bool = True) -> ResolvedTarget:
        return resolve(self.project, name, lock=self.locks, host_cpu=self.host_cpu,
                       host_platform=self.host_platform, overrides=overrides, env=os.environ,
                       probe=probe)


def open_session(root: Path, matrix: Path | None = None, reporter: Reporter | None = None) \
        -> Session:
    return Session(project=load_project(root, matrix), reporter=reporter or Reporter())
