"""Exact duplicates: documents whose 128-bit hash (of the raw text, or of its normalized words)
is equal. Hashes are exchanged by partition and grouped with one sort per partition."""

from __future__ import annotations

from typing import Any

import numpy as np

from llmray.dedup import shuffle
from llmray.dedup.units import Unit, unit_of
from llmray.kernels import minhash
from llmray.ops.base import TEXT
from llmray.pipeline.stats import text_bytes


def hash_unit(unit: Unit, normalize: bool, n_out: int) -> tuple[Any, ...]:
    """Task body: (text bytes, rows of (hash high, hash low, document) per partition)."""
    hashes, size = [], 0
    for table in unit.read([TEXT]):
        hashes.append(minhash.text_hashes(table.column(TEXT), normalize))
        size += text_bytes(table)
    h = np.concatenate(hashes) if hashes else np.zeros((0, 2), np.uint64)
    docs = np.arange(unit.start, unit.start + len(h), dtype=np.uint64)
    rows = np.concatenate([h, docs[:, None]], axis=1)
    return (size, *shuffle.split(rows, shuffle.hash_part(rows[:, 0], n_out), n_out))


def group_partition(unit_starts: np.ndarray, *parts: np.ndarray) -> tuple[Any, ...]:
    """Task body: runs of equal hashes -> (documents in groups, (document, root) rows per unit)."""
    rows = shuffle.concat(parts, width=3)
    order = np.lexsort((rows[:, 2], rows[:, 1], rows[:, 0]))
    rows = rows[order]
    same = (rows[1:, 0] == rows[:-1, 0]) & (rows[1:, 1] == rows[:-1, 1])
    starts = np.r_[True, ~same] if len(rows) else np.zeros(0, bool)
    sizes = np.diff(np.r_[np.flatnonzero(starts), len(rows)])
    group = np.cumsum(starts) - 1
    grouped = sizes[group] > 1
    docs = rows[grouped, 2].astype(np.int64)
    roots = rows[np.flatnonzero(starts)[group], 2][grouped].astype(np.int64)
    pairs = np.stack([docs, roots], axis=1)
    return (len(docs), *shuffle.split(pairs, unit_of(docs, unit_starts), len(unit_starts)))
