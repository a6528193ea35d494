"""C4's line cleanup (Raffel et al. 2020): keep only the lines of a page that read like sentences.

Per line, in order (details in :mod:`llmray.kernels.c4`): remove citation markers (``[1]``,
``[edit]``, ``[citation needed]``), then drop the line if a word is over 1000 characters, if it does
not end with terminal punctuation (or ends with ``...``), if it has fewer than 3 words, if it
mentions javascript, or if it has a cookie / terms-of-use phrase. Kept lines are stripped and joined
by newlines; blank lines go. The document-level C4 rules are the ``c4_quality`` filter, which
judges a page on the lines this step would keep: run it first, then this step.

C4's line rules count words between spaces and were written for English: the built-in ``zh``
profile of ``languages`` (:mod:`llmray.ops.filters._languages`) is ``skip`` (the text of Chinese rows
is left as it is), as FineWeb-2 applies no C4 rule to any language.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from llmray.kernels import arrow
from llmray.kernels.c4 import c4_lines
from llmray.ops.base import MapStep, register
from llmray.ops.filters._languages import SKIP, PerLanguage, take_rows
from llmray.schema import TEXT

#: Cookie and terms-of-use boilerplate phrases (C4's list, as used by datatrove).
POLICY_PHRASES = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies",
                  "use cookies")
LINE_RULES = ("too_long_word", "no_terminal_punct", "too_few_words", "javascript", "policy")


@dataclasses.dataclass
class C4LineRules:
    """The line rules' parameters, shared by ``c4_lines`` and ``c4_quality`` so both see the same lines."""

    remove_citations: bool = True
    require_terminal_punct: bool = True
    min_words_per_line: int = 3
    #: Longest word (characters) a kept line may have; None: no limit.
    max_word_length: int | None = 1000
    drop_javascript_lines: bool = True
    drop_policy_lines: bool = True

    def apply_line_rules(self, table: pa.Table, text: bool = True, sentences: bool = True
                         ) -> tuple[pa.Array | pa.ChunkedArray | None, dict[str, np.ndarray]]:
        """(cleaned text, or None without ``text``; per-row statistics of :func:`llmray.kernels.c4.c4_lines`,
        sentences left 0 without ``sentences``)."""
        return c4_lines(
            table.column(TEXT),
            javascript=("javascript",) if self.drop_javascript_lines else (),
            policy=POLICY_PHRASES if self.drop_policy_lines else (),
            remove_citations=self.remove_citations,
            require_terminal_punct=self.require_terminal_punct,
            min_words=self.min_words_per_line,
            max_word_chars=self.max_word_length,
            text=text,
            sentences=sentences,
        )


@register
@dataclasses.dataclass
class C4Lines(PerLanguage, C4LineRules, MapStep):
    """Removes the lines of each document that are not prose (menus, code, boilerplate)."""

    name: ClassVar[str] = "c4_lines"
    summary: ClassVar[str] = "C4 line cleanup: drop lines without end punctuation, short, javascript, policy"
    PROFILES: ClassVar[dict[str, dict[str, Any]]] = {"zh": {"profile": SKIP}}
    _counts: Counter = dataclasses.field(default_factory=Counter, init=False, repr=False)

    def map(self, table: pa.Table) -> pa.Table:
        groups = self.language_groups(table)
        if len(groups) == 1 and groups[0][0] is self:
            return self.rewrite(table)
        parts = []
        for settings, mask in groups:
            rows = table.filter(arrow.from_numpy(mask))
            if settings is not None:
                rows = settings.rewrite(rows)
                if settings is not self:
                    self._counts.update(settings.counters())
            parts.append((rows, mask))
        return take_rows(table, parts)

    def rewrite(self, table: pa.Table) -> pa.Table:
        """The rows with their lines cleaned by this instance's settings."""
        text, stats = self.apply_line_rules(table, sentences=False)
        self._counts["lines_kept"] += int(stats["lines_kept"].sum())
        dropped = np.zeros(table.num_rows, np.int64)
        for rule in LINE_RULES:
            self._counts[f"lines_dropped_{rule}"] += int(stats[rule].sum())
            dropped += stats[rule]
        self._counts["documents_emptied"] += int(np.count_nonzero((stats["lines_kept"] == 0) & (dropped > 0)))
        return table.set_column(table.schema.get_field_index(TEXT), TEXT, text)

    def counters(self) -> dict[str, int]:
        """Lines kept and dropped per rule, and documents that lost all their lines, since the last call."""
        counts, self._counts = dict(self._counts), Counter()
        return counts
