"""The dedup stages wired together as task lists that exchange partitioned files.

Near duplicates (``decide_minhash``)::

    [sidecars: band rows per unit] -> buckets (partition) -> [verify: gather, check (group)]
        -> components -> rank (units) -> choose (partitions) = the decision
Exact duplicates (``decide_exact``)::

    [sidecars: hashes per unit] -> groups (partition) -> rank (units) -> choose (partitions)

Each stage is a list of tasks, one per unit or per partition, run by ``ctx.engine``; each task
writes one object holding its rows for every receiver (see :mod:`llmray.io.exchange`) and returns
a count. Where a stage has many senders, their objects are combined in groups before the next
stage reads them (``_combine``), and the keep phase takes units and partitions in runs, so the
range reads grow as senders / group x receivers. So the driver holds the unit table and one count
per task, and no task holds more than its partition (or a group of objects). Partition counts, unit
sizes and groups change where work runs, never the result: kept ids depend on the data, the
parameters and the keep rule only. Nothing is rewritten here; the decision (rows to drop per unit,
with the id kept in their place) is applied by the next segment.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np

from llmray.decisions import Decision, GlobalContext
from llmray.dedup import buckets, components, exact, keep
from llmray.dedup.keep import KeepRule
from llmray.dedup.layout import Shared, second_level_ranges
from llmray.dedup.shuffle import MAX_DOCS
from llmray.dedup.signatures import BAND_ROW_BYTES, SketchSpec
from llmray.io.writers import shard_schema

MB = 1 << 20


@dataclasses.dataclass(frozen=True)
class Layout:
    """How the work is cut into tasks. None of it changes which documents are kept."""

    #: Bytes of exchanged rows per partition; partitions = max(CPUs, rows / this).
    partition_mb: float = 64.0
    #: A fixed number of partitions instead (at most the sidecars' fine parts).
    partitions: int | None = None
    #: Up to this many candidate edges, components run in one task; above, distributed.
    local_components_max_edges: int = 4_000_000
    #: Signature bytes held by one verify task.
    verify_group_mb: float = 256.0
    #: Senders' objects combined into one where an exchange has more than twice as many senders
    #: (see ``Shared.combine``): range reads then grow as senders / this x receivers.
    combine_group: int = 32


class _Clock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(now - self._last, 4)
        self._last = now


def _shared(ctx: GlobalContext, layout: Layout, row_bytes: int, rows: int, options: dict[str, Any]) -> Shared:
    fine = int(ctx.summary.get("fine", 1))
    wanted = layout.partitions or max(ctx.num_cpus, math.ceil(rows * row_bytes / (layout.partition_mb * MB)))
    starts = np.array([u.start for u in ctx.units], dtype=np.int64)
    if ctx.units and ctx.units[-1].start + ctx.units[-1].docs >= MAX_DOCS:
        raise ValueError(f"{ctx.units[-1].start + ctx.units[-1].docs} documents: one dedup step handles at "
                         f"most {MAX_DOCS - 1}")
    earlier = [(d.payload["dir"], d.payload["senders"]) for d in ctx.earlier if "dir" in d.payload]
    return Shared(work=ctx.data, output=ctx.output, step=ctx.work_dir, sides=[u.sidecar for u in ctx.units],
                  markers=[u.marker for u in ctx.units], starts=starts, parts=int(min(max(1, wanted), fine)),
                  fine=fine, earlier=earlier, options=options, combine_group=layout.combine_group)


def _check_rule(ctx: GlobalContext, rule: KeepRule) -> None:
    """A keep column the data lacks is refused before the stages run."""
    if rule.column is None:
        return
    for unit in ctx.units:
        marker = ctx.output.get_json(unit.marker)
        files = (marker.get("shards") or {}).get("files") or []
        if files:
            store = ctx.output if marker["shards"]["store"] == "output" else ctx.data
            rule.check(shard_schema(store, files[0]["path"]))
            return


def decide_minhash(ctx: GlobalContext, spec: SketchSpec, threshold: float, verify: bool, rule: KeepRule,
                   clusters: str | None, layout: Layout = Layout()) -> Decision:
    """Near-duplicate removal: MinHash LSH candidates, (verified,) connected, one kept per component."""
    _check_rule(ctx, rule)
    clock = _Clock()
    rows = int(ctx.summary.get("band_rows", 0))
    shared = _shared(ctx, layout, BAND_ROW_BYTES, rows, {"rule": rule, "clusters": clusters,
                                                         "threshold": threshold, "num_perm": spec.num_perm})
    details: dict[str, Any] = {"units": shared.units, "partitions": shared.parts, "bands": spec.bands,
                               "rows": spec.rows, "num_perm": spec.num_perm, "verify": verify,
                               "empty_docs": int(ctx.summary.get("empty_docs", 0))}
    if verify:
        groups = _verify_groups(ctx, spec.num_perm, layout.verify_group_mb * MB)
        shared.options["verify_groups"] = groups
        shared.options["verify_starts"] = np.array([shared.starts[g[0]] for g in groups], dtype=np.int64)
    parts = range(shared.parts)
    _combine(ctx, shared, "side.bands", shared.units)
    edge_counts = ctx.engine.map(buckets.bucket_partition, [(p,) for p in parts], "buckets", shared=shared)
    _combine(ctx, shared, "buckets", shared.parts)
    clock.lap("buckets")
    edge_stage, edge_bound = "buckets", sum(edge_counts)
    if verify:
        n_groups = len(shared.options["verify_groups"])
        gathered = ctx.engine.map(buckets.gather_signatures, [(g,) for g in range(n_groups)], "verify",
                                  shared=shared)
        _combine(ctx, shared, "gather", n_groups)
        received, kept = zip(*ctx.engine.map(buckets.check_edges, [(g,) for g in range(n_groups)], "verify",
                                             shared=shared), strict=True)
        details.update(candidate_pairs=sum(gathered), verify_groups=n_groups,
                       verify_busiest=[_busiest(gathered), _busiest(received)])
        edge_bound = details["verified_pairs"] = sum(kept)
        _combine(ctx, shared, "checked", n_groups)
        edge_stage = "checked"
        clock.lap("verify")
    senders = len(shared.options["verify_groups"]) if verify else shared.parts
    if edge_bound <= layout.local_components_max_edges:
        (unique,) = ctx.engine.map(components.local_components, [(edge_stage, senders)], "components",
                                   shared=shared)
        details.update(components_mode="local", components_steps=1)
        shared.options["component_senders"] = 1
    else:
        unique = _distributed_components(ctx, shared, edge_stage, senders, details)
        shared.options["component_senders"] = shared.parts
    details.setdefault("candidate_pairs", unique)
    clock.lap("components")
    return _keep(ctx, shared, clock, details)


def _distributed_components(ctx: GlobalContext, shared: Shared, edge_stage: str, senders: int,
                            details: dict[str, Any]) -> int:
    """Alternating small-star and large-star rounds until two rounds change nothing."""
    source, large, rounds, quiet, first_edges = edge_stage, False, 0, 0, None
    parts = [(p,) for p in range(shared.parts)]
    while quiet < 2:
        target = f"stars/{rounds:03d}"
        summaries = ctx.engine.map(components.star_step, [(source, senders, target, large, p) for (p,) in parts],
                                   "components", shared=shared)
        senders = shared.parts
        _combine(ctx, shared, target, senders)
        if first_edges is None:
            first_edges = sum(s["edges"] for s in summaries)
        rounds += 1
        quiet = quiet + 1 if sum(s["changes"] for s in summaries) == 0 else 0
        source, large = target, not large
        if rounds > 200:
            raise RuntimeError("connected components did not converge in 200 steps")
    ctx.engine.map(components.star_pairs, [(source, p) for (p,) in parts], "components", shared=shared)
    details.update(components_mode="distributed", components_steps=rounds)
    return int(first_edges or 0)


def _busiest(counts: tuple[int, ...] | list[int]) -> float:
    """The largest count over the mean (1.0: every task had the same work)."""
    total = sum(counts)
    return round(max(counts) * len(counts) / total, 3) if total else 1.0


def _verify_groups(ctx: GlobalContext, num_perm: int, group_bytes: float) -> list[list[int]]:
    """Consecutive units whose signatures fit one verify task, in at least as many groups as there
    are CPUs (where there are enough units), so that verifying keeps every CPU busy."""
    total = sum(unit.docs for unit in ctx.units) * num_perm * 4
    group_bytes = min(group_bytes, -(-total // max(1, ctx.num_cpus)))
    groups: list[list[int]] = [[]]
    size = 0
    for unit in ctx.units:
        need = unit.docs * num_perm * 4
        if groups[-1] and size + need > group_bytes:
            groups.append([])
            size = 0
        groups[-1].append(unit.index)
        size += need
    return groups


def decide_exact(ctx: GlobalContext, rule: KeepRule, clusters: str | None, layout: Layout = Layout()) -> Decision:
    """Exact duplicate removal: equal 128-bit hashes form a group, one kept per group."""
    _check_rule(ctx, rule)
    clock = _Clock()
    rows = int(ctx.summary.get("docs", 0))
    shared = _shared(ctx, layout, exact.HASH_ROW_BYTES, rows, {"rule": rule, "clusters": clusters})
    details: dict[str, Any] = {"units": shared.units, "partitions": shared.parts}
    _combine(ctx, shared, "side.hashes", shared.units)
    grouped = ctx.engine.map(_group_partition, [(p,) for p in range(shared.parts)], "hashes", shared=shared)
    details["docs_in_groups"] = sum(grouped)
    shared.options["component_senders"] = shared.parts
    clock.lap("groups")
    return _keep(ctx, shared, clock, details)


def _group_partition(shared: Shared, p: int) -> int:
    """Task: equal hashes of partition p -> (document, root) rows sent to the documents' units."""
    docs, roots = exact.group_rows(shared.sidecar_rows("hashes", p))
    shared.write("components", p, components.route_pairs(docs, roots, shared.starts))
    return len(docs)


