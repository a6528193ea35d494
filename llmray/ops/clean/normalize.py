"""Cleaning ops that rewrite text in place: Unicode form, mojibake, whitespace and control characters.

All three run as Arrow compute kernels over the whole batch; ftfy (a per-document Python library)
only sees the rows that a vectorized pattern flags as likely mojibake.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llmray.ops.base import MapStep, register
from llmray.schema import TEXT

# UTF-8 read as Latin-1/cp1252 leaves tell-tale pairs: "Ã©", "â€™", "Â ".
_MOJIBAKE = r"[ÃÂ][\x{80}-\x{BF}\x{A0}-\x{FF}]|â€|ï»¿"
# C0/C1 controls except tab and newline, plus zero-width and BOM characters.
_CONTROL = r"[\x{00}-\x{08}\x{0B}\x{0C}\x{0E}-\x{1F}\x{7F}-\x{9F}\x{200B}-\x{200D}\x{2060}\x{FEFF}]"


def _replace_text(table: pa.Table, column: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(TEXT), TEXT, column)


@register
@dataclasses.dataclass
class UnicodeNormalize(MapStep):
    """Puts text in one Unicode normal form so equal-looking text compares and hashes equal."""

    name: ClassVar[str] = "unicode_normalize"
    summary: ClassVar[str] = "Unicode normalization (NFC by default)"
    form: Literal["NFC", "NFKC", "NFD", "NFKD"] = "NFC"

    def map(self, table: pa.Table) -> pa.Table:
        return _replace_text(table, pc.utf8_normalize(table.column(TEXT), self.form))


@register
@dataclasses.dataclass
class FixMojibake(MapStep):
    """Repairs text that was decoded with the wrong codec (ftfy), counting the documents it changed."""

    name: ClassVar[str] = "fix_mojibake"
    summary: ClassVar[str] = "repair mojibake (UTF-8 read as Latin-1/cp1252) with ftfy"
    _fixed: int = dataclasses.field(default=0, init=False, repr=False)

    def map(self, table: pa.Table) -> pa.Table:
        import ftfy

        text = table.column(TEXT)
        suspect = pc.match_substring_regex(text, _MOJIBAKE).to_numpy(zero_copy_only=False)
        if not suspect.any():
            return table
        values = text.to_pylist()
        for i in np.flatnonzero(suspect):
            fixed = ftfy.fix_text(values[i], normalization=None)
            if fixed != values[i]:
                values[i] = fixed
                self._fixed += 1
        return _replace_text(table, pa.array(values, text.type))

    def counters(self) -> dict[str, int]:
        fixed, self._fixed = self._fixed, 0
        return {"documents_fixed": fixed} if fixed else {}


@register
@dataclasses.dataclass
class CleanWhitespace(MapStep):
    """Removes control and zero-width characters, trailing spaces, runs of spaces and of blank lines.

    Newlines are kept: line and paragraph structure is what the Gopher, C4 and FineWeb rules read.
    """

    name: ClassVar[str] = "clean_whitespace"
    summary: ClassVar[str] = "remove control characters; collapse spaces and blank lines; strip"
    #: At most this many consecutive empty lines survive (one keeps paragraph breaks).
    max_blank_lines: int = 1

    def map(self, table: pa.Table) -> pa.Table:
        text = table.column(TEXT)
        text = pc.replace_substring(text, "\r\n", "\n")
        text = pc.replace_substring(text, "\r", "\n")
        text = pc.replace_substring_regex(text, _CONTROL, "")
        text = pc.replace_substring_regex(text, r"[\t \x{A0}\x{3000}\x{2000}-\x{200A}]+", " ")
        text = pc.replace_substring_regex(text, r" *\n *", "\n")
        text = pc.replace_substring_regex(text, f"\n{{{self.max_blank_lines + 2},}}",
                                          "\n" * (self.max_blank_lines + 1))
        return _replace_text(table, pc.utf8_trim_whitespace(text))
