"""Job file (or Python objects) -> typed ``JobSpec``. Everything is checked here, before Ray starts.

A job file has three sections that map one-to-one onto the pipeline, and an optional fourth::

    input:   {paths: [...], format: auto, text_field: text, id_field: id, source: web}
    steps:   [unicode_normalize, {gopher_quality: {min_words: 50}}, exact_dedup]
    output:  {path: out/run, format: parquet, shard_mb: 128, rejects: false}
    plugins: [mypkg.steps]      # modules that register steps of their own

``input`` may also be a list of such mappings, one per source. Unknown keys, unknown steps and
unknown or mistyped parameters are refused with the key's place in the file
(``steps[2].length.min_word``) and the nearest valid name; every problem of a file is reported.
In Python, ``JobSpec(inputs=[InputSpec(...)], steps=[GopherQuality(), ...], output=OutputSpec(...))``
gets the same checks (``parse_job`` accepts step objects in ``steps`` too).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
from pathlib import Path
from typing import Any

from llmray import ops
from llmray.errors import JobError
from llmray.io.specs import InputSpec, OutputSpec
from llmray.ops.base import GlobalStep, Step
from llmray.params import Problems, build, read_yaml, unknown

SECTIONS = ("input", "steps", "output", "plugins")


@dataclasses.dataclass
class JobSpec:
    inputs: list[InputSpec]
    steps: list[Step]
    output: OutputSpec
    plugins: list[str] = dataclasses.field(default_factory=list)
    source_file: str = "<python>"

    def __post_init__(self) -> None:
        bad = [f"steps[{i}]: {type(s).__name__} is not a step" for i, s in enumerate(self.steps)
               if not isinstance(s, Step)]
        if bad or not self.inputs:
            raise JobError("\n".join(bad) or "input: missing (say which files to read)")
        self.steps = _with_id_check(self.inputs, self.steps + _implicit_mix(self.inputs, self.steps))

    def fingerprint(self) -> str:
        """A hash of what decides the output; resume refuses to continue a different job."""
        payload = {
            "inputs": [dataclasses.asdict(i) for i in self.inputs],
            "steps": [[step.name, step.params()] for step in self.steps],
            "output": {k: v for k, v in dataclasses.asdict(self.output).items()
                       if k not in ("path", "work_dir", "storage_options")},
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": [dataclasses.asdict(i) for i in self.inputs],
            "steps": [{step.name: step.params()} for step in self.steps],
            "output": dataclasses.asdict(self.output),
            **({"plugins": self.plugins} if self.plugins else {}),
        }


def load_job(path: str | Path) -> JobSpec:
    """Read and validate a job file; every problem is a line of one ``JobError``, naming the file."""
    path = Path(path)
    raw = read_yaml(path)
    try:
        return parse_job(raw, source_file=str(path))
    except JobError as exc:
        raise JobError("\n".join(f"{path}: {line}" for line in str(exc).splitlines())) from None


def parse_job(raw: Any, source_file: str = "<python>") -> JobSpec:
    """A job mapping (as a job file writes it; ``steps`` may hold step objects) -> a checked JobSpec."""
    if not isinstance(raw, dict):
        raise JobError("the job file must be a mapping with input, steps and output")
    problems = Problems()
    for key in raw:
        if key not in SECTIONS:
            problems.add(f"{key}: {unknown(str(key), SECTIONS, 'section')}")
    plugins = raw.get("plugins") or []
    if isinstance(plugins, str):
        plugins = [plugins]
    problems.capture(load_plugins, plugins)
    if "input" not in raw:
        problems.add("input: missing (say which files to read)")
    many = isinstance(raw.get("input"), list)
    inputs = []
    for i, item in enumerate(raw.get("input") if many else [raw.get("input")] if "input" in raw else []):
        where = f"input[{i}]" if many else "input"
        if isinstance(item, (str, list)):
            item = {"paths": item}
        spec = problems.capture(build, InputSpec, item, where)
        if spec is not None:
            inputs.append(spec)
    output = problems.capture(build, OutputSpec, raw.get("output") or {}, "output")
    steps = problems.capture(parse_steps, raw.get("steps") or [])
    problems.raise_if_any()
    return problems.capture(JobSpec, inputs=inputs, steps=steps, output=output, plugins=list(plugins),
                            source_file=source_file) or problems.raise_if_any()


def load_plugins(modules: list[str]) -> None:
    """Import the modules a job names under ``plugins:`` (they register their steps)."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise JobError(f"plugins: cannot import {name!r} ({exc})") from None


def parse_steps(raw_steps: Any) -> list[Step]:
    if not isinstance(raw_steps, list):
        raise JobError("steps: expected a list of steps")
    available = ops.available()
    problems = Problems()
    steps = []
    for i, item in enumerate(raw_steps):
        if isinstance(item, Step):
            steps.append(item)
            continue
        if isinstance(item, str):
            name, params = item, {}
        elif isinstance(item, dict) and len(item) == 1:
            name, params = next(iter(item.items()))
            params = params or {}
        else:
            problems.add(f"steps[{i}]: write a step as `name` or `name: {{param: value}}`")
            continue
        if name not in available:
            problems.add(f"steps[{i}].{name}: {unknown(str(name), available, 'step')}")
            continue
        step = problems.capture(build, available[name], params, f"steps[{i}].{name}")
        if step is not None:
            steps.append(step)
    problems.raise_if_any()
    return steps


def _with_id_check(inputs: list[InputSpec], steps: list[Step]) -> list[Step]:
    """Every job counts documents that share an id (after its last step, where it costs no extra
    pass); with ``dedupe_ids`` the check drops them, before the first global step."""
    if any(step.name == "unique_ids" for step in steps):
        return steps
    if not any(i.dedupe_ids for i in inputs):
        return [*steps, ops.UniqueIds(drop=False)]
    first = next((k for k, step in enumerate(steps) if isinstance(step, GlobalStep)), 0)
    return [*steps[:first], ops.UniqueIds(drop=True), *steps[first:]]


def _implicit_mix(inputs: list[InputSpec], steps: list[Step]) -> list[Step]:
    """Inputs with a ``share`` are mixed after the last step, unless the job places ``mix`` itself."""
    shared = [i for i in inputs if i.share is not None]
    if not shared or any(step.name == "mix" for step in steps):
        return []
    if len(shared) != len(inputs):
        raise JobError("input: give every input a share, or none (shares set the output's mix of sources)")
    names = [i.source for i in inputs]
    if len(set(names)) != len(names):
        raise JobError("input: inputs with a share need distinct source names")
    return [ops.Mix(shares={i.source: i.share for i in inputs})]


def json_schema() -> dict[str, Any]:
    """JSON Schema of data job files (for editors: ``llmray schema > job.schema.json``)."""
    from llmray.params import json_schema as schema_of

    step_schemas = []
    for name, cls in sorted(ops.available().items()):
        params = schema_of(cls)
        params["description"] = cls.summary
        step_schemas += [{"const": name, "description": cls.summary},
                         {"type": "object", "properties": {name: {"anyOf": [params, {"type": "null"}]}},
                          "required": [name], "additionalProperties": False}]
    one_input = schema_of(InputSpec)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "llmray data job",
        "type": "object",
        "properties": {
            "input": {"anyOf": [{"type": "string"}, one_input, {"type": "array", "items": one_input}]},
            "steps": {"type": "array", "items": {"anyOf": step_schemas}},
            "output": schema_of(OutputSpec),
            "plugins": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["input"],
        "additionalProperties": False,
    }