def _keep(ctx: GlobalContext, shared: Shared, clock: _Clock, details: dict[str, Any]) -> Decision:
    _combine(ctx, shared, "components", shared.options["component_senders"])
    ctx.engine.map(keep.rank_units, [(g,) for g in range(keep.rank_groups(shared))], "keep", shared=shared)
    tasks, _ = keep.choose_tasks(shared)
    summaries = ctx.engine.map(keep.choose_keepers, [(t,) for t in range(tasks)], "keep", shared=shared)
    _combine(ctx, shared, "decision", tasks)
    details["groups"] = sum(s["groups"] for s in summaries)
    details["largest_group"] = max((s["largest"] for s in summaries), default=0)
    details["duplicates"] = sum(s["dropped"] for s in summaries)
    details["examples"] = [e for s in summaries for e in s["examples"]][:10]
    details["combined_exchanges"] = len(shared.combined)
    details["combined_twice"] = len(shared.split)
    clock.lap("keep")
    details["seconds"] = clock.seconds
    combined = shared.combined.get("decision")
    return Decision(step=ctx.name, payload={"dir": shared.path("decision+" if combined else "decision"),
                                            "senders": combined or tasks}, details=details)


def _combine(ctx: GlobalContext, shared: Shared, stage: str, senders: int) -> None:
    """Combine the senders' objects of ``stage`` in groups (one task each) when they are many.

    The units' sidecars (every unit sends to every partition: at 100 TB, 1.5 million senders) are
    combined a second time when the first level still leaves many objects, each second-level task
    taking a range of receivers, so a receiver reads one range per group of groups."""
    group = shared.combine_group
    if senders <= 2 * group:
        return
    groups = -(-senders // group)
    ctx.engine.map(_combine_group, [(stage, senders, g) for g in range(groups)], "combine", shared=shared)
    shared.combined[stage] = groups
    if stage.startswith("side.") and groups > 2 * group:
        shared.split[stage], ranges = second_level_ranges(shared.parts, group)
        items = [(stage, g, r) for g in range(shared.second_groups(stage)) for r in range(ranges)]
        ctx.engine.map(_combine_again, items, "combine", shared=shared)


def _combine_group(shared: Shared, stage: str, senders: int, group: int) -> int:
    return shared.combine(stage, senders, group)


def _combine_again(shared: Shared, stage: str, group: int, r: int) -> int:
    return shared.combine_again(stage, group, r)
