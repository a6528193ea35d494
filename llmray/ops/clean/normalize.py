"""Cleaning ops that rewrite text in place: Unicode form, mojibake, whitespace and control characters.

All three run as compiled passes over the whole batch (:mod:`llmray.kernels.clean`): Arrow's Unicode
normalization only sees the rows that hold a character it could change, and ftfy (a per-document
Python library) only the rows that a byte pattern flags as likely mojibake.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import pyarrow as pa
import pyarrow.compute as pc

from llmray.kernels import arrow
from llmray.kernels.clean import clean_whitespace, mojibake_suspects, normalize
from llmray.ops.base import MapStep, register
from llmray.schema import TEXT


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
        return _replace_text(table, normalize(table.column(TEXT), self.form))


def ftfy_config():
    """ftfy's repairs of wrong decoding only: quotes, ligatures, full-width forms and Unicode
    normalization stay as written, so a repaired document does not differ in style from a clean one."""
    import ftfy

    return ftfy.TextFixerConfig(uncurl_quotes=False, fix_latin_ligatures=False, fix_character_width=False,
                                normalization=None)


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
        # UTF-8 read as Latin-1/cp1252 leaves tell-tale pairs: "Ã©", "â€™", "Â ".
        suspect = mojibake_suspects(text)
        if not suspect.any():
            return table
        mask = arrow.from_numpy(suspect)
        values = text.filter(mask).to_pylist()
        config = ftfy_config()
        changed = False
        for i, value in enumerate(values):
            fixed = ftfy.fix_text(value, config)
            if fixed != value:
                values[i] = fixed
                self._fixed += 1
                changed = True
        if not changed:
            return table
        column = text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
        return _replace_text(table, pc.replace_with_mask(column, mask, arrow.strings(values).cast(column.type)))

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
        # One compiled pass; its definition is the regex passes of llmray.kernels.clean.clean_whitespace_regex.
        return _replace_text(table, clean_whitespace(table.column(TEXT), self.max_blank_lines))
