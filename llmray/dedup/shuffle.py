"""Hash partitioning for the exchanges between stages: rows are split into numbered parts."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_S32 = np.uint64(32)
LOW32 = np.uint64(0xFFFFFFFF)


def hash_part(keys: np.ndarray, n: int) -> np.ndarray:
    """Partition of each well-mixed uint64 key, from its high 32 bits (independent of the low ones)."""
    return ((keys >> _S32) * np.uint64(n)) >> _S32


def split(rows: np.ndarray, part: np.ndarray, n: int) -> list[np.ndarray]:
    """``rows`` (along axis 0) grouped into ``n`` arrays by partition number, order kept within each."""
    order = np.argsort(part, kind="stable")
    bounds = np.cumsum(np.bincount(part.astype(np.int64), minlength=n))[:-1]
    return np.split(rows[order], bounds)


def split_table(table: pa.Table, part: np.ndarray, n: int) -> list[pa.Table]:
    order = np.argsort(part, kind="stable")
    table = table.take(order)
    ends = np.cumsum(np.bincount(part.astype(np.int64), minlength=n))
    return [table.slice(int(a), int(b - a)) for a, b in zip(np.r_[0, ends[:-1]], ends, strict=True)]


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
