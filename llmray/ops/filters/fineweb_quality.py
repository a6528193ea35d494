"""FineWeb's extra quality rules (Penedo et al. 2024): catch list-like and boilerplate pages that
pass Gopher and C4.

Defaults are FineWeb's, as in datatrove's FineWebQualityFilter. Rules, in the order checked
(lines are the non-blank lines, see :mod:`llmray.kernels.text`):

1. ``empty``: no non-blank line;
2. ``too_few_punctuated_lines``: under 12% of lines end with terminal punctuation (``. ! ?``, their
   other-script forms, or a closing quote, as in FineWeb's published rule; datatrove's current
   default leaves quotes out);
3. ``too_many_short_lines``: over 67% of lines have at most 30 characters;
4. ``too_many_duplicate_line_chars``: lines that repeat an earlier line hold over 1% of the
   characters (newlines not counted);
5. ``too_many_newlines``: over 0.3 newlines per token.

**Other languages** (``languages``, :mod:`llmray.ops.filters._languages`). Tokens of scripts without
spaces come from ``word_segmentation`` (:mod:`llmray.kernels.segment`); with it, lines ending with
``…``, ``」`` or ``』`` also count as punctuated (Chinese ends sentences with 。！？…, and the corner
brackets close quotations). The built-in ``zh`` profile is FineWeb-2's configuration for Mandarin
(``configs/cmn_Hani.yml`` and ``fineweb-2-pipeline.py`` of huggingface/fineweb-2, through datatrove's
FineWebQualityFilter on jieba words): at least 10.6% punctuated lines (``line_punct_thr: 0.106``),
at most 0.178 newlines per token (``new_line_ratio: 0.178``), duplicate-line characters up to 10%
(FineWeb-2 raised ``char_duplicates_ratio`` from 0.01 to 0.1 for every language) and no short-line
rule (``short_line_thr: 999``: off).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import pyarrow as pa

from llmray.kernels import arrow
from llmray.kernels.text import chunk_counts, line_stats, word_stats
from llmray.ops.base import KEEP, FilterStep, Verdict, register
from llmray.ops.filters._languages import PerLanguage, Segmentation
from llmray.ops.filters._rules import above, below, first_failure, ratio, verdict
from llmray.schema import TEXT


@register
@dataclasses.dataclass
class FineWebQuality(PerLanguage, FilterStep):
    """Drops pages made of short, unpunctuated or repeated lines (menus, lists, templates)."""

    PROFILES: ClassVar[dict[str, dict[str, Any]]] = {
        "zh": {"word_segmentation": "jieba", "min_punctuated_line_fraction": 0.106, "max_short_line_fraction": None,
               "max_duplicate_line_char_fraction": 0.1, "max_newlines_per_word": 0.178},
    }

    name: ClassVar[str] = "fineweb_quality"
    summary: ClassVar[str] = "FineWeb rules: punctuated lines, short lines, duplicate lines, newlines per word"
    reasons: ClassVar[tuple[str, ...]] = ("empty", "too_few_punctuated_lines", "too_many_short_lines",
                                          "too_many_duplicate_line_chars", "too_many_newlines")
    min_punctuated_line_fraction: float | None = 0.12
    max_short_line_fraction: float | None = 0.67
    #: A line with at most this many characters (trailing space excluded) is short.
    short_line_chars: int = 30
    max_duplicate_line_char_fraction: float | None = 0.01
    max_newlines_per_word: float | None = 0.3
    #: How tokens are found: ``spaces`` (the tokenizer), ``jieba`` (Chinese), ``characters`` (fallback).
    word_segmentation: Segmentation = "spaces"

    def judge(self, table: pa.Table) -> Verdict:
        text = table.column(TEXT)
        lines = line_stats(text, self.short_line_chars, cjk=self.word_segmentation != "spaces")
        n_lines = lines["lines"]
        failures = [
            n_lines == 0,
            below(ratio(lines["terminal_lines"], n_lines), self.min_punctuated_line_fraction),
            above(ratio(lines["short_lines"], n_lines), self.max_short_line_fraction),
            above(ratio(lines["dup_line_chars"], lines["chars"] - lines["newlines"]),
                  self.max_duplicate_line_char_fraction),
        ]
        newlines = None
        if self.max_newlines_per_word is not None:
            failures.append(None)
            newlines = lines["newlines"]
            undecided = first_failure(failures, table.num_rows) == KEEP
            # Every run of non-space characters gives a token or more (segmentation only cuts tokens
            # further), so rows within the limit per run are within it per token: only the others
            # are tokenized (ratios are monotonic in the denominator; no runs means no tokens).
            tokens = chunk_counts(text, undecided, self.word_segmentation)
            exact = undecided & (tokens > 0) & (ratio(newlines, tokens) > self.max_newlines_per_word)
            if exact.any():
                tokens[exact] = word_stats(text.filter(arrow.from_numpy(exact)), (), self.word_segmentation)["tokens"]
            failures[-1] = above(ratio(newlines, tokens), self.max_newlines_per_word)
        return verdict(failures, table.num_rows)
