"""CPU knowledge as data: ``data/cpu.yaml`` read once into :data:`CPU`, a small class over it
(as archspec reads its microarchitectures.json).

Features and what they imply, the levels of each architecture with their parents, ggml's
options and variants and the features each needs, the other spellings of each feature —
host detection, the CPU backend, the ISA audit and the wheel launcher all ask :data:`CPU`,
so a new level, option or variant is one edit to the data file. The file ships inside the
package because detection, the audit and the lab run without a project checkout.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated

from buildtool.errors import ConfigError
from buildtool.inputs import load_yaml
from buildtool.schema import Match, convert

Arch = Annotated[str, Match(r"[a-z0-9_]{1,16}", "an architecture name such as x86_64")]
_Name = Annotated[str, Match(r"[a-z0-9_]{1,32}", "a feature name such as avx2")]
_Spelling = Annotated[str, Match(r"[a-z0-9_.]{1,32}", "a lower-case feature spelling")]
_Level = Annotated[str, Match(r"[a-z0-9][a-z0-9._-]{0,31}", "a level name such as x86-64-v3")]


@dataclass(frozen=True, kw_only=True)
class Feature:
    arch: Arch
    implies: tuple[_Name, ...] = ()
    aliases: tuple[_Spelling, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Level:
    """A level (x86-64-v3) or a ggml variant (haswell): its own features and its parent's."""

    features: tuple[_Name, ...]
    parent: _Level | None = None
    march: str | None = None  # arm64: the -march base the level compiles for
    # what that -march base also lets the compiler emit: the audit accepts it, nothing checks
    # it at run time (every CPU of the level has it)
    allows: tuple[_Name, ...] = ()


_Model = Annotated[str, Match(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}", "a CPU model name such as "
                                                                 "Haswell")]


@dataclass(frozen=True, kw_only=True)
class CpuModel:
    """A CPU model the architecture's emulator offers, and the features it has."""

    features: tuple[_Name, ...]


@dataclass(frozen=True, kw_only=True)
class Architecture:
    baseline: tuple[_Name, ...]
    ggml_features: tuple[_Name, ...]
    levels: dict[_Level, Level]
    foreign_host_level: _Level  # what `--cpu host` means when planning on another host
    ggml_options: dict[str, tuple[_Name, ...]]
    aliases: tuple[str, ...] = ()
    # set: the options are +extensions of one -march value in this definition; unset: each
    # option is its own -D<OPTION>=ON|OFF
    ggml_march_define: str | None = None
    variants: dict[_Level, Level] = field(default_factory=dict)
    # the features ggml's CPU-variant loader scores, the n-th weighing 1<<n
    loader_score: tuple[_Name, ...] = ()
    emulator: str | None = None  # the user-mode emulator that runs its binaries elsewhere
    emulator_lacks: tuple[_Name, ...] = ()  # what that emulator cannot execute
    cpu_models: dict[_Model, CpuModel] = field(default_factory=dict)  # lowest first


@dataclass(frozen=True, kw_only=True)
class CpuFile:
    features: dict[_Name, Feature]
    architectures: dict[Arch, Architecture]
    sysctl_keys: dict[str, _Name] = field(default_factory=dict)
    arm_implementers: dict[str, str] = field(default_factory=dict)
    arm_parts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Selection:
    """What a feature set turns on in a build: the definitions and the features they
    require (the artifact's claim)."""

    defines: tuple[tuple[str, str], ...]
    required: tuple[str, ...]


