"""Per-unit MinHash signatures and LSH band rows, and the choice of bands x rows for a threshold."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from llmray.dedup import shuffle
from llmray.dedup.units import Unit
from llmray.kernels import minhash
from llmray.ops.base import TEXT
from llmray.pipeline.stats import text_bytes as text_bytes_of

#: Cost of missing a pair at or above the threshold, relative to a candidate below it (see lsh_params).
FN_WEIGHT = 3.0


@dataclasses.dataclass(frozen=True)
class SketchSpec:
    num_perm: int
    ngram: int
    chars: bool
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


def _fingerprint(unit: Unit, spec: SketchSpec) -> str:
    stat = os.stat(unit.path)
    payload = [unit.path, unit.pieces, stat.st_size, stat.st_mtime_ns, spec.num_perm, spec.ngram,
               spec.chars, spec.seed]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]


def _sketch(unit: Unit, spec: SketchSpec, cache_dir: Path | None) -> tuple[np.ndarray, np.ndarray, int]:
    """(signatures, token counts, text bytes) of a unit, from the resume cache when it has them."""
    cached = cache_dir / f"u{unit.index:05d}-{_fingerprint(unit, spec)}.npz" if cache_dir else None
    if cached is not None and cached.exists():
        with np.load(cached) as saved:
            return saved["sig"], saved["ntokens"], int(saved["text_bytes"])
    sigs, counts, text_bytes = [], [], 0
    for table in unit.read([TEXT]):
        text = table.column(TEXT)
        sig, ntokens = minhash.signatures(text, spec.num_perm, spec.ngram, spec.chars, spec.seed)
        sigs.append(sig)
        counts.append(ntokens)
        text_bytes += text_bytes_of(table)
    sig = np.concatenate(sigs) if sigs else np.zeros((0, spec.num_perm), np.uint32)
    ntokens = np.concatenate(counts) if counts else np.zeros(0, np.int64)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(cached.stem + ".tmp.npz")
        np.savez(tmp, sig=sig, ntokens=ntokens, text_bytes=text_bytes)
        os.replace(tmp, cached)
    return sig, ntokens, text_bytes


def sign_unit(unit: Unit, spec: SketchSpec, partitions: int, keep_signatures: bool,
              cache_dir: Path | None) -> tuple[Any, ...]:
    """Task body: (meta, signatures or None, band rows for partition 0..partitions-1).

    A band row is (band key, signature hash, document number) as uint64. The signature hash makes
    the choice of a bucket's center independent of document numbering (see buckets).
    Documents without tokens get no rows: an empty shingle set resembles nothing.
    """
    sig, ntokens, text_bytes = _sketch(unit, spec, cache_dir)
    keys = minhash.band_keys(sig, spec.bands, spec.rows, spec.seed)
    has_tokens = ntokens > 0
    docs = np.arange(unit.start, unit.start + len(sig), dtype=np.uint64)
    sig_hash = np.bitwise_xor.reduce(keys, axis=1) if spec.bands else np.zeros(len(sig), np.uint64)
    rows = np.stack([keys[has_tokens].ravel(),
                     np.repeat(sig_hash[has_tokens], spec.bands),
                     np.repeat(docs[has_tokens], spec.bands)], axis=1)
    parts = shuffle.split(rows, shuffle.hash_part(rows[:, 0], partitions), partitions)
    meta = {"docs": len(sig), "empty_docs": int((~has_tokens).sum()), "text_bytes": text_bytes}
    return (meta, sig if keep_signatures else None, *parts)
