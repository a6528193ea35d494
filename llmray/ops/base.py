"""The op contract: small classes that take and return Arrow tables.

A job file's steps map one-to-one onto registered ops. Each op is a dataclass whose fields are its
parameters (with the published defaults), so the job file, the Python API and ``--help`` share one
source of truth. Ops never see Ray: the runner decides where and how often they run.

Three kinds:
- ``MapOp``: rewrites columns of a batch, keeps every row (normalize, PII redaction, ...).
- ``Filter``: decides per row; ``evaluate`` returns a reason code per row (``KEEP`` or an index into
  ``reasons``). The base class splits the batch and names each drop ``"<op>.<rule>"``.
- ``GlobalOp``: needs to see the whole corpus (deduplication); runs between row-local segments over
  the parquet written by the previous segment.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from llmray.pipeline.context import GlobalContext, GlobalResult

TEXT = "text"
ID = "id"
SOURCE = "source"
KEEP = -1

_REGISTRY: dict[str, type[Op]] = {}


def register(cls: type[Op]) -> type[Op]:
    """Class decorator: make an op available to job files under ``cls.name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"two ops registered as {cls.name!r}")
    _REGISTRY[cls.name] = cls
    return cls


def registry() -> dict[str, type[Op]]:
    import llmray.ops.builtin  # noqa: F401  (registers the built-in ops)

    return dict(_REGISTRY)


@dataclasses.dataclass
class Op:
    """Base of every step. Subclasses are dataclasses; their fields are the step's parameters."""

    name: ClassVar[str] = ""
    #: One line for ``llmray ops`` and the report.
    summary: ClassVar[str] = ""

    def setup(self) -> None:
        """Load heavy state (models, word lists). Called once per worker process before first use."""

    def params(self) -> dict[str, Any]:
        """The job-file parameters (fields with ``init=False`` hold runtime state, not parameters)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}


@dataclasses.dataclass
class MapOp(Op):
    """Rewrites columns; the row count never changes."""

    def __call__(self, table: pa.Table) -> pa.Table:
        raise NotImplementedError

    def counters(self) -> dict[str, int]:
        """Counts gathered since the last call (e.g. PII redactions), then reset. Optional."""
        return {}


@dataclasses.dataclass
class Filter(Op):
    """Decides per row. Subclasses implement ``evaluate`` and list their rule names in ``reasons``."""

    reasons: ClassVar[tuple[str, ...]] = ()

    def evaluate(self, table: pa.Table) -> np.ndarray:
        """Return an int array, one entry per row: ``KEEP`` (-1) or the index of the failed rule."""
        raise NotImplementedError

    def reason_names(self) -> list[str]:
        return [f"{self.name}.{rule}" for rule in self.reasons]

    def split(self, table: pa.Table) -> tuple[pa.Table, pa.Table, np.ndarray]:
        """Apply the decision: (kept rows, dropped rows, reason code of each dropped row)."""
        codes = np.asarray(self.evaluate(table), dtype=np.int16)
        if len(codes) != table.num_rows:
            raise RuntimeError(f"{self.name}: evaluate returned {len(codes)} codes for {table.num_rows} rows")
        keep = codes == KEEP
        if keep.all():
            return table, table.slice(0, 0), codes[:0]
        mask = pa.array(keep)
        return table.filter(mask), table.filter(pc.invert(mask)), codes[~keep]


@dataclasses.dataclass
class GlobalOp(Op):
    """Sees the whole corpus: reads the previous segment's parquet, writes the kept rows."""

    #: Reason names this op can report, for the docs and the report.
    reasons: ClassVar[tuple[str, ...]] = ()

    def run(self, ctx: GlobalContext) -> GlobalResult:
        raise NotImplementedError


def text_column(table: pa.Table) -> pa.Array:
    """The text column as one contiguous StringArray (large_string is cast down only when it fits)."""
    col = table.column(TEXT)
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return arr
