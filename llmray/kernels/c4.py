"""C4's line rules in one compiled pass: the cleaned text and, per document, what the rules saw.

C4 (Raffel et al. 2020, ``c4_utils.py`` in TensorFlow Datasets) keeps only lines that look like
prose and judges the page on what is left. Per line (pieces between ``\\n``, stripped; blank lines
are dropped without being counted), in this order, as datatrove's C4QualityFilter does:

1. citation markers ``[1]``, ``[]``, ``[edit]``, ``[citation needed]`` are removed (then the line is
   stripped again, so ``"Done. [1]"`` still ends with a full stop);
2. drop the line if a chunk (space-separated) is longer than ``max_word_chars`` characters;
3. drop it unless it ends with a terminal character (``. ! ?``, their other-script forms, or a
   closing quote) and not with ``...``;
4. drop it if it has fewer than ``min_words`` chunks;
5. note "lorem ipsum" (a document-level rule);
6. drop it if it contains a ``javascript`` pattern;
7. note ``{`` (a document-level rule);
8. drop it if it contains a ``policy`` pattern;
9. keep it and count its sentences: a chunk ends a sentence if it is the line's last chunk, or if
   the punctuation after its last word character holds a sentence end and no ``.`` sits between
   its word characters (``e.g.``, ``U.S.`` are abbreviations, not sentence ends).

Patterns match ASCII case-insensitively. Character classes are those of :mod:`llmray.kernels.text`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
from numba import njit

from llmray.kernels.text import (
    PUNCT,
    SENT_END,
    SPACE,
    TERMINAL,
    char_class,
    char_table,
    column_chunks,
    decode_char,
    read_char,
    string_buffers,
)

#: Pattern kinds (bit values in the kernel).
LOREM, JAVASCRIPT, POLICY = 1, 2, 4
#: Per-document results, columns of the stats matrix.
C4_STATS = ("sentences", "lorem_ipsum", "curly_bracket", "lines_kept", "too_long_word", "no_terminal_punct",
            "too_few_words", "javascript", "policy")
_EDIT = np.frombuffer(b"[edit]", np.uint8)
_CITATION_NEEDED = np.frombuffer(b"[citation needed]", np.uint8)


@njit(cache=True, nogil=True)
def _literal_at(data, i, end, literal):
    if i + literal.shape[0] > end:
        return False
    for k in range(literal.shape[0]):
        if data[i + k] != literal[k]:
            return False
    return True


@njit(cache=True, nogil=True)
def _citation_end(data, i, end):
    """End of a citation marker starting at ``data[i] == '['``, or -1."""
    k = i + 1
    while k < end and 48 <= data[k] <= 57:
        k += 1
    if k < end and data[k] == 93:
        return k + 1
    if _literal_at(data, i, end, _EDIT):
        return i + _EDIT.shape[0]
    if _literal_at(data, i, end, _CITATION_NEEDED):
        return i + _CITATION_NEEDED.shape[0]
    return -1


@njit(cache=True, nogil=True)
def _strip(buf, a, b, table):
    """``buf[a:b]`` without leading and trailing space characters, as (start, end)."""
    while a < b:
        cp, w = decode_char(buf, a, b)
        if not char_class(table, cp) & SPACE:
            break
        a += w
    while b > a:
        k = b - 1
        while k > a and (buf[k] & 0xC0) == 0x80:
            k -= 1
        cp, _ = decode_char(buf, k, b)
        if not char_class(table, cp) & SPACE:
            break
        b = k
    return a, b


@njit(cache=True, nogil=True)
def _patterns_in(buf, a, b, patterns, starts, kinds, first_bytes):
    """Bit-or of the kinds of the patterns found in ``buf[a:b]`` (ASCII case folded)."""
    found = 0
    for i in range(a, b):
        c = buf[i] | 32 if 65 <= buf[i] <= 90 else buf[i]
        if not first_bytes[c]:
            continue
        for k in range(kinds.shape[0]):
            p0, p1 = starts[k], starts[k + 1]
            if patterns[p0] != c or i + (p1 - p0) > b:
                continue
            match = True
            for j in range(1, p1 - p0):
                x = buf[i + j]
                if 65 <= x <= 90:
                    x |= 32
                if x != patterns[p0 + j]:
                    match = False
                    break
            if match:
                found |= kinds[k]
    return found


@njit(cache=True, nogil=True)
def _c4_lines(offsets, data, table, patterns, starts, kinds, first_bytes, remove_citations, require_terminal,
              min_words, max_word_chars):
    n_docs = offsets.shape[0] - 1
    out = np.empty(max(offsets[n_docs] - offsets[0], 1), np.uint8)
    out_offsets = np.zeros(n_docs + 1, np.int64)
    stats = np.zeros((n_docs, len(C4_STATS)), np.int64)
    p = 0
    for d in range(n_docs):
        s, e = offsets[d], offsets[d + 1]
        row = stats[d]
        kept = 0
        ls = s
        while ls <= e:
            le = ls
            while le < e and data[le] != 10:
                le += 1
            a, b = _strip(data, ls, le, table)
            ls = le + 1
            if a == b:
                continue
            # Copy the line after a separator, without citation markers.
            p0 = p + (1 if kept else 0)
            if kept:
                out[p] = 10
            q = p0
            j = a
            cut = False
            while j < b:
                if remove_citations and data[j] == 91:
                    m = _citation_end(data, j, b)
                    if m > 0:
                        j = m
                        cut = True
                        continue
                out[q] = data[j]
                q += 1
                j += 1
            if cut:
                c0, q = _strip(out, p0, q, table)
                for k in range(c0, q):
                    out[p0 + k - c0] = out[k]
                q = p0 + q - c0
            # One pass over the cleaned line: chunks, longest chunk, sentence ends, last character.
            words = 0
            longest = 0
            ends = 0
            last_ends = False
            in_chunk = False
            chunk_chars = 0
            has_word = trail_end = core_dot = dot_after_word = False
            curly = False
            last_flags = 0
            i = p0
            while i <= q:
                if i < q:
                    cp, w, f = read_char(out, i, q, table)
                else:
                    cp, w, f = 32, 1, SPACE
                if f & SPACE:
                    if in_chunk:
                        words += 1
                        longest = max(longest, chunk_chars)
                        last_ends = trail_end and not core_dot
                        ends += 1 if last_ends else 0
                        in_chunk = False
                else:
                    if not in_chunk:
                        in_chunk = True
                        chunk_chars = 0
                        has_word = trail_end = core_dot = dot_after_word = False
                    chunk_chars += 1
                    last_flags = f
                    if f & PUNCT:
                        if f & SENT_END:
                            trail_end = True
                        if cp == 46 and has_word:
                            dot_after_word = True
                        if cp == 123:
                            curly = True
                    else:
                        core_dot |= dot_after_word
                        has_word = True
                        trail_end = False
                i += w
            ellipsis = q - p0 >= 3 and out[q - 1] == 46 and out[q - 2] == 46 and out[q - 3] == 46
            if max_word_chars >= 0 and longest > max_word_chars:
                row[4] += 1
                continue
            if require_terminal and (not last_flags & TERMINAL or ellipsis):
                row[5] += 1
                continue
            if words < min_words:
                row[6] += 1
                continue
            found = _patterns_in(out, p0, q, patterns, starts, kinds, first_bytes)
            if found & LOREM:
                row[1] = 1
            if found & JAVASCRIPT:
                row[7] += 1
                continue
            if curly:
                row[2] = 1
            if found & POLICY:
                row[8] += 1
                continue
            row[0] += ends + (0 if last_ends else 1)
            kept += 1
            p = q
        row[3] = kept
        out_offsets[d + 1] = p
    return out, out_offsets, stats


def _pattern_arrays(patterns: Sequence[tuple[str, int]]) -> tuple[np.ndarray, ...]:
    encoded = [(text.lower().encode(), kind) for text, kind in patterns if text]
    data = np.frombuffer(b"".join(t for t, _ in encoded) or b"\0", np.uint8).copy()
    starts = np.cumsum([0] + [len(t) for t, _ in encoded]).astype(np.int64)
    kinds = np.array([k for _, k in encoded], dtype=np.int64)
    first_bytes = np.zeros(256, np.bool_)
    for text, _ in encoded:
        first_bytes[text[0]] = True
    return data, starts, kinds, first_bytes


def _string_array(like: pa.DataType, offsets: np.ndarray, data: np.ndarray) -> pa.Array:
    large = pa.types.is_large_string(like)
    offsets = offsets if large else offsets.astype(np.int32)
    return pa.Array.from_buffers(pa.large_string() if large else pa.string(), len(offsets) - 1,
                                 [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def c4_lines(
    column: pa.Array | pa.ChunkedArray,
    *,
    javascript: Sequence[str] = ("javascript",),
    policy: Sequence[str] = (),
    remove_citations: bool = True,
    require_terminal_punct: bool = True,
    min_words: int = 0,
    max_word_chars: int | None = None,
) -> tuple[pa.Array | pa.ChunkedArray, dict[str, np.ndarray]]:
    """Apply C4's line rules (module docstring) to every row.

    Returns the cleaned text (kept lines joined by ``\\n``, same type and chunking as ``column``)
    and per-row int64 arrays named as in ``C4_STATS``: sentences in kept lines, whether a line that
    reached step 5/7 held "lorem ipsum"/``{`` (0 or 1), lines kept, and lines dropped per rule.
    An empty ``javascript`` or ``policy`` list turns that rule off.
    """
    patterns = [("lorem ipsum", LOREM)] + [(p, JAVASCRIPT) for p in javascript] + [(p, POLICY) for p in policy]
    arrays = _pattern_arrays(patterns)
    table = char_table()
    texts, stats = [], []
    for chunk in column_chunks(column):
        out, out_offsets, chunk_stats = _c4_lines(
            *string_buffers(chunk), table, *arrays, remove_citations, require_terminal_punct, min_words,
            -1 if max_word_chars is None else max_word_chars)
        texts.append(_string_array(chunk.type, out_offsets, out[: out_offsets[-1]]))
        stats.append(chunk_stats)
    text = pa.chunked_array(texts, texts[0].type) if isinstance(column, pa.ChunkedArray) else texts[0]
    matrix = np.concatenate(stats) if len(stats) != 1 else stats[0]
    return text, {name: matrix[:, i] for i, name in enumerate(C4_STATS)}
