"""PEP 503 simple indexes of buildtool wheels, one per target.

Layout (like llama-cpp-python's ``whl/cu124``, but each target's wheel also has its own
name)::

    <out>/index.html                          the targets, for people
    <out>/<target>/index.html                 PEP 503 root: the projects of this target
    <out>/<target>/<project>/index.html       PEP 503 project page: its wheels

Links are relative and carry ``#sha256=`` and ``data-requires-python``. Every link stays
inside the directory that is served (``<out>``, or the ``root`` a caller names): a wheel
that lies elsewhere is copied (hard-linked where possible) next to its project page, so the
index works from ``file://`` and from any HTTP server that serves that directory alone (its
manifest goes with it: ``buildtool install`` reads it beside the wheel). The
index is written into a temporary directory and swapped in — only over an index buildtool
wrote — so a reader never sees half of it, and writing it twice gives the same files.
"""

from __future__ import annotations

import html
import os
import shutil
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from buildtool.artifacts.wheel import WheelError, WheelName, read_manifest
from buildtool.config.naming import normalize
from buildtool.errors import BuildtoolError, DataError, ExitCode, UsageError
from buildtool.inputs import sha256_file
from buildtool.outputs import atomic_dir, sidecar


class NoWheelsError(BuildtoolError):
    exit_code = ExitCode.USAGE


@dataclass(frozen=True, kw_only=True)
class Entry:
    path: Path
    name: WheelName
    target: str
    sha256: str
    requires_python: str | None


@dataclass(frozen=True, kw_only=True)
class TargetIndex:
    target: str
    path: Path
    projects: tuple[str, ...]
    wheels: tuple[str, ...]

    @property
    def url(self) -> str:
        return self.path.as_uri() + "/"

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "path": str(self.path), "url": self.url,
                "projects": list(self.projects), "wheels": list(self.wheels)}


def requires_python(wheel: Path) -> str | None:
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if name.endswith(".dist-info/METADATA"):
                for line in zf.read(name).decode("utf-8", "replace").splitlines():
                    if line.startswith("Requires-Python:"):
                        return line.partition(":")[2].strip() or None
                    if not line.strip():
                        break
    return None


def scan(directory: Path, skip: Path | None = None) -> list[Entry]:
    """Every buildtool wheel under ``directory`` (other wheels are not ours to index)."""
    entries = []
    for path in sorted(directory.rglob("*.whl")):
        if skip is not None and skip in path.parents:
            continue
        try:
            manifest = read_manifest(path)
            name = WheelName.parse(path.name)
        except (WheelError, DataError):
            continue
        entries.append(Entry(path=path, name=name, target=manifest.target,
                             sha256=sha256_file(path), requires_python=requires_python(path)))
    return entries


def _page(title: str, links: list[str]) -> str:
    body = "\n".join(f"    {link}<br/>" for link in links)
    return ("<!DOCTYPE html>\n<html>\n  <head>\n    <meta name=\"pypi:repository-version\" "
            f"content=\"1.0\">\n    <title>{html.escape(title)}</title>\n  </head>\n  <body>\n"
            f"    <h1>{html.escape(title)}</h1>\n{body}\n  </body>\n</html>\n")


def project_page(project: str, entries: list[Entry], page_dir: Path,
                 served: Path | None = None) -> str:
    """The PEP 503 page of one project. A wheel outside ``served`` is linked by its name:
    the caller places a copy beside the page."""
    links = []
    for e in sorted(entries, key=lambda e: e.path.name):
        inside = served is None or e.path.resolve().is_relative_to(served.resolve())
        rel = Path(os.path.relpath(e.path, page_dir)).as_posix() if inside else e.path.name
        href = quote(rel) + f"#sha256={e.sha256}"
        attrs = f' data-requires-python="{html.escape(e.requires_python)}"' \
            if e.requires_python else ""
        links.append(f'<a href="{href}"{attrs}>{html.escape(e.path.name)}</a>')
    return _page(f"Links for {project}", links)


def _place(wheel: Path, dest: Path) -> None:
    if dest.exists():
        if sha256_file(dest) == sha256_file(wheel):
            return
        raise UsageError(f"two different wheels are named {wheel.name}",
                         hint="keep one of them out of the directory")
    try:
        os.link(wheel, dest)
    except OSError:
        shutil.copyfile(wheel, dest)


def write(directory: Path, out: Path, *, root: Path | None = None) -> list[TargetIndex]:
    """Write the indexes for the wheels under ``directory`` into ``out`` (replaced). ``root``:
    the directory a web server serves (default ``out``); wheels outside it are copied in."""
    served = root or out
    entries = scan(directory, skip=out)
    if not entries:
        raise NoWheelsError(f"no buildtool wheels under {directory}",
                          hint="build some with `buildtool build --artifact wheel`")
    by_target: dict[str, dict[str, list[Entry]]] = defaultdict(lambda: defaultdict(list))
    for e in entries:
        by_target[e.target][normalize(e.name.distribution)].append(e)
    written = []
    with atomic_dir(out, owner="wheel-index") as tmp:
        for target, projects in sorted(by_target.items()):
            target_dir = tmp / target
            target_dir.mkdir()
            (target_dir / "index.html").write_text(_page(f"Simple index: {target}", [
                f'<a href="{quote(p)}/">{html.escape(p)}</a>' for p in sorted(projects)]))
            for project, items in projects.items():
                page = target_dir / project
                page.mkdir()
                # links are computed for the final location, not the temporary one
                (page / "index.html").write_text(project_page(project, items,
                                                              out / target / project, served))
                for e in items:
                    if not e.path.resolve().is_relative_to(served.resolve()):
                        _place(e.path, page / e.path.name)
                        manifest = sidecar(e.path, "manifest")
                        if manifest.is_file():  # `buildtool install` judges the wheel by it
                            shutil.copyfile(manifest, page / manifest.name)
            written.append(TargetIndex(target=target, path=out / target,
                                       projects=tuple(sorted(projects)),
                                       wheels=tuple(sorted(e.path.name for items in
                                                           projects.values() for e in items))))
        (tmp / "index.html").write_text(_page("buildtool wheel indexes", [
            f'<a href="{quote(t.target)}/">{html.escape(t.target)}</a>: pip install '
            f'--index-url {html.escape(t.url)} {html.escape(" ".join(t.projects))}'
            for t in written]))
    return written
