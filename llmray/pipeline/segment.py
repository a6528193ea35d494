"""One unit of data through a segment of row-local steps: read, apply each step, write, count.

This is the body of a Ray task; it knows nothing of Ray. Steps run on whole Arrow batches. The
first segment reads the user's input (one planned chunk); a later one reads the shards that the
previous segment's marker for the same unit lists, numbering rows so that the appliers of global
decisions know which rows to drop. As the segment writes its kept rows it feeds the sidecars of
the global steps that follow (signatures, hashes), so those never read the text again.

The unit's marker, written last, holds its counts (a resumed run adds them up instead of redoing
the unit), every file the attempt wrote, and the sidecars' summaries: it is the commit.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llmray.decisions import ChunkContext, ready_sidecars
from llmray.io.batch import TOO_LARGE, ReadBatch
from llmray.io.readers import Chunk, read_chunk
from llmray.io.specs import InputSpec
from llmray.io.storage import Storage
from llmray.io.writers import JsonlWriter, ShardWriter, read_shard, scratch_writer
from llmray.kernels import arrow
from llmray.ops.base import KEEP, FilterStep, GlobalStep, MapStep, Step
from llmray.pipeline import stats as st
from llmray.schema import (
    DUPLICATE_OF,
    ID,
    REASON,
    ROW,
    TEXT,
    THRESHOLD,
    VALUE,
    per_source,
    row_bytes,
    text_bytes,
)

READ_BATCH_ROWS = 8192


@dataclasses.dataclass
class SegmentPlan:
    """What every unit task of one segment needs, shipped once per task."""

    index: int
    steps: list[Step]
    stage_names: list[str]
    output: Storage
    work: Storage
    #: The user's input (first segment), or None to read the previous segment's shards.
    inputs: list[InputSpec] | None
    previous: int | None
    #: Where the kept rows go: "output" (data/), "work" (intermediate) or None (nothing changes).
    writes: str | None
    output_format: str
    shard_bytes: int
    rejects: bool
    #: (stage name, step) of the global steps that follow, whose sidecars this segment feeds, cut
    #: into ``fine`` parts where they are exchanged. The time spent feeding them is the step's.
    sidecars: list[tuple[str, GlobalStep]]
    fine: int
    #: The last segment's kept rows are the run's output (docs_out, histogram, sources out).
    is_last: bool

    def marker(self, key: str) -> str:
        return marker_path(self.index, key)


def marker_path(segment: int, key: str) -> str:
    return f"_progress/s{segment}/{key}.json"


def sidecar_stem(segment: int, stage: str) -> str:
    """Where a global step after ``segment`` keeps its files (sidecars, scratch, progress)."""
    return f"g{segment}/{stage.replace('#', '-')}"


_SET_UP: dict[tuple, Step] = {}


def _ready(step: Step) -> Step:
    """The step with ``setup()`` done, once per worker process for equal parameters: Ray reuses a
    worker process for task after task, so a model loads once per worker."""
    key = (type(step), repr(sorted(step.params().items(), key=lambda kv: kv[0])))
    ready = _SET_UP.get(key)
    if ready is None:
        step.setup()
        ready = _SET_UP[key] = step
    return ready


def run_unit(key: str, index: int, chunk: Chunk | None, plan: SegmentPlan, node_id: str = "") -> dict[str, Any]:
    """Run one unit through the segment; return its marker (also written as the commit)."""
    attempt = uuid.uuid4().hex[:8]
    attempts = f"_progress/s{plan.index}/attempts/{key}"
    poisoned = _poisoned(plan.output, attempts)
    mine = f"{attempts}/{attempt}"
    plan.output.put(mine, b"")
    counts = st.new_counts()
    counts["nodes"] = [node_id] if node_id else []
    steps = [_ready(s) for s in plan.steps]
    ctx = ChunkContext(key=key, index=index, attempt=attempt, output=plan.output, work=plan.work)
    for step in steps:
        step.begin_chunk(ctx)
    prefix = f"{key}-{attempt}"
    target = plan.output if plan.writes == "output" else plan.work
    data = (ShardWriter(target, f"data/{prefix}", plan.output_format, plan.shard_bytes) if plan.writes == "output"
            else scratch_writer(target, f"s{plan.index}/{prefix}", plan.shard_bytes) if plan.writes else None)
    rejects = _Rejects(plan.output, prefix) if plan.rejects else None
    quarantine = JsonlWriter(plan.output, f"quarantine/{prefix}.jsonl")
    sidecars = ready_sidecars([(stage, step.sidecar(plan.fine)) for stage, step in plan.sidecars])
    written = written_bytes = 0
    for number, (batch, read_s) in enumerate(_timed(_batches(key, chunk, plan))):
        if number in poisoned:
            _set_aside(batch, poisoned[number], counts, quarantine, plan.inputs is not None, chunk)
            continue
        plan.output.put(mine, str(number).encode())  # the batch in the works, should the worker die
        table = batch.table
        if plan.inputs is not None:
            _count_read(counts, batch, read_s, chunk)
            quarantine.write(batch.quarantined)
        else:
            size = text_bytes(table)
            st.add_stage(counts, "intermediate_io", table.num_rows, table.num_rows, size, size, read_s)
        table = _apply_all(steps, plan.stage_names, table, counts, rejects)
        if ROW in table.column_names:
            table = table.drop_columns([ROW])
        for stage, sidecar in sidecars:
            started = time.perf_counter()
            sidecar.add(table, written)
            st.add_stage(counts, stage, 0, 0, 0, 0, time.perf_counter() - started)
        started = time.perf_counter()
        if data is not None:
            data.write(table)
        written += table.num_rows
        out_bytes = text_bytes(table)
        written_bytes += out_bytes
        st.add_stage(counts, "write" if plan.is_last else "intermediate_io", table.num_rows, table.num_rows,
                     out_bytes, out_bytes, time.perf_counter() - started)
        if plan.is_last:
            counts["docs_out"] += table.num_rows
            counts["bytes_out"] += out_bytes
            counts["length_out"] = st.merge(counts["length_out"], st.length_histogram(table))
            for name, docs, nbytes in per_source(table):
                source = _source(counts, name)
                source["docs_out"] += docs
                source["bytes_out"] += nbytes
    plan.output.put(mine, b"done")  # got through every batch: no crash to count, should it be retried
    files: dict[str, list[dict[str, Any]]] = {"output": [], "work": []}
    shards = data.close() if data is not None else []
    files["output" if plan.writes == "output" else "work"] += shards
    if rejects is not None:
        files["output"] += rejects.close()
    files["output"] += quarantine.close()
    products: dict[str, Any] = {}
    for step, stage in zip(steps, plan.stage_names, strict=True):
        made = step.end_chunk()
        files["output"] += made.pop("files", [])
        if made:
            products[stage] = made
    summaries = {}
    for stage, sidecar in sidecars:
        started = time.perf_counter()
        stem = sidecar_stem(plan.index, stage)
        summaries[stem] = sidecar.close(plan.work, f"{stem}/side/{prefix}")
        st.add_stage(counts, stage, 0, 0, 0, 0, time.perf_counter() - started)
    counts["retries"] = len(plan.output.listdir(attempts)) - 1
    marker = {"key": key, "attempt": attempt, "docs": written, "bytes": written_bytes, "counts": counts,
              "files": files,
              "shards": {"store": plan.writes, "files": shards} if plan.writes else None,
              "sidecars": summaries, "products": products}
    plan.output.put_json(plan.marker(key), marker)
    return marker


#: A batch that killed the worker this many times is set aside (quarantined) by the next attempt.
POISON_AFTER = 2


def _poisoned(output: Storage, attempts: str) -> dict[int, int]:
    """Batches that earlier attempts at this unit died on, at least POISON_AFTER times each."""
    crashes: dict[int, int] = {}
    for name in output.listdir(attempts):
        number = output.get(f"{attempts}/{name}").decode()
        if number.isdigit():
            crashes[int(number)] = crashes.get(int(number), 0) + 1
    return {b: n for b, n in crashes.items() if n >= POISON_AFTER}


def _set_aside(batch: ReadBatch, crashes: int, counts: dict, quarantine: JsonlWriter, first: bool,
               chunk: Chunk | None) -> None:
    """Quarantine every document of a batch that kept killing its worker, so the run can finish."""
    error = (f"the worker died {crashes} times on the batch holding this document (out of memory on a huge "
             f"document? a step that crashes on one?): set aside; lower input.max_doc_mb or fix the step")
    table = batch.table
    records = [{"file": chunk.url if chunk else "", "line": None, "rows": 1, "id": doc_id, "error": error,
                "raw": text[:500]}
               for doc_id, text in zip(table.column(ID).to_pylist(), table.column(TEXT).to_pylist(), strict=True)]
    if first:
        _count_read(counts, batch, 0.0, chunk)
        quarantine.write(batch.quarantined)
    counts["quarantined"] += table.num_rows
    quarantine.write(records)


def _batches(key: str, chunk: Chunk | None, plan: SegmentPlan) -> Iterator[ReadBatch]:
    if plan.inputs is not None:
        assert chunk is not None
        yield from read_chunk(chunk, plan.inputs[chunk.input_index])
        return
    assert plan.previous is not None
    previous = plan.output.get_json(marker_path(plan.previous, key))
    row = 0
    if previous["shards"] is None:
        raise RuntimeError(f"unit {key}: segment {plan.previous} wrote no data to read")
    store = plan.output if previous["shards"]["store"] == "output" else plan.work
    for shard in previous["shards"]["files"]:
        for table in read_shard(store, shard["path"], batch_rows=READ_BATCH_ROWS):
            rows = arrow.from_numpy(np.arange(row, row + table.num_rows, dtype=np.int64))
            row += table.num_rows
            yield ReadBatch(table.append_column(ROW, rows), [], [])


def _count_read(counts: dict, batch: ReadBatch, read_s: float, chunk: Chunk | None) -> None:
    table = batch.table
    n_read = table.num_rows + len(batch.too_large) + sum(q["rows"] for q in batch.quarantined)
    size_in = text_bytes(table) + sum(size for _, size in batch.too_large)
    counts["docs_in"] += n_read
    counts["bytes_in"] += size_in
    counts["quarantined"] += n_read - table.num_rows - len(batch.too_large)
    st.add_dropped(counts, TOO_LARGE, len(batch.too_large), sum(size for _, size in batch.too_large))
    st.add_stage(counts, "read", n_read, table.num_rows, size_in, text_bytes(table), read_s)
    counts["length_in"] = st.merge(counts["length_in"], st.length_histogram(table))
    source = _source(counts, chunk.source if chunk else "")
    source["docs_in"] += n_read
    source["bytes_in"] += size_in


def _timed(batches: Iterator[ReadBatch]) -> Iterator[tuple[ReadBatch, float]]:
    while True:
        started = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            return
        yield batch, time.perf_counter() - started


class _Rejects:
    """Dropped documents, one folder per step (``rejects/<step>/``): each step sees the columns of
    its point in the pipeline, so a folder's shards share one schema."""

    def __init__(self, output: Storage, prefix: str):
        self.output, self.prefix = output, prefix
        self.writers: dict[str, ShardWriter] = {}

    def write(self, stage: str, table: pa.Table) -> None:
        if stage not in self.writers:
            self.writers[stage] = ShardWriter(self.output, f"rejects/{stage.replace('#', '-')}/{self.prefix}")
        self.writers[stage].write(table)

    def close(self) -> list[dict[str, Any]]:
        return [shard for writer in self.writers.values() for shard in writer.close()]


