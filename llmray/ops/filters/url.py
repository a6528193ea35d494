"""URL block lists: drop pages from blocked domains, or whose URL holds blocked words.

The rules follow datatrove's URL filter (the one FineWeb used), run over whole Arrow columns:
- ``blocked_domain``: the URL's host is a listed domain or a subdomain of one.
- ``blocked_word``: a listed word is one of the URL's words (split at every non-alphanumeric), so
  ``casino`` blocks ``/casino-bonus/`` but not ``/casinos/``.
- ``blocked_subword``: a listed string occurs anywhere in the URL once punctuation is removed, so
  ``porn`` also blocks ``freeporn.example``; keep this list short and specific.
- ``missing_url``: a row without a URL, only with ``drop_missing`` (by default such rows pass, e.g.
  books in a mix with web pages).

Lists are files (one entry a line, ``#`` comments, any fsspec path, ``.gz`` fine) or inline lists.
"""

from __future__ import annotations

import dataclasses
import os
from typing import ClassVar

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llmray.errors import UserError
from llmray.ops.base import KEEP, FilterStep, register

_HOST = r"^(?:[a-z][a-z0-9+.-]*://)?(?:[^@/?#]*@)?(?P<host>[^:/?#]*)"
_NOT_WORD = r"[^\p{L}\p{N}]+"
BLOCKED_DOMAIN, BLOCKED_WORD, BLOCKED_SUBWORD, MISSING_URL = range(4)


@register
@dataclasses.dataclass
class UrlFilter(FilterStep):
    """Drops pages by their URL: blocked domains, blocked words, blocked substrings."""

    name: ClassVar[str] = "url_filter"
    summary: ClassVar[str] = "drop pages whose URL is on a domain block list or holds blocked words"
    reasons: ClassVar[tuple[str, ...]] = ("blocked_domain", "blocked_word", "blocked_subword", "missing_url")
    #: A file of domains, or a list of them; a domain also blocks its subdomains.
    blocklist_domains: str | list[str] = dataclasses.field(default_factory=list)
    #: A file or list of words, matched against the URL's words.
    blocked_words: str | list[str] = dataclasses.field(default_factory=list)
    #: A file or list of strings, matched anywhere in the URL without its punctuation.
    blocked_subwords: str | list[str] = dataclasses.field(default_factory=list)
    url_field: str = "url"
    drop_missing: bool = False
    #: The three lists' sources with local paths made absolute here, where the job file is read:
    #: workers may run in another directory.
    _sources: list[str | list[str]] = dataclasses.field(default_factory=list, init=False, repr=False)
    _lists: tuple[pa.Array, pa.Array, str | None] | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._sources = []
        for key in ("blocklist_domains", "blocked_words", "blocked_subwords"):
            source = getattr(self, key)
            if isinstance(source, str):
                if "://" not in source:
                    source = os.path.abspath(source)
                fs, path = fsspec.core.url_to_fs(source)
                if not fs.isfile(path):
                    raise ValueError(f"{key}: file not found: {getattr(self, key)}")
            self._sources.append(source)

    def setup(self) -> None:
        if self._lists is not None:
            return
        domains, words, subwords = (_entries(source) for source in self._sources)
        domains = [d.removeprefix("*.").strip(".") for d in domains]
        squeezed = pc.replace_substring_regex(pa.array(subwords, pa.string()), _NOT_WORD, "").to_pylist()
        pattern = "|".join(sorted({w for w in squeezed if w})) or None
        self._lists = (pa.array(sorted(set(domains)), pa.string()), pa.array(sorted(set(words)), pa.string()),
                       pattern)

    def evaluate(self, table: pa.Table) -> np.ndarray:
        self.setup()
        assert self._lists is not None
        domains, words, subword_pattern = self._lists
        if self.url_field not in table.column_names:
            raise UserError(f"url_filter: no column {self.url_field!r}; list it in input.keep_fields "
                            f"(the WARC reader provides 'url')")
        column = table.column(self.url_field)
        urls = pc.utf8_lower(pc.utf8_trim_whitespace(column.combine_chunks().cast(pa.string())))
        host = pc.utf8_rtrim(pc.struct_field(pc.extract_regex(urls, _HOST), "host"), ".")
        codes = np.full(table.num_rows, KEEP, dtype=np.int16)
        if subword_pattern:
            squeezed = pc.replace_substring_regex(urls, _NOT_WORD, "")
            codes[_flags(pc.match_substring_regex(squeezed, subword_pattern))] = BLOCKED_SUBWORD
        if len(words):
            codes[_word_hits(urls, words, table.num_rows)] = BLOCKED_WORD
        if len(domains):
            codes[_domain_hits(host, domains)] = BLOCKED_DOMAIN
        if self.drop_missing:
            codes[~_flags(pc.greater(pc.utf8_length(urls), 0))] = MISSING_URL
        return codes


def _entries(source: str | list[str]) -> list[str]:
    """The lowercased entries of a list file or inline list, without blanks and comments."""
    if isinstance(source, str):
        with fsspec.open(source, "rt", encoding="utf-8", compression="infer") as f:
            lines = f.read().splitlines()
    else:
        lines = source
    return [line.strip().lower() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _flags(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


def _domain_hits(host: pa.Array, domains: pa.Array) -> np.ndarray:
    """Rows whose host, or a parent domain of it, is listed: strip one label at a time, all rows at once."""
    hits = np.zeros(len(host), dtype=bool)
    current = host
    while current.null_count < len(current):
        hits |= _flags(pc.is_in(current, domains))
        has_parent = pc.match_substring(current, ".")
        parent = pc.replace_substring_regex(current, r"^[^.]*\.", "", max_replacements=1)
        current = pc.if_else(has_parent, parent, pa.scalar(None, pa.string()))
    return hits


def _word_hits(urls: pa.Array, words: pa.Array, rows: int) -> np.ndarray:
    """Rows with a listed word among the URL's words (one flat Arrow array of all words of the batch)."""
    parts = pc.split_pattern_regex(urls, _NOT_WORD)
    found = _flags(pc.is_in(pc.list_flatten(parts), words))
    hits = np.zeros(rows, dtype=bool)
    hits[pc.list_parent_indices(parts).to_numpy()[found]] = True
    return hits
