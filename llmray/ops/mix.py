"""Mixing sources in chosen proportions: keep a deterministic sample of each source so that the
output holds each source's target share of text bytes.

It runs after cleaning and filtering (shares of the *final* corpus are what training sees), as a
global step: one pass counts each source's bytes, a second keeps each document with probability
``rate[source]`` decided by a hash of its id and the seed, so reruns and resumes pick the same
documents. A source is never upsampled: the largest output that honours every share is chosen.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from llmray.errors import JobError
from llmray.kernels.hashing import fmix64
from llmray.kernels.minhash import text_hashes
from llmray.ops.base import ID, SOURCE, TEXT, GlobalOp, register
from llmray.pipeline.context import GlobalContext, GlobalResult


def keep_fraction(ids: pa.Array, rate: float, seed: int) -> np.ndarray:
    """Deterministic Bernoulli(rate) per id: the same id and seed always give the same answer.
    One compiled pass over the id strings (the dedup text hash), then the seed mixed in."""
    if rate >= 1.0:
        return np.ones(len(ids), dtype=bool)
    hashes = text_hashes(ids)[:, 0] ^ fmix64(np.uint64(seed))
    return fmix64(hashes) < np.uint64(min(int(rate * 2**64), 2**64 - 1))


def _source_bytes(path: str) -> dict[str, int]:
    table = pq.read_table(path, columns=[SOURCE, TEXT])
    sized = pa.table({SOURCE: table.column(SOURCE), "n": pc.binary_length(table.column(TEXT))})
    grouped = sized.group_by(SOURCE).aggregate([("n", "sum")]).to_pydict()
    return dict(zip(grouped[SOURCE], grouped["n_sum"], strict=True))


def _sample_file(path: str, out_dir: str, rejects_dir: str | None, rates: dict[str, float],
                 seed: int) -> dict[str, int]:
    table = pq.read_table(path)
    keep = np.ones(table.num_rows, dtype=bool)
    sources = table.column(SOURCE).to_numpy(zero_copy_only=False)
    ids = table.column(ID).combine_chunks()
    for source, rate in rates.items():
        rows = np.flatnonzero(sources == source)
        if len(rows):
            keep[rows] = keep_fraction(ids.take(pa.array(rows)), rate, seed)
    mask = pa.array(keep)
    kept, dropped = table.filter(mask), table.filter(pc.invert(mask))
    name = Path(path).name
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    pq.write_table(kept, Path(out_dir) / name)
    if rejects_dir and dropped.num_rows:
        Path(rejects_dir).mkdir(parents=True, exist_ok=True)
        pq.write_table(dropped.append_column("reason", pa.array(["mix.over_share"] * dropped.num_rows)),
                       Path(rejects_dir) / f"mix-{name}")
    size = pc.binary_length(table.column(TEXT))
    return {"docs_in": table.num_rows, "docs_out": kept.num_rows,
            "bytes_in": int(pc.sum(size).as_py() or 0),
            "bytes_out": int(pc.sum(pc.filter(size, mask)).as_py() or 0)}


@register
@dataclasses.dataclass
class Mix(GlobalOp):
    """Samples each source down to its target share of the output's text bytes."""

    name: ClassVar[str] = "mix"
    summary: ClassVar[str] = "keep each source's target share of bytes (deterministic sample by seed)"
    reasons: ClassVar[tuple[str, ...]] = ("over_share",)
    #: source name -> target share; shares are normalized to sum to 1.
    shares: dict[str, float] = dataclasses.field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.shares or any(v <= 0 for v in self.shares.values()):
            raise JobError("mix.shares: give each source a positive share, e.g. {web: 0.6, books: 0.4}")

    def rates(self, source_bytes: dict[str, int]) -> dict[str, float]:
        """Keep-rate per source: the largest mix in which no source needs more than it has."""
        total_share = sum(self.shares.values())
        shares = {s: v / total_share for s, v in self.shares.items()}
        present = {s: b for s, b in source_bytes.items() if s in shares and b > 0}
        if not present:
            return {}
        scale = min(present[s] / shares[s] for s in present)
        return {s: min(1.0, round(shares[s] * scale / present[s], 12)) for s in present}

    def run(self, ctx: GlobalContext) -> GlobalResult:
        import ray

        files = sorted(str(p) for p in ctx.input_dir.rglob("*.parquet"))
        count = ray.remote(num_cpus=1)(_source_bytes)
        source_bytes: dict[str, int] = {}
        for part in ray.get([count.remote(f) for f in files]):
            for source, n in part.items():
                source_bytes[source] = source_bytes.get(source, 0) + n
        unknown = sorted(set(source_bytes) - set(self.shares))
        if unknown:
            raise JobError(f"mix.shares: no share given for source(s) {', '.join(unknown)}")
        rates = self.rates(source_bytes)
        sample = ray.remote(num_cpus=1)(_sample_file)
        rejects = str(ctx.rejects_dir) if ctx.rejects_dir else None
        parts = ray.get([sample.remote(f, str(ctx.output_dir), rejects, rates, self.seed) for f in files])
        total = {k: sum(p[k] for p in parts) for k in ("docs_in", "docs_out", "bytes_in", "bytes_out")}
        return GlobalResult(dropped={"mix.over_share": total["docs_in"] - total["docs_out"]},
                            details={"source_bytes": source_bytes, "rates": rates}, **total)
