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

from llmray.kernels.jit import njit
from llmray.kernels.text import (
    ASCII_WORD,
    PUNCT,
    SENT_END,
    SPACE,
    TERMINAL,
    char_class,
    char_table,
    column_chunks,
    count_byte,
    decode_char,
    read_char,
    string_buffers,
    valid_utf8,
)

#: Pattern kinds (bit values in the kernel); CURLY: a ``{``.
LOREM, JAVASCRIPT, POLICY, CURLY = 1, 2, 4, 8
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


_LOWER = np.arange(256, dtype=np.uint8)
_LOWER[65:91] += 32
_WINDOW_BITS = 16
_WINDOW_MULT = np.uint64(0x9E3779B1)


@njit(cache=True, nogil=True, inline="always")
def _window_slot(w):
    """Slot in the window table of four folded bytes ``w`` (a big-endian integer)."""
    return ((w * _WINDOW_MULT) >> np.uint64(16)) & np.uint64((1 << _WINDOW_BITS) - 1)


@njit(cache=True, nogil=True)
def _any_window(data, s, e, pats):
    """Whether ``data[s:e]`` may hold a pattern: whether four folded bytes in a row are, as far as
    their slot in ``windows`` tells, the rarest four of a pattern (branch-free; a pattern shorter than
    four bytes makes it always true)."""
    _, _, _, _, windows, lower, short = pats
    if short:
        return True
    hit = 0
    w = np.uint64(0)
    m = np.uint64(0xFFFFFFFF)
    for i in range(np.uint64(s), np.uint64(e)):
        w = ((w << np.uint64(8)) | np.uint64(lower[data[i]])) & m
        hit |= windows[_window_slot(w)]
    return hit != 0


@njit(cache=True, nogil=True, inline="always")
def _patterns_in(buf, a, b, pats, may_curly):
    """Bit-or of the kinds of the patterns found in ``buf[a:b]`` (ASCII case folded), plus ``CURLY``
    for a ``{`` if ``may_curly``. Patterns are looked for only where the line's own windows say one
    may be there: a page's windows named a third of the pages of English prose (``term`` of "terms
    of use"), whose every line was then searched.
    ``pairs[c0, c1]`` tells whether a pattern starts with the (folded) bytes c0 c1 (``pairs[c0, 256]``:
    with c0 alone; ``pairs[c0, 257]``: with c0). ``pats`` is what ``_pattern_arrays`` returns."""
    patterns, starts, kinds, pairs, _, _, _ = pats
    found = 0
    if may_curly:
        curly = 0
        for i in range(np.uint64(a), np.uint64(b)):
            curly |= buf[i] == 123
        if curly:
            found |= CURLY
    if not _any_window(buf, a, b, pats):
        return found
    for i in range(a, b):
        c = buf[i] | 32 if 65 <= buf[i] <= 90 else buf[i]
        if i + 1 < b:
            c1 = buf[i + 1] | 32 if 65 <= buf[i + 1] <= 90 else buf[i + 1]
            if not pairs[c, c1] and not pairs[c, 256]:
                continue
        elif not pairs[c, 256] and not pairs[c, 257]:
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


#: What ``_judge`` returns besides the rules' columns in ``C4_STATS``.
_KEEP_LINE = 0


@njit(cache=True, nogil=True)
def _words_at_least(buf, a, b, table, n):
    """Whether ``buf[a:b]`` has at least ``n`` chunks (runs of non-space characters)."""
    words = 0
    in_chunk = False
    i = a
    while i < b:
        _, w, f = read_char(buf, i, b, table)
        if f & SPACE:
            in_chunk = False
        elif not in_chunk:
            in_chunk = True
            words += 1
            if words >= n:
                return True
        i += w
    return words >= n


