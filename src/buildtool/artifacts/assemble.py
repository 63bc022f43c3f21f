"""An image's last stage applied without a container build: the runtime base, built once by
the engine, plus the programs' layers written here.

Every Dockerfile in recipes/docker ends with two stages: ``runtime`` — the runtime base and
every setting (packages, the user, ENV, WORKDIR, EXPOSE, HEALTHCHECK, ENTRYPOINT) — and the
last one, ``FROM runtime``, which only copies the compiled files and the manifest into
/opt/llama.cpp and labels the image. What the first depends on changes seldom; the second
changes with every build. So:

- the engine builds the ``runtime`` stage (``--target runtime``) once, and buildtool keeps it
  as an OCI archive in its cache (``~/.cache/buildtool/images``) under the key of what makes
  it: the Dockerfile's global ARGs and runtime stage, their build arguments, the base
  image's ID in the engine and the engine;
- the last stage is read here (:func:`last_stage`) and applied to the same build context the
  engine would get (:func:`apply`): each COPY becomes a layer, LABEL the config's labels, as
  an engine makes them, appended to the runtime base (:func:`oci.append`) — in about a
  second, where a container build and save take a minute on a host without overlay storage.

A last stage that does more than ARG, COPY and LABEL — a RUN, an ENV, a COPY from a stage
that derives files, as ROCm's ``built`` stage does — is not read here: :func:`last_stage`
says why, and the engine builds the whole Dockerfile as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from buildtool import cmd
from buildtool.archives import Deflated
from buildtool.artifacts import oci
from buildtool.errors import BuildError, CommandError
from buildtool.outputs import atomic_path
from buildtool.paths import cache_dir
from buildtool.toolchains import engines

RUNTIME_STAGE = "runtime"
BUILT_STAGE = "built"  # FROM ${BUILT} AS built: the prebuilt files (or the build stage's)
PREBUILT_STAGE = "prebuilt"  # FROM scratch AS prebuilt + COPY prebuilt/ /out/
COMMENT = "buildtool: applied without a container build"
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    rest: str  # continuation lines joined
    line: int  # where it starts


@dataclass(frozen=True)
class Stage:
    base: str
    name: str | None
    line: int
    body: tuple[Instruction, ...]


def instructions(text: str) -> list[Instruction]:
    """A Dockerfile's instructions: comments and blank lines dropped, continuations joined."""
    out: list[Instruction] = []
    buf, start = "", 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not buf:
            start = number
        if stripped.endswith("\\"):
            buf += stripped[:-1].rstrip() + " "
            continue
        buf += stripped
        keyword, _, rest = buf.partition(" ")
        out.append(Instruction(keyword.upper(), rest.strip(), start))
        buf = ""
    if buf:
        keyword, _, rest = buf.partition(" ")
        out.append(Instruction(keyword.upper(), rest.strip(), start))
    return out


def stages(text: str) -> tuple[tuple[Instruction, ...], tuple[Stage, ...]]:
    """The instructions before the first FROM (global ARGs), and the stages."""
    head: list[Instruction] = []
    found: list[tuple[Instruction, list[Instruction]]] = []
    for ins in instructions(text):
        if ins.keyword == "FROM":
            found.append((ins, []))
        elif found:
            found[-1][1].append(ins)
        else:
            head.append(ins)
    out = []
    for ins, body in found:
        words = [w for w in ins.rest.split() if not w.startswith("--")]
        name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
        out.append(Stage(base=words[0] if words else "", name=name, line=ins.line,
                         body=tuple(body)))
    return tuple(head), tuple(out)


@dataclass(frozen=True, kw_only=True)
class Copy:
    sources: tuple[Path, ...]  # in the build context
    dest: str  # absolute, in the image
    text: str  # the instruction, as the image's history records it


@dataclass(frozen=True, kw_only=True)
class LastStage:
    """The last stage of a Dockerfile that buildtool applies itself, for given build
    arguments and build context."""

    copies: tuple[Copy, ...]
    labels: dict[str, str]
    runtime_key: str  # what the runtime stage is made of (see runtime_key)


def _arg(rest: str) -> tuple[str, str | None]:
    name, eq, default = rest.partition("=")
    return name.strip(), (default.strip().strip('"') if eq else None)


def _scope(head: tuple[Instruction, ...], body: tuple[Instruction, ...],
           args: Mapping[str, str]) -> dict[str, str]:
    """The values of the ARGs a stage declares (a bare ARG takes the global default)."""
    global_defaults = dict(_arg(i.rest) for i in head if i.keyword == "ARG")
    scope: dict[str, str] = {}
    for ins in body:
        if ins.keyword == "ARG":
            name, default = _arg(ins.rest)
            if default is None:
                default = global_defaults.get(name)
            scope[name] = args.get(name, default or "")
    return scope


class NotHere(Exception):
    """The last stage does something only an engine does (the message says what)."""


