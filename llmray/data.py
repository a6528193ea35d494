"""llmray inside your own Ray Data pipelines: its readers, steps and writers on ``ray.data.Dataset``.

    import ray, llmray.data as ld
    from llmray.ops import CleanWhitespace, GopherQuality, MinhashDedup

    ds = ld.read("data/quickstart/*.jsonl.gz", quarantine="out/quarantine")   # id, text, source
    ds = ds.map_batches(CleanWhitespace(), batch_format="pyarrow")             # any step is a batch function
    ds = ds.map_batches(GopherQuality(annotate=True), batch_format="pyarrow")  # keep all, say why in `reason`
    ds = ld.apply(ds, MinhashDedup(), work_dir="out/work", annotate=True)      # global steps: Dataset -> Dataset
    counts = ld.write(ds, "out/api")                                           # data/, rejects/, stats.json

``read`` is a Ray Datasource over llmray's readers (the same planned units, the same quarantine of
bad records with file and line); ``write`` a Datasink with llmray's shard writer (rows that carry a
``reason`` go to ``rejects/<step>/``, the others to ``data/``). ``apply`` takes any step or list of
steps; a global step materializes the dataset once in ``work_dir`` while its sidecar (signatures,
hashes) is gathered, decides with tasks on the cluster, and returns a dataset that reads the kept
rows back (``annotate=True``: every row, with the drop reason and ``duplicate_of``). The work
directory must outlive the returned dataset. The ``llmray run`` runner is built from the same
pieces (readers, steps, sidecars, decisions, writers), with units it can resume.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray.data
from ray.data.block import BlockAccessor, BlockMetadata
from ray.data.datasource import Datasink, Datasource, ReadTask

from llmray.decisions import ChunkContext, Decision, GlobalContext, Unit, ready_sidecars
from llmray.io.readers import Chunk, plan_chunks, read_chunk
from llmray.io.specs import InputSpec
from llmray.io.storage import Storage
from llmray.io.writers import JsonlWriter, ShardWriter, read_shard, scratch_writer
from llmray.ops.base import FilterStep, GlobalStep, Step
from llmray.pipeline import stats as st
from llmray.pipeline.engine import Engine
from llmray.pipeline.plan import plan_segments
from llmray.pipeline.segment import sidecar_stem
from llmray.schema import REASON, ROW, text_bytes

__all__ = ["read", "write", "apply"]


# -- read ----------------------------------------------------------------------------------------

def read(paths: str | Sequence[str], *, quarantine: str | None = None, **options: Any) -> ray.data.Dataset:
    """Documents (``id``, ``text``, ``source`` and ``keep_fields``) as a Ray Dataset. ``options`` are
    the job file's ``input`` keys (format, text_field, id_field, source, keep_fields, max_doc_mb,
    chunk_mb, storage_options); records that cannot be read go to ``quarantine`` (a directory or
    URL), one JSON line each with file, line and error, or are only counted when it is None."""
    spec = InputSpec(paths=[paths] if isinstance(paths, str) else list(paths), **options)
    return ray.data.read_datasource(CorpusSource(spec, Storage(quarantine) if quarantine else None))


class CorpusSource(Datasource):
    """One read task per planned unit of the input (see :func:`llmray.io.readers.plan_chunks`)."""

    def __init__(self, spec: InputSpec, quarantine: Storage | None):
        self.spec, self.quarantine = spec, quarantine
        self.chunks, _ = plan_chunks([spec], _cpus())

    def estimate_inmemory_data_size(self) -> int:
        return sum(c.est_bytes for c in self.chunks)

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: Any = None) -> list[ReadTask]:
        return [ReadTask(functools.partial(_read_unit, chunk, self.spec, self.quarantine),
                         BlockMetadata(num_rows=None, size_bytes=chunk.est_bytes, exec_stats=None,
                                       input_files=tuple(p.url for p in chunk.pieces)),
                         per_task_row_limit=per_task_row_limit)
                for chunk in self.chunks]

    def get_name(self) -> str:
        return "llmray"


def _read_unit(chunk: Chunk, spec: InputSpec, quarantine: Storage | None) -> Iterator[pa.Table]:
    bad = JsonlWriter(quarantine, f"{chunk.key}-{uuid.uuid4().hex[:8]}.jsonl") if quarantine else None
    for batch in read_chunk(chunk, spec):
        if bad is not None:
            bad.write(batch.quarantined + [{"id": i, "error": f"read.too_large: {size} bytes", "rows": 1}
                                           for i, size in batch.too_large])
        if batch.table.num_rows:
            yield batch.table
    if bad is not None:
        bad.close()


# -- write ---------------------------------------------------------------------------------------

def write(ds: ray.data.Dataset, path: str, *, format: str = "parquet", shard_mb: float = 128.0,  # noqa: A002
          storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``ds`` as llmray writes a run: rows without a ``reason`` to ``data/``, the others to
    ``rejects/<step>/``; ``stats.json`` gets the counts (documents, bytes, drops per reason)."""
    sink = CorpusSink(Storage(path, storage_options), format, int(shard_mb * (1 << 20)))
    ds.write_datasink(sink)
    return sink.counts