#: A run of filters takes the kept rows once, at its end, or sooner once this share of the batch's
#: rows is dropped: the filters after that would judge too many rows that are already gone.
MAX_PENDING_DROPS = 0.05


def _apply_all(steps: list[Step], stages: list[str], table: pa.Table, counts: dict,
               rejects: _Rejects | None) -> pa.Table:
    """Each step on the batch in turn. Consecutive filters share one copy of it: each marks the
    rows it drops, and the kept rows are taken after the last of them."""
    gone = None
    for k, (step, stage) in enumerate(zip(steps, stages, strict=True)):
        if isinstance(step, FilterStep):
            take = k + 1 == len(steps) or not isinstance(steps[k + 1], FilterStep)
            table, gone = _filter(step, stage, table, gone, take, counts, rejects)
        else:
            table = _apply(step, stage, table, counts, rejects)
    return table


def _filter(step: FilterStep, stage: str, table: pa.Table, gone: np.ndarray | None, take: bool, counts: dict,
            rejects: _Rejects | None) -> tuple[pa.Table, np.ndarray | None]:
    """One filter on the rows not yet ``gone``: (the batch, the rows gone so far), or (the kept rows,
    None) where the run's kept rows are taken."""
    started = time.perf_counter()
    sizes = row_bytes(table)
    alive = None if gone is None else ~gone
    n_in = table.num_rows if alive is None else int(alive.sum())
    size_in = int(sizes.sum() if alive is None else sizes[alive].sum())
    n_out, size_out = n_in, size_in
    if n_in:
        table, verdict = step.decide(table)
        drop = verdict.codes != KEEP
        if alive is not None:
            drop &= alive
        if drop.any():
            _drop(step, stage, step.dropped_rows(table, verdict, drop), verdict.codes[drop], counts, rejects)
            gone = drop if gone is None else gone | drop
            n_out, size_out = n_out - int(drop.sum()), size_out - int(sizes[drop].sum())
    if gone is not None and (take or gone.mean() > MAX_PENDING_DROPS):
        table, gone = table.filter(arrow.from_numpy(~gone)), None
    st.add_stage(counts, stage, n_in, n_out, size_in, size_out, time.perf_counter() - started)
    return table, gone


