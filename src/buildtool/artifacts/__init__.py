"""Artifact kinds (tarball, wheel, image): each one module behind
:class:`~buildtool.artifacts.base.ArtifactModule`, listed in ``KINDS``.

A kind module owns how it is built, how a smoke test runs it, how the release gate checks
what is inside it and whether a lab host can run it; the build pipeline, the smoke test, the
release gate and the lab ask the kind. No kind imports another.

May import: the foundation modules, detect, source, toolchains, backends, config.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Final

from buildtool.artifacts import image, tarball, wheel
from buildtool.artifacts.base import ArtifactModule
from buildtool.grammar import ArtifactKind

KINDS: Final[MappingProxyType[ArtifactKind, ArtifactModule]] = MappingProxyType({
    "tarball": tarball,
    "wheel": wheel,
    "image": image,
})

RELEASE_RECORD = "release.json"  # marks a release directory (not searched for artifacts)


def kind_of(artifact: Path | str) -> ArtifactKind | None:
    """The kind of an artifact file by its name; an image reference (a string that is no
    file) is an image."""
    if isinstance(artifact, str):
        return "image"
    return next((k for k, m in KINDS.items() if m.owns(artifact.name)), None)


def find(directory: Path) -> list[Path]:
    """The artifacts under ``directory`` (sub-directories too: CI downloads one per job),
    not counting hidden files or release directories written by an earlier publish."""
    found = []
    for path in sorted(directory.rglob("*")):
        if not path.is_file() or kind_of(path) is None or path.name.startswith("."):
            continue
        rel = path.relative_to(directory)
        parents = [directory / Path(*rel.parts[:i]) for i in range(1, len(rel.parts))]
        if any((p / RELEASE_RECORD).is_file() or p.name.startswith(".") for p in parents):
            continue
        found.append(path)
    return found
