"""What the runner and global steps hand each other: units of data, contexts, decisions.

Kept below the step layer so that the dedup stages (which steps use) and the runner (which uses
steps) share these types without importing each other.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pyarrow as pa

from llmray.io.storage import Storage


@dataclasses.dataclass
class ChunkContext:
    """What the runner tells a step about the unit of data it is about to see (outputs, decisions)."""

    key: str
    index: int
    #: Unique per attempt at the unit: names of files written for it carry it.
    attempt: str
    output: Storage
    work: Storage


class Sidecar:
    """Collects, batch by batch, what a global step needs from one unit; written once at its end."""

    def add(self, table: pa.Table, first_row: int) -> None:
        raise NotImplementedError

    def share(self, others: list[Sidecar]) -> bool:
        """Told, before the first batch, of every sidecar of the unit (itself among them), so that
        sidecars that need the same pass over the text can take it once. True where this one takes
        the pass for others: it is fed first, so the pass's time is its step's. By default it takes none."""
        return False

    def close(self, work: Storage, name: str) -> dict[str, Any]:
        """Write the unit's sidecar as ``name`` under ``work``; return a small JSON-able summary."""
        raise NotImplementedError


def ready_sidecars(made: list[tuple[str, Sidecar | None]]) -> list[tuple[str, Sidecar]]:
    """A unit's (name, sidecar) pairs, ready to feed: those that exist, told of each other (see
    ``Sidecar.share``), the ones that take a shared pass first."""
    sidecars = [(name, sidecar) for name, sidecar in made if sidecar is not None]
    leads = set()
    for name, sidecar in sidecars:  # share() sets up the others' passes
        if sidecar.share([s for _, s in sidecars]):
            leads.add(name)
    return sorted(sidecars, key=lambda pair: pair[0] not in leads)


@dataclasses.dataclass
class Unit:
    """A unit of the corpus entering a global step: the previous segment's output of one chunk."""

    index: int
    key: str
    #: Documents in the unit; their numbers run from ``start`` to ``start + docs - 1``.
    docs: int
    start: int
    #: The marker (relative to the output) listing the unit's shards.
    marker: str
    #: The stem of this step's sidecar of the unit, relative to the work storage.
    sidecar: str


@dataclasses.dataclass
class GlobalContext:
    """What a global step's ``decide`` gets: where the units are, where to work, how to run tasks."""

    #: The step's name (reasons are ``<name>.<rule>``) and its stage in this job (unique: ``x#2``).
    name: str
    stage: str
    #: Runs task lists on the cluster (``engine.map(fn, items, label, shared=...)``).
    engine: Any
    #: The run's work storage (units' shards and sidecars, and this step's scratch below it).
    data: Storage
    #: This step's scratch directory, relative to ``data`` (survives a crash, for resume).
    work_dir: str
    #: The run's output (markers; extra outputs: clusters/, tokenizer/).
    output: Storage
    units: list[Unit]
    num_cpus: int
    #: Every unit's sidecar summary for this step, merged (see Sidecar.close), and ``fine``.
    summary: dict[str, Any]
    #: Decisions of the global steps before this one in the same group: rows they drop are gone.
    earlier: list[Decision]


@dataclasses.dataclass
class Decision:
    """A global step's decision: where it is stored and figures for stats.json."""

    step: str
    #: Step-specific description the applier reads (paths, rates); small and JSON-able.
    payload: dict[str, Any] = dataclasses.field(default_factory=dict)
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
