"""LSH buckets to candidate edges, and the optional check of each edge against the threshold.

A bucket is a run of equal band keys in one partition, found with one sort. Each member is linked
to the bucket's *center* only (a star, not all pairs), which keeps the edge count linear in the
bucket size and the same connected components. The center is the member with the smallest
signature hash (then document number), so it does not depend on how documents were numbered; when
edges are verified, that makes the surviving edges independent of input layout too.

Edges travel packed as ``larger << 32 | smaller`` document number.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from llmray.dedup import shuffle
from llmray.kernels.minhash import estimate_jaccard


def bucket_edges(rows: np.ndarray) -> np.ndarray:
    """Unique packed star edges of the buckets in ``rows`` (band key, signature hash, document)."""
    # Most band keys are unique: one plain sort finds the shared ones, and only those get ordered
    # by (key, signature hash, document) to pick each bucket's center.
    by_key = np.argsort(rows[:, 0])
    sorted_keys = rows[by_key, 0]
    same = sorted_keys[1:] == sorted_keys[:-1]
    shared = np.zeros(len(rows), bool)
    shared[1:] |= same
    shared[:-1] |= same
    rows = rows[by_key[shared]]
    if len(rows) == 0:
        return np.empty(0, np.uint64)
    order = np.lexsort((rows[:, 2], rows[:, 1], rows[:, 0]))
    keys, docs = rows[order, 0], rows[order, 2]
    starts = np.r_[True, keys[1:] != keys[:-1]]
    center = docs[np.flatnonzero(starts)[np.cumsum(starts) - 1]]
    member = ~starts & (docs != center)
    a, b = docs[member], center[member]
    return np.unique(shuffle.pack(np.maximum(a, b), np.minimum(a, b)))


def bucket_partition(n_out: int, route_starts: np.ndarray | None, *parts: np.ndarray) -> tuple[Any, ...]:
    """Task body: band rows of one partition -> (edge count, edges for output part 0..n_out-1).

    Edges go to ``larger % n_out`` (the components' partitioning), or, when ``route_starts`` gives
    the first document of each verify group, to the group of the larger document.
    """
    edges = bucket_edges(shuffle.concat(parts, width=3))
    larger, _ = shuffle.unpack(edges)
    if route_starts is None:
        part = larger % n_out
    else:
        part = np.searchsorted(route_starts, larger, side="right") - 1
    return (len(edges), *shuffle.split(edges, part, n_out))


def gather_signatures(group_start: int, n_out: int, route_starts: np.ndarray, n_edge_parts: int,
                      *parts: np.ndarray) -> tuple[Any, ...]:
    """Verify step 1, per group: attach the larger document's signature to each of its edges.

    The first ``n_edge_parts`` varargs are edge parts, the rest the group's signature blocks in
    document order. Output: (unique edges, then (edges, their signatures) for each group of the
    smaller document).
    """
    edges = np.unique(shuffle.concat(parts[:n_edge_parts]))
    sig = np.concatenate(parts[n_edge_parts:])
    larger, smaller = shuffle.unpack(edges)
    part = np.searchsorted(route_starts, smaller, side="right") - 1
    split_edges = shuffle.split(edges, part, n_out)
    split_rows = shuffle.split(sig[larger - group_start], part, n_out)
    return (len(edges), *zip(split_edges, split_rows, strict=True))


def check_edges(group_start: int, threshold: float, n_out: int, n_inputs: int, *parts: Any) -> tuple[Any, ...]:
    """Verify step 2, per group: keep edges whose estimated Jaccard reaches the threshold.

    The first ``n_inputs`` varargs are (edges, signatures) pairs, the rest the group's signature
    blocks. Output: (edges kept, kept edges for components part 0..n_out-1).
    """
    pairs = [p for p in parts[:n_inputs] if len(p[0])]
    sig = np.concatenate(parts[n_inputs:])
    if not pairs:
        return (0, *shuffle.split(np.empty(0, np.uint64), np.empty(0, np.int64), n_out))
    edges = np.concatenate([p[0] for p in pairs])
    other = np.concatenate([p[1] for p in pairs])
    larger, smaller = shuffle.unpack(edges)
    kept = edges[estimate_jaccard(other, sig[smaller - group_start]) >= threshold]
    return (len(kept), *shuffle.split(kept, (kept >> np.uint64(32)) % np.uint64(n_out), n_out))
