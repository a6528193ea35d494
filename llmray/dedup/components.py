"""Connected components of the candidate graph: every document mapped to its component's smallest.

Two ways, with the same result:

* ``local_components``: one task, union-find over the edges (memory grows with the edge count, so
  the workflow uses it only below a size limit).
* The distributed default above that: alternating *large-star* and *small-star* steps (Kiveris et
  al., "Connected Components in MapReduce and Beyond", 2014). Each step is a pass over edge
  partitions keyed by one endpoint, where a task sorts its edges and rewires each node's edges
  towards the smallest node it sees; edges never multiply and the graph becomes one star per
  component, centered on its smallest node, in O(log^2 n) steps (a handful on dedup graphs). A task
  holds only its partition of the edges.

Edges are packed ``larger << 32 | smaller`` (see :mod:`buckets`); results are (document, root) rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from llmray.dedup import shuffle
from llmray.dedup.units import unit_of


@njit(cache=True, nogil=True)
def _union_find_min(n, a, b):
    """Root of each of ``n`` nodes after joining ``a[i]`` with ``b[i]``: its component's smallest node."""
    parent = np.arange(n)
    for i in range(a.shape[0]):
        x, y = a[i], b[i]
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        while parent[y] != y:
            parent[y] = parent[parent[y]]
            y = parent[y]
        if x < y:
            parent[y] = x
        elif y < x:
            parent[x] = y
    for i in range(n):
        parent[i] = parent[parent[i]]
    return parent


def _route_pairs(docs: np.ndarray, roots: np.ndarray, unit_starts: np.ndarray) -> list[np.ndarray]:
    """(document, root) rows, one array per unit of the document."""
    rows = np.stack([docs, roots], axis=1).astype(np.int64)
    return shuffle.split(rows, unit_of(docs, unit_starts), len(unit_starts))


def local_components(unit_starts: np.ndarray, *parts: np.ndarray) -> tuple[Any, ...]:
    """Task body for a small graph: (edge count, (document, root) rows per unit)."""
    edges = np.unique(shuffle.concat(parts))
    larger, smaller = shuffle.unpack(edges)
    nodes, inverse = np.unique(np.concatenate([larger, smaller]), return_inverse=True)
    n = len(edges)
    roots = nodes[_union_find_min(len(nodes), inverse[:n], inverse[n:])]
    return (n, *_route_pairs(nodes, roots, unit_starts))


def _groups(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per edge of a sorted ``source << 32 | target`` array: source, target, the smallest target of
    its source, and whether it is the first edge of its source."""
    src, dst = shuffle.unpack(edges)
    starts = np.r_[True, src[1:] != src[:-1]] if len(src) else np.zeros(0, bool)
    first = dst[np.flatnonzero(starts)[np.cumsum(starts) - 1]]
    return src, dst, first, starts


def small_star(n_out: int, *parts: np.ndarray) -> tuple[Any, ...]:
    """Step body over edges keyed by their larger end: link each node and its smaller neighbours to
    the smallest of them. Output: (changes and edges seen, both directions of each new edge per part)."""
    edges = np.unique(shuffle.concat(parts))
    node, neighbour, smallest, leader = _groups(edges)
    # Each non-smallest neighbour moves to the smallest; the node keeps one edge, to the smallest.
    a = np.where(leader, node, neighbour)
    both = np.concatenate([shuffle.pack(a, smallest), shuffle.pack(smallest, a)])
    source = both >> np.uint64(32)
    summary = {"changes": int((~leader).sum()), "edges": len(edges)}
    return (summary, *shuffle.split(both, source % np.uint64(n_out), n_out))


def large_star(n_out: int, *parts: np.ndarray) -> tuple[Any, ...]:
    """Step body over edges keyed by either end: link each node's larger neighbours to the smallest
    node of its neighbourhood. Output: (changes and edges seen, new edges keyed by their larger end)."""
    edges = np.unique(shuffle.concat(parts))
    node, neighbour, smallest, _ = _groups(edges)
    smallest = np.minimum(node, smallest)
    larger = neighbour > node
    out = shuffle.pack(neighbour[larger], smallest[larger])
    summary = {"changes": int((smallest[larger] != node[larger]).sum()), "edges": len(edges)}
    return (summary, *shuffle.split(out, neighbour[larger] % n_out, n_out))


def star_pairs(unit_starts: np.ndarray, *parts: np.ndarray) -> tuple[Any, ...]:
    """After convergence (every edge joins a node to its root): (edge count, rows per unit)."""
    edges = shuffle.concat(parts)
    a, b = shuffle.unpack(edges)
    leaf, root = np.maximum(a, b), np.minimum(a, b)
    docs = np.concatenate([leaf, root])
    roots = np.concatenate([root, root])
    keep = np.unique(shuffle.pack(docs, roots))
    docs, roots = shuffle.unpack(keep)
    return (len(edges), *_route_pairs(docs, roots, unit_starts))
