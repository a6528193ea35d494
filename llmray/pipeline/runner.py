"""Runs a job: plan the units, run each segment as one task per unit, decide the global steps between.

The steps are cut into segments at the global steps (see :mod:`llmray.pipeline.plan`). A segment
runs one task per unit (read -> steps -> sharded write, streaming, with a commit marker per unit)
through the engine; a global step decides from what the segment before it gathered and the next
segment applies the decision, so the corpus is written at most twice: once between the segments
around the global steps, once into ``data/``. The driver holds one entry per unit (its key and
document count) and the running totals, never documents.

Output layout (a local directory or any fsspec URL)::

    data/        the kept documents (parquet or jsonl.gz shards)
    rejects/     dropped documents with their reason (when output.rejects)
    quarantine/  unreadable records with file, line and error
    clusters/    duplicate clusters (with write_clusters);  tokens/, tokenizer/ (tokenize steps)
    stats.json   counts that reconcile: docs_in == docs_out + sum(dropped) + quarantined
    report.html  the same, readable, with plots
    job.json     the resolved job, for resume and for the record
    _progress/   the plan, one commit marker per unit and segment, global decisions
    _work/       intermediate data between segments and global-step scratch (or --work-dir)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
import sys
import time
from typing import Any

from llmray.config import JobSpec
from llmray.decisions import Decision, GlobalContext, Unit
from llmray.errors import UserError
from llmray.io.readers import Chunk, list_inputs, plan_chunks
from llmray.io.specs import InputSpec
from llmray.io.storage import Storage
from llmray.ops.base import GlobalStep
from llmray.pipeline import outdir
from llmray.pipeline import stats as st
from llmray.pipeline.card import write_dataset_card
from llmray.pipeline.engine import Engine
from llmray.pipeline.plan import Segment, fine_parts, plan_segments
from llmray.pipeline.report import write_report
from llmray.pipeline.segment import SegmentPlan, marker_path, run_unit, sidecar_stem

PLAN = "_progress/plan.json"


@dataclasses.dataclass
class RunOptions:
    address: str | None = None
    num_cpus: int | None = None
    overwrite: bool = False
    progress: bool = True
    max_retries: int = 3
    #: Ray's own messages in the terminal too (otherwise they stay in its log files).
    verbose: bool = False


@dataclasses.dataclass
class _UnitState:
    key: str
    docs: int
    #: Text bytes the unit passes on to the next segment.
    bytes: int
    attempt: str
    files: list[str]


def run_job(spec: JobSpec, options: RunOptions | None = None) -> dict[str, Any]:
    """Run a job to completion (or resume it) and return its stats."""
    options = options or RunOptions()
    output = Storage(spec.output.path, spec.output.storage_options)
    # A work location of the user's own may serve several runs: each job gets a folder of its own.
    work = (Storage(spec.output.work_dir, spec.output.storage_options).child(f"llmray-{spec.fingerprint()}")
            if spec.output.work_dir else output.child("_work"))
    outdir.check_location(output, [p for i in spec.inputs for p in i.paths])
    output.probe()
    if spec.output.work_dir:
        work.probe()
    listings = list_inputs(spec.inputs)
    finished = _finished_stats(output, spec, _listing(listings), options.progress)
    if finished and not options.overwrite:
        if options.progress:
            print(f"{output.url} already holds this job's finished output: nothing to do "
                  f"(--overwrite runs it again)", file=sys.stderr)
        return {**finished, "already_complete": True}
    lease = outdir.Lease(output)
    lease.claim()
    try:
        _check_output(output, spec, options.overwrite)
        return _run(spec, options, output, work, listings, lease)
    finally:
        lease.release()


def _run(spec: JobSpec, options: RunOptions, output: Storage, work: Storage, listings: list,
         lease: outdir.Lease) -> dict[str, Any]:
    from llmray import cluster, kernels

    startup_s = cluster.connect(options.address, options.num_cpus, options.verbose)
    lease.confirm()  # after Ray's start-up, which takes longer than the lease needs to settle
    _prepare_output(output, work, spec, options.overwrite)
    if options.progress and cluster.log_dir() and not options.verbose:
        print(f"Ray's logs: {cluster.log_dir()}", file=sys.stderr)
    kernels.compile_all()
    started = time.perf_counter()
    started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    num_cpus = cluster.cpu_count()
    engine = Engine(num_cpus, options.max_retries, progress=options.progress)
    chunks, skipped = _plan(output, spec, num_cpus, listings)
    segments = plan_segments(spec.steps)
    fine = fine_parts(sum(c.est_bytes for c in chunks), [getattr(s, "partitions", None) for s in spec.steps])
    total = st.new_counts()
    stage_order = ["read"]
    decisions: list[Decision] = []
    details: dict[str, Any] = {}
    products: dict[str, dict[str, Any]] = {}
    units: list[_UnitState] = []
    committed: list[str] = []
    for segment in segments:
        appliers = [(name, step.applier(d)) for (name, step), d in
                    zip(_previous_group(segments, segment), decisions, strict=True)]
        steps = [(name, a) for name, a in appliers if a is not None] + segment.steps
        if not steps and segment.writes is None:
            continue  # nothing to apply, nothing to write: the decisions before it only reported
        stage_order += [name for name, _ in steps if name not in stage_order]
        plan = SegmentPlan(
            index=segment.index, steps=[s for _, s in steps], stage_names=[n for n, _ in steps],
            output=output, work=work, inputs=spec.inputs if segment.index == 0 else None,
            previous=segment.index - 1 if segment.index else None, writes=segment.writes,
            output_format=spec.output.format, shard_bytes=int(spec.output.shard_mb * (1 << 20)),
            rejects=spec.output.rejects,
            sidecars=segment.group,
            fine=fine,
            is_last=segment.writes == "output")
        summaries: dict[str, dict[str, Any]] = {sidecar_stem(segment.index, name): {} for name, _ in segment.group}
        units = _run_segment(plan, chunks if segment.index == 0 else units, engine, total, summaries, products,
                             options.progress)
        committed += [f for u in units for f in u.files]
        decisions = []
        for name, step in segment.group:
            stage_order.append(name)
            stem = sidecar_stem(segment.index, name)
            decision = _decide(step, name, stem, segment.index, units, decisions, summaries[stem], fine, output,
                               work, engine, total, options.progress)
            details[name] = decision.details
            decisions.append(decision)
    for segment in segments:
        for name, step in segment.steps:
            if name in products or not step.changes_documents:
                details[name] = step.finish(output, products.get(name, {}))
    _sweep(output, committed)
    for segment in segments:  # what these marks point to is in the work location, deleted below
        if segment.writes == "work":
            output.delete_tree(f"_progress/s{segment.index}")
            output.delete_tree(f"_progress/g{segment.index}")
    outdir.write_manifest(output, [f for f in output.find() if f.split("/", 1)[0] in outdir.OWNED_DIRS
                                   and not f.startswith(("_progress/", "_work/"))])
    work.delete_tree()
    return _finish(total, stage_order, spec, output, started, startup_s, started_at, details, skipped,
                   _fingerprint(_listing(listings)))


def _previous_group(segments: list[Segment], segment: Segment) -> list[tuple[str, GlobalStep]]:
    return segments[segment.index - 1].group if segment.index else []


def _plan(output: Storage, spec: JobSpec, num_cpus: int, listings: list) -> tuple[list[Chunk], list[str]]:
    """The units of the first segment: planned once and read back on resume (a resumed run on
    another number of CPUs keeps the same units). Units are named by their content (paths, sizes,
    versions, byte ranges), so when the input changed since the interrupted run, the run is
    re-planned: units that are still there keep their work, the rest is redone."""
    from llmray.io.batch import Piece

    listing = _listing(listings)
    if output.exists(PLAN):
        saved = output.get_json(PLAN)
        if saved.get("listing") == listing:
            chunks = [Chunk(c["key"], tuple(Piece(**p) for p in c["pieces"]), c["source"], c["input_index"],
                            c["est_bytes"]) for c in saved["chunks"]]
            return chunks, saved["skipped"]
        print(f"{output.url}: the input changed since the interrupted run; its units are planned again "
              f"(those still there keep their work)", file=sys.stderr)
    chunks, skipped = plan_chunks(spec.inputs, num_cpus, listings)
    _forget_all_but(output, {c.key for c in chunks})
    output.put_json(PLAN, {"chunks": [dataclasses.asdict(c) for c in chunks], "skipped": skipped,
                           "listing": listing})
    return chunks, skipped


def _listing(listings: list) -> list:
    """The input files with their sizes and versions, as JSON reads them back."""
    return json.loads(json.dumps([[f for listing in per_input for f in listing.files] for per_input in listings]))


def _fingerprint(listing: list) -> str:
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:16]


def _forget_all_but(output: Storage, keys: set[str]) -> None:
    """Drop every mark of progress except the first segment's markers of these units: whatever
    came after depends on the whole corpus."""
    for rel in output.find("_progress"):
        first = re.fullmatch(r"_progress/s0/([^/]+)\.json", rel)
        if rel != outdir.LEASE and not (first and first.group(1) in keys):
            output.delete(rel)


def _run_segment(plan: SegmentPlan, sources: list[Chunk] | list[_UnitState], engine: Engine, total: dict,
                 summaries: dict[str, dict[str, Any]], products: dict[str, dict[str, Any]],
                 progress: bool) -> list[_UnitState]:
    """Run every unit not yet committed; return each unit's state, in unit order."""
    states: list[_UnitState | None] = [None] * len(sources)
    todo = []
    for index, source in enumerate(sources):
        key = source.key
        if plan.output.exists(plan.marker(key)):
            _take(plan.output.get_json(plan.marker(key)), index, states, total, summaries, products)
        else:
            todo.append((key, index, source if isinstance(source, Chunk) else None))
    sizes = [_unit_mb(source, plan) for source in sources]
    bar = _progress_bar(sum(sizes), sum(sizes) - sum(sizes[i] for _, i, _ in todo), _label(plan), progress)

    def on_result(position: int, marker: dict[str, Any]) -> None:
        _take(marker, todo[position][1], states, total, summaries, products)
        bar.update(sizes[todo[position][1]])
        done = total["docs_in"] if plan.inputs is not None else sum(s.docs for s in states if s is not None)
        bar.set_postfix_str(f"{done:,} docs", refresh=False)

    if todo:
        engine.map(_run_task, todo, plan.stage_names[0] if plan.stage_names else "segment", shared=plan,
                   on_result=on_result)
    bar.close()
    return [s for s in states if s is not None]


