"""C4's document rules (Raffel et al. 2020), judged on the lines that C4's line rules keep.

As in C4's reference code and datatrove's C4QualityFilter, "lorem ipsum" and ``{`` only count in
lines that survive the citation, word-length, end-punctuation and word-count rules (and, for ``{``,
the javascript rule), so a ``{`` in a code line without a full stop does not drop a page. Rules, in
the order checked:

1. ``contains_lorem_ipsum``: placeholder text;
2. ``contains_curly_bracket``: a ``{`` (code, templates);
3. ``too_few_sentences``: fewer than 5 sentences in the kept lines.

This filter does not change the text; the ``c4_lines`` step removes the lines. FineWeb's recipe runs
the C4 filter with ``require_terminal_punct: false`` and relies on ``fineweb_quality`` for that.

C4's rules count words between spaces and were written for English: the built-in ``zh`` profile of
``languages`` (:mod:`llmray.ops.filters._languages`) is ``skip`` (Chinese rows pass untouched), as
FineWeb-2 does not apply the C4 filters to any language ("we do not apply the C4 filters",
``fineweb-2-pipeline.py`` of huggingface/fineweb-2).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import pyarrow as pa

from llmray.kernels import arrow
from llmray.ops.base import KEEP, FilterStep, Verdict, register
from llmray.ops.clean.c4_lines import C4LineRules
from llmray.ops.filters._languages import SKIP, PerLanguage
from llmray.ops.filters._rules import below, first_failure, verdict


@register
@dataclasses.dataclass
class C4Quality(PerLanguage, C4LineRules, FilterStep):
    """Drops pages with placeholder text or code, or with too little prose left after C4's line rules."""

    PROFILES: ClassVar[dict[str, dict[str, Any]]] = {"zh": {"profile": SKIP}}

    name: ClassVar[str] = "c4_quality"
    summary: ClassVar[str] = "C4 page rules: lorem ipsum, curly bracket, fewer than 5 sentences"
    reasons: ClassVar[tuple[str, ...]] = ("contains_lorem_ipsum", "contains_curly_bracket", "too_few_sentences")
    drop_lorem_ipsum: bool = True
    drop_curly_bracket: bool = True
    min_sentences: int | None = 5

    def judge(self, table: pa.Table) -> Verdict:
        _, stats = self.apply_line_rules(table, text=False, sentences=False)
        failures = [
            stats["lorem_ipsum"] > 0 if self.drop_lorem_ipsum else None,
            stats["curly_bracket"] > 0 if self.drop_curly_bracket else None,
            None,
        ]
        if self.min_sentences is not None:
            # Every kept line holds a sentence or more: only rows with fewer kept lines than needed
            # (and not dropped already) have their sentences counted.
            sentences = stats["lines_kept"].copy()
            exact = (first_failure(failures, table.num_rows) == KEEP) & (sentences < self.min_sentences)
            if exact.any():
                _, counted = self.apply_line_rules(table.filter(arrow.from_numpy(exact)), text=False)
                sentences[exact] = counted["sentences"]
            failures[2] = below(sentences, self.min_sentences)
        return verdict(failures, table.num_rows)
