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

Edges are packed ``larger << 32 | smaller`` (see :mod:`buckets`); results are (document, root) rows
sent to the unit of the document (``components/<p>``).
"""

from __future__ import annotations

import numpy as np

from llmray.dedup import shuffle
from llmray.dedup.layout import Shared
from llmray.dedup.shuffle import unit_of
from llmray.io import exchange
from llmray.kernels.graph import union_find_min


def route_pairs(docs: np.ndarray, roots: np.ndarray, starts: np.ndarray) -> list[np.ndarray]:
    """(document, root) rows, one array per unit of the document."""
    rows = np.stack([docs, roots], axis=1).astype(np.int64)
    return exchange.split(rows, unit_of(docs, starts), len(starts))


def local_components(shared: Shared, stage: str, senders: int) -> int:
    """Task for a small graph: every edge in one union-find; returns the number of unique edges."""
    edges = np.unique(shared.gather(stage, senders, 0, shared.parts))
    larger, smaller = shuffle.unpack(edges)
    nodes, inverse = np.unique(np.concatenate([larger, smaller]), return_inverse=True)
    n = len(edges)
    roots = nodes[union_find_min(len(nodes), inverse[:n], inverse[n:])]
    shared.write("components", 0, route_pairs(nodes, roots, shared.starts))
    return n


def _groups(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per edge of a sorted ``source << 32 | target`` array: source, target, the smallest target of
    its source, and whether it is the first edge of its source."""
    src, dst = shuffle.unpack(edges)
    starts = np.r_[True, src[1:] != src[:-1]] if len(src) else np.zeros(0, bool)
    first = dst[np.flatnonzero(starts)[np.cumsum(starts) - 1]]
    return src, dst, first, starts


def star_step(shared: Shared, source: str, senders: int, target: str, large: bool, p: int) -> dict[str, int]:
    """Task: one large-star or small-star step over partition p of the edges in ``source``.

    Small-star (edges keyed by their larger end): link each node and its smaller neighbours to the
    smallest of them. Large-star (keyed by either end): link each node's larger neighbours to the
    smallest node of its neighbourhood. Returns the changes made and the edges seen.
    """
    edges = np.unique(shared.gather(source, senders, p))
    node, neighbour, smallest, leader = _groups(edges)
    n = shared.parts
    if large:
        smallest = np.minimum(node, smallest)
        larger = neighbour > node
        out = shuffle.pack(neighbour[larger], smallest[larger])
        changes = int((smallest[larger] != node[larger]).sum())
        shared.write(target, p, exchange.split(out, neighbour[larger] % n, n))
    else:
        # Each non-smallest neighbour moves to the smallest; the node keeps one edge, to the smallest.
        a = np.where(leader, node, neighbour)
        both = np.concatenate([shuffle.pack(a, smallest), shuffle.pack(smallest, a)])
        changes = int((~leader).sum())
        shared.write(target, p, exchange.split(both, (both >> np.uint64(32)) % np.uint64(n), n))
    return {"changes": changes, "edges": len(edges)}


def star_pairs(shared: Shared, source: str, p: int) -> int:
    """Task after convergence (every edge joins a node to its root): (document, root) rows."""
    edges = shared.gather(source, shared.parts, p)
    a, b = shuffle.unpack(edges)
    leaf, root = np.maximum(a, b), np.minimum(a, b)
    keep = np.unique(shuffle.pack(np.concatenate([leaf, root]), np.concatenate([root, root])))
    docs, roots = shuffle.unpack(keep)
    shared.write("components", p, route_pairs(docs, roots, shared.starts))
    return len(edges)