@njit(cache=True, nogil=True, inline="always")
def _judge(buf, a, b, ascii_only, table, pats, may_curly, require_terminal, min_words, max_word_chars,
           sentences):
    """C4's rules 2..8 on the cleaned line ``buf[a:b]``: (``_KEEP_LINE`` or the ``C4_STATS`` column of
    the rule that drops it, sentences (0 unless ``sentences``), lorem ipsum seen, ``{`` seen)."""
    if not sentences and (max_word_chars < 0 or b - a <= max_word_chars) and (ascii_only or valid_utf8(buf, a, b)):
        # No chunk can be too long (characters <= bytes) and, the line being well-formed, its last
        # character reads the same from the end: the rules need no pass over every character.
        last_flags = 0
        if b > a:
            k = b - 1
            while k > a and (buf[k] & 0xC0) == 0x80:
                k -= 1
            cp, _ = decode_char(buf, k, b)
            last_flags = char_class(table, cp)
        ellipsis = b - a >= 3 and buf[b - 1] == 46 and buf[b - 2] == 46 and buf[b - 3] == 46
        if require_terminal and (not last_flags & TERMINAL or ellipsis):
            return 5, 0, False, False
        if min_words > 0 and not _words_at_least(buf, a, b, table, min_words):
            return 6, 0, False, False
        found = _patterns_in(buf, a, b, pats, may_curly)
        lorem = found & LOREM != 0
        if found & JAVASCRIPT:
            return 7, 0, lorem, False
        if found & POLICY:
            return 8, 0, lorem, found & CURLY != 0
        return _KEEP_LINE, 0, lorem, found & CURLY != 0
    # One pass over the line: chunks, longest chunk, sentence ends, last character.
    words = 0
    longest = 0
    ends = 0
    last_ends = False
    in_chunk = False
    chunk_chars = 0
    has_word = trail_end = core_dot = dot_after_word = False
    curly = False
    last_flags = 0
    i = a
    while i <= b:
        if i < b:
            cp, w, f = read_char(buf, i, b, table)
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
                # The ASCII letters and digits that follow change nothing but the counts.
                j = i + w
                while j < b and table[buf[j]] & ASCII_WORD:
                    j += 1
                if j > i + w:
                    chunk_chars += j - i - w
                    last_flags = np.int64(table[buf[j - 1]])
                    i = j
                    continue
        i += w
    ellipsis = b - a >= 3 and buf[b - 1] == 46 and buf[b - 2] == 46 and buf[b - 3] == 46
    if max_word_chars >= 0 and longest > max_word_chars:
        return 4, 0, False, False
    if require_terminal and (not last_flags & TERMINAL or ellipsis):
        return 5, 0, False, False
    if words < min_words:
        return 6, 0, False, False
    found = _patterns_in(buf, a, b, pats, may_curly)
    lorem = found & LOREM != 0
    if found & JAVASCRIPT:
        return 7, 0, lorem, False
    if found & POLICY:
        return 8, 0, lorem, curly
    return _KEEP_LINE, ends + (0 if last_ends else 1), lorem, curly


@njit(cache=True, nogil=True)
def _c4_lines(offsets, data, table, pats, remove_citations, require_terminal, min_words, max_word_chars, keep_text,
              sentences):
    n_docs = offsets.shape[0] - 1
    out = np.empty(max(offsets[n_docs] - offsets[0], 1), np.uint8)
    out_offsets = np.zeros(n_docs + 1, np.int64)
    stats = np.zeros((n_docs, len(C4_STATS)), np.int64)
    p = 0
    for d in range(n_docs):
        s, e = offsets[d], offsets[d + 1]
        row = stats[d]
        kept = 0
        # No line can hold a "{" the document lacks (cutting citation markers makes none).
        doc_curly = count_byte(data, s, e, 123) > 0
        ls = s
        while ls <= e:
            le = ls
            high = 0
            bracket = False
            while le < e and data[le] != 10:
                high |= data[le]
                bracket |= data[le] == 91
                le += 1
            a, b = _strip(data, ls, le, table)
            ls = le + 1
            if a == b:
                continue
            p0 = p + (1 if kept else 0)
            ascii_only = high < 128
            if remove_citations and bracket:
                # Copy the line after a separator, without citation markers.
                q = p0
                j = a
                cut = False
                while j < b:
                    if data[j] == 91:
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
                rule, found_sentences, lorem, curly = _judge(out, p0, q, ascii_only, table, pats, doc_curly,
                                                             require_terminal, min_words, max_word_chars, sentences)
            else:
                q = p0 + b - a
                rule, found_sentences, lorem, curly = _judge(data, a, b, ascii_only, table, pats, doc_curly,
                                                             require_terminal, min_words, max_word_chars, sentences)
                if rule == _KEEP_LINE and keep_text:
                    out[p0:q] = data[a:b]
            if lorem:
                row[1] = 1
            if curly:
                row[2] = 1
            if rule != _KEEP_LINE:
                row[rule] += 1
                continue
            if kept and keep_text:
                out[p] = 10
            row[0] += found_sentences
            kept += 1
            if keep_text:
                p = q
        row[3] = kept
        out_offsets[d + 1] = p
    return out, out_offsets, stats


