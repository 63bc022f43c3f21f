"""Validation of plain data against frozen dataclasses, and JSON schemas generated from them.

The dataclasses are the single schema: :func:`convert` checks a parsed document
(:class:`buildtool.inputs.Doc`: YAML configuration or a JSON record) against them —
unknown keys in configuration answer "did you mean …?" with file and line — and
:func:`json_schema` generates the JSON schema that editors use; a unit test fails when the
checked-in ``schema/*.json`` drifts from it (``nox -s generate_schema``).

Types understood: dataclasses, ``str``, ``int``, ``float``, ``bool``, ``Literal``, ``StrEnum``
subclasses, ``tuple[X, ...]``, ``dict[str, X]``, ``X | None`` and unions, and
``Annotated[X, Match(...)]`` / ``Annotated[X, Range(...)]`` for what a value must look like
(a name that becomes part of a file name, a CMake value without a newline, a count ≥ 0).
Strings in configuration refuse NUL and terminal control characters (records may carry them:
they are neutralized where text is printed, see :mod:`buildtool.text`); every integer stays
within 64 bits.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from buildtool.errors import BuildtoolError, ConfigError
from buildtool.inputs import MAX_INT, Doc, ErrorFactory, PathKey

# C0 controls but tab and newline, and DEL: no text buildtool reads needs them, and they can
# rewrite a terminal (ESC) or cut an argument short (NUL)
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class Match:
    """``Annotated[str, Match(regex, what)]``: the whole value must match ``regex``;
    ``choices``, when the values are a closed set, for "did you mean …?"."""

    pattern: str
    what: str
    choices: tuple[str, ...] = ()

    def check(self, value: str) -> str | None:
        return None if re.fullmatch(self.pattern, value) else f"expected {self.what}"

    @classmethod
    def one_of(cls, choices: typing.Iterable[str], what: str) -> Match:
        names = tuple(choices)
        return cls("|".join(re.escape(n) for n in names), f"{what}: {', '.join(names)}", names)


@dataclass(frozen=True)
class Range:
    """``Annotated[int, Range(minimum=0)]``: inclusive bounds."""

    minimum: int | float | None = None
    maximum: int | float | None = None

    def check(self, value: float) -> str | None:
        if self.minimum is not None and value < self.minimum:
            return f"must be at least {self.minimum}"
        if self.maximum is not None and value > self.maximum:
            return f"must be at most {self.maximum}"
        return None


Constraint = Match | Range


def field_key(field_name: str, doc_keys: str = "kebab") -> str:
    return field_name.replace("_", "-") if doc_keys == "kebab" else field_name


def _key(f: dataclasses.Field[Any], doc_keys: str) -> str:
    """A field's key in documents: ``metadata={"key": ...}`` for formats buildtool does not
    own (OCI's ``mediaType``), else the field name in the document's spelling."""
    return str(f.metadata.get("key") or field_key(f.name, doc_keys))


def yaml_key(field_name: str) -> str:
    return field_key(field_name, "kebab")


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Annotated:
        base, *extra = get_args(tp)
        return next((c.what for c in extra if isinstance(c, Match)), _describe(base))
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (list, tuple):
        return f"a list of {_describe(get_args(tp)[0])}"
    if origin is dict:
        return f"a mapping of {_describe(get_args(tp)[1])}"
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp) if a is not type(None))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return " | ".join(repr(m.value) for m in tp)
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {str: "a string", int: "an integer", bool: "true or false", float: "a number"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def suggest(word: str, choices: typing.Iterable[str]) -> str | None:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return match[0] if match else None


def _where(key: PathKey) -> str:
    out = ""
    for k in key:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else str(k))
    return out


def _fail(doc: Doc, key: PathKey, message: str, hint: str | None = None) -> typing.NoReturn:
    raise doc.fail(f"{_where(key)}: {message}" if key else message, line=doc.line(key),
                   hint=hint)


def check_value(tp: Any, value: Any, where: str, *, name: str | None = None,
                error: ErrorFactory = ConfigError) -> Any:
    """One value from outside a file (a command-line option, an environment variable)
    checked against a type of the model: ``--toolkit: '12.4;x': expected a version``."""
    doc = Doc(path=where, data=value, lenient=False, error=error)
    return convert(tp, value, doc, (name,) if name else ())


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def convert(tp: Any, value: Any, doc: Doc, key: PathKey = ()) -> Any:
    """Check ``value`` against type ``tp`` and build it (dataclasses, tuples, dicts)."""
    origin = get_origin(tp)
    if origin is Annotated:
        base, *extra = get_args(tp)
        out = convert(base, value, doc, key)
        for constraint in extra:
            if isinstance(constraint, Match | Range):
                problem = constraint.check(out)
                if problem:
                    near = suggest(str(out), constraint.choices) \
                        if isinstance(constraint, Match) else None
                    _fail(doc, key, f"{_shown(out)}: {problem}",
                          f"did you mean '{near}'?" if near else None)
        return out
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors: list[BaseException] = []
        for option in options:
            if option is type(None):
                continue
            try:
                return convert(option, value, doc, key)
            except BuildtoolError as exc:
                errors.append(exc)
        if len(errors) == 1:  # `X | None`: X's own message (with its suggestion) is the best
            raise errors[0]
        _fail(doc, key, f"expected {_describe(tp)}, got {_shown(value)}")
    if origin is Literal:
        allowed = get_args(tp)
        if isinstance(value, bool) or value not in allowed:
            near = suggest(str(value), [str(a) for a in allowed])
            _fail(doc, key, f"{_shown(value)} is not one of {', '.join(map(str, allowed))}",
                  f"did you mean '{near}'?" if near else None)
        return value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except (ValueError, TypeError):
            names = [str(m.value) for m in tp]
            near = suggest(str(value), names)
            _fail(doc, key, f"{_shown(value)} is not one of {', '.join(names)}",
                  f"did you mean '{near}'?" if near else None)
    if origin in (list, tuple):
        (item_tp, *_) = get_args(tp)
        if doc.lenient and isinstance(value, str | int) and not isinstance(value, bool) \
                and _base(item_tp) is str:
            value = [value]
        if not isinstance(value, list | tuple):
            _fail(doc, key, f"expected {_describe(tp)}, got {type(value).__name__}",
                  "write a YAML list, e.g. [a, b] or one '- item' per line"
                  if doc.lenient else None)
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
            _fail(doc, key, f"expected true or false, got {_shown(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(doc, key, f"expected an integer, got {_shown(value)}")
        if abs(value) > MAX_INT:
            _fail(doc, key, "integer out of range")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            _fail(doc, key, f"expected a number, got {_shown(value)}")
        if not math.isfinite(value) or abs(value) > 1e300:
            _fail(doc, key, f"number out of range: {_shown(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str) and (not doc.lenient or isinstance(value, bool)
                                           or not isinstance(value, int)):
            _fail(doc, key, f"expected a string, got {_shown(value)}",
                  "quote the value if it should be text, e.g. \"12.4\"" if doc.lenient
                  else None)
        text = str(value)
        bad = CONTROL.search(text) if doc.lenient else None  # configuration is typed by hand
        if bad:
            _fail(doc, key, f"control character {bad.group()!r} in {_shown(text)}")
        return text
    if tp is Any:
        return value
    raise TypeError(f"unsupported schema type {tp!r}")


def _base(tp: Any) -> Any:
    return get_args(tp)[0] if get_origin(tp) is Annotated else tp


def _hints(cls: type[Any]) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _convert_dataclass(cls: type[Any], value: Any, doc: Doc, key: PathKey) -> Any:
    if not isinstance(value, dict):
        _fail(doc, key, f"expected a mapping, got {type(value).__name__}")
    hints = _hints(cls)
    fields = {_key(f, doc.keys): f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for k, v in value.items():
        if k not in fields:
            if not doc.strict_keys:
                continue
            near = suggest(str(k), fields)
            _fail(doc, (*key, k), f"unknown key '{k}'",
                  f"did you mean '{near}'?" if near else
                  f"allowed keys: {', '.join(sorted(fields))}")
        f = fields[k]
        kwargs[f.name] = convert(hints[f.name], v, doc, (*key, k))
    for k, f in fields.items():
        if f.name not in kwargs and f.default is dataclasses.MISSING \
                and f.default_factory is dataclasses.MISSING:
            _fail(doc, key, f"missing required key '{k}'", f"add '{k}: …' here"
                  if doc.lenient else None)
    try:
        return cls(**kwargs)
    except ValueError as exc:  # a rule across fields (__post_init__)
        _fail(doc, key, str(exc))


def to_data(value: Any) -> Any:
    """A record (dataclasses, enums, tuples) as plain JSON data, fields in their order; a
    field with ``metadata={"omit_none": True}`` is left out while it is None (sections only
    some artifact kinds have)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {_key(f, "snake"): to_data(getattr(value, f.name))
                for f in dataclasses.fields(value)
                if not (f.metadata.get("omit_none") and getattr(value, f.name) is None)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [to_data(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_data(v) for k, v in value.items()}
    return value


def json_schema(tp: Any, keys: str = "kebab", *, lenient: bool = True) -> dict[str, Any]:
    origin = get_origin(tp)
    if origin is Annotated:
        base, *extra = get_args(tp)
        out = json_schema(base, keys, lenient=lenient)
        for c in extra:
            if isinstance(c, Match) and c.choices:
                out = {"enum": list(c.choices)}  # editors complete a closed set
            elif isinstance(c, Match):
                out["pattern"] = f"^(?:{c.pattern})$"
            elif isinstance(c, Range):
                if c.minimum is not None:
                    out["minimum"] = c.minimum
                if c.maximum is not None:
                    out["maximum"] = c.maximum
        return out
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        nullable = len(options) < len(get_args(tp))
        if len(options) == 1:
            inner = json_schema(options[0], keys, lenient=lenient)
            return inner if lenient or not nullable else {"anyOf": [inner, {"type": "null"}]}
        alts = [json_schema(a, keys, lenient=lenient) for a in options]
        if nullable and not lenient:
            alts.append({"type": "null"})
        return {"anyOf": alts}
    if origin is Literal:
        return {"enum": list(get_args(tp))}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [m.value for m in tp]}
    if origin in (list, tuple):
        item = json_schema(get_args(tp)[0], keys, lenient=lenient)
        if lenient and _base(get_args(tp)[0]) is str:
            return {"anyOf": [{"type": "array", "items": item}, item]}
        return {"type": "array", "items": item}
    if origin is dict:
        return {"type": "object",
                "additionalProperties": json_schema(get_args(tp)[1], keys, lenient=lenient)}
    if dataclasses.is_dataclass(tp):
        hints = _hints(tp)  # type: ignore[arg-type]
        props: dict[str, Any] = {}
        required: list[str] = []
        for f in dataclasses.fields(tp):
            if not f.init:
                continue
            sub = json_schema(hints[f.name], keys, lenient=lenient)
            if f.metadata.get("doc"):
                sub = {"description": f.metadata["doc"], **sub}
            props[_key(f, keys)] = sub
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                required.append(_key(f, keys))
        # configuration: unknown keys are errors; records: fields added later are ignored
        obj: dict[str, Any] = {"type": "object", "additionalProperties": not lenient,
                               "properties": props}
        if tp.__doc__:
            obj["description"] = " ".join(tp.__doc__.split())
        if required:
            obj["required"] = required
        return obj
    return {str: {"type": "string"}, int: {"type": "integer"}, bool: {"type": "boolean"},
            float: {"type": "number"}, Any: {}}[tp]