def _run_task(plan: SegmentPlan, key: str, index: int, chunk: Chunk | None) -> dict[str, Any]:
    import ray

    node = ray.get_runtime_context().get_node_id()
    try:
        return run_unit(key, index, chunk, plan, node_id=node)
    except UserError:
        raise
    except OSError as exc:
        if exc.errno == 28:
            raise UserError(f"no space left on {plan.output.url if plan.writes == 'output' else plan.work.url}: "
                            f"free space and run the same command to resume") from None
        raise RuntimeError(f"{chunk.url if chunk else key}: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        where = chunk.url if chunk is not None else f"unit {key}"
        raise RuntimeError(f"{where}: {type(exc).__name__}: {exc}") from exc


def _take(marker: dict[str, Any], index: int, states: list, total: dict, summaries: dict, products: dict) -> None:
    """Fold one committed unit into the run's totals."""
    st.merge(total, marker["counts"])
    for name, summary in marker["sidecars"].items():
        st.merge(summaries[name], {k: v for k, v in summary.items() if k != "path"})
    for stage, made in marker.get("products", {}).items():
        st.merge(products.setdefault(stage, {}), made)
    files = [f["path"] for f in marker["files"]["output"]]
    states[index] = _UnitState(marker["key"], marker["docs"], marker.get("bytes", 0), marker["attempt"], files)


def _decide(step: GlobalStep, name: str, scratch: str, segment: int, units: list[_UnitState],
            earlier: list[Decision], summary: dict[str, Any], fine: int, output: Storage, work: Storage,
            engine: Engine, total: dict, progress: bool) -> Decision:
    """Run one global step's decision over the units (or read it back, on resume)."""
    marker = f"_progress/{scratch}.json"
    if output.exists(marker):
        saved = output.get_json(marker)
        decision = Decision(**saved["decision"])
    else:
        if progress:
            print(f"{name}: deciding over {sum(u.docs for u in units):,} documents in {len(units):,} units ...",
                  file=sys.stderr, flush=True)
        started = time.perf_counter()
        starts, at = [], 0
        for u in units:
            starts.append(at)
            at += u.docs
        ctx = GlobalContext(
            name=step.name, stage=name, engine=engine.named(name), data=work, work_dir=scratch, output=output,
            units=[Unit(i, u.key, u.docs, s, marker_path(segment, u.key), f"{scratch}/side/{u.key}-{u.attempt}")
                   for i, (u, s) in enumerate(zip(units, starts, strict=True))],
            num_cpus=engine.num_cpus, summary={**summary, "fine": fine}, earlier=list(earlier))
        decision = step.decide(ctx)
        decision.details["wall_s"] = round(time.perf_counter() - started, 3)
        output.put_json(marker, {"decision": dataclasses.asdict(decision)})
    # A step that drops nothing passes every document on; a dropping step's applier counts its own.
    drops = step.applier(decision) is not None
    docs, nbytes = (0, 0) if drops else (sum(u.docs for u in units), sum(u.bytes for u in units))
    st.add_stage(total, name, docs, docs, nbytes, nbytes, decision.details.get("wall_s", 0.0))
    if drops:  # a dropping step's reasons are listed even at 0
        for rule in step.reasons:
            total["dropped"].setdefault(f"{step.name}.{rule}", 0)
            total["dropped_bytes"].setdefault(f"{step.name}.{rule}", 0)
    return decision


def _unit_mb(source: Chunk | _UnitState, plan: SegmentPlan) -> float:
    """A unit's weight in the progress bar: MB of text (estimated before it is read)."""
    return (source.est_bytes if isinstance(source, Chunk) else source.bytes) / 1e6


def _label(plan: SegmentPlan) -> str:
    """A short name for a segment's bar (the steps are in `llmray run --dry-run`)."""
    steps = f" + {len(plan.steps)} step{'s' if len(plan.steps) > 1 else ''}" if plan.steps else ""
    if plan.index == 0:
        return f"read{steps}"
    return f"{'write' if plan.writes == 'output' else 'pass' if plan.writes else 'products'}{steps}"


def _finished_stats(output: Storage, spec: JobSpec, listing: list, progress: bool) -> dict[str, Any] | None:
    """The stats of a completed run of this same job on this same input in ``output``, if there is
    one and every file it wrote is still there; otherwise what is missing is made to be redone."""
    if not output.exists("stats.json"):
        return None
    try:
        stats = output.get_json("stats.json")
    except ValueError:
        return None
    if stats.get("fingerprint") != spec.fingerprint() or not stats.get("accounting_ok"):
        return None
    if stats.get("input_fingerprint") != _fingerprint(listing):
        if progress:
            print(f"{output.url}: the input changed since this job last finished: running it again",
                  file=sys.stderr)
        output.delete("stats.json")
        return None
    missing = outdir.missing_files(output)
    if not missing:
        return stats
    if progress:
        print(f"{output.url}: {len(missing)} file(s) of the finished run are missing or changed "
              f"({missing[0]}, ...): redoing what wrote them", file=sys.stderr)
    gone = set(missing)
    for rel in output.find("_progress"):
        if re.fullmatch(r"_progress/s\d+/[^/]+\.json", rel):
            files = {f["path"] for f in output.get_json(rel).get("files", {}).get("output", [])}
            if files & gone:
                output.delete(rel)
                gone -= files
    if gone:  # outputs of global steps or products: redo everything after the first segment
        _forget_all_but(output, {r.rsplit("/", 1)[1][:-5] for r in output.find("_progress/s0")})
    output.delete("stats.json")
    return None


def _check_output(output: Storage, spec: JobSpec, overwrite: bool) -> None:
    """Refuse, before anything starts, an output this run may not write into."""
    if overwrite:
        outdir.check_clearable(output)
    elif output.exists("job.json"):
        previous = output.get_json("job.json").get("fingerprint")
        if previous != spec.fingerprint():
            raise UserError(f"{output.url} holds the output of a different job; pass --overwrite to replace it, "
                            f"or choose another --output")
    else:
        leftovers = outdir.leftovers(output)
        if leftovers:
            raise UserError(f"{output.url} already holds {', '.join(sorted(leftovers))} from another run; "
                            f"pass --overwrite to replace it, or choose another --output")


def _prepare_output(output: Storage, work: Storage, spec: JobSpec, overwrite: bool) -> None:
    if overwrite:
        outdir.clear(output, work)
    output.put_json("job.json", {"fingerprint": spec.fingerprint(), "job": spec.to_dict(),
                                 "job_file": spec.source_file})


def _sweep(output: Storage, committed: list[str]) -> None:
    """Remove what failed attempts left in the committed folders: files no marker lists."""
    keep = set(committed)
    for folder in outdir.COMMITTED:
        leftovers = [f for f in output.find(folder)
                     if f not in keep and not any(part.startswith("_") for part in f.split("/")[1:])]
        output.delete_many(leftovers)


def _finish(total: dict, stage_order: list[str], spec: JobSpec, output: Storage, started: float, startup_s: float,
            started_at: str, details: dict, skipped: list[str], input_fingerprint: str) -> dict[str, Any]:
    """Write the report, the dataset card and stats.json, whose ``wall_s`` runs from the start of the
    run (Ray's start-up apart) to the end of all of them but stats.json itself; the report, written
    before, shows the time up to its own writing."""
    from llmray import cluster

    wall_s = time.perf_counter() - started
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
        "nodes": len(total["nodes"]), "num_cpus": cluster.cpu_count(),
        "retries": total["retries"],
        "global_steps": {k: v for k, v in details.items() if v},
        "duplicate_ids": {"count": details.get("unique_ids", {}).get("duplicates", 0),
                          "examples": details.get("unique_ids", {}).get("examples", [])},
        "skipped_files": {"count": len(skipped), "examples": skipped[:10]},
        "started_at": started_at, "job_file": spec.source_file, "fingerprint": spec.fingerprint(),
        "input_fingerprint": input_fingerprint,
    }
    problem = st.check_accounting(stats)
    stats["accounting_ok"] = problem is None
    write_report(stats, output, "report.html")
    write_dataset_card(stats, output)
    wall_s = time.perf_counter() - started
    stats.update(wall_s=round(wall_s, 3), throughput_mb_s=round(total["bytes_in"] / max(wall_s, 1e-9) / 1e6, 3))
    output.put("stats.json", json.dumps(stats, indent=2).encode())
    if problem:
        raise RuntimeError(f"{problem}. This is a bug in llmray; stats.json holds the counts.")
    return stats


