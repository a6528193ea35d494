"""Exact duplicates: documents whose 128-bit hash (of the raw text, or of its normalized words)
is equal. Hashes are gathered as the segment before writes its data, exchanged by partition and
grouped with one sort per partition."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from llmray.decisions import Sidecar
from llmray.io import exchange
from llmray.io.storage import Storage
from llmray.kernels import minhash
from llmray.schema import TEXT

#: Bytes per row in the hash exchange (two hash lanes, document).
HASH_ROW_BYTES = 24


class HashSidecar(Sidecar):
    """(hash high, hash low, row) of a unit's documents, cut into ``fine`` parts by hash: of their
    text, or of another column (``id``, to find documents that share an id). Normalized text
    hashes come from a near-duplicate sidecar's pass over the text where the unit has one."""

    def __init__(self, normalize: bool, fine: int, column: str = TEXT):
        self.normalize, self.fine, self.column = normalize, fine, column
        self.rows: list[np.ndarray] = []
        self.docs = 0
        #: The pass over the text that also gives these hashes (set by a SignatureSidecar).
        self.text_pass: Any = None

    def add(self, table: pa.Table, first_row: int) -> None:
        if table.num_rows == 0:
            return
        hashes = (self.text_pass.of(table)[2] if self.text_pass is not None
                  else minhash.text_hashes(table.column(self.column), self.normalize))
        rows = np.arange(first_row, first_row + len(hashes), dtype=np.uint64)
        self.rows.append(np.concatenate([hashes, rows[:, None]], axis=1))
        self.docs += len(hashes)

    def close(self, work: Storage, name: str) -> dict[str, Any]:
        self.text_pass = None
        rows = np.concatenate(self.rows) if self.rows else np.empty((0, 3), np.uint64)
        exchange.write_parts(work, f"{name}.hashes",
                             exchange.split(rows, exchange.hash_part(rows[:, 0], self.fine), self.fine))
        return {"path": name, "docs": self.docs}


def group_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of (hash high, hash low, document) -> (document, root) of every document whose hash
    another document shares; the root (the group's smallest document) only names the group."""
    order = np.lexsort((rows[:, 2], rows[:, 1], rows[:, 0]))
    rows = rows[order]
    same = (rows[1:, 0] == rows[:-1, 0]) & (rows[1:, 1] == rows[:-1, 1])
    starts = np.r_[True, ~same] if len(rows) else np.zeros(0, bool)
    sizes = np.diff(np.r_[np.flatnonzero(starts), len(rows)])
    group = np.cumsum(starts) - 1
    grouped = sizes[group] > 1
    docs = rows[grouped, 2].astype(np.int64)
    roots = rows[np.flatnonzero(starts)[group], 2][grouped].astype(np.int64)
    return docs, roots