class CpuData:
    """Questions about CPUs, answered from the data file."""

    def __init__(self, data: CpuFile, path: Path | str) -> None:
        self.data = data
        self.path = path
        self._check()

    # ------------------------------------------------------------------ names

    @cached_property
    def _canonical(self) -> dict[str, str]:
        return {alias: name for name, f in self.data.features.items() for alias in f.aliases}

    def canonical(self, name: str) -> str:
        """The canonical name of a feature as the kernel, sysctl or a manifest spells it."""
        key = name.strip().lower()
        return self._canonical.get(key, key)

    def feature_arch(self, feature: str) -> str | None:
        known = self.data.features.get(self.canonical(feature))
        return known.arch if known else None

    def spellings(self, feature: str) -> list[str]:
        """Every name that means ``feature`` (pni for sse3, asimd for neon, ...)."""
        known = self.data.features.get(feature)
        return sorted({feature, *(known.aliases if known else ())})

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self.data.features)

    def arch(self, machine: str) -> str:
        """The architecture name for a machine string (amd64 → x86_64, arm64 → aarch64);
        other machines are returned lower-cased."""
        m = machine.lower()
        for name, arch in self.data.architectures.items():
            if m == name or m in arch.aliases:
                return name
        return m

    def architecture(self, arch: str) -> Architecture | None:
        return self.data.architectures.get(arch)

    def sysctl_feature(self, key: str) -> str | None:
        return self.data.sysctl_keys.get(key)

    def arm_vendor(self, implementer: str) -> str:
        return self.data.arm_implementers.get(implementer.lower(), implementer)

    def arm_part(self, implementer: str, part: str) -> str:
        return self.data.arm_parts.get(f"{implementer.lower()}/{part.lower()}", part)

    # ------------------------------------------------------------------ levels

    @property
    def levels(self) -> tuple[str, ...]:
        """Every level of every architecture, in the file's order."""
        return tuple(name for arch in self.data.architectures.values() for name in arch.levels)

    @property
    def variants(self) -> tuple[str, ...]:
        """Every ggml CPU variant of every architecture."""
        return tuple(name for arch in self.data.architectures.values()
                     for name in arch.variants)

    def levels_of(self, arch: str) -> tuple[str, ...]:
        a = self.architecture(arch)
        return tuple(a.levels) if a else ()

    def arch_of_level(self, level: str) -> str | None:
        return next((name for name, a in self.data.architectures.items()
                     if level in a.levels), None)

    def _chain(self, table: Mapping[str, Level], name: str) -> list[Level]:
        chain = []
        current: str | None = name
        while current is not None:
            chain.append(table[current])
            current = table[current].parent
        return chain

    def _level_chain(self, level: str) -> list[Level]:
        arch = self.arch_of_level(level)
        if arch is None:
            raise KeyError(level)
        return self._chain(self.data.architectures[arch].levels, level)

    def level_features(self, level: str) -> frozenset[str]:
        """All features a level implies (its own and its parents')."""
        return frozenset(f for lv in self._level_chain(level) for f in lv.features)

    def level_allows(self, level: str) -> frozenset[str]:
        """What a level's code may use beyond what it requires (its -march base's extras,
        its parents' included)."""
        return frozenset(f for lv in self._level_chain(level) for f in lv.allows)

    def level_of(self, arch: str, features: Iterable[str]) -> str | None:
        """The highest level whose features all are in ``features`` (None: not even the
        first)."""
        have = frozenset(features)
        best = None
        for name in self.levels_of(arch):
            if self.level_features(name) <= have:
                best = name
            else:
                break
        return best

    def foreign_host_level(self, arch: str) -> str:
        a = self.architecture(arch)
        if a is None:
            raise KeyError(arch)
        return a.foreign_host_level

    def march(self, level: str) -> str | None:
        arch = self.arch_of_level(level)
        if arch is None:
            return None
        return self.data.architectures[arch].levels[level].march

    # ------------------------------------------------------------------ implications

    def closure(self, features: Iterable[str]) -> frozenset[str]:
        """``features`` and everything they imply (compilers may use implied instructions
        freely)."""
        out: set[str] = set()
        todo = list(features)
        while todo:
            f = todo.pop()
            if f in out:
                continue
            out.add(f)
            known = self.data.features.get(f)
            todo.extend(known.implies if known else ())
        return frozenset(out)

    def baseline(self, arch: str) -> frozenset[str]:
        a = self.architecture(arch)
        return frozenset(a.baseline) if a else frozenset()

    def ggml_features(self, arch: str) -> tuple[str, ...]:
        a = self.architecture(arch)
        return a.ggml_features if a else ()

    # ------------------------------------------------------------------ ggml

    def ggml_options(self, arch: str) -> Mapping[str, tuple[str, ...]]:
        a = self.architecture(arch)
        return a.ggml_options if a else {}

    def select(self, arch: str, features: frozenset[str], level: str | None,
               avoid: frozenset[str] = frozenset()) -> Selection:
        """The ggml CPU options a feature set turns on — one algorithm for every
        architecture: an option is on when the features it needs are all present and none is
        avoided; the build requires those features and the architecture's first level. Each
        option becomes a definition of its own, or (arm64) an extension of the
        level's -march value."""
        a = self.architecture(arch)
        if a is None:
            raise KeyError(arch)
        on = {opt: needs for opt, needs in a.ggml_options.items()
              if all(f in features and f not in avoid for f in needs)}
        # the architecture's first level is what any build of it needs
        required = list(next(iter(a.levels.values())).features)
        for needs in on.values():
            required.extend(f for f in needs if f not in required)
        if a.ggml_march_define:
            base = self.march(level or next(iter(a.levels))) or ""
            return Selection(defines=((a.ggml_march_define, "+".join([base, *on])),),
                             required=tuple(required))
        return Selection(defines=tuple((opt, "ON" if opt in on else "OFF")
                                       for opt in a.ggml_options),
                         required=tuple(required))

    def variant_features(self, arch: str, variant: str) -> tuple[str, ...] | None:
        """What ``libggml-cpu-<variant>`` of an all-variants build is compiled for (None: no
        such variant)."""
        a = self.architecture(arch)
        if a is None or variant not in a.variants:
            return None
        chain = self._chain(a.variants, variant)
        out: list[str] = []
        for lv in reversed(chain):
            out.extend(f for f in lv.features if f not in out)
        return tuple(out)

    # ------------------------------------------------------------------ emulated CPUs

    def variant_allows(self, arch: str, variant: str) -> frozenset[str]:
        """What ``libggml-cpu-<variant>`` may use beyond the features its loader checks."""
        a = self.architecture(arch)
        if a is None or variant not in a.variants:
            return frozenset()
        return frozenset(f for lv in self._chain(a.variants, variant) for f in lv.allows)

    def loader_score(self, arch: str, variant: str) -> int:
        """The score ggml's loader gives ``variant`` on a CPU that has what it needs."""
        a = self.architecture(arch)
        needs = set(self.variant_features(arch, variant) or ())
        return sum(1 << n for n, f in enumerate(a.loader_score if a else ()) if f in needs)

    def variants_of(self, arch: str) -> tuple[str, ...]:
        a = self.data.architectures.get(arch)
        return tuple(a.variants) if a else ()

    def model_names(self) -> tuple[str, ...]:
        return tuple(m for a in self.data.architectures.values() for m in a.cpu_models)

    def model_arch(self, model: str) -> str | None:
        return next((name for name, a in self.data.architectures.items()
                     if model in a.cpu_models), None)

    def model_features(self, model: str) -> frozenset[str]:
        """Everything a CPU model has (its architecture's baseline, what it lists, and
        what those imply)."""
        arch = self.model_arch(model)
        if arch is None:
            return frozenset()
        a = self.data.architectures[arch]
        return self.closure([*a.baseline, *a.cpu_models[model].features])

    def emulator(self, arch: str) -> str | None:
        a = self.data.architectures.get(arch)
        return a.emulator if a else None

    def unemulated(self, model: str) -> tuple[str, ...]:
        """What of a model the emulator cannot execute (empty: it can be emulated)."""
        arch = self.model_arch(model)
        if arch is None:
            return ()
        lacks = self.data.architectures[arch].emulator_lacks
        features = self.model_features(model)
        return tuple(f for f in lacks if f in features)

    def covering_models(self, arch: str, required: Iterable[str]) -> tuple[str, ...]:
        """The models, lowest first, that have every ``required`` feature (the models an
        artifact's claim covers)."""
        a = self.data.architectures.get(arch)
        if a is None:
            return ()
        need = self.closure(required)
        return tuple(m for m in a.cpu_models if need <= self.model_features(m))

    def lowest_model(self, arch: str, required: Iterable[str]) -> str | None:
        """The lowest model that has every required feature and can be emulated: the one a
        portable artifact must be proven on."""
        return next((m for m in self.covering_models(arch, required)
                     if not self.unemulated(m)), None)

    # ------------------------------------------------------------------ checks

    def _check(self) -> None:
        """Names refer to what the file defines; parents exist and form no loop."""
        known = self.data.features
        problems: list[str] = []

        def names(where: str, listed: Iterable[str]) -> None:
            problems.extend(f"{where}: unknown feature '{f}'" for f in listed if f not in known)

        for name, f in known.items():
            names(f"features.{name}.implies", f.implies)
        seen: dict[str, str] = {}
        for name, f in known.items():
            for alias in f.aliases:
                if alias in known or alias in seen:
                    problems.append(f"features.{name}: alias '{alias}' already names "
                                    f"'{seen.get(alias, alias)}'")
                seen[alias] = name
        for arch_name, arch in self.data.architectures.items():
            where = f"architectures.{arch_name}"
            names(f"{where}.baseline", arch.baseline)
            names(f"{where}.ggml-features", arch.ggml_features)
            for opt, needs in arch.ggml_options.items():
                names(f"{where}.ggml-options.{opt}", needs)
            for kind, table in (("levels", arch.levels), ("variants", arch.variants)):
                for name, lv in table.items():
                    names(f"{where}.{kind}.{name}", lv.features)
                    names(f"{where}.{kind}.{name}.allows", lv.allows)
                    seen_chain = {name}
                    parent = lv.parent
                    while parent is not None:
                        if parent not in table or parent in seen_chain:
                            problems.append(f"{where}.{kind}.{name}: parent '{parent}' "
                                            + ("loops" if parent in seen_chain
                                               else "is not defined"))
                            break
                        seen_chain.add(parent)
                        parent = table[parent].parent
            if arch.foreign_host_level not in arch.levels:
                problems.append(f"{where}.foreign-host-level: '{arch.foreign_host_level}' "
                                "is not one of its levels")
            names(f"{where}.emulator-lacks", arch.emulator_lacks)
            names(f"{where}.loader-score", arch.loader_score)
            for model, spec in arch.cpu_models.items():
                names(f"{where}.cpu-models.{model}", spec.features)
            if arch.cpu_models and not arch.emulator:
                problems.append(f"{where}: cpu-models need an emulator")
            if arch.ggml_march_define and any(lv.march is None for lv in arch.levels.values()):
                problems.append(f"{where}: every level needs a march value when "
                                "ggml-march-define is set")
        for key, named in self.data.sysctl_keys.items():
            names(f"sysctl-keys.{key}", [named])
        if problems:
            raise ConfigError("; ".join(problems), path=self.path)


def load(path: Path | None = None) -> CpuData:
    """Read a CPU data file (the package's own when ``path`` is None)."""
    if path is None:
        with resources.as_file(resources.files("buildtool") / "data" / "cpu.yaml") as p:
            return load(p)
    doc = load_yaml(path)
    data: CpuFile = convert(CpuFile, doc.data, doc)
    return CpuData(data, path)


CPU = load()
