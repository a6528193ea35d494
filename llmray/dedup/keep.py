"""One document per duplicate group by the keep rule; the decision is which rows of each unit go.

Groups arrive as (document, root) rows; the root only names the group. Documents that an earlier
step of the same group already drops take no part (so ``exact_dedup`` then ``minhash_dedup`` means
what it says even though both look at the same data). The keeper is chosen by the rule, not by
document number, so the kept ids depend on the data and the rule alone:

* ``smallest_id``: the smallest ``id`` (string order);
* ``max:<column>``: the largest value of a numeric column (nulls lowest), ties by smallest ``id``.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from llmray.dedup.layout import Shared
from llmray.dedup.shuffle import unit_of
from llmray.io import exchange
from llmray.io.writers import read_shard
from llmray.kernels import arrow
from llmray.schema import DUPLICATE_OF, ID

_ROOT, _DOC, _VALUE = "root", "doc", "value"
#: Dropped ids each partition reports, for stats.json and the report.
EXAMPLES = 5


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


def _unit_columns(shared: Shared, unit: int, columns: list[str]) -> pa.Table:
    """Columns of every row of a unit, read from the shards its marker lists."""
    marker = shared.output.get_json(shared.markers[unit])
    store = shared.output if marker["shards"]["store"] == "output" else shared.work
    tables = [t for shard in marker["shards"]["files"] for t in read_shard(store, shard["path"], columns, 1 << 20)]
    return pa.concat_tables(tables) if tables else pa.Table.from_pydict({c: pa.nulls(0, pa.string()) for c in columns})


def rank_units(shared: Shared, group: int) -> int:
    """Task over one group of ``shared.combine_group`` consecutive units: their grouped documents
    with id (and the rule's value), sent by group root in one object (so the partitions that choose
    read one range per group of units, and the stage runs units / group tasks, not units)."""
    first, last = group * shared.combine_group, min(shared.units, (group + 1) * shared.combine_group)
    pairs = shared.gather("components", shared.options["component_senders"], first, last, shape=(2,),
                          dtype=np.int64)
    of_unit = exchange.split(pairs, unit_of(pairs[:, 0], shared.starts) - first, last - first)
    out = pa.concat_tables([_ranked(shared, unit, of_unit[unit - first]) for unit in range(first, last)])
    roots = arrow.to_numpy(out.column(_ROOT))
    shared.write("rank", group, exchange.split_table(out, roots % shared.parts, shared.parts))
    return out.num_rows


def rank_groups(shared: Shared) -> int:
    return -(-shared.units // shared.combine_group)


def _ranked(shared: Shared, unit: int, pairs: np.ndarray) -> pa.Table:
    """The unit's grouped documents, from its (document, root) pairs: (root, document, id[, value])."""
    rule: KeepRule = shared.options["rule"]
    docs, first = np.unique(pairs[:, 0], return_index=True)
    roots = pairs[first, 1]
    out = pa.Table.from_pydict({_ROOT: arrow.from_numpy(roots), _DOC: arrow.from_numpy(docs)})
    columns = [ID] + ([rule.column] if rule.column else [])
    if len(docs):
        rows = docs - int(shared.starts[unit])
        table = _unit_columns(shared, unit, columns).take(arrow.from_numpy(rows))
        eligible = ~np.isin(rows, shared.earlier_drops(unit))
        out = out.append_column(ID, table.column(ID).cast(pa.string()))
        if rule.column:
            out = out.append_column(_VALUE, table.column(rule.column).cast(pa.float64()))
        out = out.filter(arrow.from_numpy(eligible))
    else:
        out = out.append_column(ID, pa.nulls(0, pa.string()))
        if rule.column:
            out = out.append_column(_VALUE, pa.nulls(0, pa.float64()))
    return out


def choose_tasks(shared: Shared) -> tuple[int, int]:
    """(tasks, partitions per task) of the choosing stage: one task per partition, or, past twice
    ``combine_group`` partitions, one per run of that many (fewer, larger decision objects)."""
    per = shared.combine_group if shared.parts > 2 * shared.combine_group else 1
    return -(-shared.parts // per), per


def choose_keepers(shared: Shared, task: int) -> dict[str, int]:
    """Task over the groups of a run of partitions: pick each group's keeper; the others are the
    decision, sent to their unit as (row, id kept in their place). With ``clusters``, also writes
    (id, cluster_id = the keeper's id, cluster_size) of every grouped document to the output."""
    rule: KeepRule = shared.options["rule"]
    _, per = choose_tasks(shared)
    lo, hi = task * per, min(shared.parts, (task + 1) * per)
    table = exchange.gather_tables(shared.work, shared.senders("rank", rank_groups(shared)), lo, hi)
    if table is None or table.num_rows == 0:
        empty = pa.Table.from_pydict({"row": pa.nulls(0, pa.int64()), DUPLICATE_OF: pa.nulls(0, pa.string())})
        shared.write("decision", task, [empty] * shared.units)
        return {"groups": 0, "largest": 0, "dropped": 0, "examples": []}
    # The document number last: of documents equal under the rule (the same id), the first one stays.
    order = ([(_ROOT, "ascending")] + ([(_VALUE, "descending")] if rule.column else [])
             + [(ID, "ascending"), (_DOC, "ascending")])
    table = table.sort_by(order)
    roots = arrow.to_numpy(table.column(_ROOT))
    docs = arrow.to_numpy(table.column(_DOC))
    starts = np.r_[True, roots[1:] != roots[:-1]]
    group = np.cumsum(starts) - 1
    sizes = np.bincount(group)
    in_group = sizes[group] > 1
    keepers = pc.take(table.column(ID), arrow.from_numpy(np.flatnonzero(starts)[group]))
    drop = ~starts & in_group
    dropped_docs = docs[drop]
    units = unit_of(dropped_docs, shared.starts)
    decision = pa.Table.from_pydict({"row": arrow.from_numpy(dropped_docs - shared.starts[units]),
                                   DUPLICATE_OF: keepers.filter(arrow.from_numpy(drop))})
    shared.write("decision", task, exchange.split_table(decision, units, shared.units))
    clusters = shared.options.get("clusters")
    if clusters:
        grouped = arrow.from_numpy(in_group)
        records = pa.Table.from_pydict({"id": table.column(ID).filter(grouped), "cluster_id": keepers.filter(grouped),
                                      "cluster_size": arrow.from_numpy(sizes[group][in_group].astype(np.int64))})
        buffer = io.BytesIO()
        pq.write_table(records, buffer)
        shared.output.put(f"{clusters}-{task:05d}.parquet", buffer.getvalue())
    real = sizes[sizes > 1]
    examples = table.column(ID).filter(arrow.from_numpy(drop)).slice(0, EXAMPLES).to_pylist()
    return {"groups": len(real), "largest": int(real.max()) if len(real) else 0, "dropped": int(drop.sum()),
            "examples": examples}