def _substitute(word: str, scope: Mapping[str, str], line: int) -> str:
    if "${" in _VAR.sub("", word):
        raise NotHere(f"line {line}: a variable form other than $NAME and ${{NAME}}")

    def value(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in scope:
            raise NotHere(f"line {line}: ${name} is not an ARG of the last stage")
        return scope[name]

    return _VAR.sub(value, word)


def runtime_key(text: str, args: Mapping[str, str]) -> str:
    """What the runtime stage is made of: the global instructions and the runtime stage's,
    and the values of the build arguments either declares."""
    head, found = stages(text)
    runtime = next(s for s in found if s.name == RUNTIME_STAGE)
    used = {_arg(i.rest)[0] for i in (*head, *runtime.body) if i.keyword == "ARG"}
    payload = {"instructions": [[i.keyword, i.rest] for i in (*head, *runtime.body)],
               "from": runtime.base, "args": {k: args[k] for k in sorted(used) if k in args}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def last_stage(text: str, args: Mapping[str, str], context: Path) -> LastStage:
    """Read the last stage of a Dockerfile for these build arguments and this build context
    (``prebuilt/`` is what the ``built`` stage's /out holds). NotHere when the engine must
    build it: the stages are not runtime → FROM runtime, ``built`` derives its files, or an
    instruction other than ARG, COPY [--from=built] and LABEL."""
    head, found = stages(text)
    if not found or found[-1].base != RUNTIME_STAGE:
        raise NotHere(f"the last stage is not FROM {RUNTIME_STAGE}")
    named = {s.name: s for s in found if s.name}
    if RUNTIME_STAGE not in named:
        raise NotHere(f"no stage is named {RUNTIME_STAGE}")
    # what the runtime stage is made of must be in its key: its text and arguments, not
    # files of the build context or of another stage
    copied = [i for i in named[RUNTIME_STAGE].body if i.keyword in ("COPY", "ADD")]
    if copied:
        raise NotHere(f"line {copied[0].line}: the {RUNTIME_STAGE} stage copies files in "
                      f"({copied[0].keyword}), which its cached image would not follow")
    built, prebuilt = named.get(BUILT_STAGE), named.get(PREBUILT_STAGE)
    if built is None or built.base != "${BUILT}" or built.body:
        raise NotHere(f"the {BUILT_STAGE} stage derives files of its own (only an engine "
                      "runs it)")
    if prebuilt is None or prebuilt.base != "scratch" or \
            [(i.keyword, i.rest) for i in prebuilt.body] != [("COPY", "prebuilt/ /out/")]:
        raise NotHere(f"the {PREBUILT_STAGE} stage is not `COPY prebuilt/ /out/` on scratch")
    if args.get("BUILT") != PREBUILT_STAGE:
        raise NotHere("BUILT is not prebuilt: the build stage compiles")
    root = context.resolve()
    last = found[-1]
    scope: dict[str, str] = {}
    copies: list[Copy] = []
    labels: dict[str, str] = {}
    for ins in last.body:
        if ins.keyword == "ARG":
            scope.update(_scope(head, (ins,), args))
        elif ins.keyword == "COPY":
            copies.append(_copy(ins, scope, root))
        elif ins.keyword == "LABEL":
            try:
                words = shlex.split(ins.rest)
            except ValueError as exc:
                raise NotHere(f"line {ins.line}: {exc}") from None
            for word in words:
                key, eq, value = word.partition("=")
                if not eq:
                    raise NotHere(f"line {ins.line}: LABEL without key=value")
                labels[_substitute(key, scope, ins.line)] = _substitute(value, scope, ins.line)
        else:
            raise NotHere(f"line {ins.line}: {ins.keyword} in the last stage")
    return LastStage(copies=tuple(copies), labels=labels, runtime_key=runtime_key(text, args))


def _copy(ins: Instruction, scope: Mapping[str, str], root: Path) -> Copy:
    try:
        words = [_substitute(w, scope, ins.line) for w in shlex.split(ins.rest)]
    except ValueError as exc:
        raise NotHere(f"line {ins.line}: {exc}") from None
    flags = [w for w in words if w.startswith("--")]
    paths = [w for w in words if not w.startswith("--")]
    if flags not in ([], [f"--from={BUILT_STAGE}"]) or len(paths) < 2:
        raise NotHere(f"line {ins.line}: COPY {' '.join(flags)} (only COPY [--from="
                      f"{BUILT_STAGE}] SRC... DEST is applied here)")
    *sources, dest = paths
    if not dest.startswith("/") or (len(sources) > 1 and not dest.endswith("/")):
        raise NotHere(f"line {ins.line}: COPY to {dest}")
    resolved = []
    for src in sources:
        if any(c in src for c in "*?["):
            raise NotHere(f"line {ins.line}: a wildcard in COPY")
        if flags:
            rel = PurePosixPath(src)
            if not rel.is_absolute() or rel.parts[:2] != ("/", "out"):
                raise NotHere(f"line {ins.line}: COPY --from={BUILT_STAGE} of {src} (its "
                              "files are in /out)")
            path = root / PREBUILT_STAGE / Path(*rel.parts[2:])
        else:
            path = root / src.lstrip("/")
        path = Path(os.path.normpath(path))
        if not path.is_relative_to(root) or not path.exists():
            raise NotHere(f"line {ins.line}: {src} is not in the build context")
        resolved.append(path)
    return Copy(sources=tuple(resolved), dest=dest, text=f"COPY {ins.rest}")


def layer_entries(copy: Copy) -> list[oci.LayerEntry]:
    """What a COPY puts into its layer: the destination's directories, then a directory
    source's contents (not the directory itself) or a file at DEST (DEST/ its name)."""
    dest = PurePosixPath(copy.dest)
    into_dir = copy.dest.endswith("/") or copy.sources[0].is_dir() or len(copy.sources) > 1
    top = dest if into_dir else dest.parent
    out = [oci.LayerEntry(path=str(p).lstrip("/")) for p in
           reversed([top, *top.parents]) if str(p) != "/"]
    for src in copy.sources:
        if src.is_dir() and not src.is_symlink():
            for base, dirs, files in os.walk(src):
                dirs.sort()
                here = Path(base)
                rel = here.relative_to(src)
                if rel != Path():
                    out.append(oci.LayerEntry(path=str(top / rel.as_posix()).lstrip("/"),
                                              source=here))
                for name in sorted(files) + [d for d in dirs if (here / d).is_symlink()]:
                    out.append(oci.LayerEntry(
                        path=str(top / (rel / name).as_posix()).lstrip("/"),
                        source=here / name))
        else:
            target = top / src.name if into_dir else dest
            out.append(oci.LayerEntry(path=str(target).lstrip("/"), source=src))
    return out


def apply(stage: LastStage, base: Path, out: Path, *, ref: str, created: str,
          clamp_mtime: float | None = None, deflated: Deflated | None = None) -> None:
    """Write the OCI archive ``out``: ``base`` (the runtime stage's archive) with a layer
    per COPY of ``stage`` and its labels (``deflated``: files the build already deflated for
    the tarball are not deflated again)."""
    with tempfile.TemporaryDirectory(prefix="buildtool-layers-", dir=out.parent) as tmp:
        layers = [oci.write_layer(layer_entries(c), Path(tmp) / f"layer{i}", c.text,
                                  clamp_mtime=clamp_mtime, deflated=deflated)
                  for i, c in enumerate(stage.copies)]
        oci.append(base, layers, labels=stage.labels, created=created, ref=ref, out=out,
                   comment=COMMENT)


RUNTIME_REPOSITORY = "localhost/buildtool-runtime"


def base_id(eng: engines.Engine, ref: str) -> str | None:
    """The ID of the image ``ref`` in the engine's store (None: it is not there)."""
    try:
        out = cmd.capture(eng.image_id(ref), timeout=120)
    except CommandError:
        return None
    lines = out.split()
    return lines[0].removeprefix("sha256:") if lines else None


def runtime_base(eng: engines.Engine, context: Path, dockerfile: Path, stage: LastStage,
                 args: Mapping[str, str], *, log: Path, echo: cmd.Echo,
                 no_cache: bool = False) -> tuple[Path, oci.ImageInfo, bool]:
    """The runtime stage of ``dockerfile`` as an OCI archive in the cache, built (from
    ``context``) and saved by the engine when the cache has none for its key (the stage's
    key, the base image's ID, the engine); what it says of itself; whether it was built now."""
    base_ref = args.get("RUNTIME_IMAGE", "")

    def path_for(image: str | None) -> Path:
        key = hashlib.sha256(json.dumps([stage.runtime_key, image, eng.name]).encode())
        return cache_dir() / "images" / f"runtime-{key.hexdigest()[:32]}.oci.tar"

    known = base_id(eng, base_ref) if base_ref else None
    if known is not None and path_for(known).is_file():
        try:
            return path_for(known), oci.inspect(path_for(known)), False
        except oci.OciError as exc:  # damaged in the cache: made again
            echo(f"{exc.message}: building the runtime stage again")
            path_for(known).unlink()
    tag = f"{RUNTIME_REPOSITORY}:{stage.runtime_key[:16]}"
    cmd.run(eng.build(context=context, dockerfile=dockerfile, tags=[tag], args=args,
                      no_cache=no_cache, target=RUNTIME_STAGE),
            log=log, echo=echo, what=f"the runtime stage ({eng.name}) failed",
            error_type=BuildError)
    final = path_for(base_id(eng, base_ref) if base_ref else None)
    with atomic_path(final) as tmp_archive:
        tmp_archive.unlink()  # the engine creates the file
        cmd.run(eng.save(tag, tmp_archive), log=log, echo=echo,
                what=f"saving the runtime stage ({eng.name}) failed", error_type=BuildError)
        info = oci.inspect(tmp_archive)  # readable, or nothing is kept
    return final, info, True