#: English letters from the commonest: the pre-check looks for the rarest four bytes of each pattern.
_LETTER_ORDER = b"etaoinshrdlcumwfgypbvkjxqz"


def _rarest_window(text: bytes) -> bytes:
    def commonness(window: bytes) -> int:
        return sum(26 - _LETTER_ORDER.index(c) if c in _LETTER_ORDER else 40 for c in window)
    return min((text[k:k + 4] for k in range(len(text) - 3)), key=commonness)


def _pattern_arrays(patterns: Sequence[tuple[str, int]]) -> tuple:
    encoded = [(text.lower().encode(), kind) for text, kind in patterns if text]
    data = np.frombuffer(b"".join(t for t, _ in encoded) or b"\0", np.uint8).copy()
    starts = np.cumsum([0] + [len(t) for t, _ in encoded]).astype(np.int64)
    kinds = np.array([k for _, k in encoded], dtype=np.int64)
    pairs = np.zeros((256, 258), np.bool_)  # [first, second]; [first, 256]: one byte long; [first, 257]: any
    windows = np.zeros(1 << _WINDOW_BITS, np.uint8)
    for text, _ in encoded:
        pairs[text[0], text[1] if len(text) > 1 else 256] = True
        pairs[text[0], 257] = True
        if len(text) >= 4:
            windows[_window_slot(np.uint64(int.from_bytes(_rarest_window(text), "big")))] = 1
    short = any(len(t) < 4 for t, _ in encoded)
    return data, starts, kinds, pairs, windows, _LOWER, short


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
    text: bool = True,
    sentences: bool = True,
) -> tuple[pa.Array | pa.ChunkedArray | None, dict[str, np.ndarray]]:
    """Apply C4's line rules (module docstring) to every row.

    Returns the cleaned text (kept lines joined by ``\\n``, same type and chunking as ``column``;
    None with ``text=False``, for callers that only need the statistics) and per-row int64 arrays
    named as in ``C4_STATS``: sentences in kept lines, whether a line that reached step 5/7 held
    "lorem ipsum"/``{`` (0 or 1), lines kept, and lines dropped per rule. An empty ``javascript``
    or ``policy`` list turns that rule off. With ``sentences=False`` sentences are not counted (left
    0), which saves reading most lines character by character; every kept line holds at least one.
    """
    patterns = [("lorem ipsum", LOREM)] + [(p, JAVASCRIPT) for p in javascript] + [(p, POLICY) for p in policy]
    arrays = _pattern_arrays(patterns)
    table = char_table()
    texts, stats = [], []
    for chunk in column_chunks(column):
        out, out_offsets, chunk_stats = _c4_lines(
            *string_buffers(chunk), table, arrays, remove_citations, require_terminal_punct, min_words,
            -1 if max_word_chars is None else max_word_chars, text, sentences)
        if text:
            texts.append(_string_array(chunk.type, out_offsets, out[: out_offsets[-1]]))
        stats.append(chunk_stats)
    cleaned = None
    if text:
        cleaned = pa.chunked_array(texts, texts[0].type) if isinstance(column, pa.ChunkedArray) else texts[0]
    matrix = np.concatenate(stats) if len(stats) != 1 else stats[0]
    return cleaned, {name: matrix[:, i] for i, name in enumerate(C4_STATS)}
