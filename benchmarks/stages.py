"""The stage registry, built from llmray's op registry, and the single-core measurement of one stage.

Stages come from ``llmray.ops.base.registry()``: every op that can be built with its default
parameters is a stage, so a new op is measured without new benchmark code. Ops that need parameters
(``mix`` needs shares, ``python`` a function) are listed as skipped with the reason. On top of the ops:

* ``read``: llmray's JSONL reader, file to Arrow batches.
* ``<group>:all``: every op of a group chained in registry order (``filters:all`` is the full
  quality filter set, ``dedup:all`` exact then near-duplicate removal, ``tokenize:all`` vocabulary
  then encoding), each op seeing the rows the previous one kept, as in a job.
* ``filters:datatrove-set``: the filters datatrove also has (Gopher repetition and quality, C4,
  FineWeb), in datatrove's order: the like-for-like comparison with datatrove's filters.
* ``minhash_signatures``: the signature kernel alone (the near-dup op's defaults for its parameters).

A stage's group is its op's module (``llmray.ops.normalize`` -> ``normalize``, anything under
``llmray.ops.filters`` -> ``filters``). Row-local stages run in one process over in-memory Arrow
batches, without Ray; global ops (dedup, tokenize) get their ``GlobalContext`` over a parquet copy
of the corpus and a one-CPU Ray runtime, which is how the runner calls them.

Run as a child: ``python -m benchmarks.stages REQUEST RESULT`` (see ``measure_stage``).
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import accuracy, measure

GROUP_ORDER = ("read", "html", "normalize", "pii", "filters", "dedup", "tokenize")
#: Chains that do what a peer's set does, for like-for-like ratios: datatrove's four quality filters.
PEER_CHAINS = {"filters:datatrove-set": ("gopher_repetition", "gopher_quality", "c4_quality",
                                         "fineweb_quality")}
#: The kernel behind MinHash near-duplicate removal, measured on its own (module, function).
SIGNATURE_KERNEL = ("llmray.kernels.minhash", "signatures")


@dataclasses.dataclass
class Stage:
    name: str
    group: str
    #: read | map | filter | chain | kernel | global
    kind: str
    #: Registry names of the ops the stage runs, in order (none for read and kernel stages).
    ops: list[str] = dataclasses.field(default_factory=list)

    def steps(self) -> list[str] | None:
        """The stage as job-file steps for the runner (scaling runs); None if it is not a job."""
        return None if self.kind == "kernel" else list(self.ops)


def _group(cls: type) -> str:
    module = cls.__module__.split(".")
    if module[:3] == ["llmray", "ops", "filters"]:
        return "filters"
    return module[2] if module[:2] == ["llmray", "ops"] and len(module) > 2 else "other"


def _default(cls: type) -> Any:
    """The op with its default parameters, or the reason it cannot be built so."""
    try:
        return cls()
    except Exception as exc:  # noqa: BLE001  (any failure means: needs parameters)
        return f"cannot run with default parameters: {type(exc).__name__}: {exc}"


def plan() -> tuple[list[Stage], list[dict[str, str]]]:
    """(every measurable stage, ``{"name", "reason"}`` of every op that is not measurable)."""
    from llmray.ops.base import Filter, GlobalOp, MapOp, registry

    stages = [Stage("read", "read", "read")]
    skipped = []
    by_group: dict[tuple[str, bool], list[str]] = {}
    for name, cls in registry().items():
        op = _default(cls)
        if isinstance(op, str):
            skipped.append({"name": name, "reason": op})
            continue
        kind = "global" if isinstance(op, GlobalOp) else "filter" if isinstance(op, Filter) else "map"
        if kind != "global" and not isinstance(op, (MapOp, Filter)):
            skipped.append({"name": name, "reason": f"unknown op kind {type(op).__mro__[1].__name__}"})
            continue
        group = _group(cls)
        stages.append(Stage(name, group, kind, [name]))
        by_group.setdefault((group, kind == "global"), []).append(name)
    for (group, is_global), names in by_group.items():
        if len(names) > 1:
            name = f"{group}:all" + ("-global" if is_global and (group, False) in by_group else "")
            stages.append(Stage(name, group, "global" if is_global else "chain", names))
    for name, ops in PEER_CHAINS.items():
        if all(op in by_group.get(("filters", False), []) for op in ops):
            stages.append(Stage(name, "filters", "chain", list(ops)))
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
    import importlib

    module, name = SIGNATURE_KERNEL
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        return f"{module}.{name} not available: {exc}"


def sketch_params() -> dict[str, Any]:
    """MinHash settings (num_perm, ngram, bands, rows, threshold, seed) of llmray's near-dup op.

    Peers and the signature kernel run with these, so every tool draws the same S-curve. The op's
    ``sketch_spec()`` gives the bands and rows it derives from its threshold; without a near-dup op,
    128 slots as 16 bands x 8 rows of word 5-grams.
    """
    from llmray.ops.base import registry

    params: dict[str, Any] = {"num_perm": 128, "ngram": 5, "bands": 16, "rows": 8, "seed": 0}
    name = near_dup_op()
    op = _default(registry()[name]) if name else None
    if op is not None and not isinstance(op, str):
        spec = op.sketch_spec() if hasattr(op, "sketch_spec") else op
        params.update({k: getattr(spec, k) for k in params if getattr(spec, k, None) is not None})
        params["threshold"] = getattr(op, "threshold", None)
    if params.get("threshold") is None:
        params["threshold"] = round((1 / params["bands"]) ** (1 / params["rows"]), 3)
    return params


def near_dup_op() -> str | None:
    """The registered op that removes near-duplicates (a global dedup op whose name says MinHash)."""
    from llmray.ops.base import GlobalOp, registry

    names = [n for n, c in registry().items() if issubclass(c, GlobalOp) and _group(c) == "dedup"]
    near = [n for n in names if "minhash" in n or "near" in n or "fuzzy" in n]
    return near[0] if near else None


# --- measuring one stage (child process) -----------------------------------------------------------


class StageSkipped(Exception):
    """The stage cannot run on this corpus (an op needs a column the corpus does not have)."""


def _batches(path: str) -> list:
    """The corpus as llmray's reader delivers it: Arrow batches of at most 8 MB / 8192 rows."""
    from llmray.config import InputSpec
    from llmray.io.readers import plan_chunks, read_chunk

    spec = InputSpec(paths=[path])
    return [b.table for chunk in plan_chunks(spec, 0) for b in read_chunk(chunk, spec) if b.table.num_rows]


