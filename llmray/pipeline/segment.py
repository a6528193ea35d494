"""One chunk through a segment of row-local ops: read, apply each op, write, count.

This is the body of a Ray task; it knows nothing of Ray. Ops run on whole Arrow batches; the only
per-row work in Python is the JSON parse in the reader. The returned counts are also written as the
chunk's completion marker, so a resumed run can skip the chunk and still report exact totals.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from llmray.config import InputSpec
from llmray.io.readers import TOO_LARGE, Chunk, ReadBatch, read_chunk
from llmray.io.writers import JsonlWriter, ShardWriter, atomic_write_text, remove_partial, write_marker
from llmray.ops.base import SOURCE, TEXT, Filter, MapOp, Op
from llmray.pipeline import stats as st


@dataclasses.dataclass
class SegmentPlan:
    """What every chunk task of one segment needs, shipped once per task."""

    index: int
    ops: list[Op]
    stage_names: list[str]
    data_dir: Path
    progress_dir: Path
    quarantine_dir: Path
    rejects_dir: Path | None
    output_format: str
    shard_bytes: int
    #: The first segment reads the user's input (and counts docs_in); later ones read our parquet.
    inputs: list[InputSpec] | None
    #: The last segment's output is the run's output (docs_out, length histogram after).
    is_last: bool

    def marker(self, chunk: Chunk) -> Path:
        return self.progress_dir / f"{chunk.key}.json"


_SET_UP: dict[int, list[Op]] = {}


def _ready_ops(plan: SegmentPlan) -> list[Op]:
    """Ops with ``setup()`` done, once per worker process and segment: Ray reuses a worker process
    for task after task, so a model loads once per worker."""
    key = plan.index
    if key not in _SET_UP or [o.params() for o in _SET_UP[key]] != [o.params() for o in plan.ops]:
        for op in plan.ops:
            op.setup()
        _SET_UP[key] = plan.ops
    return _SET_UP[key]


def run_chunk(chunk: Chunk, plan: SegmentPlan, node_id: str = "") -> dict[str, Any]:
    outputs = [plan.data_dir, plan.quarantine_dir] + ([plan.rejects_dir] if plan.rejects_dir else [])
    remove_partial(outputs, chunk.key)
    counts = st.new_counts()
    counts["nodes"] = [node_id] if node_id else []
    counts["retries"] = _count_attempt(plan.progress_dir / f"{chunk.key}.attempts")
    ops = _ready_ops(plan)
    data = ShardWriter(plan.data_dir, chunk.key, plan.output_format, plan.shard_bytes)
    rejects = ShardWriter(plan.rejects_dir, chunk.key, "parquet") if plan.rejects_dir else None
    quarantine = JsonlWriter(plan.quarantine_dir / f"{chunk.key}.jsonl")
    for batch, read_s in _timed(_batches(chunk, plan)):
        table = batch.table
        n_read = table.num_rows + len(batch.too_large) + sum(q["rows"] for q in batch.quarantined)
        size_in = st.text_bytes(table) + sum(size for _, size in batch.too_large)
        counts["docs_in"] += n_read
        counts["bytes_in"] += size_in
        counts["quarantined"] += n_read - table.num_rows - len(batch.too_large)
        st.add_dropped(counts, TOO_LARGE, len(batch.too_large), sum(size for _, size in batch.too_large))
        st.add_stage(counts, "read", n_read, table.num_rows, size_in, st.text_bytes(table), read_s)
        quarantine.write(batch.quarantined)
        if plan.inputs is not None:
            counts["length_in"] = st.merge(counts["length_in"], st.length_histogram(table))
            source = _source(counts, chunk.source)
            source["docs_in"] += n_read
            source["bytes_in"] += size_in
        for op, stage in zip(ops, plan.stage_names, strict=True):
            table = _apply(op, stage, table, counts, rejects)
        started = time.perf_counter()
        data.write(table)
        out_bytes = st.text_bytes(table)
        st.add_stage(counts, "write", table.num_rows, table.num_rows, out_bytes, out_bytes,
                     time.perf_counter() - started)
        counts["docs_out"] += table.num_rows
        counts["bytes_out"] += out_bytes
        if plan.is_last:
            counts["length_out"] = st.merge(counts["length_out"], st.length_histogram(table))
            for name, docs, nbytes in _per_source(table):
                source = _source(counts, name)
                source["docs_out"] += docs
                source["bytes_out"] += nbytes
    data.close()
    if rejects:
        rejects.close()
    quarantine.close()
    write_marker(plan.marker(chunk), counts)
    return counts


def _count_attempt(path: Path) -> int:
    """Record one more attempt at a chunk; return how many earlier attempts did not finish."""
    earlier = int(path.read_text()) if path.exists() else 0
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, str(earlier + 1))
    return earlier


def _batches(chunk: Chunk, plan: SegmentPlan) -> Iterator[ReadBatch]:
    if plan.inputs is not None:
        yield from read_chunk(chunk, plan.inputs[chunk.input_index])
        return
    for batch in pq.ParquetFile(chunk.url).iter_batches(batch_size=8192, use_threads=False):
        yield ReadBatch(pa.Table.from_batches([batch]), [], [])


def _timed(batches: Iterator[ReadBatch]) -> Iterator[tuple[ReadBatch, float]]:
    while True:
        started = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            return
        yield batch, time.perf_counter() - started


def _apply(op: Op, stage: str, table: pa.Table, counts: dict, rejects: ShardWriter | None) -> pa.Table:
    started = time.perf_counter()
    size_in = st.text_bytes(table)
    n_in = table.num_rows
    if n_in == 0:
        out = table
    elif isinstance(op, Filter):
        out, dropped, codes = op.split(table)
        if dropped.num_rows:
            names = np.array(op.reason_names(), dtype=object)[codes]
            sizes = _row_bytes(dropped)
            for reason in np.unique(names):
                pick = names == reason
                st.add_dropped(counts, str(reason), int(pick.sum()), int(sizes[pick].sum()))
            if rejects is not None:
                rejects.write(dropped.append_column("reason", pa.array(names.tolist(), pa.string())))
    elif isinstance(op, MapOp):
        out = op(table)
        if out.num_rows != n_in:
            raise RuntimeError(f"{op.name} is a map step but changed the row count ({n_in} -> {out.num_rows})")
        for key, value in op.counters().items():
            bucket = counts["counters"].setdefault(stage, {})
            bucket[key] = bucket.get(key, 0) + value
    else:
        raise TypeError(f"{op.name}: {type(op).__name__} cannot run inside a segment")
    st.add_stage(counts, stage, n_in, out.num_rows, size_in, st.text_bytes(out), time.perf_counter() - started)
    return out


def _row_bytes(table: pa.Table) -> np.ndarray:
    return pc.binary_length(table.column(TEXT)).to_numpy(zero_copy_only=False)


def _source(counts: dict, name: str) -> dict[str, int]:
    return counts["sources"].setdefault(name, {"docs_in": 0, "docs_out": 0, "bytes_in": 0, "bytes_out": 0})


def _per_source(table: pa.Table) -> list[tuple[str, int, int]]:
    """(source, documents, text bytes) of a batch, grouped in Arrow."""
    if table.num_rows == 0:
        return []
    sized = pa.table({SOURCE: table.column(SOURCE), "n": pc.binary_length(table.column(TEXT))})
    grouped = sized.group_by(SOURCE).aggregate([("n", "count"), ("n", "sum")]).to_pydict()
    return list(zip(grouped[SOURCE], grouped["n_count"], grouped["n_sum"], strict=True))
