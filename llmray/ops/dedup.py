"""Deduplication steps: exact copies and near duplicates (MinHash LSH), over the whole corpus.

Both are global steps. As the segment before them writes the data, their sidecars take what they
need from the text (128-bit hashes; MinHash band keys): the text is read once for both. Their
stages (see :mod:`llmray.dedup`) find groups of duplicates and keep one document per group by the
``keep`` rule; the next segment drops the rest with the reason ``<step>.duplicate`` (rejects name
the document kept in their place, ``duplicate_of``). Several dedup steps in a row look at the same
data and each ignores what the ones before it drop, as if each had run on the output of the last.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llmray.decisions import ChunkContext, Decision, GlobalContext
from llmray.dedup.exact import HashSidecar
from llmray.dedup.keep import KeepRule
from llmray.dedup.signatures import SignatureSidecar, SketchSpec, lsh_params
from llmray.dedup.workflow import Layout, decide_exact, decide_minhash
from llmray.io import exchange
from llmray.kernels import arrow, minhash
from llmray.ops.base import KEEP, FilterStep, GlobalStep, Verdict, register
from llmray.schema import DUPLICATE_OF, ROW

#: Shingle length when ``ngram`` is not given: words, characters; for ``auto`` the words (its CJK
#: characters have ``cjk_ngram``, default :data:`llmray.kernels.minhash.CJK_NGRAM`).
DEFAULT_NGRAM = {"auto": 5, "word": 5, "char": 9}


@dataclasses.dataclass
class DropDuplicates(FilterStep):
    """Applies a dedup decision: drops the rows of each unit that the decision names."""

    name: ClassVar[str] = "duplicates"
    step: str = ""
    decision_dir: str = ""
    senders: int = 0
    _rows: Any = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def reason_names(self) -> list[str]:
        return [f"{self.step}.duplicate"]

    def begin_chunk(self, ctx: ChunkContext) -> None:
        senders = [f"{self.decision_dir}/{i:05d}" for i in range(self.senders)]
        table = exchange.gather_tables(ctx.work, senders, ctx.index)
        if table is None:
            self._rows = pa.Table.from_pydict({"row": pa.nulls(0, pa.int64()), DUPLICATE_OF: pa.nulls(0, pa.string())})
        else:
            self._rows = table.sort_by("row")

    def evaluate(self, table: pa.Table) -> np.ndarray:
        drop = arrow.to_numpy(pc.is_in(table.column(ROW), value_set=self._rows.column("row")))
        return np.where(drop, 0, KEEP).astype(np.int16)

    def dropped_rows(self, table: pa.Table, verdict: Verdict, drop: np.ndarray) -> pa.Table:
        dropped = super().dropped_rows(table, verdict, drop)
        at = pc.index_in(dropped.column(ROW), value_set=self._rows.column("row"))
        return dropped.append_column(DUPLICATE_OF, self._rows.column(DUPLICATE_OF).take(at))


@dataclasses.dataclass
class _Dedup(GlobalStep):
    reasons: ClassVar[tuple[str, ...]] = ("duplicate",)
    composes: ClassVar[bool] = True
    keep: str = "smallest_id"
    write_clusters: bool = False
    #: Partitions of the exchanges; default: one per ~64 MB exchanged, at least one per CPU.
    #: Changes where the work runs, never which documents are kept.
    partitions: int | None = None

    def layout(self, **options: Any) -> Layout:
        return Layout(partitions=self.partitions, **options)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._rule = KeepRule.parse(self.keep)

    def applier(self, decision: Decision) -> FilterStep:
        return DropDuplicates(step=decision.step, decision_dir=decision.payload["dir"],
                              senders=decision.payload["senders"])

    def clusters(self, ctx: GlobalContext) -> str | None:
        return f"clusters/{ctx.stage.replace('#', '-')}" if self.write_clusters else None


@register
@dataclasses.dataclass
class ExactDedup(_Dedup):
    """Drops copies of the same text, keeping one document per group.

    With ``normalize`` (the default) texts are compared as word sequences: case of ASCII letters,
    punctuation and whitespace (the ideographic space too) are ignored, full-width forms (``ＡＢＣ１２３``)
    count as ASCII, and each CJK character is a word of its own, so copies that differ only in those
    count as the same (``使用 apt 命令。`` and ``使用ＡＰＴ命令``; the CJK characters themselves are kept).
    Without it, the UTF-8 bytes must be equal. Equality is decided by a 128-bit hash.
    ``keep``: ``smallest_id``, or ``max:<column>`` (largest value of a numeric column, ties by id).
    ``write_clusters`` writes (id, cluster_id, cluster_size) of every duplicated document to
    ``clusters/``, where cluster_id is the id of the document kept.
    """

    name: ClassVar[str] = "exact_dedup"
    summary: ClassVar[str] = "drop exact copies (normalized text hash), keep one per group"
    normalize: bool = True

    def sidecar(self, fine: int = 1) -> HashSidecar:
        return HashSidecar(self.normalize, fine)

    def decide(self, ctx: GlobalContext) -> Decision:
        return decide_exact(ctx, self._rule, self.clusters(ctx), self.layout())


@register
@dataclasses.dataclass
class MinhashDedup(_Dedup):
    """Drops near duplicates: documents whose shingle sets have Jaccard similarity ``threshold`` or
    more (0.5 by default), found with MinHash LSH, checked, joined transitively, one kept per component.

    Shingles (``shingle``, of the normalized text: lower-cased ASCII, full-width forms folded,
    punctuation as separators; see :mod:`llmray.kernels.minhash`):

    * ``auto`` (the default): words in ``ngram``-grams (default 5) and CJK characters (Chinese
      hanzi, Japanese kanji and kana) in ``cjk_ngram``-grams (default 3), one set of both kinds. A
      CJK character ends a word, so ``使用apt-get命令`` gives the words ``apt get`` and the characters
      ``使用命令``. Text without CJK characters gets exactly the shingles of ``word``; Chinese and
      Japanese, written without spaces, get character n-grams; mixed documents get both.
    * ``word``: ``ngram`` consecutive words (default 5); a CJK "word" is a whole run of text.
    * ``char``: ``ngram`` consecutive characters (default 9), every run of separators one space.

    ``cjk_ngram`` is read by ``auto`` only. Why 3: on the Chinese near-duplicate set of
    ``benchmarks/bench_dedup_zh.py`` (1,170 documents of Debian documentation, 468 to remove) the
    shipped job's removal F1 is 0.75 with ``word`` (recall 0.60), 0.98 with ``char`` and 0.999 with
    ``auto`` (cjk_ngram 2: 1.000, 4: 0.999, 5: 0.991, 6: 0.982, 9: 0.942). With 3, unrelated pairs
    stay below an estimated Jaccard of 0.25 (with 2: 0.36, zh-TW and zh-CN translations of one
    paragraph) and near copies above 0.55 (1st percentile; with 4: 0.50).

    Signatures have ``num_perm`` slots (one-permutation hashing with optimal densification), cut into
    ``bands`` of ``rows``.

    Choosing bands x rows: two documents become candidates with probability 1 - (1 - J^rows)^bands.
    Without explicit ``bands``/``rows``, the split of ``num_perm`` is the one minimizing the area of
    false candidates below ``threshold`` plus 3x the area of misses above it: at 0.5 with 128 slots
    that is 32 x 4, which finds pairs at J = 0.5 about 87% of the time and at 0.6 99%. With
    ``verify`` (the default) every candidate's signature-estimated Jaccard is checked against
    ``threshold`` before it joins a component, so the many false candidates of such a wide S-curve
    never chain unrelated documents together.

    Why 0.5 and verify: near copies made by real edits (typos, OCR noise, dropped or reordered
    sentences, inserted boilerplate) often share only 50-80% of their word 5-grams. On two
    evaluation sets with ground truth (``benchmarks/README.md``) the old default (0.8 without
    verify, 16 x 8) found 92% and 85% of the documents to remove; 0.5 with verify finds 100% and
    99% with precision 0.998 and 1.000. For a stricter notion of duplicate, raise ``threshold``.

    ``keep``: ``smallest_id``, or ``max:<column>`` (largest value of a numeric column, ties by id).
    ``write_clusters`` writes (id, cluster_id, cluster_size) of every duplicated document to
    ``clusters/``, where cluster_id is the id of the document kept. ``local_components_max_edges``:
    graphs with up to this many candidate edges are solved in one task, larger ones distributed.
    Documents without any word (or character) are never near duplicates of anything.
    """

    name: ClassVar[str] = "minhash_dedup"
    summary: ClassVar[str] = ("drop near duplicates (MinHash LSH on word 5-grams and CJK character 3-grams, "
                              "Jaccard >= 0.5), keep one per cluster")
    shingle: Literal["auto", "word", "char"] = "auto"
    ngram: int | None = None
    cjk_ngram: int | None = None
    num_perm: int = 128
    threshold: float = 0.5
    bands: int | None = None
    rows: int | None = None
    seed: int = 42
    verify: bool = True
    local_components_max_edges: int = Layout.local_components_max_edges

    def __post_init__(self) -> None:
        super().__post_init__()
        self._spec = self.sketch_spec()

    def sketch_spec(self) -> SketchSpec:
        """The signature and banding parameters, derived and checked."""
        ngram = self.ngram if self.ngram is not None else DEFAULT_NGRAM[self.shingle]
        cjk_ngram = self.cjk_ngram if self.cjk_ngram is not None else minhash.CJK_NGRAM
        if ngram < 1 or cjk_ngram < 1 or self.num_perm < 1:
            raise ValueError("ngram, cjk_ngram and num_perm must be positive")
        if self.cjk_ngram is not None and self.shingle != "auto":
            raise ValueError(f"cjk_ngram is read by shingle: auto only (this step has shingle: {self.shingle})")
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
        chars: bool | minhash.Auto = minhash.Auto(cjk_ngram) if self.shingle == "auto" else self.shingle == "char"
        return SketchSpec(self.num_perm, ngram, chars, self.seed, bands, rows)

    def sidecar(self, fine: int = 1) -> SignatureSidecar:
        return SignatureSidecar(self._spec, fine, self.verify)

    def decide(self, ctx: GlobalContext) -> Decision:
        layout = self.layout(local_components_max_edges=self.local_components_max_edges)
        return decide_minhash(ctx, self._spec, self.threshold, self.verify, self._rule, self.clusters(ctx), layout)
