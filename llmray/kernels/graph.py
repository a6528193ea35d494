"""Graph kernels for deduplication: the star edges of LSH buckets, and union-find over an edge list."""

from __future__ import annotations

import numpy as np

from llmray.kernels.jit import njit
from llmray.kernels.partition import grouped


@njit(cache=True, nogil=True)
def union_find_min(n, a, b):
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


_S32 = np.uint64(32)


#: Rows per hash table of ``star_edges``: its tables (25 bytes a slot, two slots a row) stay in cache.
_ROWS_PER_TABLE = 4096


def star_edges(rows: np.ndarray) -> np.ndarray:
    """Packed edges ``larger << 32 | smaller`` from each document to the center of every bucket
    (a run of equal keys) it shares with another document, over ``rows`` of (key, signature hash,
    document); the center is the member with the smallest (signature hash, document). No sort:
    the rows are dealt into groups by the top bits of their keys (hashes, well spread), then each
    group goes through an open-addressing table small enough to stay in cache (one table for all
    rows misses the cache on nearly every row: 2.5x slower). Edges may repeat (two documents can
    share several buckets)."""
    rows = np.ascontiguousarray(rows, dtype=np.uint64).reshape(-1, 3)
    bits = 0
    while (len(rows) >> bits) > _ROWS_PER_TABLE and bits < 16:
        bits += 1
    group = rows[:, 0] >> np.uint64(64 - bits) if bits else np.zeros(len(rows), np.uint64)
    dealt, counts = grouped(rows, group, 1 << bits)
    return _star_edges(dealt, np.concatenate([[0], np.cumsum(counts)]))


@njit(cache=True, nogil=True)
def _star_edges(rows, starts):
    largest = 0
    for g in range(starts.shape[0] - 1):
        largest = max(largest, starts[g + 1] - starts[g])
    size = 1
    while size < 2 * largest:
        size *= 2
    slot_key = np.empty(size, np.uint64)
    count = np.zeros(size, np.uint8)  # 0: empty; saturates at 2 (shared)
    best_sig = np.empty(size, np.uint64)
    best_doc = np.empty(size, np.uint64)
    slot_of = np.empty(rows.shape[0], np.int64)
    out = np.empty(rows.shape[0], np.uint64)
    m = 0
    for g in range(starts.shape[0] - 1):
        first, last = starts[g], starts[g + 1]
        table = 1
        while table < 2 * (last - first):
            table *= 2
        mask = np.uint64(table - 1)
        count[:table] = 0
        for i in range(first, last):
            k, sig, doc = rows[i, 0], rows[i, 1], rows[i, 2]
            j = np.int64(k & mask)  # low bits: the top ones chose the group
            while count[j] != 0 and slot_key[j] != k:
                j = (j + 1) & (table - 1)
            if count[j] == 0:
                slot_key[j], count[j], best_sig[j], best_doc[j] = k, 1, sig, doc
            else:
                count[j] = 2
                if sig < best_sig[j] or (sig == best_sig[j] and doc < best_doc[j]):
                    best_sig[j], best_doc[j] = sig, doc
            slot_of[i] = j
        for i in range(first, last):
            j = slot_of[i]
            if count[j] == 2 and rows[i, 2] != best_doc[j]:
                a, b = rows[i, 2], best_doc[j]
                out[m] = (max(a, b) << _S32) | min(a, b)
                m += 1
    return out[:m]
