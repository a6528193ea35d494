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
from llmray.kernels.minhash import estimate_jaccard


def bucket_edges(rows: np.ndarray) -> np.ndarray:
    """Unique packed star edges of the buckets in ``rows`` (band key, signature hash, document)."""
    return np.unique(star_edges(rows))


def bucket_partition(shared: Shared, p: int) -> int:
    """Task: band rows of partition p -> edges, sent to the components' partition of their larger
    document (or, when verifying, to the verify group of their larger document)."""
    edges = bucket_edges(shared.sidecar_rows("bands", p))
    larger, _ = shuffle.unpack(edges)
    groups = shared.options.get("verify_starts")
    if groups is None:
        shared.write("buckets", p, exchange.split(edges, larger % shared.parts, shared.parts))
    else:
        part = np.searchsorted(groups, larger, side="right") - 1
        shared.write("buckets", p, exchange.split(edges, part, len(groups)))
    return len(edges)


def _group_signatures(shared: Shared, g: int) -> tuple[int, np.ndarray]:
    """(first document, signatures of every document) of verify group g's units."""
    units = shared.options["verify_groups"][g]
    sigs = exchange.gather(shared.work, [f"{shared.sides[u]}.sig" for u in units], 0, dtype=np.uint32,
                           shape=(shared.options["num_perm"],))
    return int(shared.starts[units[0]]), sigs


def gather_signatures(shared: Shared, g: int) -> int:
    """Verify task 1, per group: attach the larger document's signature to each of its edges and
    send (edge, signature) rows to the group of the smaller document."""
    groups = shared.options["verify_starts"]
    edges = np.unique(shared.gather("buckets", shared.parts, g))
    first, sig = _group_signatures(shared, g)
    larger, smaller = shuffle.unpack(edges)
    rows = np.concatenate([edges.view(np.uint32).reshape(-1, 2), sig[larger - first]], axis=1)
    part = np.searchsorted(groups, smaller, side="right") - 1
    shared.write("gather", g, exchange.split(rows, part, len(groups)))
    return len(edges)


def check_edges(shared: Shared, g: int) -> int:
    """Verify task 2, per group: keep the edges whose estimated Jaccard reaches the threshold, sent
    to the components' partition of their larger document."""
    groups = shared.options["verify_starts"]
    num_perm = shared.options["num_perm"]
    rows = shared.gather("gather", len(groups), g, dtype=np.uint32, shape=(2 + num_perm,))
    first, sig = _group_signatures(shared, g)
    edges = np.ascontiguousarray(rows[:, :2]).view(np.uint64).ravel()
    _, smaller = shuffle.unpack(edges)
    kept = edges[estimate_jaccard(rows[:, 2:], sig[smaller - first]) >= shared.options["threshold"]]
    larger, _ = shuffle.unpack(kept)
    shared.write("checked", g, exchange.split(kept, larger % shared.parts, shared.parts))
    return len(kept)
