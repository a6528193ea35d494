"""Runs a job: plan chunks, run segments of row-local ops as Ray tasks, global ops in between.

The steps are cut at every ``GlobalOp`` (deduplication, tokenization) into segments. A segment
runs one Ray Data task per input chunk (read -> ops -> sharded write), streaming, with a completion
marker per chunk; a global op reads the previous segment's parquet and writes its own. The driver
only ever holds per-chunk counters, never documents.

Output directory layout::

    data/        the kept documents (parquet or jsonl.gz shards)
    rejects/     dropped documents with their reason (when output.rejects)
    quarantine/  unreadable records with file, line and error
    stats.json   counts that reconcile: docs_in == docs_out + sum(dropped) + quarantined
    report.html  the same, readable, with plots
    job.json     the resolved job, for resume and for the record
    _progress/   completion markers;  _work/  intermediate data between segments
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from llmray.config import InputSpec, JobSpec
from llmray.errors import UserError
from llmray.io.readers import Chunk, plan_chunks
from llmray.io.writers import atomic_write_text, write_marker
from llmray.ops.base import GlobalOp, Op
from llmray.pipeline import stats as st
from llmray.pipeline.context import GlobalContext, GlobalResult
from llmray.pipeline.segment import SegmentPlan, run_chunk

OWNED = ("data", "rejects", "quarantine", "_progress", "_work", "clusters", "tokens", "tokenizer",
         "stats.json", "report.html", "job.json")


@dataclasses.dataclass
class RunOptions:
    address: str | None = None
    num_cpus: int | None = None
    overwrite: bool = False
    progress: bool = True


def run_job(spec: JobSpec, options: RunOptions | None = None) -> dict[str, Any]:
    """Run a job to completion (or resume it) and return its stats."""
    options = options or RunOptions()
    out = Path(spec.output.path)
    chunks = [c for i, inp in enumerate(spec.inputs) for c in plan_chunks(inp, i)]
    finished = _finished_stats(out, spec)
    if finished and not options.overwrite:
        return finished
    _prepare_output(out, spec, options.overwrite)
    from llmray import cluster

    startup_s = cluster.connect(options.address, options.num_cpus)
    started = time.perf_counter()
    started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    segments = _segments(spec.steps)
    total = st.new_counts()
    stage_order = ["read"]
    source: list[Chunk] = chunks
    work = out / "_work"
    global_details: dict[str, Any] = {}
    for k, (ops, global_op) in enumerate(segments):
        last = k == len(segments) - 1
        names = _stage_names(ops, stage_order)
        stage_order += names
        plan = SegmentPlan(
            index=k, ops=ops, stage_names=names,
            data_dir=out / "data" if last else work / f"s{k}",
            progress_dir=out / "_progress" / f"s{k}",
            quarantine_dir=out / "quarantine",
            rejects_dir=out / "rejects" if spec.output.rejects else None,
            output_format=spec.output.format if last else "parquet",
            shard_bytes=int(spec.output.shard_mb * (1 << 20)),
            inputs=spec.inputs if k == 0 else None,
            is_last=last,
        )
        counts = _run_segment(plan, source, options.progress, label=_label(k, ops, global_op))
        _fold_segment(total, counts, first=k == 0, last=last)
        if global_op is None:
            continue
        stage_order.append(global_op.name)
        result, g_counts = _run_global(global_op, k, plan.data_dir, out, spec, options)
        global_details[global_op.name] = result.details
        st.merge(total, g_counts)
        source = _parquet_chunks(work / f"g{k}", prefix=f"g{k}")
    wall_s = time.perf_counter() - started
    stats = _finish(total, stage_order, spec, wall_s, startup_s, started_at, global_details)
    shutil.rmtree(work, ignore_errors=True)
    return stats


def _segments(steps: list[Op]) -> list[tuple[list[Op], GlobalOp | None]]:
    """Cut the steps at each global op: [(row-local ops, the global op after them or None)]."""
    segments: list[tuple[list[Op], GlobalOp | None]] = []
    current: list[Op] = []
    for op in steps:
        if isinstance(op, GlobalOp):
            segments.append((current, op))
            current = []
        else:
            current.append(op)
    segments.append((current, None))
    return segments


def _stage_names(ops: list[Op], taken: list[str]) -> list[str]:
    names = []
    for op in ops:
        name, n = op.name, 2
        while name in taken or name in names:
            name, n = f"{op.name}#{n}", n + 1
        names.append(name)
    return names


def _label(k: int, ops: list[Op], global_op: GlobalOp | None) -> str:
    parts = [o.name for o in ops] or ["copy"]
    return f"segment {k + 1}: " + " > ".join(parts)


def _finished_stats(out: Path, spec: JobSpec) -> dict[str, Any] | None:
    """The stats of a completed run of this same job in ``out``, if there is one."""
    try:
        stats = json.loads((out / "stats.json").read_text())
    except (OSError, ValueError):
        return None
    return stats if stats.get("fingerprint") == spec.fingerprint() and stats.get("accounting_ok") else None


def _prepare_output(out: Path, spec: JobSpec, overwrite: bool) -> None:
    job_file = out / "job.json"
    if overwrite:
        for name in OWNED:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    elif job_file.exists():
        previous = json.loads(job_file.read_text()).get("fingerprint")
        if previous != spec.fingerprint():
            raise UserError(f"{out} holds the output of a different job; pass --overwrite to replace it, "
                            f"or choose another --output")
    elif out.is_dir() and any(out.iterdir()):
        leftovers = [p.name for p in out.iterdir() if p.name in OWNED]
        if leftovers:
            raise UserError(f"{out} already holds {', '.join(sorted(leftovers))} from another run; "
                            f"pass --overwrite to replace it, or choose another --output")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(job_file, json.dumps({"fingerprint": spec.fingerprint(), "job": spec.to_dict(),
                                            "job_file": spec.source_file}, indent=2, default=str))


def _run_segment(plan: SegmentPlan, chunks: list[Chunk], progress: bool, label: str) -> dict[str, Any]:
    """Run every chunk not yet marked complete; return the segment's summed counts."""
    total = st.new_counts()
    todo = []
    for chunk in chunks:
        marker = plan.marker(chunk)
        if marker.exists():
            st.merge(total, json.loads(marker.read_text()))
        else:
            todo.append(chunk)
    bar = _progress_bar(len(chunks), len(chunks) - len(todo), label, progress)
    if todo:
        import ray.data

        items = [{"chunk": dataclasses.asdict(c)} for c in todo]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        # The one map below is the whole plan: Ray Data's per-operator reservation (half the CPUs
        # kept for the input operator) would otherwise cap it at half the cluster. This dataset only.
        ds.context.op_resource_reservation_enabled = False
        ds = ds.map(_run_one, fn_args=(plan,), num_cpus=1)
        for row in ds.iter_rows():
            counts = json.loads(row["counts"])
            st.merge(total, counts)
            bar.update(1)
            bar.set_postfix_str(f"{total['docs_out']:,} kept / {total['docs_in']:,} read", refresh=False)
    bar.close()
    return total


