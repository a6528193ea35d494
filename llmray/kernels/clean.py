"""Compiled passes of the cleaning steps: whitespace cleanup, Unicode-normalization and mojibake
pre-checks, and the PII pre-check, each one walk over the UTF-8 bytes of a whole batch.

* :func:`clean_whitespace` does in one pass what ``clean_whitespace`` used to do with five Arrow
  regex passes, with the same result (checked against them in the tests): ``\\r\\n`` and ``\\r``
  become ``\\n``; C0/C1 controls except tab and newline, zero-width characters and BOM go; a run
  of tabs, spaces, NBSP, ideographic and U+2000..U+200A spaces becomes one space, and no space
  survives next to a newline; more than ``max_blank_lines`` blank lines in a row are cut; the
  result is stripped of ``str.isspace`` characters at both ends. Rows that are not valid UTF-8 are
  reported so that the caller can give them to the regex passes, whose handling of broken bytes is
  RE2's.
* :func:`normalization_suspects` flags the rows that a Unicode normal form could change: rows with
  a character that is not *inert* for the form (see :func:`inert_table`) or with broken UTF-8.
  Every other row is already in that form.
* :func:`mojibake_suspects` is the byte-level form of the ``fix_mojibake`` pre-check regex.
* :func:`pii_candidates` flags the rows where a PII pattern could match (necessary conditions).
"""

from __future__ import annotations

import functools
import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llmray.kernels import arrow
from llmray.kernels.cache import cached_arrays, source_version
from llmray.kernels.jit import njit
from llmray.kernels.text import SPACE, char_table, column_chunks, decode_char, strict_char, string_buffers