def _apply(step: Step, stage: str, table: pa.Table, counts: dict, rejects: _Rejects | None) -> pa.Table:
    started = time.perf_counter()
    size_in = text_bytes(table)
    n_in = table.num_rows
    if not isinstance(step, MapStep):
        raise TypeError(f"{step.name}: {type(step).__name__} cannot run inside a segment")
    out = table
    if n_in:
        out, codes = step.map_rows(table)
        if codes is not None:
            keep = arrow.from_numpy(codes == KEEP)
            out = out.filter(keep)
            _drop(step, stage, table.filter(pc.invert(keep)), codes[codes != KEEP], counts, rejects)
        for key, value in step.counters().items():
            bucket = counts["counters"].setdefault(stage, {})
            bucket[key] = bucket.get(key, 0) + value
    st.add_stage(counts, stage, n_in, out.num_rows, size_in, text_bytes(out), time.perf_counter() - started)
    return out


def _drop(step: FilterStep | MapStep, stage: str, dropped: pa.Table, codes: np.ndarray, counts: dict,
          rejects: _Rejects | None) -> None:
    """Count dropped rows by reason and keep them in rejects/: reason, duplicate_of (dedup), and
    the value and threshold of the rule that decided (threshold rules), null where they do not apply."""
    if dropped.num_rows == 0:
        return
    names = np.array(step.reason_names(), dtype=object)[codes]
    sizes = row_bytes(dropped)
    for reason in np.unique(names):
        pick = names == reason
        st.add_dropped(counts, str(reason), int(pick.sum()), int(sizes[pick].sum()))
    if rejects is not None:
        gone = dropped.drop_columns([c for c in (ROW, REASON) if c in dropped.column_names])
        for name, kind in ((DUPLICATE_OF, pa.string()), (VALUE, pa.float64()), (THRESHOLD, pa.float64())):
            if name not in gone.column_names:  # one schema for every step's rejects
                gone = gone.append_column(name, pa.nulls(gone.num_rows, kind))
        rejects.write(stage, gone.append_column(REASON, arrow.strings(names.tolist())))


def _source(counts: dict, name: str) -> dict[str, int]:
    return counts["sources"].setdefault(name, {"docs_in": 0, "docs_out": 0, "bytes_in": 0, "bytes_out": 0})
