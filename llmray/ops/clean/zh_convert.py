"""Chinese script conversion: Traditional <-> Simplified (and regional variants) with OpenCC.

OpenCC (Open Chinese Convert, Apache-2.0) converts phrase by phrase with its own dictionaries, so
words whose characters convert differently in context come out right (``頭髮`` -> ``头发``,
``發展`` -> ``发展``). The ``opencc`` package on PyPI is the project's own binding and carries its
dictionaries (``pip install opencc``): nothing is downloaded at run time. ``config`` is one of
OpenCC's configurations: ``t2s`` (Traditional to Simplified, the default), ``s2t``, ``tw2s`` /
``tw2sp`` (Taiwan standard, ``p``: with Taiwanese phrases such as 軟體 -> 软件), ``s2tw`` / ``s2twp``,
``hk2s`` / ``s2hk``, ``t2tw``, ``t2hk``, ``tw2t``, ``hk2t``, ``t2jp`` / ``jp2t`` (Japanese
shinjitai).

One call to OpenCC per batch: the rows that hold a CJK ideograph are joined with a record separator
(U+001E) that no dictionary entry holds, converted at once and split again. Rows that hold the
separator themselves are converted one by one. With ``languages``, only rows whose ``language``
column (the ``language`` step's) is one of them are converted, so Japanese kanji in a mixed corpus
stay as they are. On 420 KB of Traditional Chinese (古文觀止) the official binding converts
50 MB/s per core, opencc-pyo3 97 MB/s (29 characters differ from OpenCC's own output) and
zhconv-rs 118 MB/s (358 differ: MediaWiki's tables); ``benchmarks/bench_zh.py`` measures it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llmray.errors import UserError
from llmray.ops.base import MapStep, register
from llmray.schema import TEXT

CONFIGS = ("t2s", "s2t", "tw2s", "tw2sp", "s2tw", "s2twp", "hk2s", "hk2sp", "s2hk", "s2hkp", "t2tw", "t2hk", "tw2t",
           "hk2t", "t2jp", "jp2t")
_SEPARATOR = "\x1e"
#: Rows worth converting: they hold a CJK ideograph (unified, extension A, compatibility).
_IDEOGRAPH = "[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"


@functools.lru_cache(maxsize=8)
def converter(config: str) -> Any:
    """OpenCC's converter for ``config`` (loaded once per process)."""
    try:
        import opencc
    except ImportError:
        raise UserError("zh_convert needs OpenCC: pip install opencc") from None
    return opencc.OpenCC(f"{config}.json")


def convert(column: pa.Array | pa.ChunkedArray, config: str = "t2s",
            rows: np.ndarray | None = None) -> tuple[pa.Array, int]:
    """(``column`` converted, how many rows changed); only ``rows`` (a bool mask) when given."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(column) == 0:
        return column, 0
    todo = pc.fill_null(pc.match_substring_regex(column, _IDEOGRAPH), False).to_numpy(zero_copy_only=False)
    if rows is not None:
        todo &= rows
    if not todo.any():
        return column, 0
    mask = pa.array(todo)
    selected = column.filter(mask)
    values = selected.to_pylist()
    cc = converter(config)
    if pc.any(pc.match_substring(selected, _SEPARATOR)).as_py():
        converted = [cc.convert(v) for v in values]  # rare: the text holds the separator itself
    else:
        converted = cc.convert(_SEPARATOR.join(values)).split(_SEPARATOR)
        if len(converted) != len(values):  # never seen; stay correct if a dictionary maps the separator
            converted = [cc.convert(v) for v in values]
    result = pa.array(converted, column.type)
    changed = int(pc.sum(pc.not_equal(selected, result)).as_py() or 0)
    if not changed:
        return column, 0
    return pc.replace_with_mask(column, mask, result), changed


@register
@dataclasses.dataclass
class ZhConvert(MapStep):
    """Converts Chinese text between Traditional and Simplified characters (OpenCC), so one corpus
    uses one script (deduplication and vocabularies see 发展 and 發展 as one word)."""

    name: ClassVar[str] = "zh_convert"
    summary: ClassVar[str] = "Traditional <-> Simplified Chinese with OpenCC (t2s by default)"
    #: OpenCC configuration: t2s, s2t, tw2s, tw2sp, s2tw, s2twp, hk2s, s2hk, t2tw, t2hk, ... (module docstring).
    config: Literal[CONFIGS] = "t2s"  # type: ignore[valid-type]
    #: Convert only rows whose ``language`` column is one of these (None: every row).
    languages: list[str] | None = None
    _changed: int = dataclasses.field(default=0, init=False, repr=False)

    def setup(self) -> None:
        converter(self.config)

    def map(self, table: pa.Table) -> pa.Table:
        rows = None
        if self.languages:
            if "language" not in table.column_names:
                raise UserError("zh_convert: `languages` is set but the documents have no `language` column: "
                                "run the `language` step before this one")
            rows = pc.fill_null(pc.is_in(table.column("language"), pa.array(self.languages, pa.string())), False)
            rows = rows.to_numpy(zero_copy_only=False)
        text, changed = convert(table.column(TEXT), self.config, rows)
        if not changed:
            return table
        self._changed += changed
        return table.set_column(table.schema.get_field_index(TEXT), TEXT, text)

    def counters(self) -> dict[str, int]:
        changed, self._changed = self._changed, 0
        return {"documents_converted": changed} if changed else {}
