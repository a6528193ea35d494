"""Mixing sources in chosen proportions: keep a deterministic sample of each source so that the
output holds each source's target share of text bytes.

It runs after cleaning and filtering (shares of the *final* corpus are what training sees), as a
global step: its sidecar counts each source's bytes as the segment before writes them, the decision
is a keep-rate per source, and the next segment keeps each document with probability
``rate[source]`` decided by a hash of its id and the seed, so reruns and resumes pick the same
documents. A source is never upsampled: the largest output that honours every share is chosen.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from llmray.decisions import Decision, GlobalContext, Sidecar
from llmray.errors import JobError
from llmray.io.storage import Storage
from llmray.kernels import arrow
from llmray.kernels.hashing import fmix64
from llmray.kernels.minhash import text_hashes
from llmray.ops.base import KEEP, FilterStep, GlobalStep, register
from llmray.schema import ID, SOURCE, per_source


def keep_fraction(ids: pa.Array | pa.ChunkedArray, rate: float, seed: int) -> np.ndarray:
    """Deterministic Bernoulli(rate) per id: the same id and seed always give the same answer.
    One compiled pass over the id strings (the dedup text hash), then the seed mixed in."""
    if rate >= 1.0:
        return np.ones(len(ids), dtype=bool)
    hashes = text_hashes(ids)[:, 0] ^ fmix64(np.uint64(seed))
    return fmix64(hashes) < np.uint64(min(int(rate * 2**64), 2**64 - 1))


class _SourceBytes(Sidecar):
    def __init__(self) -> None:
        self.bytes: dict[str, int] = {}

    def add(self, table: pa.Table, first_row: int) -> None:
        for source, _, n in per_source(table):
            self.bytes[source] = self.bytes.get(source, 0) + n

    def close(self, work: Storage, name: str) -> dict[str, Any]:
        return {"source_bytes": self.bytes}


@dataclasses.dataclass
class KeepShares(FilterStep):
    """Applies a mix decision: keeps each document with its source's rate, by a hash of its id."""

    name: ClassVar[str] = "mix"
    reasons: ClassVar[tuple[str, ...]] = ("over_share",)
    rates: dict[str, float] = dataclasses.field(default_factory=dict)
    seed: int = 0

    def evaluate(self, table: pa.Table) -> np.ndarray:
        keep = np.ones(table.num_rows, dtype=bool)
        codes, sources = arrow.codes(table.column(SOURCE))
        ids = table.column(ID).combine_chunks()
        for code, source in enumerate(sources):
            rate = self.rates.get(source)
            rows = np.flatnonzero(codes == code)
            if rate is not None and len(rows):
                keep[rows] = keep_fraction(ids.take(arrow.from_numpy(rows)), rate, self.seed)
        return np.where(keep, KEEP, 0).astype(np.int16)


@register
@dataclasses.dataclass
class Mix(GlobalStep):
    """Samples each source down to its target share of the output's text bytes."""

    name: ClassVar[str] = "mix"
    summary: ClassVar[str] = "keep each source's target share of bytes (deterministic sample by seed)"
    reasons: ClassVar[tuple[str, ...]] = ("over_share",)
    #: source name -> target share; shares are normalized to sum to 1.
    shares: dict[str, float] = dataclasses.field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.shares or any(v <= 0 for v in self.shares.values()):
            raise JobError("shares: give each source a positive share, e.g. {web: 0.6, books: 0.4}")

    def rates(self, source_bytes: dict[str, int]) -> dict[str, float]:
        """Keep-rate per source: the largest mix in which no source needs more than it has."""
        total_share = sum(self.shares.values())
        shares = {s: v / total_share for s, v in self.shares.items()}
        present = {s: b for s, b in source_bytes.items() if s in shares and b > 0}
        if not present:
            return {}
        scale = min(present[s] / shares[s] for s in present)
        return {s: min(1.0, round(shares[s] * scale / present[s], 12)) for s in present}

    def sidecar(self, fine: int = 1) -> Sidecar:
        return _SourceBytes()

    def decide(self, ctx: GlobalContext) -> Decision:
        source_bytes = dict(ctx.summary.get("source_bytes", {}))
        unknown = sorted(set(source_bytes) - set(self.shares))
        if unknown:
            raise JobError(f"mix.shares: no share given for source(s) {', '.join(unknown)}")
        rates = self.rates(source_bytes)
        return Decision(step=ctx.name, payload={"rates": rates, "seed": self.seed},
                        details={"source_bytes": source_bytes, "rates": rates})

    def applier(self, decision: Decision) -> FilterStep:
        return KeepShares(rates=decision.payload["rates"], seed=decision.payload["seed"])
