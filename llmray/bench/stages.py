"""The stage list, built from llmray's steps, and the single-core measurement of a row-local stage.

Stages come from ``llmray.ops.available()``: every step that can be built with its default
parameters is a stage, so a new step is measured without new benchmark code. Steps that need
parameters (``mix`` needs shares, ``python`` a function) are listed as skipped with the reason. On
top of the steps:

* ``read``: llmray's JSONL reader, file to Arrow batches.
* ``<group>:all``: every step of a group chained in registry order (``filters:all`` is the full
  quality filter set, ``dedup:all`` exact then near-duplicate removal, ``tokenize:all`` vocabulary
  then encoding), each step seeing the rows the previous one kept, as in a job.
* ``filters:datatrove-set``: the filters datatrove also has (Gopher repetition and quality, C4,
  FineWeb), in datatrove's order: the like-for-like comparison with datatrove's filters.
* ``minhash_signatures``: the signature kernel alone (the near-dup step's defaults for its parameters).

A stage's group is its step's module (``llmray.ops.clean.normalize`` -> ``normalize``, anything under
``llmray.ops.filters`` -> ``filters``). Row-local stages (maps, filters, their chains) run here in
one process over in-memory Arrow batches, without Ray: ``map_rows`` for maps, ``split`` for filters.
Stages with a step that only runs inside the runner (a global step; ``tokenize``, which writes token
shards per unit) are of kind ``job``: the harness runs them as a one-CPU job (``runs.py``).

Run as a child: ``python -m llmray.bench.stages REQUEST RESULT`` (see ``measure_stage``).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import time
from collections.abc import Callable
from typing import Any

from llmray.bench import measure

GROUP_ORDER = ("read", "html", "normalize", "c4_lines", "pii", "filters", "dedup", "tokenize")
#: Chains that do what a peer's set does, for like-for-like ratios: datatrove's four quality filters.
PEER_CHAINS = {"filters:datatrove-set": ("gopher_repetition", "gopher_quality", "c4_quality",
                                         "fineweb_quality")}
#: The kernel behind MinHash near-duplicate removal, measured on its own (module, function).
SIGNATURE_KERNEL = ("llmray.kernels.minhash", "signatures")


@dataclasses.dataclass
class Stage:
    name: str
    group: str
    #: read | map | filter | chain | kernel | job
    kind: str
    #: Step names the stage runs, in order (none for read and kernel stages).
    ops: list[str] = dataclasses.field(default_factory=list)

    def steps(self) -> list[str] | None:
        """The stage as job-file steps for the runner (scaling runs); None if it is not a job."""
        return None if self.kind == "kernel" else list(self.ops)


def _group(cls: type) -> str:
    module = cls.__module__.split(".")
    if module[:2] != ["llmray", "ops"]:
        return "other"
    return "filters" if "filters" in module else module[-1]


def needs_runner(cls: type) -> bool:
    """Global steps decide over the whole corpus, and steps with per-unit hooks write products per
    unit (token shards): both run only inside the runner."""
    from llmray.ops.base import GlobalStep, Step

    return issubclass(cls, GlobalStep) or cls.begin_chunk is not Step.begin_chunk


def _default(cls: type) -> Any:
    """The step with its default parameters, or the reason it cannot be built so."""
    try:
        return cls()
    except Exception as exc:  # noqa: BLE001  (any failure means: needs parameters)
        return f"cannot run with default parameters: {type(exc).__name__}: {exc}"


def plan() -> tuple[list[Stage], list[dict[str, str]]]:
    """(every measurable stage, ``{"name", "reason"}`` of every step that is not measurable)."""
    from llmray import ops
    from llmray.ops.base import kind_of

    stages = [Stage("read", "read", "read")]
    skipped = []
    by_group: dict[tuple[str, bool], list[str]] = {}
    for name, cls in ops.available().items():
        step = _default(cls)
        if isinstance(step, str):
            skipped.append({"name": name, "reason": step})
            continue
        job = needs_runner(cls)
        group = _group(cls)
        stages.append(Stage(name, group, "job" if job else kind_of(cls), [name]))
        by_group.setdefault((group, job), []).append(name)
    for (group, job), names in by_group.items():
        if len(names) > 1:
            name = f"{group}:all" + ("-job" if job and (group, False) in by_group else "")
            stages.append(Stage(name, group, "job" if job else "chain", names))
    for name, chain in PEER_CHAINS.items():
        if all(step in by_group.get(("filters", False), []) for step in chain):
            stages.append(Stage(name, "filters", "chain", list(chain)))
    kernel = signature_kernel()
    if isinstance(kernel, str):
        skipped.append({"name": "minhash_signatures", "reason": kernel})
    else:
        stages.append(Stage("minhash_signatures", "dedup", "kernel"))
    stages.sort(key=lambda s: (_rank(s.group), s.kind != "kernel", len(s.ops) > 1))
    return stages, skipped


def _rank(group: str) -> int:
    return GROUP_ORDER.index(group) if group in GROUP_ORDER else len(GROUP_ORDER)


def signature_kernel() -> Callable | str:
    """The signature function, or why it is not there."""
    module, name = SIGNATURE_KERNEL
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        return f"{module}.{name} not available: {exc}"


def near_dup_op() -> str | None:
    """The step that removes near-duplicates (a global dedup step whose name says MinHash)."""
    from llmray import ops
    from llmray.ops.base import GlobalStep

    names = [n for n, c in ops.available().items() if issubclass(c, GlobalStep) and _group(c) == "dedup"]
    near = [n for n in names if "minhash" in n or "near" in n or "fuzzy" in n]
    return near[0] if near else None


def sketch_params(step: Any = None) -> dict[str, Any]:
    """MinHash settings (num_perm, ngram, bands, rows, threshold, seed) of a near-dup step (by default
    the registered one with its defaults).

    Peers and the signature kernel run with these, so every tool draws the same S-curve. The step's
    ``sketch_spec()`` gives the bands and rows it derives from its threshold; without a near-dup
    step, 128 slots as 16 bands x 8 rows of word 5-grams.
    """
    from llmray import ops

    params: dict[str, Any] = {"num_perm": 128, "ngram": 5, "bands": 16, "rows": 8, "seed": 0}
    name = near_dup_op()
    if step is None and name:
        step = _default(ops.available()[name])
    if step is not None and not isinstance(step, str):
        spec = step.sketch_spec()
        params.update({k: getattr(spec, k) for k in params})
        params["threshold"] = step.threshold
    else:
        params["threshold"] = round((1 / params["bands"]) ** (1 / params["rows"]), 3)
    return params


def removes_duplicates(names: list[str]) -> bool:
    """Every step of these drops duplicates only, so a document missing from the output is a removal
    that ground truth can score."""
    from llmray import ops

    steps = ops.available()
    return bool(names) and all(name in steps and "duplicate" in getattr(steps[name], "reasons", ())
                               for name in names)


# --- measuring one row-local stage (child process) -------------------------------------------------


class StageSkipped(Exception):
    """The stage cannot run on this corpus (a step needs a column the corpus does not have)."""


def _batches(path: str) -> list:
    """The corpus as llmray's reader delivers it: Arrow batches of at most 8 MB / 8192 rows."""
    from llmray.io.readers import plan_chunks, read_chunk
    from llmray.io.specs import InputSpec

    spec = InputSpec(paths=[path])
    chunks, _ = plan_chunks([spec], 1)
    return [b.table for chunk in chunks for b in read_chunk(chunk, spec) if b.table.num_rows]


