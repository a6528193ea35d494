"""One parameter model for data jobs, train jobs and Python: dataclass fields are the parameters.

Values are checked against the fields' type hints by the same code whether they come from a job
file or from Python (``GopherQuality(min_words="50")`` is refused like ``min_words: "50"`` in YAML).
Dataclasses rather than pydantic: the steps already are dataclasses whose fields drive the job file,
``llmray ops`` and the JSON Schema, and a hundred lines of checks give messages that name the key's
place in the file (``steps[2].length.min_words``) and suggest the nearest valid name.

A file's problems are all reported at once: :class:`Problems` collects them and raises one
``JobError`` with a line per problem.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from llmray.errors import JobError, UserError


class Problems:
    """Problems found while checking one file; ``raise_if_any`` reports them together."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, message: str) -> None:
        self.lines.append(message)

    def capture(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn``; a JobError it raises becomes problems (its lines), and the result is None."""
        try:
            return fn(*args, **kwargs)
        except JobError as exc:
            self.lines.extend(str(exc).splitlines())
            return None

    def raise_if_any(self, prefix: str = "") -> None:
        if self.lines:
            raise JobError("\n".join(f"{prefix}{line}" for line in self.lines))


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


def unknown(word: str, choices: Iterable[str], what: str = "key") -> str:
    choices = sorted(choices)
    return f"unknown {what} ({did_you_mean(word, choices)}allowed: {', '.join(choices)})"


def fields(cls: type) -> dict[str, dataclasses.Field]:
    """The parameters of a dataclass: its init fields not starting with ``_``."""
    return {f.name: f for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")}


def build(cls: type, raw: Any, where: str) -> Any:
    """An instance of dataclass ``cls`` from a mapping; every problem is reported, with its place."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise JobError(f"{where}: expected a mapping, got {_show(raw)}")
    allowed = fields(cls)
    hints = typing.get_type_hints(cls)
    problems = Problems()
    values = {}
    for key, value in raw.items():
        if key not in allowed:
            problems.add(f"{where}.{key}: {unknown(str(key), allowed)}")
            continue
        checked = problems.capture(check_value, value, hints[key], f"{where}.{key}")
        if checked is not None or value is None:
            values[key] = checked
    missing = [n for n, f in allowed.items() if n not in raw and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    for name in missing:
        problems.add(f"{where}.{name}: missing")
    problems.raise_if_any()
    try:
        return cls(**values)
    except (JobError, ValueError, TypeError) as exc:
        raise JobError(_placed(str(exc), where, allowed)) from None


def _placed(message: str, where: str, allowed: Iterable[str]) -> str:
    """A check inside a dataclass names at most the field ("min: must be ..."); put the file's
    place in front of each line (``steps[2].length.min: must be ...``)."""
    lines = []
    for line in message.splitlines():
        head = line.split(":", 1)[0].split(".", 1)[0].split("[", 1)[0]
        lines.append(f"{where}.{line}" if head in allowed else f"{where}: {line}")
    return "\n".join(lines)


def validate(obj: Any, where: str = "") -> None:
    """Check the fields of a dataclass made in Python (its ``__post_init__`` calls this); values
    are normalized in place (an int given for a float becomes a float)."""
    hints = typing.get_type_hints(type(obj))
    problems = Problems()
    for name in fields(type(obj)):
        value = getattr(obj, name)
        checked = problems.capture(check_value, value, hints[name], f"{where}.{name}" if where else name)
        if checked is not None:
            object.__setattr__(obj, name, checked)
    problems.raise_if_any()


def check_value(value: Any, hint: Any, where: str) -> Any:
    """``value`` if it fits ``hint`` (ints widen to floats, a string to a one-item string list)."""
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return value if isinstance(value, hint) else build(hint, value, where)
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return check_value(value, option, where)
            except JobError:
                continue
        raise JobError(f"{where}: expected {describe(hint)}, got {_show(value)}")
    if origin is Literal:
        choices = typing.get_args(hint)
        if value in choices:
            return value
        hint_text = did_you_mean(str(value), [str(c) for c in choices]) if isinstance(value, str) else ""
        raise JobError(f"{where}: expected one of {', '.join(map(repr, choices))}, got {_show(value)}"
                       + (f"; {hint_text.strip()}" if hint_text else ""))
    if origin in (list, tuple):
        (item,) = typing.get_args(hint)[:1] or (Any,)
        if isinstance(value, str) and item is str:
            return [value]
        if not isinstance(value, (list, tuple)):
            raise JobError(f"{where}: expected a list, got {_show(value)}")
        return [check_value(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise JobError(f"{where}: expected a mapping, got {_show(value)}")
        key_hint, item = typing.get_args(hint) or (Any, Any)
        return {check_value(k, key_hint, where): check_value(v, item, f"{where}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool):
        raise JobError(f"{where}: expected an integer, got {_show(value)}")
    if isinstance(hint, type) and isinstance(value, hint):
        return value
    raise JobError(f"{where}: expected {describe(hint)}, got {_show(value)}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe(hint: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if hint in names:
        return names[hint]
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(describe(h) if h is not type(None) else "null" for h in typing.get_args(hint))
    if origin is list:
        return "a list"
    if origin is dict:
        return "a mapping"
    return str(hint).replace("typing.", "")


# -- YAML ----------------------------------------------------------------------------------------

class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``5e-4`` (no dot) as a string; job files mean a number, as YAML 1.2 does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def read_yaml(path: str | Path) -> Any:
    """A job file's content, or one line saying why it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"job file not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise JobError(f"{path}: not UTF-8 text (byte {exc.start}); save the job file as UTF-8") from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise JobError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None


# -- JSON Schema ---------------------------------------------------------------------------------

def json_schema(hint: Any) -> dict[str, Any]:
    """JSON Schema of a type hint or dataclass (parameters with their defaults and docs)."""
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        hints = typing.get_type_hints(hint)
        props = {}
        for name, field in fields(hint).items():
            prop = json_schema(hints[name])
            if field.default is not dataclasses.MISSING:
                prop["default"] = field.default
            elif field.default_factory is not dataclasses.MISSING:
                prop["default"] = field.default_factory()
            props[name] = prop
        required = [n for n, f in fields(hint).items() if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING]
        schema: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
        if required:
            schema["required"] = required
        return schema
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return {"anyOf": [json_schema(h) for h in typing.get_args(hint)]}
    if origin is Literal:
        return {"enum": list(typing.get_args(hint))}
    if origin in (list, tuple):
        (item,) = typing.get_args(hint)[:1] or (Any,)
        return {"type": "array", "items": json_schema(item)}
    if origin is dict:
        _, item = typing.get_args(hint) or (Any, Any)
        return {"type": "object", "additionalProperties": json_schema(item)}
    simple = {int: "integer", float: "number", bool: "boolean", str: "string", type(None): "null"}
    return {"type": simple[hint]} if hint in simple else {}