class CorpusSink(Datasink):
    def __init__(self, output: Storage, fmt: str, shard_bytes: int):
        self.output, self.fmt, self.shard_bytes = output, fmt, shard_bytes
        self.counts: dict[str, Any] = {}

    def on_write_start(self, schema: Any = None) -> None:
        self.output.probe()

    def write(self, blocks: Iterable[Any], ctx: Any) -> dict[str, Any]:
        prefix = f"w{ctx.task_idx:05d}-{uuid.uuid4().hex[:8]}"
        data = ShardWriter(self.output, f"data/{prefix}", self.fmt, self.shard_bytes)
        rejects: dict[str, ShardWriter] = {}
        counts = {"docs": 0, "docs_out": 0, "bytes": 0, "bytes_out": 0, "dropped": {}}
        for block in blocks:
            table = BlockAccessor.for_block(block).to_arrow()
            counts["docs"] += table.num_rows
            counts["bytes"] += text_bytes(table)
            if REASON not in table.column_names:
                kept = table
            else:
                live = table.column(REASON).is_null()
                kept = table.filter(live).drop_columns([REASON])
                gone = table.filter(pc.invert(live))
                for reason in pc.unique(gone.column(REASON)).to_pylist():
                    rows = gone.filter(pc.equal(gone.column(REASON), reason))
                    counts["dropped"][reason] = counts["dropped"].get(reason, 0) + rows.num_rows
                    folder = reason.split(".", 1)[0]
                    if folder not in rejects:
                        rejects[folder] = ShardWriter(self.output, f"rejects/{folder}/{prefix}")
                    rejects[folder].write(rows)
            data.write(kept)
            counts["docs_out"] += kept.num_rows
            counts["bytes_out"] += text_bytes(kept)
        counts["files"] = [f["path"] for f in data.close()] + [f["path"] for w in rejects.values() for f in w.close()]
        return counts

    def on_write_complete(self, write_result: Any) -> None:
        total: dict[str, Any] = {"docs": 0, "docs_out": 0, "bytes": 0, "bytes_out": 0, "dropped": {}, "files": []}
        for part in write_result.write_returns:
            st.merge(total, part)
        total["files"] = sorted(total["files"])
        self.counts = {"docs_in": total["docs"], "docs_out": total["docs_out"], "bytes_in": total["bytes"],
                       "bytes_out": total["bytes_out"], "dropped": total["dropped"], "files": total["files"]}
        self.output.put_json("stats.json", self.counts)


# -- apply ---------------------------------------------------------------------------------------

#: Parts the sidecars are cut into when the data's size is not known before it is computed: enough
#: for exchanges of up to ~64 GB (use the runner, which plans them from the input, beyond that).
FINE_PARTS = 1024


def apply(ds: ray.data.Dataset, steps: Step | Sequence[Step], *, work_dir: str | None = None,
          storage_options: dict[str, Any] | None = None, annotate: bool = False) -> ray.data.Dataset:
    """``ds`` through llmray steps. Maps and filters become ``map_batches``; each run of global
    steps materializes the data once in ``work_dir`` and returns the kept rows (or, with
    ``annotate``, all rows with ``reason`` and ``duplicate_of`` where a global step drops them)."""
    steps = [steps] if isinstance(steps, Step) else list(steps)
    work = Storage(work_dir or f"/tmp/llmray-work-{uuid.uuid4().hex[:8]}", storage_options)
    for segment in plan_segments(steps):
        for _, step in segment.steps:
            ds = ds.map_batches(step, batch_format="pyarrow")
        if segment.group:
            ds = _global(ds, segment.index, segment.group, work, annotate)
    return ds


