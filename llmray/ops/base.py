"""The step contract: small dataclasses that take and return Arrow tables.

A job file's steps map one-to-one onto registered steps. Each step is a dataclass whose fields are
its parameters (with the published defaults), so the job file, the Python API, ``llmray ops`` and
the JSON Schema share one source of truth, checked by :mod:`llmray.params` on construction.

Three kinds, each saying what it does to the documents:

- ``MapStep``: rewrites columns of a batch and keeps every row (normalize, PII redaction, ...).
- ``FilterStep``: decides per row; ``evaluate`` returns a reason code per row (``KEEP`` or an index
  into ``reasons``) and the base class names each drop ``"<step>.<rule>"``.
- ``GlobalStep``: decides over the whole corpus (deduplication, mixing, a vocabulary). It reads what
  its ``sidecar`` gathered from each unit as the segment before it wrote the data, ``decide``s with
  tasks over those sidecars, and its ``applier`` (a filter) applies the decision in the segment
  after it: the corpus is not rewritten by the global step itself.

Every step is a Ray Data batch function: ``ds.map_batches(step, batch_format="pyarrow")`` (pandas
and numpy batches work too). A map rewrites; a filter drops its rejects, or with ``annotate: true``
keeps every row and writes the reason into a ``reason`` column. Steps never touch Ray themselves:
the runner, or :mod:`llmray.data`, decides where they run.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llmray import params
from llmray.decisions import ChunkContext, Decision, GlobalContext, Sidecar
from llmray.io.storage import Storage
from llmray.kernels import arrow
from llmray.schema import ID, REASON, TEXT, THRESHOLD, VALUE

KEEP = -1

_REGISTRY: dict[str, type[Step]] = {}


def register(cls: type[Step]) -> type[Step]:
    """Class decorator: make a step available to job files under ``cls.name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"two steps registered as {cls.name!r}: {_REGISTRY[cls.name]} and {cls}")
    _REGISTRY[cls.name] = cls
    return cls


def registered() -> dict[str, type[Step]]:
    """Every step registered so far (``llmray.ops.available`` also loads built-ins and plugins)."""
    return dict(_REGISTRY)


def kind_of(cls: type) -> str:
    return "filter" if issubclass(cls, FilterStep) else "global" if issubclass(cls, GlobalStep) else "map"


@dataclasses.dataclass
class Step:
    """Base of every step. Subclasses are dataclasses; their fields are the step's parameters."""

    name: ClassVar[str] = ""
    #: One line for ``llmray ops`` and the report.
    summary: ClassVar[str] = ""
    #: False for steps that only read the documents to make a product (tokens, a vocabulary).
    changes_documents: ClassVar[bool] = True

    def __post_init__(self) -> None:
        params.validate(self, self.name)

    def setup(self) -> None:
        """Load heavy state (models, word lists). Called once per process before first use."""

    def params(self) -> dict[str, Any]:
        """The parameters as a job file writes them."""
        return {name: getattr(self, name) for name in params.fields(type(self))}

    def begin_chunk(self, ctx: ChunkContext) -> None:
        """Runner only: a new unit of data starts (steps with per-unit outputs or decisions)."""

    def end_chunk(self) -> dict[str, Any]:
        """Runner only: the unit is done; return what was written for it (``files``, counts)."""
        return {}

    def finish(self, output: Storage, products: dict[str, Any]) -> dict[str, Any]:
        """Runner only: every unit is done; ``products`` adds up what ``end_chunk`` returned.
        Returns figures for stats.json (and may write a product's index)."""
        return {}

    def on(self, text: str = TEXT, id: str = ID) -> _Renamed:  # noqa: A002
        """This step as a batch function for data whose text (and id) columns have other names."""
        return _Renamed(self, {text: TEXT, id: ID})

    def __call__(self, batch: Any) -> Any:
        """Ray Data batch function: a batch in any of Ray's formats, returned in the same format."""
        table, kind = to_arrow(batch)
        self.setup()
        return from_arrow(self.transform(table), kind)

    def transform(self, table: pa.Table) -> pa.Table:
        raise NotImplementedError