def _run_one(row: dict[str, Any], plan: SegmentPlan) -> dict[str, Any]:
    import ray

    chunk = Chunk(**row["chunk"])
    node = ray.get_runtime_context().get_node_id()
    try:
        counts = run_chunk(chunk, plan, node_id=node)
    except Exception as exc:
        raise RuntimeError(f"{chunk.url} (chunk {chunk.key}): {type(exc).__name__}: {exc}") from exc
    return {"counts": json.dumps(counts)}


def _fold_segment(total: dict, counts: dict, first: bool, last: bool) -> None:
    """Add one segment's counts to the run's: input-side totals come from the first segment,
    output-side totals from the last, drops from all of them."""
    part = dict(counts)
    stages = dict(part.pop("stages"))
    if not first:
        for key in ("docs_in", "bytes_in", "quarantined", "length_in"):
            part.pop(key)
        _rename(stages, "read", "intermediate_io")
        part["sources"] = {k: {"docs_out": v["docs_out"], "bytes_out": v["bytes_out"]}
                           for k, v in part["sources"].items()}
    if not last:
        for key in ("docs_out", "bytes_out", "length_out"):
            part.pop(key)
        _rename(stages, "write", "intermediate_io")
        part["sources"] = {k: {"docs_in": v["docs_in"], "bytes_in": v["bytes_in"]}
                           for k, v in part["sources"].items()}
    part["stages"] = stages
    st.merge(total, part)


def _rename(stages: dict, old: str, new: str) -> None:
    if old in stages:
        value = stages.pop(old)
        if new in stages:
            st.merge(stages[new], value)
        else:
            stages[new] = value


