"""Main-content extraction: raw HTML in ``text`` becomes the page's main text, boilerplate removed.

Two well-kept extractors, chosen in the job file (scores: ``benchmarks/bench_extract.py``):
- ``trafilatura`` (default): the most accurate on the article-extraction benchmark (token F1 0.96;
  0.965 with ``favor_precision``, which also drops pages that are only menus instead of keeping the
  menu's text: crawl jobs should set it); lxml and Python, about 65 pages/s on one core.
- ``resiliparse``: a C++ DOM walk with a main-content heuristic; ten times faster, less precise
  (token F1 0.93: it keeps more boilerplate such as cookie notes).

Rows that are not HTML pass through untouched, so the step is safe in a mix of web pages and plain
text: those whose ``content_type`` column names another type (WET plain text), and, where no content
type is known, those whose text does not open with an HTML tag.

This is a FilterStep, not a MapStep, so that a page without main text is dropped with a reason
(``html_to_text.no_content``, or ``extract_error`` when the library fails) instead of living on as an
empty row. ``split`` returns the kept rows with their new text and the dropped rows as they came, so
the rejects keep the HTML to look at.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from typing import ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llmray.io.warc import HTML_TAGS, HTML_TYPES
from llmray.ops.base import KEEP, MapStep, register
from llmray.schema import TEXT

_LOOKS_HTML = rf"(?i)^\x{{FEFF}}?\s*<(?:{HTML_TAGS})[\s>/]"
NO_CONTENT, EXTRACT_ERROR = 0, 1


@register
@dataclasses.dataclass
class HtmlToText(MapStep):
    """Replaces HTML with its main text; drops pages where the extractor finds none."""

    name: ClassVar[str] = "html_to_text"
    summary: ClassVar[str] = "main-text extraction from HTML (trafilatura or resiliparse); drop empty pages"
    reasons: ClassVar[tuple[str, ...]] = ("no_content", "extract_error")
    extractor: Literal["trafilatura", "resiliparse"] = "trafilatura"
    #: trafilatura only: keep less boilerplate at the cost of some text, or the reverse.
    favor_precision: bool = False
    favor_recall: bool = False
    #: trafilatura only: skip its fallback extractors (readability, jusText); faster, a little less text.
    fast: bool = False
    include_tables: bool = True
    #: Keep readers' comment sections below articles.
    include_comments: bool = False
    #: Column naming each row's MIME type (the WARC reader's ``content_type``); absent means "sniff".
    content_type_field: str = "content_type"
    _extract: Callable[[str], str | None] | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.extractor != "trafilatura" and (self.favor_precision or self.favor_recall or self.fast):
            raise ValueError("favor_precision, favor_recall and fast are trafilatura options")
        if self.favor_precision and self.favor_recall:
            raise ValueError("favor_precision and favor_recall exclude each other")

    def setup(self) -> None:
        if self._extract is not None:
            return
        if self.extractor == "trafilatura":
            import trafilatura

            # It logs a warning for every page without text: those are counted as no_content instead.
            logging.getLogger("trafilatura").setLevel(logging.ERROR)
            self._extract = functools.partial(
                trafilatura.extract, output_format="txt", favor_precision=self.favor_precision,
                favor_recall=self.favor_recall, fast=self.fast, include_tables=self.include_tables,
                include_comments=self.include_comments, deduplicate=False, with_metadata=False)
        else:
            from resiliparse.extract.html2text import extract_plain_text

            self._extract = functools.partial(
                extract_plain_text, main_content=True, preserve_formatting=True, alt_texts=False,
                links=False, form_fields=False, noscript=False, comments=self.include_comments,
                skip_elements=None if self.include_tables else ["table"])

    def map(self, table: pa.Table) -> tuple[pa.Table, np.ndarray]:
        """Pages with their main text, and a reason code per row for those without one."""
        texts, codes = self._extract_all(table)
        return table.set_column(table.schema.get_field_index(TEXT), TEXT, texts), codes

    def _extract_all(self, table: pa.Table) -> tuple[pa.Array, np.ndarray]:
        """(new text column, reason code per row). Extraction is per page by nature."""
        self.setup()
        assert self._extract is not None
        column = table.column(TEXT)
        texts = column.to_pylist()
        codes = np.full(table.num_rows, KEEP, dtype=np.int16)
        for i in np.flatnonzero(self._is_html(table)):
            try:
                extracted = self._extract(texts[i])
            except Exception:  # a parser failing on one page must not stop the batch
                codes[i] = EXTRACT_ERROR
                continue
            if extracted and not extracted.isspace():
                texts[i] = extracted
            else:
                codes[i] = NO_CONTENT
        return pa.array(texts, column.type), codes

    def _is_html(self, table: pa.Table) -> np.ndarray:
        head = pc.utf8_slice_codeunits(table.column(TEXT), 0, 1024)
        html = pc.fill_null(pc.match_substring_regex(head, _LOOKS_HTML), False)
        if self.content_type_field in table.column_names:
            declared = pc.ascii_lower(table.column(self.content_type_field).cast(pa.string()))
            html = pc.if_else(pc.is_valid(declared), pc.is_in(declared, pa.array(HTML_TYPES)), html)
        return np.asarray(html.to_numpy(zero_copy_only=False), dtype=bool)