def _apply(step: Any, table: Any) -> Any:
    """The rows a step keeps, as a segment of the runner computes them."""
    import pyarrow as pa

    from llmray.ops.base import KEEP, FilterStep

    if isinstance(step, FilterStep):
        return step.split(table)[0]
    out, codes = step.map_rows(table)
    return out if codes is None else out.filter(pa.array(codes == KEEP))


class RowLocal:
    """A read, map, filter, chain or kernel stage as one function over a list of Arrow batches.

    Steps are built and set up once, then tried on a few rows: a step that refuses the corpus with a
    ``UserError`` (the URL filter without a ``url`` column) leaves the chain and is listed in
    ``excluded``; a stage left with no step is skipped.
    """

    def __init__(self, stage: dict[str, Any], probe: Any):
        from llmray import ops
        from llmray.errors import UserError

        self.excluded: list[dict[str, str]] = []
        self.steps: list[Any] = []
        self.kernel = signature_kernel() if stage["kind"] == "kernel" else None
        self.sketch = sketch_params() if self.kernel else {}
        for name in stage["ops"]:
            step = ops.available()[name]()
            step.setup()
            try:
                _apply(step, probe.slice(0, 50))
            except UserError as exc:
                self.excluded.append({"name": name, "reason": str(exc)})
                continue
            self.steps.append(step)
        if stage["ops"] and not self.steps:
            raise StageSkipped("; ".join(f"{x['name']}: {x['reason']}" for x in self.excluded))

    def __call__(self, tables: list, r: int = 0) -> tuple[int, int]:
        """Run over ``tables``; return the documents and text bytes that come out."""
        out = []
        for table in tables:
            if self.kernel is not None:
                sketch = self.sketch
                self.kernel(table.column("text"), num_perm=sketch["num_perm"], ngram=sketch["ngram"],
                            seed=sketch["seed"] + r)
            for step in self.steps:
                table = _apply(step, table)
            out.append(table)
        return _count(out)


