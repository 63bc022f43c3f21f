"""Reading files at the boundary: bounded, regular files only, strict UTF-8, safe YAML/JSON.

Every file buildtool reads goes through here before :func:`buildtool.schema.convert` turns
it into a typed, validated model. What a reader refuses, with a clear error naming the file
(and the line where there is one) instead of a traceback, a hang or a memory blow-up:

* anything that is not a regular file (``/dev/zero``, a FIFO, a directory) — checked on
  the open descriptor, so a FIFO cannot block the reader;
* files larger than the reader's limit (1 MiB for configuration, more for records);
* bytes that are not UTF-8 (the line and column of the first bad byte are named);
* YAML: anything but plain mappings, sequences and scalars (no ``!!python/…``, ``!!binary``,
  ``!!set`` tags), recursive aliases, aliases that expand to more than
  :data:`MAX_NODES` values ("billion laughs"), nesting deeper than :data:`MAX_DEPTH`;
* JSON: ``NaN``/``Infinity``, numbers out of range (``1e400``), nesting too deep.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import yaml

from buildtool.errors import BuildtoolError, ConfigError

PathKey = tuple[str | int, ...]
ErrorFactory = Callable[..., BuildtoolError]  # (message, *, path, line, hint) → the error

CONFIG_LIMIT = 1 << 20  # build_matrix.yaml, recipes, the lock
RECORD_LIMIT = 64 << 20  # manifests, smoke and lab results, release records
MAX_NODES = 100_000  # values a YAML document may expand to (aliases included)
MAX_DEPTH = 64  # nesting of mappings and sequences
MAX_INT = 2**63 - 1


@dataclass(frozen=True)
class Doc:
    """A parsed file plus the line of every mapping key and value in it (YAML; JSON has
    none), and how its keys are spelled and its errors raised."""

    path: Path | str  # a file, or a description such as "x.whl:pkg/manifest.json"
    data: Any
    lines: Mapping[PathKey, int] = field(default_factory=dict)
    keys: Literal["kebab", "snake"] = "kebab"
    # YAML lets a single string stand for a one-item list; records are exact
    lenient: bool = True
    # configuration names unknown keys an error; records ignore fields added later
    strict_keys: bool = True
    error: ErrorFactory = ConfigError

    def line(self, key: PathKey) -> int | None:
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get((), None)

    def fail(self, message: str, *, line: int | None = None,
             hint: str | None = None) -> BuildtoolError:
        return self.error(message, path=self.path, line=line, hint=hint)


def read_bytes(path: Path, *, limit: int, error: ErrorFactory = ConfigError,
               what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise error(f"cannot read {what}: {exc.strerror or exc}", path=path) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise error(f"cannot read {what}: {kind}", path=path,
                        hint="name a regular file")
        if st.st_size > limit:
            raise error(f"{what} is too large ({st.st_size} bytes; at most {limit})",
                        path=path)
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, 1 << 20):
            size += len(chunk)
            if size > limit:  # it grew while being read
                raise error(f"{what} is too large (more than {limit} bytes)", path=path)
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise error(f"cannot read {what}: {exc.strerror or exc}", path=path) from None
    finally:
        os.close(fd)


def decode(data: bytes, path: Path | str, *, error: ErrorFactory = ConfigError) -> str:
    """Strict UTF-8 (a BOM is dropped); a bad byte is named by line and column."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise error(f"not UTF-8: byte 0x{data[exc.start]:02x} at column {column}",
                    path=path, line=line, hint="save the file as UTF-8") from None


def read_text(path: Path, *, limit: int, error: ErrorFactory = ConfigError,
              what: str = "file") -> str:
    return decode(read_bytes(path, limit=limit, error=error, what=what), path, error=error)


# --------------------------------------------------------------------------------- YAML

_SCALAR_TAGS = {"tag:yaml.org,2002:null", "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int",
                "tag:yaml.org,2002:str"}
# kept as the text written: no field is a float or a date, and "12.10" must not become 12.1
_TEXT_TAGS = {"tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp"}
_CONSTRUCTOR = yaml.SafeLoader("")