def _apply(op: Any, table: Any) -> Any:
    from llmray.ops.base import Filter

    return op.split(table)[0] if isinstance(op, Filter) else op(table)


def _seeded(op: Any, r: int) -> Any:
    """The op with its seed moved by the repeat index, when it has one: accuracy then has a spread."""
    return dataclasses.replace(op, seed=op.seed + r) if "seed" in op.params() else op


class RowLocal:
    """A read, map, filter, chain or kernel stage as one function over a list of Arrow batches.

    Ops are built and set up once, then tried on a few rows: an op that refuses the corpus with a
    ``UserError`` (the URL filter without a ``url`` column) leaves the chain and is listed in
    ``excluded``; a stage left with no op is skipped.
    """

    def __init__(self, stage: dict[str, Any], probe: Any):
        from llmray.errors import UserError
        from llmray.ops.base import registry

        self.kind = stage["kind"]
        self.excluded: list[dict[str, str]] = []
        self.ops: list[Any] = []
        self.kernel = signature_kernel() if self.kind == "kernel" else None
        self.sketch = sketch_params() if self.kind == "kernel" else {}
        for name in stage["ops"]:
            op = registry()[name]()
            op.setup()
            try:
                _apply(op, probe.slice(0, 50))
            except UserError as exc:
                self.excluded.append({"name": name, "reason": str(exc)})
                continue
            self.ops.append(op)
        if stage["ops"] and not self.ops:
            raise StageSkipped("; ".join(f"{x['name']}: {x['reason']}" for x in self.excluded))

    def __call__(self, tables: list, r: int = 0) -> tuple[int, int]:
        """Run over ``tables``; return the documents and text bytes that come out."""
        out = []
        for table in tables:
            if self.kernel is not None:
                sketch = self.sketch
                self.kernel(table.column("text"), num_perm=sketch["num_perm"], ngram=sketch["ngram"],
                            seed=sketch["seed"] + r)
            for op in self.ops:
                table = _apply(op, table)
            out.append(table)
        return _count(out)


