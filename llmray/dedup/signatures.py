"""MinHash signatures and LSH band rows of a unit, gathered as the segment before writes its data;
and the choice of bands x rows for a threshold."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pyarrow as pa

from llmray.decisions import Sidecar
from llmray.dedup.exact import HashSidecar
from llmray.io import exchange
from llmray.io.storage import Storage
from llmray.kernels import minhash
from llmray.schema import TEXT

#: Cost of missing a pair at or above the threshold, relative to a candidate below it (see lsh_params).
FN_WEIGHT = 3.0
#: Bytes per band row in the bucket exchange (key, signature hash, document).
BAND_ROW_BYTES = 24


@dataclasses.dataclass(frozen=True)
class SketchSpec:
    num_perm: int
    ngram: int
    #: Shingles: words (False), characters (True), or words and CJK characters (``minhash.Auto``).
    chars: bool | minhash.Auto
    seed: int
    bands: int
    rows: int


def collision_probability(jaccard: np.ndarray | float, bands: int, rows: int) -> np.ndarray:
    """Probability that two documents share at least one band: the LSH S-curve."""
    return 1.0 - (1.0 - np.asarray(jaccard, dtype=np.float64) ** rows) ** bands


def lsh_params(threshold: float, num_perm: int, fn_weight: float = FN_WEIGHT) -> tuple[int, int]:
    """(bands, rows) with bands * rows == num_perm minimizing FP area + fn_weight * FN area.

    FP area integrates the S-curve below the threshold, FN area its complement above (uniform
    Jaccard prior). Missed pairs weigh ``fn_weight`` times more than false candidates: a missed
    duplicate stays in the training data, a false candidate can still be removed by ``verify``.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    grid = np.linspace(0.0, 1.0, 2001)
    below, above = grid <= threshold, grid >= threshold

    def area(y: np.ndarray, x: np.ndarray) -> float:
        return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2)

    best: tuple[float, int, int] | None = None
    for bands in range(1, num_perm + 1):
        if num_perm % bands:
            continue
        rows = num_perm // bands
        curve = collision_probability(grid, bands, rows)
        cost = area(curve[below], grid[below]) + fn_weight * area(1.0 - curve[above], grid[above])
        if best is None or cost < best[0]:
            best = (cost, bands, rows)
    assert best is not None
    return best[1], best[2]


class TextPass:
    """Signatures, token counts and normalized exact hashes of the batch in hand, from one
    tokenization of its text (``minhash.sketches``): a job with both dedups reads each text once."""

    def __init__(self, spec: SketchSpec):
        self.spec = spec
        self._table: pa.Table | None = None
        self._result: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def of(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if table is not self._table or self._result is None:
            spec = self.spec
            self._result = minhash.sketches(table.column(TEXT), spec.num_perm, spec.ngram, spec.chars, spec.seed)
            self._table = table
        return self._result


class SignatureSidecar(Sidecar):
    """Band rows (band key, signature hash, row) of a unit's documents, cut into ``fine`` parts by
    key; with ``keep_signatures`` also the signatures themselves (for ``verify``).

    The signature hash makes the choice of a bucket's center independent of document numbering
    (see buckets). Documents without tokens get no rows: an empty shingle set resembles nothing.
    """

    def __init__(self, spec: SketchSpec, fine: int, keep_signatures: bool):
        self.spec, self.fine, self.keep_signatures = spec, fine, keep_signatures
        self.rows: list[np.ndarray] = []
        self.sigs: list[np.ndarray] = []
        self.docs = self.empty = 0
        self.text_pass: TextPass | None = None

    def share(self, others: list[Sidecar]) -> bool:
        """With ``auto`` shingles, an exact dedup's normalized text hashes come from the same tokens
        (for text without CJK characters; the kernel re-tokenizes the others)."""
        if minhash.shingle_mode(self.spec.chars)[0] != minhash.AUTO:
            return False
        for other in others:
            if isinstance(other, HashSidecar) and other.normalize and other.column == TEXT \
                    and other.text_pass is None:
                self.text_pass = other.text_pass = TextPass(self.spec)
                return True
        return False

    def add(self, table: pa.Table, first_row: int) -> None:
        if table.num_rows == 0:
            return
        spec = self.spec
        if self.text_pass is not None:
            sig, ntokens, _ = self.text_pass.of(table)
        else:
            sig, ntokens = minhash.signatures(table.column(TEXT), spec.num_perm, spec.ngram, spec.chars, spec.seed)
        keys = minhash.band_keys(sig, spec.bands, spec.rows, spec.seed)
        has_tokens = ntokens > 0
        rows = np.arange(first_row, first_row + len(sig), dtype=np.uint64)
        sig_hash = np.bitwise_xor.reduce(keys, axis=1)
        self.rows.append(np.stack([keys[has_tokens].ravel(), np.repeat(sig_hash[has_tokens], spec.bands),
                                   np.repeat(rows[has_tokens], spec.bands)], axis=1))
        if self.keep_signatures:
            self.sigs.append(sig)
        self.docs += len(sig)
        self.empty += int((~has_tokens).sum())

    def close(self, work: Storage, name: str) -> dict[str, Any]:
        self.text_pass = None
        rows = np.concatenate(self.rows) if self.rows else np.empty((0, 3), np.uint64)
        exchange.write_parts(work, f"{name}.bands", exchange.split(rows, exchange.hash_part(rows[:, 0], self.fine),
                                                                   self.fine))
        if self.keep_signatures:
            sig = np.concatenate(self.sigs) if self.sigs else np.empty((0, self.spec.num_perm), np.uint32)
            exchange.write_parts(work, f"{name}.sig", [sig])
        return {"path": name, "docs": self.docs, "empty_docs": self.empty, "band_rows": len(rows)}
