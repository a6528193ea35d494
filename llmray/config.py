"""Job file -> typed spec. Everything is checked here, before Ray starts.

A job file has three sections that map one-to-one onto the pipeline::

    input:  {paths: [...], format: auto, text_field: text, id_field: id, source: web}
    steps:  [normalize, {gopher_quality: {min_doc_words: 50}}, exact_dedup]
    output: {path: out/run, format: parquet, shard_mb: 128, rejects: false}

``input`` may also be a list of such mappings, one per source. Unknown keys, unknown steps and
unknown or mistyped parameters are refused with the key's place in the file (``steps[2].length.min``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any, Union

import yaml

from llmray.errors import JobError, UserError, check_keys
from llmray.ops.base import Op, registry

FORMATS = ("auto", "jsonl", "parquet", "text", "warc", "html")
OUTPUT_FORMATS = ("parquet", "jsonl.gz")


@dataclasses.dataclass
class InputSpec:
    """One source of documents."""

    paths: list[str]
    format: str = "auto"
    text_field: str = "text"
    id_field: str = "id"
    source: str = "default"
    #: Extra input fields carried through to the output as columns.
    keep_fields: list[str] = dataclasses.field(default_factory=list)
    #: Documents larger than this are dropped as ``read.too_large`` without being held in memory.
    max_doc_mb: float = 128.0
    #: Uncompressed JSONL and text files larger than this are split into chunks read in parallel.
    chunk_mb: float = 64.0
    #: Target share of this source in the output (by text bytes); see the ``mix`` step.
    share: float | None = None


@dataclasses.dataclass
class OutputSpec:
    path: str = "out"
    format: str = "parquet"
    #: A shard rolls over once it holds this many MB of text.
    shard_mb: float = 128.0
    #: Write dropped documents to ``rejects/`` with their reason.
    rejects: bool = False


@dataclasses.dataclass
class JobSpec:
    inputs: list[InputSpec]
    steps: list[Op]
    output: OutputSpec
    source_file: str = "<python>"

    def fingerprint(self) -> str:
        """A hash of what decides the output; resume refuses to continue a different job."""
        payload = {
            "inputs": [dataclasses.asdict(i) for i in self.inputs],
            "steps": [[op.name, op.params()] for op in self.steps],
            "output": {k: v for k, v in dataclasses.asdict(self.output).items() if k != "path"},
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": [dataclasses.asdict(i) for i in self.inputs],
            "steps": [{op.name: op.params()} for op in self.steps],
            "output": dataclasses.asdict(self.output),
        }


def read_yaml(path: Path) -> Any:
    """A job file's content, or one line saying why it cannot be read."""
    if not path.is_file():
        raise UserError(f"job file not found: {path}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise JobError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None


def load_job(path: str | Path) -> JobSpec:
    """Read and validate a job file; every problem is a ``JobError`` naming the file and key."""
    path = Path(path)
    raw = read_yaml(path)
    try:
        return parse_job(raw, source_file=str(path))
    except JobError as exc:
        raise JobError(f"{path}: {exc}") from None


def parse_job(raw: Any, source_file: str = "<python>") -> JobSpec:
    if not isinstance(raw, dict):
        raise JobError("the job file must be a mapping with input, steps and output")
    check_keys(raw, {"input", "steps", "output"}, "job")
    if "input" not in raw:
        raise JobError("input: missing (say which files to read)")
    many = isinstance(raw["input"], list)
    inputs = []
    for i, item in enumerate(raw["input"] if many else [raw["input"]]):
        where = f"input[{i}]" if many else "input"
        spec = _build(InputSpec, item, where)
        if spec.format not in FORMATS:
            raise JobError(f"{where}.format: {spec.format!r} is not one of {', '.join(FORMATS)}")
        inputs.append(spec)
    output = _build(OutputSpec, raw.get("output") or {}, "output")
    if output.format not in OUTPUT_FORMATS:
        raise JobError(f"output.format: {output.format!r} is not one of {', '.join(OUTPUT_FORMATS)}")
    steps = parse_steps(raw.get("steps") or [])
    steps += _implicit_mix(inputs, steps)
    return JobSpec(inputs=inputs, steps=steps, output=output, source_file=source_file)


def _implicit_mix(inputs: list[InputSpec], steps: list[Op]) -> list[Op]:
    """Inputs with a ``share`` are mixed after the last step, unless the job places ``mix`` itself."""
    shared = [i for i in inputs if i.share is not None]
    if not shared or any(op.name == "mix" for op in steps):
        return []
    if len(shared) != len(inputs):
        raise JobError("input: give every input a share, or none (shares set the output's mix of sources)")
    names = [i.source for i in inputs]
    if len(set(names)) != len(names):
        raise JobError("input: inputs with a share need distinct source names")
    from llmray.ops.mix import Mix

    return [Mix(shares={i.source: i.share for i in inputs})]


def parse_steps(raw_steps: Any) -> list[Op]:
    if not isinstance(raw_steps, list):
        raise JobError("steps: expected a list of steps")
    ops = registry()
    steps = []
    for i, item in enumerate(raw_steps):
        if isinstance(item, str):
            name, params = item, {}
        elif isinstance(item, dict) and len(item) == 1:
            name, params = next(iter(item.items()))
            params = params or {}
        else:
            raise JobError(f"steps[{i}]: write a step as `name` or `name: {{param: value}}`")
        if name not in ops:
            raise JobError(f"steps[{i}].{name}: unknown step (known: {', '.join(sorted(ops))})")
        steps.append(_build(ops[name], params, f"steps[{i}].{name}"))
    return steps


def _build(cls: type, params: Any, where: str) -> Any:
    """Instantiate a dataclass from a mapping, checking names and types of every parameter."""
    if params is None:
        params = {}
    if isinstance(params, (str, list)) and cls is InputSpec:
        params = {"paths": params}
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    check_keys(params, set(fields), where)
    hints = typing.get_type_hints(cls)
    values = {key: _coerce(value, hints[key], f"{where}.{key}") for key, value in params.items()}
    if cls is InputSpec and isinstance(values.get("paths"), str):
        values["paths"] = [values["paths"]]
    try:
        return cls(**values)
    except TypeError as exc:
        missing = [n for n, f in fields.items() if n not in values and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        raise JobError(f"{where}: missing {', '.join(missing) or exc}") from None
    except ValueError as exc:
        raise JobError(f"{where}: {exc}") from None


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Accept a YAML value for a type hint, or say what was expected."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except JobError:
                continue
        raise JobError(f"{where}: expected {_describe(hint)}, got {value!r}")
    if origin is typing.Literal:
        if value in typing.get_args(hint):
            return value
        raise JobError(f"{where}: expected one of {', '.join(map(repr, typing.get_args(hint)))}, got {value!r}")
    if origin is list:
        if isinstance(value, str) and typing.get_args(hint) == (str,):
            return [value]
        if not isinstance(value, list):
            raise JobError(f"{where}: expected a list, got {value!r}")
        (item_hint,) = typing.get_args(hint) or (Any,)
        return [_coerce(v, item_hint, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise JobError(f"{where}: expected a mapping, got {value!r}")
        key_hint, value_hint = typing.get_args(hint) or (Any, Any)
        return {_coerce(k, key_hint, where): _coerce(v, value_hint, f"{where}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool):
        raise JobError(f"{where}: expected an integer, got {value!r}")
    if isinstance(hint, type) and not isinstance(value, hint):
        raise JobError(f"{where}: expected {_describe(hint)}, got {value!r}")
    return value


def _describe(hint: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if hint in names:
        return names[hint]
    return str(hint).replace("typing.", "")