@dataclasses.dataclass
class MapStep(Step):
    """Rewrites columns of every row. A row it cannot rewrite (no main text in a page) may be
    dropped with one of ``reasons``: ``map`` then also returns a reason code per row."""

    reasons: ClassVar[tuple[str, ...]] = ()

    def map(self, table: pa.Table) -> pa.Table | tuple[pa.Table, np.ndarray]:
        raise NotImplementedError

    def reason_names(self) -> list[str]:
        return [f"{self.name}.{rule}" for rule in self.reasons]

    def map_rows(self, table: pa.Table) -> tuple[pa.Table, np.ndarray | None]:
        """(the rewritten rows, reason codes or None when every row was rewritten)."""
        out = self.map(table)
        out, codes = out if isinstance(out, tuple) else (out, None)
        if out.num_rows != table.num_rows:
            raise RuntimeError(f"{self.name} is a map step but changed the row count "
                               f"({table.num_rows} -> {out.num_rows})")
        if codes is not None and (codes == KEEP).all():
            codes = None
        return out, codes

    def counters(self) -> dict[str, int]:
        """Counts gathered since the last call (e.g. PII redactions), then reset. Optional."""
        return {}

    def transform(self, table: pa.Table) -> pa.Table:
        if REASON in table.column_names and table.column(REASON).null_count < table.num_rows:
            return _on_live_rows(table, self.transform)
        out, codes = self.map_rows(table)
        return out if codes is None else out.filter(arrow.from_numpy(codes == KEEP))


@dataclasses.dataclass
class Verdict:
    """A filter's decision on a batch: a reason code per row and, for threshold rules, what the
    failed rule measured on the row and its limit (NaN where nothing was measured or kept)."""

    codes: np.ndarray
    value: np.ndarray | None = None
    threshold: np.ndarray | None = None

    def measured(self, rows: np.ndarray) -> list[pa.Array]:
        """The ``value`` and ``threshold`` columns of the given rows (null where not measured)."""
        out = []
        for values in (self.value, self.threshold):
            picked = np.full(int(rows.sum()) if rows.dtype == bool else len(rows), np.nan) if values is None \
                else np.asarray(values, np.float64)[rows]
            out.append(arrow.from_numpy(picked, nulls=np.isnan(picked)))
        return out


def with_measures(table: pa.Table, value: pa.Array, threshold: pa.Array) -> pa.Table:
    """``table`` with ``value`` and ``threshold`` columns (replacing any it had)."""
    for name, column in ((VALUE, value), (THRESHOLD, threshold)):
        at = table.schema.get_field_index(name)
        table = table.set_column(at, name, column) if at >= 0 else table.append_column(name, column)
    return table


@dataclasses.dataclass
class FilterStep(Step):
    """Decides per row. Subclasses implement ``evaluate`` and list their rule names in ``reasons``."""

    reasons: ClassVar[tuple[str, ...]] = ()
    #: Keep every row and write the drop reason into a ``reason`` column instead (for tuning).
    annotate: bool = dataclasses.field(default=False, kw_only=True)

    def evaluate(self, table: pa.Table) -> np.ndarray | Verdict:
        """Return an int array, one entry per row: ``KEEP`` (-1) or the index of the failed rule;
        or a ``Verdict`` with those codes and what the failed rules measured."""
        raise NotImplementedError

    def reason_names(self) -> list[str]:
        return [f"{self.name}.{rule}" for rule in self.reasons]

    def verdict(self, table: pa.Table) -> Verdict:
        result = self.evaluate(table)
        verdict = result if isinstance(result, Verdict) else Verdict(result)
        verdict.codes = np.asarray(verdict.codes, dtype=np.int16)
        if len(verdict.codes) != table.num_rows:
            raise RuntimeError(f"{self.name}: evaluate returned {len(verdict.codes)} codes for {table.num_rows} rows")
        return verdict

    def codes(self, table: pa.Table) -> np.ndarray:
        return self.verdict(table).codes

    def decide(self, table: pa.Table) -> tuple[pa.Table, Verdict]:
        """The verdict on every row, and the table it splits: ``table``, or ``table`` with the
        columns the step computed on the way (language and classify add theirs)."""
        return table, self.verdict(table)

    def dropped_rows(self, table: pa.Table, verdict: Verdict, drop: np.ndarray) -> pa.Table:
        """The rows ``drop`` selects, with the ``value`` and ``threshold`` that decided (and what else
        a step says about its drops: dedup names the document kept in their place)."""
        return with_measures(table.filter(arrow.from_numpy(drop)), *verdict.measured(drop))

    def split(self, table: pa.Table) -> tuple[pa.Table, pa.Table, np.ndarray]:
        """Apply the decision: (kept rows, dropped rows with the ``value`` and ``threshold`` that
        decided, reason code of each dropped row)."""
        table, verdict = self.decide(table)
        codes = verdict.codes
        keep = codes == KEEP
        if keep.all():
            return table, table.slice(0, 0), codes[:0]
        return table.filter(arrow.from_numpy(keep)), self.dropped_rows(table, verdict, ~keep), codes[~keep]

    def transform(self, table: pa.Table) -> pa.Table:
        if not self.annotate:
            if REASON in table.column_names:
                return _on_live_rows(table, lambda live: self.split(live)[0], keep_dead=True)
            return self.split(table)[0]
        earlier = table.column(REASON) if REASON in table.column_names else None
        live = (arrow.to_numpy(earlier.is_null()) if earlier is not None
                else np.ones(table.num_rows, bool))
        codes = np.full(table.num_rows, KEEP, np.int32)
        value, threshold = np.full(table.num_rows, np.nan), np.full(table.num_rows, np.nan)
        if live.any():
            verdict = self.verdict(table.filter(arrow.from_numpy(live)) if not live.all() else table)
            codes[live] = verdict.codes
            measured = verdict.measured(np.ones(len(verdict.codes), bool))
            value[live], threshold[live] = (arrow.to_numpy(m, fill=np.nan) for m in measured)
        names = arrow.strings(self.reason_names())
        column = pa.DictionaryArray.from_arrays(arrow.from_numpy(codes, nulls=codes == KEEP), names).cast(pa.string())
        mine = [arrow.from_numpy(v, nulls=np.isnan(v)) for v in (value, threshold)]
        if earlier is None:
            return with_measures(table.append_column(REASON, column), *mine)
        # A row an earlier step rejected keeps that step's reason and measures.
        first = earlier.is_null()
        merged = pc.if_else(first, column, earlier)
        table = table.set_column(table.schema.get_field_index(REASON), REASON, merged)
        if VALUE in table.column_names:
            mine = [pc.if_else(first, m, table.column(name)) for m, name in zip(mine, (VALUE, THRESHOLD), strict=True)]
        return with_measures(table, *mine)