def _progress_bar(total: int, done: int, label: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=round(total, 1), initial=round(done, 1), desc=label, unit="MB", unit_scale=False,
                disable=not enabled or None, file=sys.stderr, dynamic_ncols=True, mininterval=0.5,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} MB [{elapsed}<{remaining}, "
                           "{rate_fmt}{postfix}]")


def describe(spec: JobSpec, num_cpus: int) -> str:
    """What a run of ``spec`` would do, without doing it: the resolved job, its units, segments and
    global steps, and where everything goes (``llmray run --dry-run``)."""
    import yaml

    chunks, skipped = plan_chunks(spec.inputs, num_cpus)
    output = Storage(spec.output.path)
    work = spec.output.work_dir or output.join("_work")
    mb = sum(c.est_bytes for c in chunks) / 1e6
    lines = ["job (resolved):", *("  " + line for line in yaml.safe_dump(spec.to_dict(), sort_keys=False,
                                                                         width=100).splitlines()), "",
             f"input: {sum(len(c.pieces) for c in chunks):,} file pieces, about {mb:,.1f} MB of text, in "
             f"{len(chunks):,} units for {num_cpus} CPUs" + (f"; {len(skipped)} hidden file(s) skipped" if skipped
                                                               else "")]
    for segment in plan_segments(spec.steps):
        names = [name for name, _ in segment.steps] or ["(no steps)"]
        where = {"output": f"{output.join('data')}", "work": f"{work} (intermediate)", None: "nothing (reads data/)"}
        lines.append(f"segment {segment.index + 1}: {' > '.join(names)}  ->  writes {where[segment.writes]}")
        if segment.group:
            lines.append(f"  then, over the whole corpus: {', '.join(name for name, _ in segment.group)}")
    lines.append(f"outputs: {output.url}/ (data/, stats.json, report.html"
                 f"{', rejects/' if spec.output.rejects else ''}, quarantine/ when records cannot be read)")
    return "\n".join(lines)


def inputs_from_paths(paths: list[str], spec: JobSpec) -> list[InputSpec]:
    """``--input`` replaces the job's paths. A job of several sources has no single reading of the
    new paths, so it is refused rather than guessed."""
    if len(spec.inputs) > 1:
        raise UserError(f"{spec.source_file} reads {len(spec.inputs)} sources; --input would replace all of them "
                        f"with one: edit the job's input list instead")
    return [dataclasses.replace(spec.inputs[0], paths=list(paths))]