def _run_global(op: GlobalOp, k: int, input_dir: Path, out: Path, spec: JobSpec,
                options: RunOptions) -> tuple[GlobalResult, dict]:
    from llmray import cluster

    marker = out / "_progress" / f"g{k}.json"
    output_dir = out / "_work" / f"g{k}"
    if marker.exists():
        saved = json.loads(marker.read_text())
        return GlobalResult(**saved["result"]), saved["counts"]
    shutil.rmtree(output_dir, ignore_errors=True)
    ctx = GlobalContext(
        input_dir=input_dir, output_dir=output_dir, work_dir=out / "_work" / f"g{k}-scratch",
        output_root=out, rejects_dir=out / "rejects" if spec.output.rejects else None,
        num_cpus=cluster.cpu_count(),
    )
    if options.progress:
        print(f"{op.name}: running over the whole corpus ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    result = op.run(ctx)
    wall_s = time.perf_counter() - started
    if result.docs_in != result.docs_out + sum(result.dropped.values()):
        raise RuntimeError(f"{op.name} lost documents: {result.docs_in} in, {result.docs_out} out, "
                           f"{sum(result.dropped.values())} dropped")
    counts: dict[str, Any] = {"dropped": dict(result.dropped), "dropped_bytes": {}, "stages": {op.name: {
        "docs_in": result.docs_in, "docs_out": result.docs_out, "bytes_in": result.bytes_in,
        "bytes_out": result.bytes_out, "wall_s": wall_s}}}
    if result.bytes_in and result.dropped:
        counts["dropped_bytes"] = {r: 0 for r in result.dropped}
        counts["dropped_bytes"][next(iter(result.dropped))] = result.bytes_in - result.bytes_out
    write_marker(marker, {"result": dataclasses.asdict(result), "counts": counts})
    return result, counts


def _parquet_chunks(directory: Path, prefix: str) -> list[Chunk]:
    """A global step's output as chunks for the next segment (keys unique across segments)."""
    files = sorted(directory.rglob("*.parquet")) if directory.is_dir() else []
    return [Chunk(key=f"{prefix}-{i:05d}", url=str(p), name=p.name, format="parquet", compression=None,
                  source="", input_index=0) for i, p in enumerate(files)]


def _finish(total: dict, stage_order: list[str], spec: JobSpec, wall_s: float, startup_s: float,
            started_at: str, global_details: dict) -> dict[str, Any]:
    out = Path(spec.output.path)
    order = [s for s in stage_order + ["intermediate_io", "write"] if s in total["stages"]]
    stats: dict[str, Any] = {
        "docs_in": total["docs_in"], "docs_out": total["docs_out"],
        "bytes_in": total["bytes_in"], "bytes_out": total["bytes_out"],
        "dropped": dict(sorted(total["dropped"].items())),
        "dropped_bytes": dict(sorted(total["dropped_bytes"].items())),
        "quarantined": total["quarantined"],
        "wall_s": round(wall_s, 3), "startup_s": round(startup_s, 3),
        "throughput_mb_s": round(total["bytes_in"] / max(wall_s, 1e-9) / 1e6, 3),
        "stages": [{"name": name, **{k: (round(v, 4) if isinstance(v, float) else v)
                                    for k, v in total["stages"][name].items()}} for name in order],
        "counters": total["counters"], "sources": total["sources"],
        "length_histogram": {"bins": "log2 of characters", "before": total["length_in"],
                             "after": total["length_out"]},
        "nodes": len(total["nodes"]), "num_cpus": _cpus(),
        "retries": total["retries"],
        "global_steps": global_details,
        "started_at": started_at, "job_file": spec.source_file, "fingerprint": spec.fingerprint(),
    }
    problem = st.check_accounting(stats)
    stats["accounting_ok"] = problem is None
    atomic_write_text(out / "stats.json", json.dumps(stats, indent=2))
    from llmray.pipeline.report import write_report

    write_report(stats, out / "report.html")
    if problem:
        raise RuntimeError(f"{problem}. This is a bug in llmray; stats.json holds the counts.")
    return stats


def _cpus() -> int:
    from llmray import cluster

    return cluster.cpu_count()


def _progress_bar(total: int, done: int, label: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc=label, unit="chunk", disable=not enabled or None,
                file=sys.stderr, dynamic_ncols=True, mininterval=0.5)


def inputs_from_paths(paths: list[str], template: InputSpec) -> list[InputSpec]:
    """``--input`` replaces the job's paths, keeping the first input's reading options."""
    return [dataclasses.replace(template, paths=list(paths))]

