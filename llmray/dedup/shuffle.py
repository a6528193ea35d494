"""Document numbers packed for the exchanges: an edge is two numbers in one uint64."""

from __future__ import annotations

import numpy as np

_S32 = np.uint64(32)
LOW32 = np.uint64(0xFFFFFFFF)
#: Document numbers travel packed two to a uint64.
MAX_DOCS = 1 << 32


def pack(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Two document numbers (< 2**32) in one uint64, so edges sort and deduplicate as one array."""
    return (hi.astype(np.uint64) << _S32) | lo.astype(np.uint64)


def unpack(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (packed >> _S32).astype(np.int64), (packed & LOW32).astype(np.int64)


def concat(parts: tuple | list, dtype=np.uint64, width: int | None = None) -> np.ndarray:
    """Concatenate received parts (possibly none) into one array."""
    parts = [p for p in parts if len(p)]
    if parts:
        return np.concatenate(parts)
    return np.empty((0, width) if width else 0, dtype=dtype)


def unit_of(docs: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Index of the unit holding each document number, given the units' first numbers."""
    return np.searchsorted(starts, docs, side="right") - 1
