"""YAML with line numbers, and validation of plain data against frozen dataclasses.

The dataclasses in :mod:`buildtool.model` are the single schema: :func:`convert` checks a
parsed YAML document against them (unknown keys answer "did you mean …?" with file and
line), and :func:`json_schema` generates the JSON schema that editors use; a unit test
fails when the checked-in ``schema/*.json`` drifts from it (``nox -s generate_schema``).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from buildtool.errors import ConfigError

PathKey = tuple[str | int, ...]


@dataclass(frozen=True)
class Doc:
    """A parsed YAML file plus the line of every mapping key and value in it."""

    path: Path
    data: Any
    lines: Mapping[PathKey, int]

    def line(self, key: PathKey) -> int | None:
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get((), None)


def _walk(node: yaml.Node, key: PathKey, lines: dict[PathKey, int], path: Path) -> Any:
    lines.setdefault(key, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for k_node, v_node in node.value:
            if not isinstance(k_node, yaml.ScalarNode):
                raise ConfigError("mapping keys must be plain strings", path=path,
                                  line=k_node.start_mark.line + 1)
            k = k_node.value  # keys stay text: YAML 1.1 would turn `on:` into True
            if k in out:
                raise ConfigError(f"duplicate key '{k}'", path=path,
                                  line=k_node.start_mark.line + 1,
                                  hint="each key may appear once in a mapping; remove one")
            lines[(*key, k)] = k_node.start_mark.line + 1
            out[k] = _walk(v_node, (*key, k), lines, path)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(item, (*key, i), lines, path) for i, item in enumerate(node.value)]
    return _CONSTRUCTOR.construct_object(node)


_CONSTRUCTOR = yaml.SafeLoader("")


def load_yaml(path: Path, text: str | None = None) -> Doc:
    try:
        source = path.read_text(encoding="utf-8") if text is None else text
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror}", path=path) from exc
    try:
        node = yaml.compose(source, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(
            f"invalid YAML: {exc.problem or exc}", path=path, line=line,
            hint="check indentation and quoting on that line (tabs are not allowed in YAML)",
        ) from exc
    lines: dict[PathKey, int] = {}
    data = _walk(node, (), lines, path) if node is not None else {}
    return Doc(path=path, data=data, lines=lines)


def yaml_key(field_name: str) -> str:
    return field_name.replace("_", "-")


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (list, tuple):
        return f"a list of {_describe(get_args(tp)[0])}"
    if origin is dict:
        return f"a mapping of {_describe(get_args(tp)[1])}"
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp) if a is not type(None))
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {str: "a string", int: "an integer", bool: "true or false", float: "a number"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def suggest(word: str, choices: typing.Iterable[str]) -> str | None:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return match[0] if match else None


def _fail(doc: Doc, key: PathKey, message: str, hint: str | None = None) -> typing.NoReturn:
    where = ".".join(str(k) for k in key) or "(top level)"
    raise ConfigError(f"{where}: {message}", path=doc.path, line=doc.line(key), hint=hint)


def convert(tp: Any, value: Any, doc: Doc, key: PathKey = ()) -> Any:
    """Check ``value`` against type ``tp`` and build it (dataclasses, tuples, dicts)."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors: list[ConfigError] = []
        for option in options:
            if option is type(None):
                continue
            try:
                return convert(option, value, doc, key)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:  # `X | None`: X's own message (with its suggestion) is the best
            raise errors[0]
        _fail(doc, key, f"expected {_describe(tp)}, got {value!r}")
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            near = suggest(str(value), [str(a) for a in allowed])
            _fail(doc, key, f"{value!r} is not one of {', '.join(map(str, allowed))}",
                  f"did you mean '{near}'?" if near else None)
        return value
    if origin in (list, tuple):
        (item_tp, *_) = get_args(tp)
        if isinstance(value, str | int) and item_tp is str:
            value = [value]
        if not isinstance(value, list):
            _fail(doc, key, f"expected {_describe(tp)}, got {type(value).__name__}",
                  "write a YAML list, e.g. [a, b] or one '- item' per line")
        return tuple(convert(item_tp, v, doc, (*key, i)) for i, v in enumerate(value))
    if origin is dict:
        k_tp, v_tp = get_args(tp)
        if not isinstance(value, dict):
            _fail(doc, key, f"expected {_describe(tp)}, got {type(value).__name__}")
        return {convert(k_tp, k, doc, (*key, k)): convert(v_tp, v, doc, (*key, k))
                for k, v in value.items()}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _convert_dataclass(tp, value, doc, key)
    if tp is bool:
        if not isinstance(value, bool):
            _fail(doc, key, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(doc, key, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            _fail(doc, key, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, bool) or value is None or isinstance(value, list | dict):
            _fail(doc, key, f"expected a string, got {value!r}",
                  "quote the value if it should be text, e.g. \"12.4\"")
        return str(value)
    if tp is Any:
        return value
    raise TypeError(f"unsupported schema type {tp!r}")


def _convert_dataclass(cls: type[Any], value: Any, doc: Doc, key: PathKey) -> Any:
    if not isinstance(value, dict):
        _fail(doc, key, f"expected a mapping, got {type(value).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {yaml_key(f.name): f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for k, v in value.items():
        if k not in fields:
            near = suggest(k, fields)
            _fail(doc, (*key, k), f"unknown key '{k}'",
                  f"did you mean '{near}'?" if near else
                  f"allowed keys: {', '.join(sorted(fields))}")
        f = fields[k]
        kwargs[f.name] = convert(hints[f.name], v, doc, (*key, k))
    for k, f in fields.items():
        if f.name not in kwargs and f.default is dataclasses.MISSING \
                and f.default_factory is dataclasses.MISSING:
            _fail(doc, key, f"missing required key '{k}'", f"add '{k}: …' here")
    return cls(**kwargs)


def json_schema(tp: Any) -> dict[str, Any]:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        if len(options) == 1:
            return json_schema(options[0])
        return {"anyOf": [json_schema(a) for a in options]}
    if origin is Literal:
        return {"enum": list(get_args(tp))}
    if origin in (list, tuple):
        item = json_schema(get_args(tp)[0])
        if get_args(tp)[0] is str:
            return {"anyOf": [{"type": "array", "items": item}, item]}
        return {"type": "array", "items": item}
    if origin is dict:
        return {"type": "object", "additionalProperties": json_schema(get_args(tp)[1])}
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        props: dict[str, Any] = {}
        required: list[str] = []
        for f in dataclasses.fields(tp):
            if not f.init:
                continue
            sub = json_schema(hints[f.name])
            if f.metadata.get("doc"):
                sub = {"description": f.metadata["doc"], **sub}
            props[yaml_key(f.name)] = sub
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                required.append(yaml_key(f.name))
        out: dict[str, Any] = {"type": "object", "additionalProperties": False,
                               "properties": props}
        if tp.__doc__:
            out["description"] = " ".join(tp.__doc__.split())
        if required:
            out["required"] = required
        return out
    return {str: {"type": "string"}, int: {"type": "integer"}, bool: {"type": "boolean"},
            float: {"type": "number"}, Any: {}}[tp]