def _string_array(like: pa.DataType, offsets: np.ndarray, data: np.ndarray) -> pa.Array:
    large = pa.types.is_large_string(like)
    offsets = offsets if large else offsets.astype(np.int32)
    return pa.Array.from_buffers(pa.large_string() if large else pa.string(), len(offsets) - 1,
                                 [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _like(column: pa.Array | pa.ChunkedArray, chunks: list[pa.Array]) -> pa.Array | pa.ChunkedArray:
    if isinstance(column, pa.ChunkedArray):
        return pa.chunked_array(chunks, chunks[0].type if chunks else column.type)
    return chunks[0]


def _row_flags(column: pa.Array | pa.ChunkedArray, kernel, *args) -> np.ndarray:
    parts = [kernel(*string_buffers(chunk), *args) for chunk in column_chunks(column)]
    return np.concatenate(parts) if len(parts) != 1 else parts[0]


@njit(cache=True, nogil=True, inline="always")
def _any_high(data, s, e):
    """Whether ``data[s:e]`` has a byte >= 0x80 (a vectorized loop: unsigned indices)."""
    seen = 0
    for i in range(np.uint64(s), np.uint64(e)):
        seen |= data[i]
    return seen >= 128


# ---------------------------------------------------------------------------------------------
# Whitespace

# What an ASCII byte is to the whitespace pass.
_OTHER, _HSPACE, _NEWLINE, _CR, _DROP = 0, 1, 2, 3, 4


def _ascii_kinds() -> np.ndarray:
    kinds = np.zeros(128, np.uint8)
    for c in [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F]:
        kinds[c] = _DROP
    kinds[0x09] = kinds[0x20] = _HSPACE
    kinds[0x0A] = _NEWLINE
    kinds[0x0D] = _CR
    return kinds


_ASCII_KINDS = _ascii_kinds()


@njit(cache=True, nogil=True, inline="always")
def _is_space(table, cp):
    return cp < 0x10000 and (table[cp] & SPACE) != 0


@njit(cache=True, nogil=True)
def _is_clean(data, s, e, table, max_newlines):
    """Whether the whitespace cleanup leaves ``data[s:e]`` as it is (False also for broken UTF-8)."""
    if s == e:
        return True
    cp, _ = decode_char(data, s, e)
    if _is_space(table, cp):
        return False
    k = e - 1
    while k > s and (data[k] & 0xC0) == 0x80:
        k -= 1
    cp, _ = decode_char(data, k, e)
    if _is_space(table, cp):
        return False
    # Branch-free over the bytes, which the compiler vectorizes (unsigned indices: no wraparound
    # test): controls, tab and CR, a space next to a space or a newline, two or three newlines in a
    # row. The first character is no space (tested above), so pairs start at the second byte.
    bad = 0
    seen = 0
    pairs = 0
    triples = 0
    one = np.uint64(1)
    two = np.uint64(2)
    for i in range(np.uint64(s), np.uint64(min(s + 2, e))):
        c = data[i]
        bad += ((c < 32) & (c != 10)) | (c == 127)
        seen += c >= 128
    for i in range(np.uint64(s + 2), np.uint64(e)):
        c = data[i]
        p = data[i - one]
        q = data[i - two]
        bad += ((c < 32) & (c != 10)) | (c == 127) | ((c == 32) & ((p == 32) | (p == 10))) | ((c == 10) & (p == 32))
        seen += c >= 128
        pairs += (c == 10) & (p == 10)
        triples += (c == 10) & (p == 10) & (q == 10)
    if bad or (max_newlines == 1 and pairs) or (max_newlines == 2 and triples):
        return False
    if max_newlines > 2 and triples:
        newlines = 0
        for i in range(s, e):
            if data[i] == 10:
                newlines += 1
                if newlines > max_newlines:
                    return False
            else:
                newlines = 0
    if not seen:
        return True
    i = s
    while i < e:  # the multi-byte characters: well-formed, and none that the cleanup removes or turns into a space
        if data[i] < 128:
            i += 1
            continue
        cp, w = strict_char(data, i, e)
        if (cp < 0 or 0x80 <= cp <= 0xA0 or 0x2000 <= cp <= 0x200D or cp == 0x2060 or cp == 0xFEFF
                or cp == 0x3000):
            return False
        i += w
    return True


@njit(cache=True, nogil=True)
def _dirty_rows(offsets, data, table, max_newlines):
    n_docs = offsets.shape[0] - 1
    out = np.zeros(n_docs, np.bool_)
    for d in range(n_docs):
        out[d] = not _is_clean(data, offsets[d], offsets[d + 1], table, max_newlines)
    return out



@njit(cache=True, nogil=True, inline="always")
def _pending_whitespace(out, p, start, newlines, space, max_newlines):
    """Before a character that is kept, write the whitespace seen since the last one (none at the
    start of the text): its newlines up to ``max_newlines``, else one space. Returns the new end."""
    if p > start:
        if newlines:
            for _ in range(min(newlines, max_newlines)):
                out[p] = 10
                p += 1
        elif space:
            out[p] = 32
            p += 1
    return p

@njit(cache=True, nogil=True)
def _clean_whitespace(offsets, data, table, kinds, max_newlines):
    n_docs = offsets.shape[0] - 1
    out = np.empty(max(offsets[n_docs] - offsets[0], 1), np.uint8)
    out_offsets = np.zeros(n_docs + 1, np.int64)
    invalid = np.zeros(n_docs, np.bool_)
    p = 0
    for d in range(n_docs):
        s, e = offsets[d], offsets[d + 1]
        start = p
        space = False  # a run of horizontal space since the last character written
        newlines = 0  # newlines since the last character written
        i = s
        while i < e:
            c = data[i]
            if c < 128:
                kind = kinds[c]
                if kind == _OTHER:
                    p = _pending_whitespace(out, p, start, newlines, space, max_newlines)
                    space = False
                    newlines = 0
                    out[p] = c
                    p += 1
                    i += 1
                    while i < e and data[i] < 128 and kinds[data[i]] == _OTHER:
                        out[p] = data[i]
                        p += 1
                        i += 1
                    continue
                if kind == _HSPACE:
                    space = True
                elif kind == _NEWLINE:
                    newlines += 1
                elif kind == _CR:
                    if i + 1 >= e or data[i + 1] != 10:
                        newlines += 1
                i += 1
                continue
            cp, w = strict_char(data, i, e)
            if cp < 0:
                invalid[d] = True
                break
            if (0x80 <= cp <= 0x9F or 0x200B <= cp <= 0x200D or cp == 0x2060 or cp == 0xFEFF):
                pass
            elif cp == 0xA0 or 0x2000 <= cp <= 0x200A or cp == 0x3000:
                space = True
            else:
                p = _pending_whitespace(out, p, start, newlines, space, max_newlines)
                space = False
                newlines = 0
                for k in range(w):
                    out[p + k] = data[i + k]
                p += w
            i += w
        if invalid[d]:
            p = start
            out_offsets[d + 1] = p
            continue
        # Strip: leading and trailing str.isspace characters (what is left of them: U+1680,
        # U+2028, U+2029, U+202F, U+205F; pending spaces and newlines were never written).
        a = start
        while a < p:
            cp, w = decode_char(out, a, p)
            if not _is_space(table, cp):
                break
            a += w
        b = p
        while b > a:
            k = b - 1
            while k > a and (out[k] & 0xC0) == 0x80:
                k -= 1
            cp, _ = decode_char(out, k, b)
            if not _is_space(table, cp):
                break
            b = k
        if a > start:
            for k in range(a, b):
                out[start + k - a] = out[k]
        p = start + b - a
        out_offsets[d + 1] = p
    return out, out_offsets, invalid


#: The regular expressions of the whitespace cleanup, in order (the definition the kernel follows;
#: rows that are not valid UTF-8 still go through them).
CONTROL = r"[\x{00}-\x{08}\x{0B}\x{0C}\x{0E}-\x{1F}\x{7F}-\x{9F}\x{200B}-\x{200D}\x{2060}\x{FEFF}]"
HSPACE = r"[\t \x{A0}\x{3000}\x{2000}-\x{200A}]+"


def clean_whitespace_regex(column: pa.Array | pa.ChunkedArray, max_blank_lines: int) -> pa.Array | pa.ChunkedArray:
    """The whitespace cleanup as Arrow regex passes (the reference definition)."""
    text = pc.replace_substring(column, "\r\n", "\n")
    text = pc.replace_substring(text, "\r", "\n")
    text = pc.replace_substring_regex(text, CONTROL, "")
    text = pc.replace_substring_regex(text, HSPACE, " ")
    text = pc.replace_substring_regex(text, r" *\n *", "\n")
    text = pc.replace_substring_regex(text, f"\n{{{max_blank_lines + 2},}}", "\n" * (max_blank_lines + 1))
    return pc.utf8_trim_whitespace(text)


def clean_whitespace(column: pa.Array | pa.ChunkedArray, max_blank_lines: int = 1) -> pa.Array | pa.ChunkedArray:
    """The whitespace cleanup (module docstring) of every row; same type and chunking as ``column``."""
    if not 0 <= max_blank_lines <= 998:  # out of the kernel's range: RE2's answer (or error) as before
        return clean_whitespace_regex(column, max_blank_lines)
    table = char_table()
    chunks = []
    for chunk in column_chunks(column):
        dirty = _dirty_rows(*string_buffers(chunk), table, max_blank_lines + 1)
        if chunk.null_count:
            dirty &= arrow.to_numpy(chunk.is_valid())
        if dirty.any():
            mask = arrow.from_numpy(dirty)
            rows = chunk.filter(mask) if not dirty.all() else chunk
            out, out_offsets, invalid = _clean_whitespace(*string_buffers(rows), table, _ASCII_KINDS,
                                                          max_blank_lines + 1)
            cleaned = _string_array(rows.type, out_offsets, out[: out_offsets[-1]])
            if invalid.any():
                broken = arrow.from_numpy(invalid)
                cleaned = pc.replace_with_mask(cleaned, broken, clean_whitespace_regex(rows.filter(broken),
                                                                                      max_blank_lines))
            chunk = pc.replace_with_mask(chunk, mask, cleaned) if not dirty.all() else cleaned
        chunks.append(chunk)
    return _like(column, chunks)


# ---------------------------------------------------------------------------------------------
# Unicode normalization

FORMS = ("NFC", "NFKC", "NFD", "NFKD")
#: Characters from here on (planes 4 to 16: unassigned, tags and variation selectors, private use) are
#: never inert, which keeps the table quick to build; rows with them go to Arrow's kernel.
_INERT_LIMIT = 0x40000


@functools.cache
def inert_table() -> np.ndarray:
    """:func:`derive_inert_table`, derived once per Unicode database, Arrow version and version of
    this module (0.3 s of Python) and read back from the kernel cache after."""
    key = f"inert-{unicodedata.unidata_version}-{pa.__version__}-{source_version(__file__)}"
    return cached_arrays(key, lambda: {"inert": derive_inert_table()})["inert"]


def derive_inert_table() -> np.ndarray:
    """Per code point (uint8, one bit per form in ``FORMS`` order): whether the character is *inert*
    for that form, so that a string made only of inert characters is already normalized.

    A character is inert for a form when it is assigned (in Python's Unicode database), has
    canonical combining class 0, is its own normalization (as Arrow, whose kernel does the work,
    computes it), and, for the composing forms, cannot combine with a character before it: it is not
    the second character of a canonical pair (nor a Hangul medial vowel or final consonant) and its
    decomposition does not start with such a character. This is the "quick check = yes, class 0"
    test of UAX #15, built conservatively; characters unassigned in either database are never inert.
    """
    cps = np.array([c for c in range(_INERT_LIMIT) if not 0xD800 <= c < 0xE000])
    candidates = [ch for ch in map(chr, cps) if unicodedata.combining(ch) == 0 and unicodedata.category(ch) != "Cn"]
    combines_back = {*range(0x1161, 0x1176), *range(0x11A8, 0x11C3)}  # Hangul medial vowels, final consonants
    for ch in candidates:
        decomposition = unicodedata.decomposition(ch)
        if decomposition and not decomposition.startswith("<"):
            parts = decomposition.split()
            if len(parts) == 2:
                combines_back.add(int(parts[1], 16))
    column = pa.array(candidates)
    points = np.fromiter(map(ord, candidates), np.int64, len(candidates))
    table = np.zeros(0x110000, np.uint8)
    for bit, form in enumerate(FORMS):
        normalized = pc.utf8_normalize(column, form)
        same = pc.equal(normalized, column).to_numpy(zero_copy_only=False)
        if form in ("NFC", "NFKC"):
            decomposed = pc.utf8_normalize(column, "NFD" if form == "NFC" else "NFKD")
            changed = np.flatnonzero(pc.not_equal(decomposed, column).to_numpy(zero_copy_only=False))
            first = points.copy()
            first[changed] = [ord(s[0]) if s else 0 for s in decomposed.take(pa.array(changed)).to_pylist()]
            same &= ~np.isin(first, np.fromiter(combines_back, np.int64))
        table[points[same]] |= np.uint8(1 << bit)
    table[0xFFFD] = 0  # the replacement character: checked by Arrow, in case it stood for broken bytes
    return table


@njit(cache=True, nogil=True)
def _normalization_suspects(offsets, data, table, bit):
    n_docs = offsets.shape[0] - 1
    out = np.zeros(n_docs, np.bool_)
    for d in range(n_docs):
        i, e = offsets[d], offsets[d + 1]
        if not _any_high(data, i, e):
            continue
        while i < e:
            if data[i] < 128:
                i += 1
                continue
            cp, w = strict_char(data, i, e)
            if cp < 0 or not table[cp] & bit:
                out[d] = True
                break
            i += w
    return out


def normalization_suspects(column: pa.Array | pa.ChunkedArray, form: str) -> np.ndarray:
    """Per row: whether normal form ``form`` may change it (False: the row is already in that form)."""
    return _row_flags(column, _normalization_suspects, inert_table(), np.uint8(1 << FORMS.index(form)))


def normalize(column: pa.Array | pa.ChunkedArray, form: str) -> pa.Array | pa.ChunkedArray:
    """``pyarrow.compute.utf8_normalize``, run only on the rows it may change."""
    chunks = []
    for chunk in column_chunks(column):
        suspects = normalization_suspects(chunk, form)
        if suspects.any():
            mask = arrow.from_numpy(suspects)
            chunk = pc.replace_with_mask(chunk, mask, pc.utf8_normalize(chunk.filter(mask), form))
        chunks.append(chunk)
    return _like(column, chunks)


# ---------------------------------------------------------------------------------------------
# Mojibake


@njit(cache=True, nogil=True)
def _mojibake_suspects(offsets, data):
    """``[ÃÂ][\\x80-\\xFF]|â€|ï»¿`` over UTF-8 bytes: C3 82|83 C2|C3 xx, C3 A2 E2 82 AC, C3 AF C2 BB C2 BF."""
    n_docs = offsets.shape[0] - 1
    out = np.zeros(n_docs, np.bool_)
    for d in range(n_docs):
        s, e = offsets[d], offsets[d + 1]
        lead = 0
        for i in range(np.uint64(s), np.uint64(e)):
            lead += data[i] == 0xC3
        if not lead:
            continue
        for i in range(s, e - 3):
            if data[i] != 0xC3:
                continue
            b1 = data[i + 1]
            if b1 == 0x82 or b1 == 0x83:
                if (data[i + 2] == 0xC2 or data[i + 2] == 0xC3) and (data[i + 3] & 0xC0) == 0x80:
                    out[d] = True
                    break
            elif b1 == 0xA2:
                if i + 5 <= e and data[i + 2] == 0xE2 and data[i + 3] == 0x82 and data[i + 4] == 0xAC:
                    out[d] = True
                    break
            elif b1 == 0xAF:
                if (i + 6 <= e and data[i + 2] == 0xC2 and data[i + 3] == 0xBB and data[i + 4] == 0xC2
                        and data[i + 5] == 0xBF):
                    out[d] = True
                    break
    return out


def mojibake_suspects(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Per row: whether it holds a tell-tale pair of UTF-8 read as Latin-1/cp1252 (``Ã©``, ``â€``, BOM)."""
    return _row_flags(column, _mojibake_suspects)


# ---------------------------------------------------------------------------------------------
# PII

EMAIL, IP, PHONE = 1, 2, 4


@njit(cache=True, nogil=True, inline="always")
def _is_digit(c):
    return (c >= 48) & (c <= 57)


@njit(cache=True, nogil=True, inline="always")
def _dotted_group(data, i, e):
    """End of ``\\d{1,3}\\.`` at ``data[i:e]``, or -1."""
    k = i
    while k < e and k - i < 4 and 48 <= data[k] <= 57:
        k += 1
    if k == i or k - i > 3 or k >= e or data[k] != 46:
        return -1
    return k + 1


@njit(cache=True, nogil=True)
def _ip_candidate(data, s, e):
    """Whether ``data[s:e]`` has ``\\d.\\d{1,3}.\\d{1,3}.\\d`` (so, in particular, when it has an IP address)."""
    for i in range(s + 1, e - 1):
        if data[i] == 46 and 48 <= data[i - 1] <= 57:
            k = _dotted_group(data, i + 1, e)
            if k > 0:
                k = _dotted_group(data, k, e)
                if k > 0 and k < e and 48 <= data[k] <= 57:
                    return True
    return False


@njit(cache=True, nogil=True)
def _pii_candidates(offsets, data, kinds):
    """Per row, bits of the PII kinds whose pattern may match. Necessary conditions, over ASCII bytes
    (the patterns' ``\\d``, ``@`` and separators are ASCII): an e-mail address has ``@``; an IP
    address has ``\\d{1,3}.\\d{1,3}.\\d{1,3}.\\d``; a phone number has ``\\d{3}[ .-]\\d{3}``."""
    n_docs = offsets.shape[0] - 1
    out = np.zeros(n_docs, np.uint8)
    one, two, three = np.uint64(1), np.uint64(2), np.uint64(3)
    four, five, six = np.uint64(4), np.uint64(5), np.uint64(6)
    for d in range(n_docs):
        s, e = offsets[d], offsets[d + 1]
        at = 0
        for i in range(np.uint64(s), np.uint64(e)):  # vectorized (unsigned indices)
            at += data[i] == 64
        groups = 0
        for i in range(s + 2, min(s + 4, e)):  # ".\d{1,3}." ending near the start
            k = i - 1
            while k > s and k > i - 4 and 48 <= data[k] <= 57:
                k -= 1
            if data[i] == 46 and data[k] == 46 and 1 <= i - k - 1 <= 3:
                groups += 1
        for i in range(np.uint64(s + 4), np.uint64(max(e, s + 4))):
            c, c1, c2, c3, c4 = data[i], data[i - one], data[i - two], data[i - three], data[i - four]
            # ".\d{1,3}." ending here: an address has two of them
            groups += (c == 46) & _is_digit(c1) & ((c2 == 46) | (_is_digit(c2) & ((c3 == 46) | (_is_digit(c3)
                                                                                           & (c4 == 46)))))
        phone = 0
        for i in range(np.uint64(s + 6), np.uint64(max(e, s + 6))):
            c, c1, c2, c3, c4 = data[i], data[i - one], data[i - two], data[i - three], data[i - four]
            phone += (_is_digit(c) & _is_digit(c1) & _is_digit(c2) & ((c3 == 32) | (c3 == 45) | (c3 == 46))
                      & _is_digit(c4) & _is_digit(data[i - five]) & _is_digit(data[i - six]))
        found = 0
        if at:
            found |= EMAIL
        if phone:
            found |= PHONE
        if groups >= 2 and kinds & IP and _ip_candidate(data, s, e):
            found |= IP
        out[d] = found & kinds
    return out


def pii_candidates(column: pa.Array | pa.ChunkedArray, kinds: int = EMAIL | IP | PHONE) -> np.ndarray:
    """Per row: bits (``EMAIL``, ``IP``, ``PHONE``) of the kinds in ``kinds`` whose pattern may match."""
    return _row_flags(column, _pii_candidates, np.uint8(kinds))
