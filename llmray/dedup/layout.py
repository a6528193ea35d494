"""Where a dedup step's stages find their inputs and put their outputs: one object, shared by every
task of the step (sent once, not per task), so task arguments are only a part number.

Files, all under the step's scratch directory ``step`` of the work storage:

    buckets/<p>       candidate edges of partition p, cut by the components' partition
    gather/<g>, checked/<g>     the verify stages (edges with signatures; edges kept)
    kept_here/<g>     edges kept by group g's first verify task (both documents in g)
    stars/<round>/<p> distributed connected components, one round each
    components/<p>    (document, root) rows, cut by unit
    rank/<g>          grouped documents of unit group g with id (and the keep rule's value), cut by root
    decision/<t>      (row, id kept in its place) of every dropped document, cut by unit
    <stage>+/<g>      the objects of group g of a stage's senders, combined (see ``combine``)
    side.<s>++/<g>-<r>  receiver range r of group g of those combined sidecar objects, combined again

A unit's sidecar (``sides[u]``) was written by the segment before, under the work storage root.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from llmray.io import exchange
from llmray.io.storage import Storage
from llmray.kernels import arrow


def second_level_ranges(parts: int, group: int) -> tuple[int, int]:
    """(receivers per range, ranges) of a sidecar exchange's second merge level: at most ``group``
    ranges, so a task of it holds about one first-level object's bytes."""
    per = -(-parts // min(group, parts))
    return per, -(-parts // per)


@dataclasses.dataclass
class Shared:
    """What every task of one dedup step reads."""

    #: The work storage root: units' sidecars and intermediate shards are below it.
    work: Storage
    #: The run's output: units' markers (listing their shards), clusters/.
    output: Storage
    #: This step's scratch directory, relative to ``work``.
    step: str
    #: Sidecar path stem of each unit, relative to ``work``.
    sides: list[str]
    #: Marker path of each unit (relative to ``output``): it lists the unit's shards.
    markers: list[str]
    #: First document number of each unit.
    starts: np.ndarray
    #: Receivers of the exchanges between partitioned stages.
    parts: int
    #: Parts the sidecars were cut into (a multiple-free superset of ``parts``).
    fine: int
    #: (decision directory relative to ``work``, senders) of earlier steps in the group: their
    #: drops are gone before this step looks.
    earlier: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    #: Step-specific settings (keep rule, threshold, ...).
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: An exchange of more than twice this many senders is combined, this many senders' objects
    #: into one, before its receivers read it (see ``combine``).
    combine_group: int = 32
    #: The exchanges whose senders were combined: stage (or ``side.<suffix>``) -> combined objects.
    combined: dict[str, int] = dataclasses.field(default_factory=dict)
    #: Sidecar exchanges combined a second time: ``side.<suffix>`` -> receivers per range.
    split: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def units(self) -> int:
        return len(self.starts)

    def path(self, *parts: str) -> str:
        return "/".join([self.step, *parts])

    def senders(self, stage: str, count: int) -> list[str]:
        """The objects a receiver of ``stage`` reads: its ``count`` senders', or their combinations."""
        if stage in self.combined:
            return [self.path(f"{stage}+", f"{i:05d}") for i in range(self.combined[stage])]
        return [self.path(stage, f"{i:05d}") for i in range(count)]

    def write(self, stage: str, index: int, parts: list[Any]) -> None:
        exchange.write_parts(self.work, self.path(stage, f"{index:05d}"), parts)

    def gather(self, stage: str, senders: int, lo: int, hi: int | None = None, shape: tuple[int, ...] = (),
               dtype: Any = np.uint64) -> np.ndarray:
        return exchange.gather(self.work, self.senders(stage, senders), lo, hi, dtype=dtype, shape=shape)

    def sidecar_rows(self, suffix: str, p: int) -> np.ndarray:
        """Receiver p's rows of every unit's sidecar, with each row's document number made global."""
        lo, hi = exchange.fine_range(p, self.parts, self.fine)
        stage = f"side.{suffix}"
        if stage in self.split:  # the second level: one object per first-level group of groups
            r = p // self.split[stage]
            base, _ = self.receiver_range(stage, r)
            rels = [self.path(f"{stage}++", f"{g:05d}-{r:05d}") for g in range(self.second_groups(stage))]
            return exchange.gather(self.work, rels, lo - base, hi - base, shape=(3,))
        if stage in self.combined:  # combined with global document numbers already
            return exchange.gather(self.work, self.senders(stage, 0), lo, hi, shape=(3,))
        rows, counts = exchange.gather_counted(self.work, [f"{side}.{suffix}" for side in self.sides], lo, hi,
                                               shape=(3,))
        at = 0
        for unit, count in enumerate(counts.tolist()):
            self._globalized(unit, rows[at:at + count])
            at += count
        return rows

    def combine(self, stage: str, count: int, group: int) -> int:
        """Task: senders ``group * combine_group ...`` of ``stage`` (of ``count``) as one object
        (``side.<suffix>``: those units' sidecars, their document numbers made global)."""
        first, last = group * self.combine_group, min(count, (group + 1) * self.combine_group)
        target = self.path(f"{stage}+", f"{group:05d}")
        if not stage.startswith("side."):
            return exchange.combine(self.work, [self.path(stage, f"{i:05d}") for i in range(first, last)], target)
        suffix = stage.removeprefix("side.")
        return exchange.combine(self.work, [f"{side}.{suffix}" for side in self.sides[first:last]], target,
                                lambda k, rows: self._globalized(first + k, rows))

    def second_groups(self, stage: str) -> int:
        """Groups of first-level objects in a sidecar exchange's second level."""
        return -(-self.combined[stage] // self.combine_group)

    def receiver_range(self, stage: str, r: int) -> tuple[int, int]:
        """The fine parts ``[lo, hi)`` of receiver range ``r`` of a sidecar exchange's second level."""
        per = self.split[stage]
        first, last = r * per, min(self.parts, (r + 1) * per)
        return exchange.fine_range(first, self.parts, self.fine)[0], exchange.fine_range(last - 1, self.parts,
                                                                                         self.fine)[1]

    def combine_again(self, stage: str, group: int, r: int) -> int:
        """Task: receiver range ``r`` of first-level objects ``group * combine_group ...`` of a
        sidecar exchange as one object. Cut by receivers, so a task holds about what a first-level
        one did (a group's share of ``combine_group`` objects), however many units the corpus has."""
        first, last = group * self.combine_group, min(self.combined[stage], (group + 1) * self.combine_group)
        lo, hi = self.receiver_range(stage, r)
        rels = [self.path(f"{stage}+", f"{i:05d}") for i in range(first, last)]
        return exchange.combine(self.work, rels, self.path(f"{stage}++", f"{group:05d}-{r:05d}"), lo=lo, hi=hi)

    def _globalized(self, unit: int, rows: np.ndarray) -> np.ndarray:
        """Sidecar rows of ``unit`` (band key or hash, ..., document) with global document numbers."""
        rows[:, 2] += np.uint64(self.starts[unit])
        return rows

    def earlier_drops(self, unit: int) -> np.ndarray:
        """Rows of ``unit`` that earlier steps of the group drop."""
        found = []
        for directory, senders in self.earlier:
            table = exchange.gather_tables(self.work, [f"{directory}/{i:05d}" for i in range(senders)], unit)
            if table is not None:
                found.append(arrow.to_numpy(table.column("row")))
        return np.unique(np.concatenate(found)) if found else np.empty(0, np.int64)