@dataclasses.dataclass
class GlobalStep(Step):
    """Decides over the whole corpus; see the module docstring for sidecar, decide and applier."""

    #: Reason names this step can report, for the docs and the report.
    reasons: ClassVar[tuple[str, ...]] = ()

    #: Can share a group with global steps before it, taking their decisions into account itself
    #: (dedup steps); otherwise it starts a group of its own, after those decisions are applied.
    composes: ClassVar[bool] = False

    def sidecar(self, fine: int = 1) -> Sidecar | None:
        """A per-unit collector of what ``decide`` needs (signatures, hashes, byte counts); ``fine``
        is how many parts an exchanged sidecar is cut into."""
        return None

    def decide(self, ctx: GlobalContext) -> Decision:
        raise NotImplementedError

    def applier(self, decision: Decision) -> FilterStep | None:
        """The filter that applies a decision to each unit (None: the step drops nothing)."""
        return None

    def transform(self, table: pa.Table) -> pa.Table:
        raise TypeError(f"{self.name} sees the whole corpus: use llmray.data.apply(ds, step), not map_batches")


# -- batch formats -------------------------------------------------------------------------------

def to_arrow(batch: Any) -> tuple[pa.Table, str]:
    """A Ray Data batch (Arrow table, pandas DataFrame or dict of numpy arrays) as a table."""
    if isinstance(batch, pa.Table):
        return batch, "pyarrow"
    if isinstance(batch, dict):
        return pa.table({k: pa.array(list(v) if getattr(v, "dtype", None) is np.dtype(object) else v)
                         for k, v in batch.items()}), "numpy"
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas comes with ray[data]
        pd = None
    if pd is not None and isinstance(batch, pd.DataFrame):
        return pa.Table.from_pandas(batch, preserve_index=False), "pandas"
    raise TypeError(f"expected a pyarrow.Table, a pandas.DataFrame or a dict of arrays, got {type(batch).__name__}")


def from_arrow(table: pa.Table, kind: str) -> Any:
    if kind == "pyarrow":
        return table
    if kind == "pandas":
        return table.to_pandas()
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def _on_live_rows(table: pa.Table, fn: Any, keep_dead: bool = True) -> pa.Table:
    """Apply ``fn`` to the rows without a reason; rows already rejected follow unchanged."""
    live = table.column(REASON).is_null()
    out = fn(table.filter(live))
    dead = table.filter(pc.invert(live))
    return pa.concat_tables([out, dead.cast(out.schema)]) if keep_dead and dead.num_rows else out


class _Renamed:
    """A step applied to data whose text and id columns have other names."""

    def __init__(self, step: Step, renames: dict[str, str]):
        self.step, self.renames = step, {k: v for k, v in renames.items() if k != v}

    def __call__(self, batch: Any) -> Any:
        table, kind = to_arrow(batch)
        forward = {**{v: f"__llmray_{v}" for v in self.renames.values() if v in table.column_names},
                   **self.renames}
        back = {v: k for k, v in forward.items()}
        table = table.rename_columns([forward.get(c, c) for c in table.column_names])
        self.step.setup()
        out = self.step.transform(table)
        return from_arrow(out.rename_columns([back.get(c, c) for c in out.column_names]), kind)
