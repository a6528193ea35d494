"""Graph kernels for deduplication: the star edges of LSH buckets, and union-find over an edge list."""

from __future__ import annotations

import numpy as np
from numba import njit


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


@njit(cache=True, nogil=True)
def star_edges(keys, sig_hash, docs):
    """Packed edges ``larger << 32 | smaller`` from each document to the center of every bucket
    (a run of equal ``keys``) it shares with another document; the center is the member with the
    smallest (signature hash, document). One pass over the rows through an open-addressing table,
    no sort: most keys are unique. Edges may repeat (two documents can share several buckets)."""
    n = keys.shape[0]
    size = 1
    while size < 2 * n:
        size *= 2
    mask = np.uint64(size - 1)
    slot_key = np.empty(size, np.uint64)
    count = np.zeros(size, np.uint8)  # 0: empty; saturates at 2 (shared)
    best_sig = np.empty(size, np.uint64)
    best_doc = np.empty(size, np.uint64)
    slot_of = np.empty(n, np.int64)
    for i in range(n):
        k = keys[i]
        j = np.int64(k & mask)  # keys are hashes: their low bits are well spread
        while count[j] != 0 and slot_key[j] != k:
            j = (j + 1) & (size - 1)
        if count[j] == 0:
            slot_key[j], count[j], best_sig[j], best_doc[j] = k, 1, sig_hash[i], docs[i]
        else:
            count[j] = 2
            if sig_hash[i] < best_sig[j] or (sig_hash[i] == best_sig[j] and docs[i] < best_doc[j]):
                best_sig[j], best_doc[j] = sig_hash[i], docs[i]
        slot_of[i] = j
    out = np.empty(n, np.uint64)
    m = 0
    for i in range(n):
        j = slot_of[i]
        if count[j] == 2 and docs[i] != best_doc[j]:
            a, b = docs[i], best_doc[j]
            out[m] = (max(a, b) << _S32) | min(a, b)
            m += 1
    return out[:m]