def _global(ds: ray.data.Dataset, group: int, steps: list[tuple[str, GlobalStep]], work: Storage,
            annotate: bool) -> ray.data.Dataset:
    """Materialize ``ds`` with the group's sidecars, decide each step, read back with the decisions."""
    work.probe()
    root = work.child(f"group-{group}-{uuid.uuid4().hex[:8]}")
    stems = [sidecar_stem(group, name) for name, _ in steps]
    fine = FINE_PARTS
    sink = _UnitSink(root, [(stem, step) for stem, (_, step) in zip(stems, steps, strict=True)], fine)
    ds.write_datasink(sink)
    units, starts = [], 0
    for marker in sink.markers:
        units.append((marker, starts))
        starts += marker["docs"]
    engine = Engine(_cpus())
    decisions: list[Decision] = []
    for stem, (name, step) in zip(stems, steps, strict=True):
        summary: dict[str, Any] = {}
        for marker, _ in units:
            st.merge(summary, {k: v for k, v in marker["sidecars"][stem].items() if k != "path"})
        ctx = GlobalContext(
            name=step.name, stage=name, engine=engine, data=root, work_dir=stem, output=root,
            units=[Unit(i, m["key"], m["docs"], s, f"markers/{m['key']}.json", f"{stem}/side/{m['key']}")
                   for i, (m, s) in enumerate(units)],
            num_cpus=engine.num_cpus, summary={**summary, "fine": fine}, earlier=list(decisions))
        decisions.append(step.decide(ctx))
    appliers = [step.applier(d) for (_, step), d in zip(steps, decisions, strict=True)]
    appliers = [a for a in appliers if a is not None]
    return ray.data.read_datasource(_UnitsSource(root, [m for m, _ in units], appliers, annotate))


class _UnitSink(Datasink):
    """Writes each task's rows as a unit (shards and sidecars) and returns its marker."""

    def __init__(self, root: Storage, sidecars: list[tuple[str, GlobalStep]], fine: int):
        self.root, self.sidecars, self.fine = root, sidecars, fine
        self.markers: list[dict[str, Any]] = []

    def write(self, blocks: Iterable[Any], ctx: Any) -> dict[str, Any]:
        key = f"u{ctx.task_idx:06d}-{uuid.uuid4().hex[:8]}"
        data = scratch_writer(self.root, f"data/{key}")
        sidecars = ready_sidecars([(stem, step.sidecar(self.fine)) for stem, step in self.sidecars])
        rows = 0
        for block in blocks:
            table = BlockAccessor.for_block(block).to_arrow()
            for _, sidecar in sidecars:
                sidecar.add(table, rows)
            data.write(table)
            rows += table.num_rows
        closed = {stem: s.close(self.root, f"{stem}/side/{key}") for stem, s in sidecars}
        marker = {"key": key, "docs": rows, "shards": {"store": "output", "files": data.close()},
                  "sidecars": {stem: closed.get(stem, {}) for stem, _ in self.sidecars}}
        self.root.put_json(f"markers/{key}.json", marker)
        return marker

    def on_write_complete(self, write_result: Any) -> None:
        self.markers = [m for m in write_result.write_returns if m["docs"]]


class _UnitsSource(Datasource):
    """Reads the units back through the appliers of the group's decisions."""

    def __init__(self, root: Storage, markers: list[dict[str, Any]], appliers: list[FilterStep], annotate: bool):
        self.root, self.markers, self.appliers, self.annotate = root, markers, appliers, annotate

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: Any = None) -> list[ReadTask]:
        return [ReadTask(functools.partial(_read_back, self.root, index, marker, self.appliers, self.annotate),
                         BlockMetadata(num_rows=marker["docs"], size_bytes=None, exec_stats=None, input_files=None),
                         per_task_row_limit=per_task_row_limit)
                for index, marker in enumerate(self.markers)]


def _read_back(root: Storage, index: int, marker: dict[str, Any], appliers: list[FilterStep],
               annotate: bool) -> Iterator[pa.Table]:
    ctx = ChunkContext(key=marker["key"], index=index, attempt="", output=root, work=root)
    for applier in appliers:
        applier.begin_chunk(ctx)
    row = 0
    for shard in marker["shards"]["files"]:
        for table in read_shard(root, shard["path"], batch_rows=8192):
            table = table.append_column(ROW, pa.array(np.arange(row, row + table.num_rows, dtype=np.int64)))
            row += table.num_rows
            for applier in appliers:
                table = _mark(applier, table) if annotate else applier.split(table)[0]
            yield table.drop_columns([ROW])


def _mark(applier: FilterStep, table: pa.Table) -> pa.Table:
    """Keep every row; the ones the decision drops get its reason (and what the applier adds)."""
    kept, dropped, codes = applier.split(table.filter(table.column(REASON).is_null())
                                         if REASON in table.column_names else table)
    names = np.array(applier.reason_names(), dtype=object)[codes]
    dropped = dropped.drop_columns([REASON]) if REASON in dropped.column_names else dropped
    dropped = dropped.append_column(REASON, pa.array(names.tolist(), pa.string()))
    done = table.filter(table.column(REASON).is_valid()) if REASON in table.column_names else None
    if REASON not in kept.column_names:
        kept = kept.append_column(REASON, pa.nulls(kept.num_rows, pa.string()))
    parts = [kept, dropped] + ([done] if done is not None and done.num_rows else [])
    return pa.concat_tables(parts, promote_options="default")


def _cpus() -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1))) if ray.is_initialized() else 1
