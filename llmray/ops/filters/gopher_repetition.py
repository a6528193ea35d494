"""Gopher's repetition rules (Rae et al. 2021, table A1): drop text that repeats itself.

Defaults are the paper's, as in datatrove's GopherRepetitionFilter. Rules, in the order checked
(fractions of the document's characters unless said otherwise):

1. ``too_many_duplicate_paragraphs``: over 30% of paragraphs repeat an earlier paragraph;
2. ``too_many_duplicate_paragraph_chars``: repeated paragraphs hold over 20% of the characters;
3. ``too_many_duplicate_lines``: over 30% of lines repeat an earlier line;
4. ``too_many_duplicate_line_chars``: repeated lines hold over 20% of the characters;
5. ``top_{n}gram_too_frequent`` (n = 2, 3, 4): the most frequent token n-gram, times its count,
   covers over 20%, 18%, 16%; an n-gram that occurs once is not a repetition, so it never counts;
6. ``too_many_duplicate_{n}grams`` (n = 5..10): tokens inside n-grams that repeat an earlier n-gram
   hold over 15%, 14%, ... 10%.

An n-gram's characters are those of its tokens (spaces between them are not counted). Lines,
paragraphs and tokens are defined in :mod:`llmray.kernels.text`. Rule 6 counts every character of a
repeated span once, as the paper asks; datatrove jumps n tokens after each repeat, so it counts a
repeated span of L tokens as only n * floor(L / n) and keeps somewhat more documents (2% more of a
technical corpus in ``benchmarks/bench_filters.py``).

**Other languages** (``languages``, :mod:`llmray.ops.filters._languages`). The n-grams are of
words, so scripts without spaces need ``word_segmentation`` (:mod:`llmray.kernels.segment`):
``jieba`` for Chinese; with ``characters`` (the fallback for Japanese and Thai) the n-grams are of
characters, repetition measured where words do not apply. The built-in ``zh`` profile takes
FineWeb-2's Mandarin thresholds (``configs/cmn_Hani.yml`` of huggingface/fineweb-2, applied there
through datatrove's GopherRepetitionFilter on jieba words): duplicate lines over 28.7% of lines
(``dup_line_frac: 0.287``); top 2/3/4-grams over 25.6% / 20.1% / 17.1% of the characters; repeated
5..10-grams over 19.8%, 18.2%, 16.7%, 15.4%, 14.0%, 12.7%. Chinese words are short (1-2
characters), so a few common words repeat as n-grams more often than in English; the limits are
higher. FineWeb-2 switched the paragraph and line-character rules off for every language (its text
extractor leaves few paragraphs), not for a reason of language: they count characters, not words,
so the profile keeps the Gopher paper's values for them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from llmray.kernels.text import line_stats, ngram_stats
from llmray.ops.base import KEEP, FilterStep, Verdict, register
from llmray.ops.filters._languages import PerLanguage, Segmentation
from llmray.ops.filters._rules import above, first_failure, ratio, verdict
from llmray.schema import TEXT

TOP_NGRAMS = (2, 3, 4)
DUP_NGRAMS = (5, 6, 7, 8, 9, 10)


@register
@dataclasses.dataclass
class GopherRepetition(PerLanguage, FilterStep):
    """Drops documents dominated by repeated paragraphs, lines or word sequences (boilerplate, spam)."""

    PROFILES: ClassVar[dict[str, dict[str, Any]]] = {
        "zh": {"word_segmentation": "jieba", "max_duplicate_line_fraction": 0.287,
               "max_top_ngram_char_fraction": {2: 0.256, 3: 0.201, 4: 0.171},
               "max_duplicate_ngram_char_fraction": {5: 0.198, 6: 0.182, 7: 0.167, 8: 0.154, 9: 0.14, 10: 0.127}},
    }

    name: ClassVar[str] = "gopher_repetition"
    summary: ClassVar[str] = "Gopher repetition rules: duplicate paragraphs, lines and n-grams"
    reasons: ClassVar[tuple[str, ...]] = (
        "too_many_duplicate_paragraphs", "too_many_duplicate_paragraph_chars", "too_many_duplicate_lines",
        "too_many_duplicate_line_chars", *(f"top_{n}gram_too_frequent" for n in TOP_NGRAMS),
        *(f"too_many_duplicate_{n}grams" for n in DUP_NGRAMS),
    )
    max_duplicate_paragraph_fraction: float | None = 0.3
    max_duplicate_paragraph_char_fraction: float | None = 0.2
    max_duplicate_line_fraction: float | None = 0.3
    max_duplicate_line_char_fraction: float | None = 0.2
    #: Character fraction allowed for the most frequent n-gram, by n (2..4; leave an n out to skip it).
    max_top_ngram_char_fraction: dict[int, float] = dataclasses.field(
        default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16})
    #: Character fraction allowed in repeated n-grams, by n (5..10).
    max_duplicate_ngram_char_fraction: dict[int, float] = dataclasses.field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10})
    #: How words are found: ``spaces`` (the tokenizer), ``jieba`` (Chinese), ``characters`` (fallback).
    word_segmentation: Segmentation = "spaces"

    def __post_init__(self) -> None:
        for field, allowed in (("max_top_ngram_char_fraction", TOP_NGRAMS),
                               ("max_duplicate_ngram_char_fraction", DUP_NGRAMS)):
            unknown = set(getattr(self, field)) - set(allowed)
            if unknown:
                raise ValueError(f"{field}: n must be one of {list(allowed)}, got {sorted(unknown)}")
        super().__post_init__()

    def judge(self, table: pa.Table) -> Verdict:
        text = table.column(TEXT)
        lines = line_stats(text)
        chars = lines["chars"]
        failures: list[np.ndarray | None] = [
            above(ratio(lines["dup_paragraphs"], lines["paragraphs"]), self.max_duplicate_paragraph_fraction),
            above(ratio(lines["dup_paragraph_chars"], chars), self.max_duplicate_paragraph_char_fraction),
            above(ratio(lines["dup_lines"], lines["lines"]), self.max_duplicate_line_fraction),
            above(ratio(lines["dup_line_chars"], chars), self.max_duplicate_line_char_fraction),
        ]
        failures += [None] * (len(self.reasons) - len(failures))
        top_limits = dict(sorted(self.max_top_ngram_char_fraction.items()))
        dup_limits = dict(sorted(self.max_duplicate_ngram_char_fraction.items()))
        if top_limits or dup_limits:
            undecided = first_failure(failures, table.num_rows) == KEEP
            top, dup = ngram_stats(text, list(top_limits), list(dup_limits), active=undecided,
                                   segmentation=self.word_segmentation)
            for n, limit in top_limits.items():
                failures[self.reasons.index(f"top_{n}gram_too_frequent")] = above(ratio(top[n], chars), limit)
            for n, limit in dup_limits.items():
                failures[self.reasons.index(f"too_many_duplicate_{n}grams")] = above(ratio(dup[n], chars), limit)
        return verdict(failures, table.num_rows)
