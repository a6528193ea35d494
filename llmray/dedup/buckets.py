"""LSH buckets to candidate edges, and the optional check of each edge against the threshold.

A bucket is a run of equal band keys in one partition, found with one pass through a hash table
(``kernels.graph.star_edges``). Each member is linked
to the bucket's *center* only (a star, not all pairs), which keeps the edge count linear in the
bucket size and the same connected components. The center is the member with the smallest
signature hash (then document number), so it does not depend on how documents were numbered; when
edges are verified, that makes the surviving edges independent of input layout too.

Edges travel packed as ``larger << 32 | smaller`` document number.
"""

from __future__ import annotations

import numpy as np

from llmray.dedup import shuffle
from llmray.dedup.layout import Shared
from llmray.io import exchange
from llmray.kernels.graph import star_edges
from llmray.kernels.hashing import GOLDEN
from llmray.kernels.minhash import estimate_jaccard


def bucket_edges(rows: np.ndarray) -> np.ndarray:
    """Unique packed star edges of the buckets in ``rows`` (band key, signature hash, document)."""
    return np.unique(star_edges(rows))


def bucket_partition(shared: Shared, p: int) -> int:
    """Task: band rows of partition p -> edges, sent to the components' partition of their larger
    document (or, when verifying, to the verify group of their home document)."""
    edges = bucket_edges(shared.sidecar_rows("bands", p))
    groups = shared.options.get("verify_starts")
    if groups is None:
        larger, _ = shuffle.unpack(edges)
        shared.write("buckets", p, exchange.split(edges, larger % shared.parts, shared.parts))
    else:
        home, _ = verify_ends(edges, groups)
        shared.write("buckets", p, exchange.split(edges, shuffle.unit_of(home, groups), len(groups)))
    return len(edges)


def verify_ends(edges: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(home, other) document of each edge: the edge is gathered in its home's verify group and,
    when the other lies in another group, checked there. Which end is home follows a bit of the
    mixed edge, not the order of the two numbers: routing every edge to its larger document sent
    each group the edges of all the groups after it to check, so the first groups did most of the
    work."""
    larger, smaller = shuffle.unpack(edges)
    flip = ((edges * GOLDEN) >> np.uint64(63)).astype(bool)
    return np.where(flip, smaller, larger), np.where(flip, larger, smaller)


def _group_signatures(shared: Shared, g: int) -> tuple[int, np.ndarray]:
    """(first document, signatures of every document) of verify group g's units."""
    units = shared.options["verify_groups"][g]
    sigs = exchange.gather(shared.work, [f"{shared.sides[u]}.sig" for u in units], 0, dtype=np.uint32,
                           shape=(shared.options["num_perm"],))
    return int(shared.starts[units[0]]), sigs


def gather_signatures(shared: Shared, g: int) -> int:
    """Verify task 1, per group: check the edges whose two documents are both in this group (their
    signatures are at hand), and send the others as (edge, home document's signature) rows to the
    group of the other document. With one group (a corpus whose signatures fit one task) nothing
    is sent."""
    groups = shared.options["verify_starts"]
    edges = np.unique(shared.gather("buckets", shared.parts, g))
    first, sig = _group_signatures(shared, g)
    home, other = verify_ends(edges, groups)
    part = shuffle.unit_of(other, groups)
    here = part == g
    similar = _similar(shared, sig, home[here] - first, sig, other[here] - first)
    shared.write("kept_here", g, [edges[here][similar]])
    away = ~here
    rows = np.concatenate([edges[away].view(np.uint32).reshape(-1, 2), sig[home[away] - first]], axis=1)
    shared.write("gather", g, exchange.split(rows, part[away], len(groups)))
    return len(edges)


def check_edges(shared: Shared, g: int) -> tuple[int, int]:
    """Verify task 2, per group: keep the edges sent here whose estimated Jaccard reaches the
    threshold; with those kept by task 1, send them to the components' partition of their larger
    document. Returns (edges received, edges kept)."""
    groups = shared.options["verify_starts"]
    num_perm = shared.options["num_perm"]
    kept = [exchange.gather(shared.work, [shared.path("kept_here", f"{g:05d}")], 0)]
    rows = shared.gather("gather", len(groups), g, dtype=np.uint32, shape=(2 + num_perm,))
    if len(rows):
        first, sig = _group_signatures(shared, g)
        edges = np.ascontiguousarray(rows[:, :2]).view(np.uint64).ravel()
        _, other = verify_ends(edges, groups)
        kept.append(edges[_similar(shared, rows[:, 2:], None, sig, other - first)])
    checked = np.concatenate(kept)
    larger, _ = shuffle.unpack(checked)
    shared.write("checked", g, exchange.split(checked, larger % shared.parts, shared.parts))
    return len(rows), len(checked)


def _similar(shared: Shared, a: np.ndarray, rows_a: np.ndarray | None, b: np.ndarray, rows_b: np.ndarray) -> np.ndarray:
    """Whether each pair of signatures (``a[rows_a[k]]``, ``b[rows_b[k]]``) estimates a Jaccard at or
    above the step's threshold."""
    return estimate_jaccard(a, b, rows_a, rows_b) >= shared.options["threshold"]