def _global(stage: dict[str, Any], batches: list, work: Path, truth_path: str | None) -> dict[str, Any]:
    """Run a global op, or a group's global ops in order, ``repeats`` times the way the runner does.

    Each op reads the parquet the previous one wrote, all share one output root (``tokenize`` finds
    the vocabulary ``train_tokenizer`` wrote there). Times per op and in total; removals scored
    against the truth when an op drops duplicates.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from llmray import cluster
    from llmray.ops.base import registry
    from llmray.pipeline.context import GlobalContext
    from llmray.pipeline.stats import text_bytes

    cluster.connect(None, 1)
    table = pa.concat_tables(batches).select(["id", "text", "source"])
    source, warm = work / "input", work / "warm"
    step = max(1, table.num_rows // 4)
    for k, start in enumerate(range(0, table.num_rows, step)):
        _write_parquet(table.slice(start, step), source / f"part-{k:05d}.parquet")
    _write_parquet(table.slice(0, min(200, table.num_rows)), warm / "part-00000.parquet")
    ids = set(table.column("id").to_pylist())
    truth = accuracy.load_truth(truth_path, ids) if truth_path else None
    ops = [registry()[name]() for name in stage["ops"]]
    for op in ops:
        op.setup()

    def run_all(input_dir: Path, tag: str, r: int) -> tuple[list[Any], list[float], Path]:
        root = work / tag
        shutil.rmtree(root, ignore_errors=True)
        results, seconds = [], []
        for k, op in enumerate(ops):
            ctx = GlobalContext(input_dir=input_dir, output_dir=root / f"out{k}",
                                work_dir=root / f"scratch{k}", output_root=root, rejects_dir=None, num_cpus=1)
            started = time.perf_counter()
            results.append(_seeded(op, r).run(ctx))
            seconds.append(time.perf_counter() - started)
            input_dir = ctx.output_dir
        return results, seconds, input_dir

    started = time.perf_counter()
    run_all(warm, "warmup", 0)
    warmup_s = round(time.perf_counter() - started, 3)
    totals, per_op, scores, results = [], [[] for _ in ops], [], []
    with measure.TreeMemory() as memory:
        for r in range(stage["repeats"]):
            results, seconds, final = run_all(source, f"run{r}", r)
            totals.append(sum(seconds))
            for k, t in enumerate(seconds):
                per_op[k].append(t)
            if truth is not None and any(_removes_duplicates(op) for op in ops):
                kept = pq.read_table(final, columns=["id"]).column("id").to_pylist() if final.exists() else []
                scores.append(accuracy.score(truth, ids - set(kept)))
    first, last = results[0], results[-1]
    nbytes = first.bytes_in or text_bytes(table)
    out = {"docs_in": first.docs_in, "bytes_in": nbytes, "docs_out": last.docs_out,
           **measure.rates(totals, first.docs_in, nbytes, 1), **memory.figures(),
           "peak_rss_mb": memory.figures()["peak_process_rss_mb"], "warmup_s": warmup_s,
           "ops": {op.name: _op_figures(res, seconds, nbytes)
                   for op, seconds, res in zip(ops, per_op, results, strict=True)}}
    if scores:
        out["accuracy"] = accuracy.summarize_scores(scores)
    return out


def _op_figures(result: Any, seconds: list[float], default_bytes: int) -> dict[str, Any]:
    """One op of a global stage: what went in, how fast, and the op's own details."""
    nbytes = result.bytes_in or default_bytes
    return {"docs_in": result.docs_in, "bytes_in": nbytes, "details": result.details,
            **measure.rates(seconds, result.docs_in, nbytes, 1)}


def _write_parquet(table: Any, path: Path) -> None:
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def _removes_duplicates(op: Any) -> bool:
    return any("dup" in reason for reason in getattr(op, "reasons", ()))


def _reread(path: str, tables: list, r: int) -> tuple[int, int]:
    """The read stage: the file to batches again (``tables`` only serve the other stages)."""
    return _count(_batches(path))


def _count(tables: list) -> tuple[int, int]:
    """(documents, text bytes) of a list of batches."""
    from llmray.pipeline.stats import text_bytes

    return sum(t.num_rows for t in tables), sum(text_bytes(t) for t in tables)


def _measure_row_local(run: Callable[[list, int], tuple[int, int]], batches: list, repeats: int) -> dict:
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
    """Measure one stage on each corpus, pinned to one core. Request: stage, corpora, repeats, work_dir.

    Result: ``{"status": "ok", "corpora": {name: figures}, "excluded": [...]}``, or status
    ``skipped`` with the reason when no op of the stage can run on the corpus.
    """
    measure.pin_to_cores(1)
    import pyarrow as pa

    from llmray.errors import UserError

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    stage = {**req["stage"], "repeats": req["repeats"]}
    results: dict[str, Any] = {}
    row_local = None
    for corpus in req["corpora"]:
        batches = _batches(corpus["path"])
        baseline = measure.rss_mb()
        if stage["kind"] == "global":
            with tempfile.TemporaryDirectory(dir=req["work_dir"]) as tmp:
                try:
                    figures = _global(stage, batches, Path(tmp), corpus.get("truth"))
                except UserError as exc:  # e.g. tokenize alone: its vocabulary comes from train_tokenizer
                    return {"status": "skipped", "reason": str(exc)}
        elif stage["kind"] == "read":
            figures = _measure_row_local(functools.partial(_reread, corpus["path"]), batches, req["repeats"])
        else:
            try:
                row_local = row_local or RowLocal(stage, batches[0])
            except StageSkipped as exc:
                return {"status": "skipped", "reason": str(exc)}
            figures = _measure_row_local(row_local, batches, req["repeats"])
        results[corpus["name"]] = {**figures, "baseline_rss_mb": baseline}
    return {"status": "ok", "corpora": results, "excluded": row_local.excluded if row_local else []}


if __name__ == "__main__":
    measure.child_main(measure_stage)
