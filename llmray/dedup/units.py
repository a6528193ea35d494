"""The input of a dedup step cut into units of bounded size, one task each.

A unit is a run of whole parquet row groups, or a slice of one row group larger than the target
(each such slice reads its whole row group, so writers should keep row groups moderate). Documents
are numbered by their place in the input (files in path order, then rows), so a unit is a
contiguous range of document numbers and the numbers do not depend on how the input was cut.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from llmray.ops.base import TEXT

#: Document numbers travel packed two to a uint64.
MAX_DOCS = 1 << 32


@dataclasses.dataclass(frozen=True)
class Unit:
    index: int
    path: str
    #: (row group, first row, end row) of each piece, in order.
    pieces: tuple[tuple[int, int, int], ...]
    #: Number of the unit's first document.
    start: int
    rows: int
    #: Uncompressed size of the text column (from the parquet footer), for sizing.
    text_bytes: int

    def read(self, columns: list[str] | None = None) -> Iterator[pa.Table]:
        """The unit's rows, one row group at a time."""
        reader = pq.ParquetFile(self.path)
        for group, first, end in self.pieces:
            table = reader.read_row_group(group, columns=columns, use_threads=False)
            yield table if (first, end) == (0, table.num_rows) else table.slice(first, end - first)


def plan_units(input_dir: Path, unit_bytes: int) -> list[Unit]:
    """Cut the input's parquet files into units of about ``unit_bytes`` of text."""
    files = sorted(p for p in Path(input_dir).rglob("*.parquet") if p.is_file())
    units: list[Unit] = []
    start = 0
    pieces: list[tuple[int, int, int]] = []
    rows = size = 0

    def close(path: Path) -> None:
        nonlocal start, pieces, rows, size
        if pieces:
            units.append(Unit(len(units), str(path), tuple(pieces), start, rows, size))
            start, pieces, rows, size = start + rows, [], 0, 0

    for path in files:
        meta = pq.ParquetFile(path).metadata
        text_col = meta.schema.to_arrow_schema().get_field_index(TEXT)
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            n, group_size = group.num_rows, group.column(text_col).total_uncompressed_size if text_col >= 0 else 0
            if n == 0:
                continue
            if group_size > unit_bytes and n > 1:
                close(path)
                k = min(n, -(-group_size // unit_bytes))
                bounds = [n * i // k for i in range(k + 1)]
                for a, b in zip(bounds[:-1], bounds[1:], strict=True):
                    pieces, rows, size = [(g, a, b)], b - a, group_size * (b - a) // n
                    close(path)
                continue
            if size and size + group_size > unit_bytes:
                close(path)
            pieces.append((g, 0, n))
            rows += n
            size += group_size
        close(path)
    if start >= MAX_DOCS:
        raise ValueError(f"{start} documents: one dedup step handles at most {MAX_DOCS - 1}")
    return units


def unit_of(docs: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Index of the unit holding each document number, given the units' first numbers."""
    return np.searchsorted(starts, docs, side="right") - 1
