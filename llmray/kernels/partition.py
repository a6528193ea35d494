"""Rows grouped by partition number for the exchange: a stable counting sort, one pass over the
part numbers instead of a comparison sort."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _order(part, n):
    starts = np.zeros(n + 1, np.int64)
    for p in part:
        starts[p + 1] += 1
    counts = starts[1:].copy()
    for k in range(n):
        starts[k + 1] += starts[k]
    order = np.empty(part.shape[0], np.int64)
    for i in range(part.shape[0]):
        p = part[i]
        order[starts[p]] = i
        starts[p] += 1
    return order, counts


def part_order(part: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions grouped by part 0..n-1, order kept within each; rows per part)."""
    return _order(np.ascontiguousarray(part, dtype=np.int64), n)
