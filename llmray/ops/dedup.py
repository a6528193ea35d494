"""Deduplication steps: exact copies and near duplicates (MinHash LSH), over the whole corpus.

Both are global steps: they read the previous segment's parquet, find groups of duplicates with Ray
tasks (see :mod:`llmray.dedup`), keep one document per group by the ``keep`` rule and drop the rest
with the reason ``<step>.duplicate``.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

from llmray.dedup.keep import KeepRule
from llmray.dedup.signatures import SketchSpec, lsh_params
from llmray.dedup.workflow import Layout, run_exact, run_minhash
from llmray.ops.base import GlobalOp, register
from llmray.pipeline.context import GlobalContext, GlobalResult

#: Shingle length when ``ngram`` is not given: words, characters.
DEFAULT_NGRAM = {"word": 5, "char": 9}


@register
@dataclasses.dataclass
class ExactDedup(GlobalOp):
    """Drops copies of the same text, keeping one document per group.

    With ``normalize`` (the default) texts are compared as word sequences: case of ASCII letters,
    punctuation and whitespace are ignored, so copies that differ only in those count as the same.
    Without it, the UTF-8 bytes must be equal. Equality is decided by a 128-bit hash.
    ``keep``: ``smallest_id``, or ``max:<column>`` (largest value of a numeric column, ties by id).
    ``write_clusters`` writes (id, cluster_id, cluster_size) of every duplicated document to
    ``clusters/``, where cluster_id is the id of the document kept.
    """

    name: ClassVar[str] = "exact_dedup"
    summary: ClassVar[str] = "drop exact copies (normalized text hash), keep one per group"
    reasons: ClassVar[tuple[str, ...]] = ("duplicate",)
    normalize: bool = True
    keep: str = "smallest_id"
    write_clusters: bool = False

    def __post_init__(self) -> None:
        self._rule = KeepRule.parse(self.keep)

    def run(self, ctx: GlobalContext) -> GlobalResult:
        return run_exact(ctx, self.normalize, self._rule, self.write_clusters, self.name)


@register
@dataclasses.dataclass
class MinhashDedup(GlobalOp):
    """Drops near duplicates: documents whose shingle sets have Jaccard similarity about ``threshold``
    or more, found with MinHash LSH, joined transitively, one kept per component.

    Shingles are ``ngram`` consecutive words (default 5) or characters (``shingle: char``, default
    9; needed for scripts written without spaces) of the normalized text (lower-cased ASCII,
    punctuation as separators; see :mod:`llmray.kernels.minhash`). Signatures have ``num_perm``
    slots (one-permutation hashing with optimal densification), cut into ``bands`` of ``rows``.

    Choosing bands x rows: two documents become candidates with probability 1 - (1 - J^rows)^bands.
    Without explicit ``bands``/``rows``, the split of ``num_perm`` is the one minimizing the area of
    false candidates below ``threshold`` plus 3x the area of misses above it. Weighing misses more
    puts the S-curve's steep part below the threshold: at the default 0.8 with 128 slots that is
    16 x 8, which finds pairs at J = 0.8 95% of the time and at 0.7 about 60%, where the even
    weighting would pick 8 x 16, which finds pairs at 0.8 only 20% of the time. The price is
    candidates between ~0.6 and the threshold; ``verify`` removes those by checking the
    signature-estimated Jaccard of each candidate edge against ``threshold`` (exact semantics, fewer
    near-threshold duplicates found, one more exchange of signatures).

    ``keep``: ``smallest_id``, or ``max:<column>`` (largest value of a numeric column, ties by id).
    ``write_clusters`` writes (id, cluster_id, cluster_size) of every duplicated document to
    ``clusters/``, where cluster_id is the id of the document kept. ``local_components_max_edges``:
    graphs with up to this many candidate edges are solved in one task, larger ones distributed.
    Documents without any word (or character) are never near duplicates of anything.
    """

    name: ClassVar[str] = "minhash_dedup"
    summary: ClassVar[str] = "drop near duplicates (MinHash LSH on word 5-grams), keep one per cluster"
    reasons: ClassVar[tuple[str, ...]] = ("duplicate",)
    shingle: Literal["word", "char"] = "word"
    ngram: int | None = None
    num_perm: int = 128
    threshold: float = 0.8
    bands: int | None = None
    rows: int | None = None
    seed: int = 42
    verify: bool = False
    keep: str = "smallest_id"
    write_clusters: bool = False
    local_components_max_edges: int = Layout.local_components_max_edges

    def __post_init__(self) -> None:
        self._rule = KeepRule.parse(self.keep)
        self._spec = self.sketch_spec()

    def sketch_spec(self) -> SketchSpec:
        """The signature and banding parameters, derived and checked."""
        ngram = self.ngram if self.ngram is not None else DEFAULT_NGRAM[self.shingle]
        if ngram < 1 or self.num_perm < 1:
            raise ValueError("ngram and num_perm must be positive")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {self.threshold}")
        bands, rows = self.bands, self.rows
        if bands is None and rows is None:
            bands, rows = lsh_params(self.threshold, self.num_perm)
        elif bands is None or rows is None:
            given = bands or rows
            assert given is not None
            if given < 1 or self.num_perm % given:
                raise ValueError(f"bands/rows: {given} does not divide num_perm {self.num_perm}")
            other = self.num_perm // given
            bands, rows = (given, other) if self.bands is not None else (other, given)
        if bands < 1 or rows < 1 or bands * rows != self.num_perm:
            raise ValueError(f"bands x rows must equal num_perm: {bands} x {rows} != {self.num_perm}")
        return SketchSpec(self.num_perm, ngram, self.shingle == "char", self.seed, bands, rows)

    def run(self, ctx: GlobalContext) -> GlobalResult:
        layout = Layout(local_components_max_edges=self.local_components_max_edges)
        return run_minhash(ctx, self._spec, self.threshold, self.verify, self._rule, self.write_clusters,
                           self.name, layout)
