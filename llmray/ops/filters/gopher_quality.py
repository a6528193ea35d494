"""Gopher's quality rules (Rae et al. 2021, MassiveText, appendix A): drop text that is not prose.

Defaults are the paper's, as in datatrove's GopherQualityFilter. Rules, in the order checked:

1. ``too_few_words`` / ``too_many_words``: fewer than 50 or more than 100,000 words;
2. ``mean_word_too_short`` / ``mean_word_too_long``: mean word length outside 3..10 characters;
3. ``too_many_hashes`` / ``too_many_ellipses``: more than 0.1 ``#`` (or ``...``/``…``) per token;
4. ``too_many_bullet_lines``: more than 90% of lines start with a bullet (``-`` ``*`` ``•`` ...);
5. ``too_many_ellipsis_lines``: more than 30% of lines end with ``...`` or ``…``;
6. ``too_few_alpha_words``: under 80% of tokens contain a letter;
7. ``too_few_stop_words``: fewer than 2 of the stop words appear (distinct, ASCII case folded).

Words, tokens and lines are defined in :mod:`llmray.kernels.text`. As with datatrove's word
tokenizer, punctuation marks split off words are tokens: they count in the per-token ratios (3, 6)
but not as words (1, 2). Lines are the non-blank lines.

**Other languages** (``languages``, :mod:`llmray.ops.filters._languages`). Words of scripts without
spaces come from ``word_segmentation`` (:mod:`llmray.kernels.segment`): ``jieba`` for Chinese,
``characters`` as the fallback for Japanese and Thai. With either, CJK conventions apply too: a run
of ``…`` (``……``) is one ellipsis, and full-width list markers (``・ － ＊ ※ ◆ ★`` ...) start
bulleted lines. The built-in ``zh`` profile is FineWeb-2's filter configuration for Mandarin
(``configs/cmn_Hani.yml`` of huggingface/fineweb-2, applied there through datatrove's
GopherQualityFilter with words from jieba, datatrove's Chinese word tokenizer):

* mean word length 1..5 characters (``min_avg_word_length: 1``, ``max_avg_word_length: 5``); a
  jieba word of Chinese prose is 1.5-1.7 characters on average;
* at least 60% of tokens with a letter (Han characters are letters, full-width punctuation is not).
  FineWeb-2 asks 73.5% (``max_non_alpha_words_ratio: 0.735``); on the essays of
  ``data/zh/guwenguanzhi.jsonl.gz`` that drops 45% of them (classical Chinese: one-character words
  and a comma every few characters) and 31% of the Debian Reference's pages, while 0.6 drops the
  same junk in ``benchmarks/bench_zh.py`` (``benchmarks/results/zh.json``);
* at least 2 of FineWeb-2's 22 Mandarin stop words, which mix Simplified and Traditional forms
  (的 年 在 月 是 和 日 了 於 為 有 被 人 中 为 他 與 後 也 而 由; its ``·`` is left out: it is
  punctuation here, never a word). FineWeb-2 keeps ``min_stop_words: 2``; datatrove counts
  occurrences, this step distinct words, as the Gopher paper states the rule;
* word count 50..100,000 (FineWeb-2 keeps datatrove's defaults, counted in jieba words; NeMo
  Curator's ``WordCountFilter(lang="zh")`` also counts jieba words against Gopher's 50), the
  symbol, bullet and ellipsis-line limits of the Gopher paper (FineWeb-2 keeps them).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import pyarrow as pa

from llmray.kernels.text import line_stats, word_stats
from llmray.ops.base import KEEP, FilterStep, Verdict, register
from llmray.ops.filters._languages import PerLanguage, Segmentation
from llmray.ops.filters._rules import above, below, first_failure, ratio, verdict
from llmray.schema import TEXT

#: Gopher's stop words: a document of real English prose uses at least two of them.
STOP_WORDS = ["the", "be", "to", "of", "and", "that", "have", "with"]
#: FineWeb-2's Mandarin stop words (configs/cmn_Hani.yml), Simplified and Traditional forms, less "·".
ZH_STOP_WORDS = ["的", "年", "在", "月", "是", "和", "日", "了", "於", "為", "有", "被", "人", "中", "为", "他", "與",
                 "後", "也", "而", "由"]


@register
@dataclasses.dataclass
class GopherQuality(PerLanguage, FilterStep):
    """Drops documents whose words, symbols and lines do not look like natural-language prose."""

    PROFILES: ClassVar[dict[str, dict[str, Any]]] = {
        "zh": {"word_segmentation": "jieba", "min_mean_word_length": 1.0, "max_mean_word_length": 5.0,
               "min_alpha_word_fraction": 0.6, "stop_words": ZH_STOP_WORDS, "min_stop_words": 2},
    }

    name: ClassVar[str] = "gopher_quality"
    summary: ClassVar[str] = "Gopher quality rules: word count and length, symbols, bullets, letters, stop words"
    reasons: ClassVar[tuple[str, ...]] = (
        "too_few_words", "too_many_words", "mean_word_too_short", "mean_word_too_long", "too_many_hashes",
        "too_many_ellipses", "too_many_bullet_lines", "too_many_ellipsis_lines", "too_few_alpha_words",
        "too_few_stop_words",
    )
    min_words: int | None = 50
    max_words: int | None = 100_000
    min_mean_word_length: float | None = 3.0
    max_mean_word_length: float | None = 10.0
    #: Applies to ``#`` and to ellipses separately, per token.
    max_symbol_word_ratio: float | None = 0.1
    max_bullet_line_fraction: float | None = 0.9
    max_ellipsis_line_fraction: float | None = 0.3
    #: Fraction of tokens that hold at least one letter.
    min_alpha_word_fraction: float | None = 0.8
    #: How many distinct ``stop_words`` must appear.
    min_stop_words: int | None = 2
    stop_words: list[str] = dataclasses.field(default_factory=lambda: list(STOP_WORDS))
    #: How words are found: ``spaces`` (the tokenizer), ``jieba`` (Chinese), ``characters`` (fallback).
    word_segmentation: Segmentation = "spaces"

    def judge(self, table: pa.Table) -> Verdict:
        text = table.column(TEXT)
        words = word_stats(text, self.stop_words if self.min_stop_words is not None else (), self.word_segmentation)
        mean = ratio(words["word_chars"], words["words"])
        failures = [
            below(words["words"], self.min_words),
            above(words["words"], self.max_words),
            below(mean, self.min_mean_word_length),
            above(mean, self.max_mean_word_length),
            above(ratio(words["hashes"], words["tokens"]), self.max_symbol_word_ratio),
            above(ratio(words["ellipses"], words["tokens"]), self.max_symbol_word_ratio),
            None,
            None,
            below(ratio(words["alpha_tokens"], words["tokens"]), self.min_alpha_word_fraction),
            below(words["stop_words"], self.min_stop_words),
        ]
        if self.max_bullet_line_fraction is not None or self.max_ellipsis_line_fraction is not None:
            # Line shapes only matter for rows that the word rules before them keep; no duplicates.
            undecided = first_failure(failures[:6], table.num_rows) == KEEP
            lines = line_stats(text, active=undecided, duplicates=False, cjk=self.word_segmentation != "spaces")
            failures[6] = above(ratio(lines["bullet_lines"], lines["lines"]), self.max_bullet_line_fraction)
            failures[7] = above(ratio(lines["ellipsis_lines"], lines["lines"]), self.max_ellipsis_line_fraction)
        return verdict(failures, table.num_rows)
