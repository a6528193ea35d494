"""One document per duplicate group by the keep rule, then the kept and dropped rows written per unit.

Groups arrive as (document, root) rows; the root only names the group. The keeper is chosen by the
rule, not by document number, so the kept ids depend on the data and the rule alone:

* ``smallest_id``: the smallest ``id`` (string order);
* ``max:<column>``: the largest value of a numeric column (nulls lowest), ties by smallest ``id``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from llmray.dedup import shuffle
from llmray.dedup.units import Unit, unit_of
from llmray.io.writers import ShardWriter
from llmray.ops.base import ID
from llmray.pipeline.stats import text_bytes

_ROOT, _DOC, _VALUE = "root", "doc", "value"


@dataclasses.dataclass(frozen=True)
class KeepRule:
    """Parsed ``keep`` parameter; ``column`` is None for smallest_id."""

    column: str | None = None

    @classmethod
    def parse(cls, text: str) -> KeepRule:
        if text == "smallest_id":
            return cls()
        if text.startswith("max:") and len(text) > 4:
            return cls(text[4:])
        raise ValueError(f"keep: expected 'smallest_id' or 'max:<column>', got {text!r}")

    def check(self, schema: pa.Schema) -> None:
        """Refuse a column that the input lacks or that is not numeric, before any work is done."""
        if self.column is None:
            return
        if self.column not in schema.names:
            raise ValueError(f"keep: max:{self.column}: no column {self.column!r} in the input "
                             f"(columns: {', '.join(schema.names)})")
        kind = schema.field(self.column).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            raise ValueError(f"keep: max:{self.column}: the column is {kind}, not numeric")


def rank_unit(unit: Unit, rule: KeepRule, n_out: int, *parts: np.ndarray) -> tuple[Any, ...]:
    """Task body: attach id (and rule value) to the unit's grouped documents.

    Output: (rows, then tables of root, doc, id[, value] per partition of the root).
    """
    pairs = shuffle.concat(parts, dtype=np.int64, width=2)
    docs, first = np.unique(pairs[:, 0], return_index=True)
    roots = pairs[first, 1]
    columns = [ID] + ([rule.column] if rule.column else [])
    table = pa.concat_tables(list(unit.read(columns))) if len(docs) else None
    out = pa.table({_ROOT: roots, _DOC: docs})
    if table is not None:
        local = pa.array(docs - unit.start)
        out = out.append_column(ID, table.column(ID).take(local).cast(pa.string()))
        if rule.column:
            out = out.append_column(_VALUE, table.column(rule.column).take(local).cast(pa.float64()))
    else:
        out = out.append_column(ID, pa.array([], pa.string()))
        if rule.column:
            out = out.append_column(_VALUE, pa.array([], pa.float64()))
    return (len(docs), *shuffle.split_table(out, roots % n_out, n_out))


def choose_keepers(rule: KeepRule, unit_starts: np.ndarray, clusters_file: str | None,
                   *parts: pa.Table) -> tuple[Any, ...]:
    """Task body over groups of one partition: pick each group's keeper.

    Output: (summary, dropped document numbers per unit). With ``clusters_file``, also writes
    (id, cluster_id = the keeper's id, cluster_size) for every grouped document there.
    """
    table = pa.concat_tables([p for p in parts if p.num_rows] or [parts[0]])
    order = [(_ROOT, "ascending")] + ([(_VALUE, "descending")] if rule.column else []) + [(ID, "ascending")]
    table = table.sort_by(order)
    roots = table.column(_ROOT).to_numpy()
    docs = table.column(_DOC).to_numpy()
    starts = np.r_[True, roots[1:] != roots[:-1]] if len(roots) else np.zeros(0, bool)
    group = np.cumsum(starts) - 1
    sizes = np.bincount(group) if len(group) else np.zeros(0, np.int64)
    dropped = docs[~starts]
    if clusters_file and table.num_rows:
        keepers = pc.take(table.column(ID), pa.array(np.flatnonzero(starts)))
        clusters = pa.table({"id": table.column(ID), "cluster_id": keepers.take(pa.array(group)),
                             "cluster_size": pa.array(sizes[group], pa.int64())})
        Path(clusters_file).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(clusters, clusters_file)
    summary = {"groups": int(starts.sum()), "largest": int(sizes.max()) if len(sizes) else 0}
    return (summary, *shuffle.split(dropped, unit_of(dropped, unit_starts), len(unit_starts)))


def write_unit(unit: Unit, output_dir: str, rejects_dir: str | None, prefix: str, reason: str,
               *parts: np.ndarray) -> dict[str, int]:
    """Task body: copy the unit's rows to ``output_dir``, minus the dropped ones (to ``rejects_dir``)."""
    dropped = np.unique(shuffle.concat(parts, dtype=np.int64)) - unit.start
    kept_writer = ShardWriter(Path(output_dir), f"{prefix}-u{unit.index:05d}")
    rejects = ShardWriter(Path(rejects_dir), f"{prefix}-u{unit.index:05d}") if rejects_dir else None
    counts = {"docs_in": 0, "docs_out": 0, "bytes_in": 0, "bytes_out": 0}
    offset = 0
    for table in unit.read():
        drop = np.zeros(table.num_rows, bool)
        drop[dropped[(dropped >= offset) & (dropped < offset + table.num_rows)] - offset] = True
        offset += table.num_rows
        kept = table.filter(pa.array(~drop)) if drop.any() else table
        counts["docs_in"] += table.num_rows
        counts["bytes_in"] += text_bytes(table)
        counts["docs_out"] += kept.num_rows
        counts["bytes_out"] += text_bytes(kept)
        kept_writer.write(kept)
        if rejects is not None and drop.any():
            gone = table.filter(pa.array(drop))
            rejects.write(gone.append_column("reason", pa.array([reason] * gone.num_rows, pa.string())))
    kept_writer.close()
    if rejects is not None:
        rejects.close()
    return counts
