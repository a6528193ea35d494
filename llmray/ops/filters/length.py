"""Length bounds: documents with no words, or far too short or long, are not useful training text.

Characters are Unicode code points; words are the word tokens of :mod:`llmray.kernels.text`
(punctuation marks are not words). By default only documents without a single word are dropped
(empty, blank or punctuation-only rows); set the other bounds to suit the corpus.

Word counts of scripts without spaces need ``word_segmentation`` (:mod:`llmray.kernels.segment`);
the built-in ``zh`` profile of ``languages`` (:mod:`llmray.ops.filters._languages`) counts jieba
words. Characters need no segmentation.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llmray.kernels.text import char_counts, has_word, word_stats
from llmray.ops.base import FilterStep, Verdict, register
from llmray.ops.filters._languages import PerLanguage, Segmentation
from llmray.ops.filters._rules import above, below, verdict
from llmray.schema import TEXT


@register
@dataclasses.dataclass
class Length(PerLanguage, FilterStep):
    """Keeps documents whose character and word counts lie within the bounds (None: no bound)."""

    PROFILES: ClassVar[dict[str, dict[str, Any]]] = {"zh": {"word_segmentation": "jieba"}}

    name: ClassVar[str] = "length"
    summary: ClassVar[str] = "drop documents outside character / word count bounds (default: no words)"
    reasons: ClassVar[tuple[str, ...]] = ("too_few_chars", "too_many_chars", "too_few_words", "too_many_words")
    min_chars: int | None = None
    max_chars: int | None = None
    min_words: int | None = 1
    max_words: int | None = None
    #: How words are found: ``spaces`` (the tokenizer), ``jieba`` (Chinese), ``characters`` (fallback).
    word_segmentation: Segmentation = "spaces"

    def judge(self, table: pa.Table) -> Verdict:
        text = table.column(TEXT)
        chars_needed = self.min_chars is not None or self.max_chars is not None
        if self.min_words is None and self.max_words is None:
            chars, words = pc.utf8_length(text).to_numpy() if chars_needed else None, None
        elif self.max_words is None and self.min_words <= 1:
            # Only "no word at all" can fail: the first word character settles a row.
            chars = char_counts(text) if chars_needed else None
            words = has_word(text).astype(np.int64) if self.min_words == 1 else None
        else:
            stats = word_stats(text, (), self.word_segmentation)
            chars, words = stats["chars"], stats["words"]
        return verdict([
            None if chars is None else below(chars, self.min_chars),
            None if chars is None else above(chars, self.max_chars),
            None if words is None else below(words, self.min_words),
            None if words is None else above(words, self.max_words),
        ], table.num_rows)