class _Walk:
    def __init__(self, doc_path: Path | str, error: ErrorFactory) -> None:
        self.path = doc_path
        self.error = error
        self.lines: dict[PathKey, int] = {}
        self.nodes = 0
        self.active: set[int] = set()  # collections being walked (a recursive alias)

    def fail(self, node: yaml.Node, message: str, hint: str | None = None) -> BuildtoolError:
        return self.error(message, path=self.path, line=node.start_mark.line + 1, hint=hint)

    def walk(self, node: yaml.Node, key: PathKey) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.fail(node, f"the document expands to more than {MAX_NODES} values",
                            "aliases (*name) that repeat aliases grow exponentially; write "
                            "the values out")
        if len(key) > MAX_DEPTH:
            raise self.fail(node, f"nested deeper than {MAX_DEPTH} levels")
        self.lines.setdefault(key, node.start_mark.line + 1)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node)
        if id(node) in self.active:
            raise self.fail(node, "an alias refers to a mapping or list that contains it",
                            "recursive aliases have no finite value")
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                if node.tag != "tag:yaml.org,2002:map":
                    raise self.fail(node, f"unsupported YAML tag {node.tag}")
                return self.mapping(node, key)
            if isinstance(node, yaml.SequenceNode):
                if node.tag != "tag:yaml.org,2002:seq":
                    raise self.fail(node, f"unsupported YAML tag {node.tag}")
                return [self.walk(item, (*key, i)) for i, item in enumerate(node.value)]
        finally:
            self.active.discard(id(node))
        raise self.fail(node, "unsupported YAML node")  # pragma: no cover

    def mapping(self, node: yaml.MappingNode, key: PathKey) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k_node, v_node in node.value:
            if not isinstance(k_node, yaml.ScalarNode) or k_node.tag == "tag:yaml.org,2002:merge":
                raise self.fail(k_node, "mapping keys must be plain strings",
                                "merge keys (<<) are not supported: write the keys out")
            k = k_node.value  # keys stay text: YAML 1.1 would turn `on:` into True
            if k in out:
                raise self.fail(k_node, f"duplicate key '{k}'",
                                "each key may appear once in a mapping; remove one")
            self.lines[(*key, k)] = k_node.start_mark.line + 1
            out[k] = self.walk(v_node, (*key, k))
        return out

    def scalar(self, node: yaml.ScalarNode) -> Any:
        if node.tag in _TEXT_TAGS:
            return node.value
        if node.tag not in _SCALAR_TAGS:
            raise self.fail(node, f"unsupported YAML tag {node.tag}",
                            "only plain strings, numbers, true/false and null are read")
        try:
            return _CONSTRUCTOR.construct_object(node)
        except (yaml.YAMLError, ValueError) as exc:
            raise self.fail(node, f"invalid value {node.value!r}: {exc}") from None


def load_yaml(path: Path, text: str | None = None, *,
              error: ErrorFactory = ConfigError) -> Doc:
    """A YAML configuration file as plain data with the line of every key."""
    source = read_text(path, limit=CONFIG_LIMIT, error=error) if text is None else text
    try:
        node = yaml.compose(source, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise error(
            f"invalid YAML: {exc.problem or exc}", path=path, line=line,
            hint="check indentation and quoting on that line (tabs are not allowed in YAML)",
        ) from None
    except yaml.YAMLError as exc:  # e.g. a control character (ReaderError)
        raise error(f"invalid YAML: {exc}", path=path) from None
    except RecursionError:
        raise error(f"invalid YAML: nested deeper than {MAX_DEPTH} levels",
                    path=path) from None
    walker = _Walk(path, error)
    data = walker.walk(node, ()) if node is not None else {}
    return Doc(path=path, data=data, lines=walker.lines, error=error)


# --------------------------------------------------------------------------------- JSON


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text}")
    return value


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not a JSON number")


def _bounded_int(text: str) -> int:
    value = int(text)
    if abs(value) > MAX_INT:
        raise ValueError(f"integer out of range: {text[:40]}")
    return value


def parse_json(text: str, where: Path | str, *, error: ErrorFactory) -> Any:
    """JSON with finite numbers, bounded integers and bounded nesting."""
    try:
        data = json.loads(text, parse_float=_finite, parse_int=_bounded_int,
                          parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise error(f"invalid JSON: {exc.msg} (column {exc.colno})", path=where,
                    line=exc.lineno) from None
    except ValueError as exc:
        raise error(f"invalid JSON: {exc}", path=where) from None
    except RecursionError:
        raise error("invalid JSON: nested too deeply", path=where) from None
    if _depth(data) > MAX_DEPTH:
        raise error(f"invalid JSON: nested deeper than {MAX_DEPTH} levels", path=where)
    return data


def _depth(value: Any) -> int:
    depth = 0
    level = [value]
    while level:
        level = [v for item in level for v in
                 (item.values() if isinstance(item, dict) else
                  item if isinstance(item, list) else ())]
        depth += 1
        if depth > MAX_DEPTH:
            break
    return depth


def json_doc(data: Any, where: Path | str, *, error: ErrorFactory,
             keys: Literal["kebab", "snake"] = "snake", strict_keys: bool = False) -> Doc:
    return Doc(path=where, data=data, keys=keys, lenient=False, strict_keys=strict_keys,
               error=error)


def load_json(path: Path, *, limit: int, error: ErrorFactory,
              keys: Literal["kebab", "snake"] = "snake", strict_keys: bool = False) -> Doc:
    text = read_text(path, limit=limit, error=error)
    return json_doc(parse_json(text, path, error=error), path, error=error, keys=keys,
                    strict_keys=strict_keys)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


T = TypeVar("T")


class ByContent:
    """What was read out of files, by their bytes (sha256) and whatever else the reading
    depends on. The kinds one build makes ship the same files — the tarball's, the wheel's
    before its repair, the image's /opt/llama.cpp — so each file is disassembled and read
    once however many kinds carry it. Lives as long as one build."""

    def __init__(self) -> None:
        self._seen: dict[tuple[object, ...], object] = {}
        self.hits = 0

    def get(self, path: Path, depends: tuple[object, ...], read: Callable[[], T]) -> T:
        key = (sha256_file(path), *depends)
        if key in self._seen:
            self.hits += 1
            return cast(T, self._seen[key])
        value = read()
        self._seen[key] = value
        return value
