"""The dedup stages wired together as Ray tasks exchanging hash partitions through the object store.

Near duplicates (``run_minhash``)::

    sign (unit) -> buckets (partition) -> [verify: gather, check (group)] -> components -> keep -> write
Exact duplicates (``run_exact``)::

    hash (unit) -> groups (partition) -> keep -> write

Every stage is one task per unit or per partition, returning a small summary first and then one
object per receiving task; the driver only holds object references and summaries. A stage's
partition count and unit size change where work runs, never the result: kept ids depend on the
data, the parameters and the keep rule only.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import shutil
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from llmray.dedup import buckets, components, exact, keep, signatures
from llmray.dedup.keep import KeepRule
from llmray.dedup.signatures import SketchSpec
from llmray.dedup.units import Unit, plan_units
from llmray.ops.base import ID, TEXT
from llmray.pipeline.context import GlobalContext, GlobalResult

MB = 1 << 20
#: Bytes per band row in the bucket exchange (key, signature hash, document).
_BAND_ROW_BYTES = 24


@dataclasses.dataclass(frozen=True)
class Layout:
    """How the work is cut into tasks. None of it changes which documents are kept."""

    #: Text per unit (one task of the per-document stages), in whole parquet row groups.
    unit_mb: float = 64.0
    #: Parts per exchange; by default enough for ~64 MB each and at least one per CPU.
    partitions: int | None = None
    #: Up to this many candidate edges, components run in one task; above, distributed.
    local_components_max_edges: int = 4_000_000
    #: Signature bytes held by one verify task.
    verify_group_mb: float = 256.0


@functools.cache
def _remote(fn: Callable, num_returns: int) -> Any:
    import ray

    return ray.remote(fn).options(num_cpus=1, num_returns=num_returns)


class _Clock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(now - self._last, 4)
        self._last = now


def _plan(ctx: GlobalContext, layout: Layout, rule: KeepRule) -> list[Unit]:
    """Units of the input, sized so every CPU gets about four (for balance) when the input allows."""
    units = plan_units(ctx.input_dir, 1 << 62)
    if not units:
        return []
    schema = pq.read_schema(units[0].path)
    missing = {ID, TEXT} - set(schema.names)
    if missing:
        raise ValueError(f"the input lacks the column(s) {', '.join(sorted(missing))}")
    rule.check(schema)
    total = sum(u.text_bytes for u in units)
    target = min(layout.unit_mb * MB, max(MB, total / (4 * max(1, ctx.num_cpus))))
    return plan_units(ctx.input_dir, int(target))


def _partitions(layout: Layout, ctx: GlobalContext, exchange_bytes: int) -> int:
    if layout.partitions:
        return layout.partitions
    return int(min(1024, max(ctx.num_cpus, math.ceil(exchange_bytes / (64 * MB)))))


def _starts(units: list[Unit]) -> np.ndarray:
    return np.array([u.start for u in units], dtype=np.int64)


def run_minhash(ctx: GlobalContext, spec: SketchSpec, threshold: float, verify: bool, rule: KeepRule,
                write_clusters: bool, op_name: str, layout: Layout = Layout()) -> GlobalResult:
    """Near-duplicate removal: MinHash LSH candidates, (verified,) connected, one kept per component."""
    import ray

    clock = _Clock()
    units = _plan(ctx, layout, rule)
    docs = sum(u.rows for u in units)
    parts = _partitions(layout, ctx, docs * spec.bands * _BAND_ROW_BYTES)
    details: dict[str, Any] = {"units": len(units), "partitions": parts, "bands": spec.bands,
                               "rows": spec.rows, "num_perm": spec.num_perm, "verify": verify}
    if not units:
        return _empty(ctx, details, op_name)
    starts = _starts(units)
    cache = ctx.work_dir / "signatures"
    signed = [_remote(signatures.sign_unit, parts + 2).remote(u, spec, parts, verify, cache) for u in units]
    metas = ray.get([s[0] for s in signed])
    details["empty_docs"] = sum(m["empty_docs"] for m in metas)
    sigs = [s[1] for s in signed]
    clock.lap("signatures")

    if verify:
        groups = _verify_groups(units, spec.num_perm, layout.verify_group_mb * MB)
        route: np.ndarray | None = np.array([units[g[0]].start for g in groups], dtype=np.int64)
        n_route = len(groups)
    else:
        route, n_route = None, parts
    bucketed = [_remote(buckets.bucket_partition, n_route + 1).remote(n_route, route, *[s[2 + p] for s in signed])
                for p in range(parts)]
    del signed
    bucket_edges = sum(ray.get([b[0] for b in bucketed]))
    edges = [[b[1 + q] for b in bucketed] for q in range(n_route)]
    del bucketed
    clock.lap("buckets")

    if verify:
        assert route is not None
        gathered = [_remote(buckets.gather_signatures, n_route + 1).remote(
            int(route[g]), n_route, route, parts, *edges[g], *[sigs[u] for u in unit_ids])
            for g, unit_ids in enumerate(groups)]
        details["candidate_pairs"] = sum(ray.get([x[0] for x in gathered]))
        checked = [_remote(buckets.check_edges, parts + 1).remote(
            int(route[g]), threshold, parts, n_route, *[x[1 + g] for x in gathered], *[sigs[u] for u in unit_ids])
            for g, unit_ids in enumerate(groups)]
        bucket_edges = details["verified_pairs"] = sum(ray.get([c[0] for c in checked]))
        edges = [[c[1 + q] for c in checked] for q in range(parts)]
        del gathered, checked
        clock.lap("verify")
    del sigs

    pairs, graph = _components(edges, starts, parts, bucket_edges, layout)
    unique_edges = graph.pop("edges")
    details.update(graph)
    details.setdefault("candidate_pairs", unique_edges)
    clock.lap("components")
    result = _keep_and_write(ctx, units, pairs, rule, write_clusters, op_name, parts, clock, details)
    shutil.rmtree(cache, ignore_errors=True)
    return result


def _verify_groups(units: list[Unit], num_perm: int, group_bytes: float) -> list[list[int]]:
    """Consecutive units whose signatures fit one verify task."""
    groups: list[list[int]] = [[]]
    size = 0
    for u in units:
        need = u.rows * num_perm * 4
        if groups[-1] and size + need > group_bytes:
            groups.append([])
            size = 0
        groups[-1].append(u.index)
        size += need
    return groups


def _components(edges: list[list[Any]], starts: np.ndarray, parts: int, edge_bound: int,
                layout: Layout) -> tuple[list[list[Any]], dict[str, Any]]:
    """(document, root) rows per unit, and figures: mode, steps, candidate edges."""
    import ray

    n_units = len(starts)
    if edge_bound <= layout.local_components_max_edges:
        out = _remote(components.local_components, n_units + 1).remote(starts, *[e for part in edges for e in part])
        return [[out[1 + u]] for u in range(n_units)], {"components_mode": "local", "components_steps": 1,
                                                        "edges": ray.get(out[0])}
    step, steps, quiet, first_edges = components.small_star, 0, 0, None
    while quiet < 2:
        outs = [_remote(step, parts + 1).remote(parts, *edges[p]) for p in range(parts)]
        summaries = ray.get([o[0] for o in outs])
        edges = [[o[1 + q] for o in outs] for q in range(parts)]
        if first_edges is None:
            first_edges = sum(s["edges"] for s in summaries)
        steps += 1
        quiet = quiet + 1 if sum(s["changes"] for s in summaries) == 0 else 0
        step = components.large_star if step is components.small_star else components.small_star
        if steps > 200:
            raise RuntimeError("connected components did not converge in 200 steps")
    finals = [_remote(components.star_pairs, n_units + 1).remote(starts, *edges[p]) for p in range(parts)]
    return [[f[1 + u] for f in finals] for u in range(n_units)], {
        "components_mode": "distributed", "components_steps": steps, "edges": first_edges}


def run_exact(ctx: GlobalContext, normalize: bool, rule: KeepRule, write_clusters: bool, op_name: str,
              layout: Layout = Layout()) -> GlobalResult:
    """Exact duplicate removal: equal 128-bit hashes form a group, one kept per group."""
    import ray

    clock = _Clock()
    units = _plan(ctx, layout, rule)
    parts = _partitions(layout, ctx, sum(u.rows for u in units) * _BAND_ROW_BYTES)
    details: dict[str, Any] = {"units": len(units), "partitions": parts, "normalize": normalize}
    if not units:
        return _empty(ctx, details, op_name)
    starts = _starts(units)
    hashed = [_remote(exact.hash_unit, parts + 1).remote(u, normalize, parts) for u in units]
    ray.get([h[0] for h in hashed])
    clock.lap("hashes")
    grouped = [_remote(exact.group_partition, len(units) + 1).remote(starts, *[h[1 + p] for h in hashed])
               for p in range(parts)]
    del hashed
    details["docs_in_groups"] = sum(ray.get([g[0] for g in grouped]))
    pairs = [[g[1 + u] for g in grouped] for u in range(len(units))]
    del grouped
    clock.lap("groups")
    return _keep_and_write(ctx, units, pairs, rule, write_clusters, op_name, parts, clock, details)


def _keep_and_write(ctx: GlobalContext, units: list[Unit], pairs: list[list[Any]], rule: KeepRule,
                    write_clusters: bool, op_name: str, parts: int, clock: _Clock,
                    details: dict[str, Any]) -> GlobalResult:
    import ray

    starts = _starts(units)
    prefix = f"{op_name}-{ctx.output_dir.name}"
    clusters_dir = ctx.output_root / "clusters"
    if write_clusters:
        for old in clusters_dir.glob(f"{prefix}-*.parquet"):
            old.unlink()
    ranked = [_remote(keep.rank_unit, parts + 1).remote(u, rule, parts, *pairs[u.index]) for u in units]
    del pairs
    chosen = [_remote(keep.choose_keepers, len(units) + 1).remote(
        rule, starts, str(clusters_dir / f"{prefix}-{r:05d}.parquet") if write_clusters else None,
        *[x[1 + r] for x in ranked]) for r in range(parts)]
    del ranked
    summaries = ray.get([c[0] for c in chosen])
    details["groups"] = sum(s["groups"] for s in summaries)
    details["largest_group"] = max((s["largest"] for s in summaries), default=0)
    clock.lap("keep")
    reason = f"{op_name}.duplicate"
    rejects = str(ctx.rejects_dir) if ctx.rejects_dir is not None else None
    ctx.output_dir.mkdir(parents=True, exist_ok=True)
    written = ray.get([_remote(keep.write_unit, 1).remote(u, str(ctx.output_dir), rejects, prefix, reason,
                                                          *[c[1 + u.index] for c in chosen]) for u in units])
    clock.lap("write")
    total = {k: sum(w[k] for w in written) for k in written[0]}
    details["seconds"] = clock.seconds
    dropped = total["docs_in"] - total["docs_out"]
    return GlobalResult(docs_in=total["docs_in"], docs_out=total["docs_out"], dropped={reason: dropped},
                        bytes_in=total["bytes_in"], bytes_out=total["bytes_out"], details=details)


def _empty(ctx: GlobalContext, details: dict[str, Any], op_name: str) -> GlobalResult:
    ctx.output_dir.mkdir(parents=True, exist_ok=True)
    return GlobalResult(docs_in=0, docs_out=0, dropped={f"{op_name}.duplicate": 0}, details=details)
