"""Unified diffs applied to the pinned tree, in-process (``patch -p1`` without the fuzz).

A patch is parsed into files and hunks; each hunk must find its context and removed lines
exactly — at its line number, or (the file moved under it) at the one place nearest to it
where they match. A patch applies as a whole or not at all: every file is changed in memory
first and written only when all hunks matched. Reversing a patch is how ``vendor lock`` tells
a fix that is already upstream.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from buildtool.errors import SourceError

_HUNK = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
DEV_NULL = "/dev/null"


class PatchError(SourceError):
    """A patch that cannot be read or does not apply (which file, which hunk)."""


@dataclass
class Hunk:
    header: str
    old_start: int
    old: list[str] = field(default_factory=list)  # context and removed lines (with "\n")
    new: list[str] = field(default_factory=list)  # context and added lines


@dataclass
class FilePatch:
    old: str | None  # path in the tree, None: a new file
    new: str | None  # None: the file is deleted
    hunks: list[Hunk] = field(default_factory=list)

    @property
    def path(self) -> str:
        return self.new or self.old or "?"


def _path(raw: str, name: str) -> str | None:
    raw = raw.split("\t", 1)[0].strip()
    if raw == DEV_NULL:
        return None
    parts = PurePosixPath(raw).parts[1:]  # -p1
    if not parts or any(p in ("..", "") for p in parts) or raw.startswith("/"):
        raise PatchError(f"{name}: unsafe or empty path {raw!r}")
    return "/".join(parts)


def parse(text: str, name: str) -> list[FilePatch]:
    """The files and hunks of a unified diff (git's extended headers are skipped)."""
    files: list[FilePatch] = []
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(("GIT binary patch", "Binary files ")):
            raise PatchError(f"{name}: binary patches are not supported")
        if line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            current = FilePatch(old=_path(line[4:], name), new=_path(lines[i + 1][4:], name))
            files.append(current)
            i += 2
            continue
        match = _HUNK.match(line)
        if match:
            if not files:
                raise PatchError(f"{name}: a hunk before any file header")
            old_len = int(match.group(2) or "1")
            new_len = int(match.group(4) or "1")
            hunk = Hunk(header=match.group(0), old_start=int(match.group(1)))
            i += 1
            seen_old = seen_new = 0
            last: list[list[str]] = []
            while i < len(lines) and (seen_old < old_len or seen_new < new_len
                                      or lines[i].startswith("\\")):
                body = lines[i]
                tag, content = body[:1], body[1:]
                if tag == "\\":  # "\ No newline at end of file": the line before has none
                    for target in last:
                        target[-1] = target[-1].removesuffix("\n")
                elif tag in (" ", "-", "+") or body in ("\n", "\r\n"):
                    if body in ("\n", "\r\n"):
                        tag, content = " ", body
                    last = []
                    if tag in (" ", "-"):
                        hunk.old.append(content)
                        seen_old += 1
                        last.append(hunk.old)
                    if tag in (" ", "+"):
                        hunk.new.append(content)
                        seen_new += 1
                        last.append(hunk.new)
                else:
                    break
                i += 1
            if seen_old != old_len or seen_new != new_len:
                raise PatchError(f"{name}: {files[-1].path}: hunk {hunk.header} is truncated")
            files[-1].hunks.append(hunk)
            continue
        i += 1
    if not files or not any(f.hunks for f in files):
        raise PatchError(f"{name}: not a unified diff (no file with hunks)")
    return files


def _find(content: list[str], block: list[str], expected: int) -> int | None:
    """Where ``block`` matches ``content``: at ``expected`` or the nearest match."""
    if not block:
        return min(max(expected, 0), len(content))
    candidates = [expected] + [expected + d for r in range(1, len(content) + 1)
                               for d in (-r, r)]
    for start in candidates:
        if 0 <= start <= len(content) - len(block) and content[start:start + len(block)] == block:
            return start
    return None


def apply(tree: Path, patch: Path, *, reverse: bool = False, dry_run: bool = False,
          name: str | None = None) -> None:
    """Apply (or reverse) ``patch`` to ``tree``: all of it, or nothing and a PatchError
    naming the file and the hunk that does not match."""
    name = name or patch.name
    try:
        text = patch.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PatchError(f"{name}: cannot read it ({exc})") from exc
    changed: dict[str, list[str] | None] = {}
    for fp in parse(text, name):
        old_path, new_path = (fp.new, fp.old) if reverse else (fp.old, fp.new)
        source = old_path or new_path
        assert source is not None
        target = tree / source
        if target.is_symlink() or not target.resolve().is_relative_to(tree.resolve()):
            raise PatchError(f"{name}: {source} leaves the tree or is a link")
        if old_path is None:
            if target.exists() or (source in changed and changed[source] is not None):
                raise PatchError(f"{name}: {source} is created by the patch but exists")
            content: list[str] = []
        else:
            base = changed.get(old_path)
            if old_path in changed and base is None:
                raise PatchError(f"{name}: {old_path} was deleted by an earlier part")
            if base is not None:
                content = list(base)
            elif target.is_file():
                content = target.read_text(encoding="utf-8", errors="surrogateescape") \
                    .splitlines(keepends=True)
            else:
                raise PatchError(f"{name}: {old_path} does not exist in the tree")
        offset = 0
        for number, hunk in enumerate(fp.hunks, 1):
            before, after = (hunk.new, hunk.old) if reverse else (hunk.old, hunk.new)
            at = _find(content, before, hunk.old_start - 1 + offset if before else
                       hunk.old_start + offset)
            if at is None:
                raise PatchError(f"{name}: hunk #{number} ({hunk.header}) of {source} does "
                                 "not match the tree")
            content[at:at + len(before)] = after
            offset += len(after) - len(before)
        if new_path is None:
            if content:
                raise PatchError(f"{name}: {source} is deleted but lines would remain")
            changed[source] = None
        else:
            changed[new_path] = content
    if dry_run:
        return
    for rel, lines in changed.items():
        path = tree / rel
        if lines is None:
            path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = path.stat().st_mode if path.exists() else None
        path.write_text("".join(lines), encoding="utf-8", errors="surrogateescape")
        if mode is not None:
            path.chmod(mode)


def applies(tree: Path, patch: Path, *, reverse: bool = False) -> tuple[bool, str]:
    """Whether ``patch`` applies (or reverses) cleanly, and if not, why."""
    try:
        apply(tree, patch, reverse=reverse, dry_run=True)
    except PatchError as exc:
        return False, exc.message
    return True, ""