def _reread(path: str, tables: list, r: int) -> tuple[int, int]:
    """The read stage: the file to batches again (``tables`` only serve the other stages)."""
    return _count(_batches(path))


def _count(tables: list) -> tuple[int, int]:
    """(documents, text bytes) of a list of batches."""
    from llmray.schema import text_bytes

    return sum(t.num_rows for t in tables), sum(text_bytes(t) for t in tables)


def _measure(run: Callable[[list, int], tuple[int, int]], batches: list, repeats: int) -> dict:
    docs_in, bytes_in = _count(batches)
    started = time.perf_counter()
    run(batches[:1], 0)  # warm-up: compiled kernels, models, the page cache
    warmup_s = round(time.perf_counter() - started, 3)
    measure.reset_peak_rss()
    times, (docs_out, bytes_out) = measure.timed_repeats(lambda r: run(batches, r), repeats)
    return {"docs_in": docs_in, "bytes_in": bytes_in, "docs_out": docs_out, "bytes_out": bytes_out,
            **measure.rates(times, docs_in, bytes_in, 1), "peak_rss_mb": measure.peak_rss_mb(),
            "warmup_s": warmup_s}


def measure_stage(req: dict[str, Any]) -> dict[str, Any]:
    """Measure one row-local stage on each corpus, pinned to one core. Request: stage, corpora, repeats.

    Result: ``{"status": "ok", "corpora": {name: figures}, "excluded": [...]}``, or status
    ``skipped`` with the reason when no step of the stage can run on the corpus.
    """
    measure.pin_to_cores(1)
    import pyarrow as pa

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    stage = req["stage"]
    results: dict[str, Any] = {}
    row_local = None
    for corpus in req["corpora"]:
        batches = _batches(corpus["path"])
        baseline = measure.rss_mb()
        if stage["kind"] == "read":
            figures = _measure(functools.partial(_reread, corpus["path"]), batches, req["repeats"])
        else:
            try:
                row_local = row_local or RowLocal(stage, batches[0])
            except StageSkipped as exc:
                return {"status": "skipped", "reason": str(exc)}
            figures = _measure(row_local, batches, req["repeats"])
        results[corpus["name"]] = {**figures, "baseline_rss_mb": baseline}
    return {"status": "ok", "corpora": results, "excluded": row_local.excluded if row_local else []}


if __name__ == "__main__":
    measure.child_main(measure_stage)
