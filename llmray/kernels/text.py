"""Per-document text statistics computed by numba kernels straight from Arrow string buffers.

The quality filters only need counts (words, lines, duplicates, n-gram repeats), so the kernels walk
the UTF-8 bytes of a whole batch in compiled code, with no Python object per document or per word.
Definitions (shared by every filter and mirrored by ``tests/ops/reference_filters.py``):

* **Characters** are Unicode code points (what ``len(str)`` counts).
* **Character classes** (:func:`char_flags`): *space* is ``str.isspace``; *punctuation* is every code
  point of Unicode category P* or S*, plus control characters that are not spaces; *alphabetic* is
  ``str.isalpha``; digits, marks and format characters are word characters that are not alphabetic.
  The table covers the Basic Multilingual Plane exactly (built from ``unicodedata``). Above it, the
  approximation is: U+1F000..U+1FBFF (emoji and pictographs) is punctuation, everything else is an
  alphabetic letter (historic scripts, CJK extensions).
* **Tokens** approximate the spaCy English tokenizer that datatrove uses, without most of its
  exception lists: the text is split on spaces into chunks; punctuation is peeled off the front of
  a chunk up to the first *sticky* character (``- / @ \\ ^ | ~`` or a lone ``.``: ``--verbose``,
  ``/etc``, ``.git`` stay whole) and off the back after the last sticky one (the same plus ``+ =``:
  ``C++``, ``Key=``). Peeled punctuation gives one token per character, except that a run of ``.``
  or of ``-`` is one token (``...``), and that a full stop stays with single letters joined by dots
  (``A.``, ``e.g.``, ``U.S.``). The rest, the core, is split into words at an infix between a word
  character and a letter (``well-known``, ``and/or``, ``x=y``, ``a,b``, ``end.Next``), at
  ``+ - * ^`` between digits (``1-7``), not in URLs (``://``), and before a final clitic
  (``don't`` -> ``do`` ``n't``, ``it's`` -> ``it`` ``'s``). A token with a word character is a
  *word*; a token with a letter is *alphabetic*. On 1,500 documents of technical English the token
  counts match spaCy's within 1% for 95% of them.
* **Lines** are the pieces between ``\\n`` characters, with trailing space removed (so ``\\r\\n``
  works), that contain a non-space character; blank lines only separate **paragraphs** (maximal runs
  of non-blank lines). Lines and paragraphs compare equal when their bytes are equal.
* Equality of words, lines, paragraphs and n-grams is decided by 64-bit hashes (FNV-1a plus a
  finalizer); a false match needs a collision, about 1 in 10^19 per pair.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pyarrow as pa

from llmray.kernels import segment
from llmray.kernels.cache import cached_arrays, source_version
from llmray.kernels.hashing import _MIX1, _MIX2, GOLDEN, fmix64
from llmray.kernels.jit import njit
from llmray.kernels.segment import segment_tokens, segmenter
from llmray.kernels.utf8 import decode_char

# Character class bits.
SPACE = 1
PUNCT = 2
ALPHA = 4
#: Ends a line "with terminal punctuation": sentence ends and closing quotes (C4's ``. ! ? " '``).
TERMINAL = 8
#: Ends a sentence: ``. ! ?`` and their equivalents in other scripts.
SENT_END = 16
#: Starts a bulleted line.
BULLET = 32
#: Punctuation that stays attached to the word after it (``--verbose``, ``/etc``, ``~user``).
LEAD_STICKY = 64
#: Punctuation that stays attached to the word before it (``C++``, ``foo/``).
TRAIL_STICKY = 128
#: Splits a word in two when between a word character and a letter (``well-known``, ``and/or``).
INFIX = 256
#: ASCII letters and digits (the kernels' fast paths).
ASCII_WORD = 512
#: ASCII characters that are not space (the kernels' fast paths).
ASCII_INK = 1024

SENTENCE_ENDS = ".!?։؟۔܀܁܂।॥။።፧፨᙮᠃᠉‼‽⁇⁈⁉⸮。꓿꘎꘏﹒﹖﹗！．？｡"
CLOSING_QUOTES = "\"'”’"
BULLETS = "-*•‣◦▪▫●○■□►▸⁃"
LEAD_STICKIES = "-/@\\^|~"
TRAIL_STICKIES = LEAD_STICKIES + "+="
INFIXES = ",-/:<=>~…–—"
#: Code points above the BMP in this range count as punctuation (emoji, pictographs); others as letters.
EMOJI_FIRST, EMOJI_LAST = 0x1F000, 0x1FBFF

# Token flag bits.
WORD = 1
HAS_ALPHA = 2
#: Extra line shapes of CJK text (``cjk=True`` in :func:`line_stats`): lines ending with an ellipsis
#: or a closing corner bracket end a sentence, and full-width list markers start a bulleted line.
CJK_TERMINALS = "…」』"
CJK_BULLETS = "・·－＊※◆◇◎★☆▶▷➤√"
# What may follow an infix for it to split a word.
_NEXT_ALPHA = 1
_NEXT_DIGIT = 2
_NEXT_UPPER = 4

_S29 = np.uint64(29)
# segment.py reads these bits without importing this module.
assert (segment._PUNCT, segment._ALPHA, segment._WORD, segment._HAS_ALPHA) == (PUNCT, ALPHA, WORD, HAS_ALPHA)
assert (segment._EMOJI_FIRST, segment._EMOJI_LAST) == (EMOJI_FIRST, EMOJI_LAST)


def char_flags(ch: str) -> int:
    """Class bits of one character (the single source of the definitions in the module docstring)."""
    cp = ord(ch)
    if cp >= 0x10000:
        return PUNCT if EMOJI_FIRST <= cp <= EMOJI_LAST else ALPHA
    if ch.isspace():
        return SPACE
    flags = 0
    category = unicodedata.category(ch)
    if category[0] in "PS" or category == "Cc":
        flags |= PUNCT
    elif ch.isalpha():
        flags |= ALPHA
    if ch in SENTENCE_ENDS:
        flags |= SENT_END | TERMINAL
    if ch in CLOSING_QUOTES:
        flags |= TERMINAL
    if ch in BULLETS:
        flags |= BULLET
    if ch in LEAD_STICKIES:
        flags |= LEAD_STICKY
    if ch in TRAIL_STICKIES:
        flags |= TRAIL_STICKY
    if ch in INFIXES:
        flags |= INFIX
    if cp < 128 and not flags & (SPACE | PUNCT):
        flags |= ASCII_WORD
    if cp < 128 and not flags & SPACE:
        flags |= ASCII_INK
    return flags


@functools.cache
def char_table() -> np.ndarray:
    """:func:`char_flags` of every BMP code point, for the kernels: 0.1 s of Python, so derived once
    per Unicode version and version of this module and read back from the kernel cache after."""
    return cached_arrays(f"chars-{unicodedata.unidata_version}-{source_version(__file__)}", lambda: {"flags": np.array(
        [char_flags(chr(cp)) for cp in range(0x10000)], dtype=np.uint16)})["flags"]


# ---------------------------------------------------------------------------------------------
# Arrow access


_EMPTY = np.zeros(0, dtype=np.uint8)
_EMPTY.flags.writeable = False


def string_buffers(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets as int64, UTF-8 bytes) of a string array; the text bytes are not copied.

    Offsets index ``data`` directly, so sliced arrays work. They are copied to int64 (one number per
    row) so that one compiled kernel serves both ``string`` and ``large_string``.
    """
    if pa.types.is_large_string(array.type):
        width = 8
    elif pa.types.is_string(array.type):
        width = 4
    else:
        raise TypeError(f"expected a string array, got {array.type}")
    _, offsets_buf, data_buf = array.buffers()
    if len(array) == 0:
        return np.zeros(1, np.int64), _EMPTY
    dtype = np.int64 if width == 8 else np.int32
    offsets = np.frombuffer(offsets_buf, dtype=dtype, count=len(array) + 1, offset=array.offset * width)
    if data_buf is None or not data_buf.size:
        return offsets.astype(np.int64), _EMPTY
    data = np.frombuffer(data_buf, dtype=np.uint8)
    data.flags.writeable = False  # one compiled variant whether or not Arrow's buffer is mutable
    return offsets.astype(np.int64), data


def column_chunks(column: pa.Array | pa.ChunkedArray) -> Iterable[pa.Array]:
    """The arrays of a column (never concatenated: a column may exceed 2 GB of text)."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    if not chunks:
        chunks = [pa.array([], column.type)]
    for chunk in chunks:
        if not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)):
            chunk = chunk.cast(pa.large_string())
        yield chunk


def _per_chunk(column: pa.Array | pa.ChunkedArray, kernel: Callable[..., np.ndarray], *args) -> np.ndarray:
    """Run ``kernel(offsets, data, *args)`` on every chunk and stack the per-row results."""
    parts = [kernel(*string_buffers(chunk), *args) for chunk in column_chunks(column)]
    return np.concatenate(parts) if len(parts) != 1 else parts[0]


def _columns(matrix: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    return {name: matrix[:, i] for i, name in enumerate(names)}


# ---------------------------------------------------------------------------------------------
# Compiled helpers


@njit(cache=True, nogil=True, inline="always")
def strict_char(data, i, end):
    """(code point, byte length) of the well-formed UTF-8 character at ``data[i]`` (a byte >= 0x80),
    or (-1, 1) where the bytes are not well-formed UTF-8 (as Arrow's validation defines it)."""
    b = np.int64(data[i])
    if 0xC2 <= b <= 0xDF:
        if i + 1 < end and (data[i + 1] & 0xC0) == 0x80:
            return ((b & 0x1F) << 6) | (np.int64(data[i + 1]) & 0x3F), 2
        return -1, 1
    if 0xE0 <= b <= 0xEF:
        if i + 2 >= end:
            return -1, 1
        b1 = np.int64(data[i + 1])
        lo = 0xA0 if b == 0xE0 else 0x80
        hi = 0x9F if b == 0xED else 0xBF
        if not lo <= b1 <= hi or (data[i + 2] & 0xC0) != 0x80:
            return -1, 1
        return ((b & 0x0F) << 12) | ((b1 & 0x3F) << 6) | (np.int64(data[i + 2]) & 0x3F), 3
    if 0xF0 <= b <= 0xF4:
        if i + 3 >= end:
            return -1, 1
        b1 = np.int64(data[i + 1])
        lo = 0x90 if b == 0xF0 else 0x80
        hi = 0x8F if b == 0xF4 else 0xBF
        if not lo <= b1 <= hi or (data[i + 2] & 0xC0) != 0x80 or (data[i + 3] & 0xC0) != 0x80:
            return -1, 1
        return (((b & 0x07) << 18) | ((b1 & 0x3F) << 12) | ((np.int64(data[i + 2]) & 0x3F) << 6)
                | (np.int64(data[i + 3]) & 0x3F)), 4
    return -1, 1


@njit(cache=True, nogil=True)
def valid_utf8(data, a, b):
    """Whether ``data[a:b]`` is well-formed UTF-8."""
    i = a
    while i < b:
        if data[i] < 128:
            i += 1
            continue
        cp, w = strict_char(data, i, b)
        if cp < 0:
            return False
        i += w
    return True


@njit(cache=True, nogil=True, inline="always")
def char_class(table, cp):
    """Class bits of code point ``cp`` (``table`` is :func:`char_table`)."""
    if cp < 0x10000:
        return np.int64(table[cp])
    if EMOJI_FIRST <= cp <= EMOJI_LAST:
        return PUNCT
    return ALPHA


@njit(cache=True, nogil=True, inline="always")
def read_char(data, i, end, table):
    """(code point, byte length, class bits) at ``data[i]``, with a fast path for ASCII."""
    c = data[i]
    if c < 128:
        return np.int64(c), 1, np.int64(table[c])
    cp, w = decode_char(data, i, end)
    return cp, w, char_class(table, cp)


@njit(cache=True, nogil=True, inline="always")
def _load8(data, i):
    """Eight bytes at ``data[i]`` as a little-endian integer, without a loop (``i + 8 <= len(data)``).
    Unsigned indices (no wraparound test) let the compiler make it one load."""
    u = np.uint64(i)
    return (np.uint64(data[u]) | np.uint64(data[u + np.uint64(1)]) << np.uint64(8)
            | np.uint64(data[u + np.uint64(2)]) << np.uint64(16) | np.uint64(data[u + np.uint64(3)]) << np.uint64(24)
            | np.uint64(data[u + np.uint64(4)]) << np.uint64(32) | np.uint64(data[u + np.uint64(5)]) << np.uint64(40)
            | np.uint64(data[u + np.uint64(6)]) << np.uint64(48) | np.uint64(data[u + np.uint64(7)]) << np.uint64(56))


@njit(cache=True, nogil=True, inline="always")
def _hash_bytes(data, a, b, lower):
    """Hash of ``data[a:b]``, eight bytes (little-endian, zero-padded) per step, optionally with ASCII
    letters folded to lower case."""
    h = np.uint64(b - a) * _MIX2
    i = a
    while i < b:
        if not lower and i + 8 <= data.shape[0]:  # common case: one load, then mask the tail
            word = _load8(data, i)
            if b - i < 8:
                word &= (np.uint64(1) << np.uint64(8 * (b - i))) - np.uint64(1)
        else:
            word = np.uint64(0)
            for k in range(min(8, b - i)):
                c = data[i + k]
                if lower and 65 <= c <= 90:
                    c += 32
                word |= np.uint64(c) << np.uint64(8 * k)
        h = (h ^ word) * _MIX1
        h ^= h >> _S29
        i += 8
    return fmix64(h)


@njit(cache=True, nogil=True)
def _table_size(items):
    """Power-of-two slot count keeping an open-addressing table at most half full."""
    size = 16
    while size < 2 * items:
        size *= 2
    return size


@njit(cache=True, nogil=True, inline="always")
def _find(keys, mask, h):
    """(slot of key ``h``, whether it was there); an absent key is inserted. Key 0 marks empty slots."""
    if h == 0:
        h = np.uint64(1)
    slot = np.int64(h & mask)
    while True:
        k = keys[slot]
        if k == h:
            return slot, True
        if k == 0:
            keys[slot] = h
            return slot, False
        slot = (slot + 1) & mask


# ---------------------------------------------------------------------------------------------
# Tokenizer
#
# Helpers called once per token take a single array: numba reference-counts every array argument
# of a call that is not inlined, which would cost more than the token itself.

#: Columns of the token table filled by :func:`tokenize`.
TOKEN_START, TOKEN_END, TOKEN_CHARS, TOKEN_FLAGS = 0, 1, 2, 3


@njit(cache=True, nogil=True, inline="always")
def _put(tokens, n, a, b, chars, kind):
    tokens[n, TOKEN_START] = a
    tokens[n, TOKEN_END] = b
    tokens[n, TOKEN_CHARS] = chars
    tokens[n, TOKEN_FLAGS] = kind
    return n + 1


@njit(cache=True, nogil=True)
def _apostrophe_before(data, a, j):
    """Byte length of an apostrophe (' or U+2019) ending just before ``data[j]``, or 0."""
    if j - 1 >= a and data[j - 1] == 39:
        return 1
    if j - 3 >= a and data[j - 3] == 0xE2 and data[j - 2] == 0x80 and data[j - 1] == 0x99:
        return 3
    return 0


@njit(cache=True, nogil=True, inline="always")
def _abbreviation(data, a, b):
    """Whether ``data[a:b]`` is single ASCII letters joined by '.' (``A``, ``e.g``, ``U.S``)."""
    if (b - a) % 2 == 0:
        return False
    for k in range(a, b):
        c = data[k] | 32
        if ((k - a) % 2 == 0 and not 97 <= c <= 122) or ((k - a) % 2 == 1 and data[k] != 46):
            return False
    return True


@njit(cache=True, nogil=True)
def _clitic(data, a, b, table):
    """(bytes, characters) of a clitic ending ``data[a:b]`` ('s 'd 'm n't 're 've 'll) that follows a
    word character, or (0, 0)."""
    last = data[b - 1] | 32
    q = 0
    size = 0
    if last == 115 or last == 100 or last == 109:  # s d m
        q = _apostrophe_before(data, a, b - 1)
        size = 1
    elif last == 116:  # n't
        q = _apostrophe_before(data, a, b - 1)
        if q == 0 or b - 2 - q < a or data[b - 2 - q] | 32 != 110:
            q = 0
        size = 2
    elif b - 2 >= a and ((last == 101 and (data[b - 2] | 32 == 114 or data[b - 2] | 32 == 118))
                         or (last == 108 and data[b - 2] | 32 == 108)):  # 're 've 'll
        q = _apostrophe_before(data, a, b - 2)
        size = 2
    cut = size + q
    if q == 0 or b - cut <= a:
        return 0, 0
    k = b - cut - 1
    while k > a and (data[k] & 0xC0) == 0x80:
        k -= 1
    cp, _ = decode_char(data, k, b - cut)
    if char_class(table, cp) & PUNCT:
        return 0, 0
    return cut, size + 1


@njit(cache=True, nogil=True)
def tokenize(data, start, end, table, tokens, n):
    """Append the tokens of ``data[start:end]`` (module docstring) to ``tokens`` from row ``n``.

    ``tokens`` is an int64 array of shape (capacity, 4): byte start, byte end, length in
    characters, flags (``WORD``, ``HAS_ALPHA``). Returns ``(count, resume)``: when the table fills
    up, ``resume < end`` is the start of the first chunk not stored; grow the table and call again
    from there with the returned count.
    """
    cap = tokens.shape[0]
    cs = -1  # chunk start
    n_chunk = n  # token count before the chunk
    core = -1  # core start; -1 while leading punctuation is peeled off
    n_core = n
    core_cpi = 0
    core_alpha = -1
    core_end = -1  # end of the last word or trailing-sticky character
    core_end_cpi = 0
    piece = -1  # start of the word being built
    piece_cpi = 0
    piece_alpha = -1  # first letter of the piece
    infix = -1  # pending infix: start, end (after a run of '-'), character index, character, and
    infix_end = -1  # which next characters split the word (_NEXT_ALPHA | _NEXT_DIGIT | _NEXT_UPPER)
    infix_cpi = 0
    infix_cp = 0
    infix_next = 0
    url = False
    quote = -1  # last apostrophe in the core
    prev_word = False
    prev_alpha = False
    prev_lower = False
    prev_digit = False
    cpi = 0  # character index
    i = start
    while i <= end:
        if i < end:
            cp, w, f = read_char(data, i, end, table)
        else:
            cp = 32
            w = 1
            f = SPACE
        if f & SPACE:
            if cs >= 0 and core >= 0:
                punct = core  # punctuation tokens run from here to the chunk end
                if core_end >= 0:
                    cut, cut_chars = 0, 0
                    if url:
                        n = n_core
                        piece = core
                        piece_cpi = core_cpi
                        piece_alpha = core_alpha
                    else:
                        lone_stop = core_end < i and data[core_end] == 46 and (core_end + 1 == i
                                                                                or data[core_end + 1] != 46)
                        if lone_stop and _abbreviation(data, piece, core_end):
                            core_end += 1  # the full stop of "e.g." or "A." stays with the word
                            core_end_cpi += 1
                        elif quote >= core_end - 5:
                            cut, cut_chars = _clitic(data, piece, core_end, table)
                    stem = core_end - cut
                    n = _put(tokens, n, piece, stem, core_end_cpi - piece_cpi - cut_chars,
                             WORD | (HAS_ALPHA if 0 <= piece_alpha < stem else 0))
                    if cut:
                        n = _put(tokens, n, stem, core_end, cut_chars, WORD | HAS_ALPHA)
                    punct = core_end
                while punct < i:  # one token per character; a run of '.' or '-' is one token
                    c = data[punct]
                    k = punct + 1
                    if c == 46 or c == 45:
                        while k < i and data[k] == c:
                            k += 1
                    else:
                        while k < i and (data[k] & 0xC0) == 0x80:
                            k += 1
                    n = _put(tokens, n, punct, k, k - punct if c == 46 or c == 45 else 1, 0)
                    punct = k
            cs = -1
            i += w
            cpi += 1
            continue
        if cs < 0:
            if f & ASCII_WORD and n + 2 <= cap:
                # Fast path for the common chunk: ASCII letters and digits, at most one trailing
                # punctuation mark that is not sticky, then a space.
                seen = f
                uj = np.uint64(i + 1)  # unsigned: no wraparound test in the hot loop
                ue = np.uint64(end)
                while uj < ue and table[data[uj]] & ASCII_WORD:
                    seen |= table[data[uj]]
                    uj += np.uint64(1)
                j = np.int64(uj)
                k = j
                if k < end and data[k] < 128 and table[data[k]] & PUNCT and not table[data[k]] & TRAIL_STICKY:
                    k += 1
                if (k == end or (data[k] < 128 and table[data[k]] & SPACE)) and not (j - i == 1 and data[j] == 46):
                    n = _put(tokens, n, i, j, j - i, WORD | (HAS_ALPHA if seen & ALPHA else 0))
                    if k > j:
                        n = _put(tokens, n, j, k, 1, 0)
                    if k < end:
                        k += 1  # the space: it only ends the chunk, which is done
                    cpi += k - i
                    i = k
                    continue
            cs = i
            n_chunk = n
            core = -1
        if n_chunk + (i + w - cs) > cap:
            return n_chunk, cs
        if core < 0:
            if f & PUNCT and not f & LEAD_STICKY:
                r = i + w
                if cp == 46:
                    while r < end and data[r] == 46:
                        r += 1
                if cp != 46 or r - i >= 2:
                    n = _put(tokens, n, i, r, r - i if cp == 46 else 1, 0)
                    cpi += r - i if cp == 46 else 1
                    i = r
                    continue
            core = i
            n_core = n
            core_cpi = cpi
            core_alpha = -1
            core_end = -1
            piece = i
            piece_cpi = cpi
            piece_alpha = -1
            infix = -1
            url = False
            quote = -1
            prev_word = False
        if f & PUNCT:
            if f & TRAIL_STICKY and core_end >= 0:
                core_end = i + w
                core_end_cpi = cpi + 1
            if infix >= 0 and cp == 45 and i == infix_end and infix_cp == 45:
                infix_end = i + w  # a run of '-' splits before a letter, not between digits
                infix_next &= _NEXT_ALPHA
                if not infix_next:
                    infix = -1
            elif prev_word:
                infix_next = 0
                if cp == 46:
                    infix_next = _NEXT_UPPER if prev_lower else 0
                elif cp == 44:
                    infix_next = _NEXT_ALPHA if prev_alpha else 0
                elif f & INFIX:
                    infix_next = _NEXT_ALPHA
                if prev_digit and (cp == 43 or cp == 45 or cp == 42 or cp == 94):  # + - * ^
                    infix_next |= _NEXT_DIGIT
                infix = i if infix_next else -1
                infix_end = i + w
                infix_cpi = cpi
                infix_cp = cp
            else:
                infix = -1
            if cp == 58 and i + 2 < end and data[i + 1] == 47 and data[i + 2] == 47:
                url = True
            if cp == 39 or cp == 0x2019:
                quote = i
            prev_word = False
        else:
            alpha = f & ALPHA
            if infix >= 0 and i == infix_end and ((infix_next & _NEXT_ALPHA and alpha)
                                                  or (infix_next & _NEXT_DIGIT and 48 <= cp <= 57)
                                                  or (infix_next & _NEXT_UPPER and 65 <= cp <= 90)):
                n = _put(tokens, n, piece, infix, infix_cpi - piece_cpi, WORD | (HAS_ALPHA if piece_alpha >= 0 else 0))
                n = _put(tokens, n, infix, infix_end, infix_end - infix if infix_cp == 45 else 1, 0)
                piece = i
                piece_cpi = cpi
                piece_alpha = -1
            infix = -1
            if alpha:
                if piece_alpha < 0:
                    piece_alpha = i
                if core_alpha < 0:
                    core_alpha = i
            # Fast path: the ASCII letters and digits that follow need no decision.
            j = i + w
            while j < end and table[data[j]] & ASCII_WORD:
                if piece_alpha < 0 and table[data[j]] & ALPHA:
                    piece_alpha = j
                    if core_alpha < 0:
                        core_alpha = j
                j += 1
            if j > i + w:
                cp = np.int64(data[j - 1])
                alpha = np.int64(table[cp]) & ALPHA
            cpi += j - i - w + 1
            i = j
            core_end = i
            core_end_cpi = cpi
            prev_word = True
            prev_alpha = alpha != 0
            prev_lower = 97 <= cp <= 122
            prev_digit = 48 <= cp <= 57
            continue
        i += w
        cpi += 1
    return n, end


@njit(cache=True, nogil=True)
def doc_tokens(data, start, end, table, tokens):
    """All tokens of one document: ``(count, tokens)``; the table is grown when needed, so keep the
    returned one for the next document."""
    n, pos = tokenize(data, start, end, table, tokens, 0)
    while pos < end:
        grown = np.empty((2 * tokens.shape[0] + 1024, 4), np.int64)
        grown[: tokens.shape[0]] = tokens
        tokens = grown
        n, pos = tokenize(data, pos, end, table, tokens, n)
    return n, tokens


def cut(text: str, mode: int | str = "jieba") -> list[str]:
    """The words of one string seen as a single word token, as segmentation ``mode`` cuts it (for
    looking at the definition and for tests; the filters segment whole batches in their kernels)."""
    data = np.frombuffer(text.encode(), np.uint8)
    tokens = np.array([[0, data.shape[0], len(text), WORD]], np.int64)
    out, m, _ = segment_tokens(data, tokens, 1, char_table(), segmenter(mode), segment.work(),
                               np.empty((16, 4), np.int64))
    return [bytes(data[a:b]).decode() for a, b, _, _ in out[:m]]


def split_tokens(text: str, segmentation: str = "spaces") -> list[tuple[str, bool]]:
    """The tokens of one string as ``(token, is_word)`` pairs: for looking at the definition, not bulk.
    ``segmentation`` is a mode of :mod:`llmray.kernels.segment` (``spaces``, ``jieba``, ``characters``)."""
    data = np.frombuffer(text.encode(), np.uint8)
    table = char_table()
    n, tokens = doc_tokens(data, 0, data.shape[0], table, np.empty((16, 4), np.int64))
    seg = segmenter(segmentation)
    if seg.mode:
        tokens, n, _ = segment_tokens(data, tokens, n, table, seg, segment.work(), np.empty((16, 4), np.int64))
    return [(bytes(data[a:b]).decode(), bool(kind & WORD)) for a, b, _, kind in tokens[:n]]


#: Rows of the token table that the statistics kernels tokenize into, a batch at a time: the word
#: and n-gram statistics of a document of any size hold this many token rows (only a chunk between
#: spaces longer than this, in bytes, grows the table to fit it).
BATCH_TOKENS = 8192


@njit(cache=True, nogil=True, inline="always")
def token_batch(data, pos, end, table, tokens, seg, wk, seg_tokens):
    """The next tokens of ``data[pos:end]``, as many as ``tokens`` holds, with segmentation ``seg``
    applied (:mod:`llmray.kernels.segment`): ``(count, resume, tokens, wk, seg_tokens, batch)``,
    ``batch`` being the table that holds them (``tokens`` or ``seg_tokens``). Call again from
    ``resume`` until it is ``end``. The tables grow only when a single chunk does not fit, so keep
    the returned ones for the next call. A batch ends where a chunk starts, where the tokenizer
    keeps no state: the batches of a document hold the tokens of :func:`doc_tokens`, in order."""
    n, resume = tokenize(data, pos, end, table, tokens, 0)
    while resume == pos and pos < end:  # one chunk longer than the table: grow it
        tokens = np.empty((2 * tokens.shape[0] + 1024, 4), np.int64)
        n, resume = tokenize(data, pos, end, table, tokens, 0)
    if seg[0] == 0:
        return n, resume, tokens, wk, seg_tokens, tokens
    seg_tokens, n, wk = segment_tokens(data, tokens, n, table, seg, wk, seg_tokens)
    return n, resume, tokens, wk, seg_tokens, seg_tokens


# ---------------------------------------------------------------------------------------------
# Word statistics

WORD_STATS = ("chars", "tokens", "words", "word_chars", "alpha_tokens", "stop_words", "hashes", "ellipses",
              "newlines")


@njit(cache=True, nogil=True)
def _byte_counts(data, s, e, cjk):
    """(characters, ``#``, ellipses, newlines) of ``data[s:e]``: byte rules, no decoding. Characters are
    the bytes that do not continue a UTF-8 sequence; ellipses are ``…`` plus, per run of ``.``, its
    length // 3; with ``cjk``, a run of L ``…`` counts (L + 1) // 2 (``……`` is one). Vectorized
    loops (unsigned indices), with a second one over the dots only where a run of three occurs."""
    chars = 0
    hashes = 0
    newlines = 0
    for i in range(np.uint64(s), np.uint64(e)):
        c = data[i]
        chars += (c & 0xC0) != 0x80
        hashes += c == 35
        newlines += c == 10
    one = np.uint64(1)
    two = np.uint64(2)
    ellipses = 0
    triples = 0
    for i in range(np.uint64(s + 2), np.uint64(max(e, s + 2))):
        c, c1, c2 = data[i], data[i - one], data[i - two]
        ellipses += (c2 == 0xE2) & (c1 == 0x80) & (c == 0xA6)
        triples += (c == 46) & (c1 == 46) & (c2 == 46)
    if triples:
        dots = 0
        for i in range(s, e):
            if data[i] == 46:
                dots += 1
            else:
                ellipses += dots // 3
                dots = 0
        ellipses += dots // 3
    if cjk and ellipses:  # "……" (two characters) is one ellipsis in CJK text: a run of L counts (L + 1) // 2
        run = 0
        i = s
        while i + 2 < e:
            if data[i] == 0xE2 and data[i + 1] == 0x80 and data[i + 2] == 0xA6:
                run += 1
                i += 3
                continue
            ellipses -= run // 2
            run = 0
            i += 1
        ellipses -= run // 2
    return chars, hashes, ellipses, newlines


_LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)
_HIGH = np.uint64(0x8080808080808080)
_ABOVE_Z = np.uint64(0x2525252525252525)  # 0x7F - ord("Z"), per byte
_FROM_A = np.uint64(0x3F3F3F3F3F3F3F3F)  # 0x80 - ord("A"), per byte


@njit(cache=True, nogil=True, inline="always")
def _packed_lower(data, a, b):
    """``data[a:b]`` (at most 8 bytes) with ASCII letters in lower case, as a little-endian integer;
    branch-free where eight bytes can be read from ``a``."""
    if a + 8 <= data.shape[0]:
        word = _load8(data, a)
        n = b - a
        word &= np.uint64(0xFFFFFFFFFFFFFFFF) if n >= 8 else (np.uint64(1) << np.uint64(8 * n)) - np.uint64(1)
        low = word & _LOW7
        upper = (low + _FROM_A) & ~(low + _ABOVE_Z) & ~word & _HIGH  # per byte: "A" <= byte <= "Z"
        return word | (upper >> np.uint64(2))
    word = np.uint64(0)
    for k in range(b - a):
        c = data[a + k]
        if 65 <= c <= 90:
            c += 32
        word |= np.uint64(c) << np.uint64(8 * k)
    return word


@njit(cache=True, nogil=True, inline="always")
def _stop_slot(key, n, mask):
    return np.int64(((key * _MIX1 + np.uint64(n)) >> np.uint64(40)) & mask)


@njit(cache=True, nogil=True, inline="always")
def _count_words(data, toks, n, mode, stop_keys, stop_lens, stop_len, slot_mask, seen, counts):
    """Add the tokens ``toks[:n]`` to a document's running counts ``counts`` (tokens, words,
    word characters, alphabetic tokens, distinct stop words)."""
    words = 0
    word_chars = 0
    alpha = 0
    distinct = 0
    for t in range(n):
        kind = toks[t, TOKEN_FLAGS]
        is_word = kind & WORD
        alpha += (kind & HAS_ALPHA) != 0
        words += is_word
        word_chars += toks[t, TOKEN_CHARS] * is_word
        if mode == 1:  # a table in which every stop word has a slot of its own: one probe, no branch
            a = toks[t, TOKEN_START]
            size = toks[t, TOKEN_END] - a
            key = _packed_lower(data, a, a + min(size, 8))
            k = _stop_slot(key, size, slot_mask)
            if is_word and stop_lens[k] == size and stop_keys[k] == key and not seen[k]:
                seen[k] = True
                distinct += 1
        elif mode == 2 and is_word:  # long stop words: sorted 64-bit hashes
            a, b = toks[t, TOKEN_START], toks[t, TOKEN_END]
            if b - a <= stop_len:
                h = _hash_bytes(data, a, b, True)
                k = np.searchsorted(stop_keys, h)
                if k < stop_keys.shape[0] and stop_keys[k] == h and not seen[k]:
                    seen[k] = True
                    distinct += 1
    counts[0] += n
    counts[1] += words
    counts[2] += word_chars
    counts[3] += alpha
    counts[4] += distinct


@njit(cache=True, nogil=True)
def _word_stats(offsets, data, table, stop_keys, stop_lens, stop_len, mode, seg, batch):
    n_docs = offsets.shape[0] - 1
    out = np.zeros((n_docs, len(WORD_STATS)), np.int64)
    tokens = np.empty((batch, 4), np.int64)
    seg_tokens = np.empty((batch if seg[0] else 1, 4), np.int64)
    wk = segment._work(256 if seg[0] else 1)
    seen = np.zeros(max(stop_keys.shape[0], 1), np.bool_)
    slot_mask = np.uint64(stop_keys.shape[0] - 1)
    counts = np.zeros(5, np.int64)
    for d in range(n_docs):
        s, e = offsets[d], offsets[d + 1]
        if mode:
            seen[:] = False
        counts[:] = 0
        pos = s
        while pos < e:  # a batch of tokens at a time: every count is a sum over tokens
            n, pos, tokens, wk, seg_tokens, toks = token_batch(data, pos, e, table, tokens, seg, wk, seg_tokens)
            _count_words(data, toks, n, mode, stop_keys, stop_lens, stop_len, slot_mask, seen, counts)
        chars, n_hash, ellipses, newlines = _byte_counts(data, s, e, seg[0] != 0)
        row = out[d]
        row[0] = chars
        row[1] = counts[0]
        row[2] = counts[1]
        row[3] = counts[2]
        row[4] = counts[3]
        row[5] = counts[4]
        row[6] = n_hash
        row[7] = ellipses
        row[8] = newlines
    return out


def _stop_words(stop_words: Iterable[str]) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The kernel's view of a stop-word list (lower-cased bytes, ASCII case folded like the tokens):
    (keys, byte lengths, longest length, mode). Mode 0: no stop words. Mode 1: every word has at
    most 8 bytes; keys are the bytes themselves in a table where each word has a slot of its own
    (``_stop_slot``; length 0 marks a free slot). Mode 2: sorted 64-bit hashes of the words."""
    words = sorted({w.encode().lower() for w in stop_words if w})
    longest = max((len(w) for w in words), default=0)
    if not words:
        return np.zeros(1, np.uint64), np.zeros(1, np.int64), 0, 0
    if longest <= 8:
        size = 16
        while size <= 1 << 20:
            keys = np.zeros(size, np.uint64)
            lens = np.zeros(size, np.int64)
            for w in words:
                key = np.uint64(int.from_bytes(w, "little"))
                k = _stop_slot(key, len(w), np.uint64(size - 1))
                if lens[k]:
                    break
                keys[k], lens[k] = key, len(w)
            else:
                return keys, lens, longest, 1
            size *= 2
    hashes = np.array(sorted(_hash_bytes(np.frombuffer(w, np.uint8), 0, len(w), False) for w in words),
                      dtype=np.uint64)
    return hashes, np.zeros(len(hashes), np.int64), longest, 2


def word_stats(column: pa.Array | pa.ChunkedArray, stop_words: Iterable[str] = (),
               segmentation: str = "spaces", *, _batch: int = BATCH_TOKENS) -> dict[str, np.ndarray]:
    """Per-row word counts (int64 arrays named as in ``WORD_STATS``).

    chars: characters; tokens: all tokens; words: word tokens; word_chars: characters in words;
    alpha_tokens: tokens with a letter; stop_words: distinct ``stop_words`` present as words (ASCII
    case folded); hashes: ``#`` characters; ellipses: ``...`` (non-overlapping) plus ``…`` (a run
    of ``…`` counts half, ``……`` once, when segmenting); newlines: ``\\n`` characters.
    ``segmentation`` cuts words of scripts without spaces (:mod:`llmray.kernels.segment`). Documents
    are tokenized ``_batch`` token rows at a time (memory does not grow with a document's size).
    """
    return _columns(_per_chunk(column, _word_stats, char_table(), *_stop_words(stop_words),
                               segmenter(segmentation), _batch), WORD_STATS)


@njit(cache=True, nogil=True)
def _has_word(offsets, data, table):
    n_docs = offsets.shape[0] - 1
    out = np.zeros(n_docs, np.bool_)
    for d in range(n_docs):
        i, e = offsets[d], offsets[d + 1]
        while i < e:
            _, w, f = read_char(data, i, e, table)
            if not f & (SPACE | PUNCT):
                out[d] = True
                break
            i += w
    return out


def has_word(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Per row: whether it has a word token (``word_stats(column)["words"] > 0``), which is whether it
    has a character that is neither space nor punctuation: the tokenizer makes every such character
    part of a word. Stops at the first one, so it costs next to nothing."""
    return _per_chunk(column, _has_word, char_table())


@njit(cache=True, nogil=True)
def _char_counts(offsets, data):
    n_docs = offsets.shape[0] - 1
    out = np.zeros(n_docs, np.int64)
    for d in range(n_docs):
        n = 0
        for i in range(np.uint64(offsets[d]), np.uint64(offsets[d + 1])):  # vectorized
            n += (data[i] & 0xC0) != 0x80
        out[d] = n
    return out


def char_counts(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Per row: ``word_stats(column)["chars"]`` (bytes that do not continue a UTF-8 sequence)."""
    return _per_chunk(column, _char_counts)


@njit(cache=True, nogil=True, inline="always")
def _ascii_space(c):
    return (c == 32) | ((c >= 9) & (c <= 13)) | ((c >= 28) & (c <= 31))


@njit(cache=True, nogil=True)
def _chunk_counts(offsets, data, table, active, classes):
    n_docs = offsets.shape[0] - 1
    out = np.zeros(n_docs, np.int64)
    one = np.uint64(1)
    for d in range(n_docs):
        s, e = offsets[d], offsets[d + 1]
        if not active[d] or s == e:
            continue
        # ASCII text: count the non-space bytes after a space (or at the start), vectorized.
        high = data[s]
        n = 1 - _ascii_space(data[s])
        for i in range(np.uint64(s + 1), np.uint64(e)):
            c = data[i]
            high |= c
            n += _ascii_space(data[i - one]) & (1 - _ascii_space(c))
        if high >= 128:  # characters as the tokenizer reads them
            n = 0
            marks = 0
            in_chunk = False
            i = s
            while i < e:
                cp, w, f = read_char(data, i, e, table)
                if f & SPACE:
                    in_chunk = False
                elif not in_chunk:
                    in_chunk = True
                    n += 1
                if cp < classes.shape[0] and classes[cp] == segment.CJK_PUNCT:
                    marks += 1
                i += w
            n = max(n, marks)
        out[d] = n
    return out


def chunk_counts(column: pa.Array | pa.ChunkedArray, active: np.ndarray | None = None,
                 segmentation: str = "spaces") -> np.ndarray:
    """Per row: the runs of non-space characters the tokenizer splits the text into. Each gives at
    least one token, so this is a lower bound of ``word_stats(column)["tokens"]`` (equal to it when 0).
    With a ``segmentation`` that cuts words, every CJK punctuation mark is a token of its own, so
    the bound is the larger of the two counts. Rows where ``active`` is False are left 0."""
    table = char_table()
    classes = segmenter(segmentation).classes if segmentation != "spaces" else np.zeros(0, np.uint8)
    parts = [_chunk_counts(*string_buffers(chunk), table, mask, classes)
             for chunk, mask in _active_parts(column, active)]
    return np.concatenate(parts) if len(parts) != 1 else parts[0]


# ---------------------------------------------------------------------------------------------
# Line and paragraph statistics

LINE_STATS = ("chars", "newlines", "lines", "bullet_lines", "ellipsis_lines", "terminal_lines", "short_lines",
              "dup_lines", "dup_line_chars", "paragraphs", "dup_paragraphs", "dup_paragraph_chars")


@njit(cache=True, nogil=True)
def count_byte(data, s, e, byte):
    """How many bytes of ``data[s:e]`` equal ``byte``."""
    n = 0
    for i in range(np.uint64(s), np.uint64(e)):  # vectorized (unsigned indices)
        n += data[i] == byte
    return n


@njit(cache=True, nogil=True, inline="always")
def _ascii_line(data, ls, e):
    """(end of the line starting at ``ls``, whether all its bytes are ASCII)."""
    i = ls
    high = 0
    while i < e and data[i] != 10:
        high |= data[i]
        i += 1
    return i, high < 128


@njit(cache=True, nogil=True, inline="always")
def _among(cp, cps):
    for k in range(cps.shape[0]):
        if cps[k] == cp:
            return True
    return False


@njit(cache=True, nogil=True)
def _line_stats(offsets, data, table, short_chars, active, duplicates, extra_bullets, extra_terminals):
    n_docs = offsets.shape[0] - 1
    out = np.zeros((n_docs, len(LINE_STATS)), np.int64)
    line_keys = np.zeros(16, np.uint64)
    para_keys = np.zeros(16, np.uint64)
    for d in range(n_docs):
        if not active[d]:
            continue
        s, e = offsets[d], offsets[d + 1]
        newlines = count_byte(data, s, e, 10)
        size = _table_size(newlines + 1)
        if duplicates:
            if size > line_keys.shape[0]:
                line_keys = np.zeros(size, np.uint64)
                para_keys = np.zeros(size, np.uint64)
            line_keys[:size] = 0
            para_keys[:size] = 0
        mask = np.uint64(size - 1)
        chars = 0
        lines = bullets = ellipsis_lines = terminal = short = dup_lines = dup_line_chars = 0
        paragraphs = dup_paras = dup_para_chars = 0
        para_hash = np.uint64(0)
        para_chars = 0
        para_lines = 0
        ls = s
        while ls <= e:
            # One line: data[ls:i]; find its first and last non-space characters.
            le, ascii_only = _ascii_line(data, ls, e)
            first = 0
            first_cp = 0
            last_end = -1
            last_cp = 0
            last_flags = 0
            line_chars = 0
            kept_chars = 0
            if ascii_only:  # one byte per character: look at both ends only
                i = le
                line_chars = le - ls
                a = ls
                while a < le and table[data[a]] & SPACE:
                    a += 1
                if a < le:
                    first = np.int64(table[data[a]])
                    b = le
                    while table[data[b - 1]] & SPACE:
                        b -= 1
                    last_end = b
                    last_cp = np.int64(data[b - 1])
                    last_flags = np.int64(table[last_cp])
                    kept_chars = b - ls
            else:
                i = ls
                while i < e and data[i] != 10:
                    cp, w, f = read_char(data, i, e, table)
                    line_chars += 1
                    if f & SPACE:
                        i += w
                        continue
                    if last_end < 0:
                        first = f
                        first_cp = cp
                    j = i + w  # fast path: the ASCII non-space characters that follow
                    while j < e and table[data[j]] & ASCII_INK:
                        j += 1
                    if j > i + w:
                        cp = np.int64(data[j - 1])
                        f = np.int64(table[cp])
                        line_chars += j - i - w
                    last_end = j
                    last_cp = cp
                    last_flags = f
                    kept_chars = line_chars
                    i = j
            chars += line_chars + (1 if i < e else 0)
            if last_end < 0:  # blank line: ends a paragraph
                if para_lines:
                    paragraphs += 1
                    if duplicates:
                        _, dup = _find(para_keys, mask, fmix64(para_hash))
                        if dup:
                            dup_paras += 1
                            dup_para_chars += para_chars + para_lines - 1
                    para_hash = np.uint64(0)
                    para_chars = 0
                    para_lines = 0
            else:
                lines += 1
                if first & BULLET or (first_cp >= 128 and _among(first_cp, extra_bullets)):
                    bullets += 1
                if last_cp == 0x2026 or (last_end - ls >= 3 and data[last_end - 1] == 46
                                         and data[last_end - 2] == 46 and data[last_end - 3] == 46):
                    ellipsis_lines += 1
                if last_flags & TERMINAL or (last_cp >= 128 and _among(last_cp, extra_terminals)):
                    terminal += 1
                if kept_chars <= short_chars:
                    short += 1
                if duplicates:
                    h = _hash_bytes(data, ls, last_end, False)
                    _, dup = _find(line_keys, mask, h)
                    if dup:
                        dup_lines += 1
                        dup_line_chars += kept_chars
                    para_hash = para_hash * GOLDEN + h
                para_chars += kept_chars
                para_lines += 1
            ls = i + 1
        if para_lines:
            paragraphs += 1
            if duplicates:
                _, dup = _find(para_keys, mask, fmix64(para_hash))
                if dup:
                    dup_paras += 1
                    dup_para_chars += para_chars + para_lines - 1
        row = out[d]
        row[0] = chars
        row[1] = newlines
        row[2] = lines
        row[3] = bullets
        row[4] = ellipsis_lines
        row[5] = terminal
        row[6] = short
        row[7] = dup_lines
        row[8] = dup_line_chars
        row[9] = paragraphs
        row[10] = dup_paras
        row[11] = dup_para_chars
    return out


def _cjk_extras(cjk: bool) -> tuple[np.ndarray, np.ndarray]:
    if not cjk:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return (np.array([ord(c) for c in CJK_BULLETS], np.int64), np.array([ord(c) for c in CJK_TERMINALS], np.int64))


def _active_parts(column: pa.Array | pa.ChunkedArray, active: np.ndarray | None) -> Iterable[tuple]:
    """(chunk, its rows' part of ``active`` as a contiguous bool array) for every chunk."""
    start = 0
    for chunk in column_chunks(column):
        mask = (np.ones(len(chunk), np.bool_) if active is None
                else np.ascontiguousarray(active[start:start + len(chunk)], dtype=np.bool_))
        yield chunk, mask
        start += len(chunk)


def line_stats(column: pa.Array | pa.ChunkedArray, short_line_chars: int = 30, active: np.ndarray | None = None,
               duplicates: bool = True, cjk: bool = False) -> dict[str, np.ndarray]:
    """Per-row line and paragraph counts (int64 arrays named as in ``LINE_STATS``).

    Only non-blank lines count; a line's characters exclude its trailing space. bullet_lines: first
    non-space character in ``BULLETS``; ellipsis_lines: ends with ``...`` or ``…``; terminal_lines:
    ends with a ``TERMINAL`` character; short_lines: at most ``short_line_chars`` characters;
    dup_lines / dup_line_chars: lines equal to an earlier line, and their characters; the same for
    paragraphs, whose characters include the newlines between their lines. With ``duplicates``
    False the dup_ counts are left 0 (no hashing); rows where ``active`` is False are left all 0.
    With ``cjk``, ``CJK_BULLETS`` also start bulleted lines and ``CJK_TERMINALS`` also end lines
    with terminal punctuation.
    """
    table = char_table()
    bullets, terminals = _cjk_extras(cjk)
    parts = [_line_stats(*string_buffers(chunk), table, short_line_chars, mask, duplicates, bullets, terminals)
             for chunk, mask in _active_parts(column, active)]
    return _columns(np.concatenate(parts) if len(parts) != 1 else parts[0], LINE_STATS)


# ---------------------------------------------------------------------------------------------
# Repeated n-grams (Gopher repetition)


#: Limits of the n-gram kernel (tests set them small to take every path on small documents):
#: token rows per batch (``BATCH_TOKENS``); the tokens up to which a document's n-gram table has
#: room for every position at once (a document with more starts with room for that many distinct
#: grams and doubles the table when its grams are more varied); the bytes over which a document is
#: tokenized twice, once to count its tokens and once to hash them into arrays of exactly that
#: size (smaller ones grow the arrays as they go).
NGRAM_LIMITS = (BATCH_TOKENS, 1 << 20, 1 << 22)


@njit(cache=True, nogil=True, inline="always")
def _level_columns(top_ns, dup_ns, n):
    """The columns of n-gram size ``n`` in the top and dup outputs (-1: not asked for)."""
    top_k = -1
    for k in range(top_ns.shape[0]):
        if top_ns[k] == n:
            top_k = k
    dup_k = -1
    for k in range(dup_ns.shape[0]):
        if dup_ns[k] == n:
            dup_k = k
    return top_k, dup_k


@njit(cache=True, nogil=True, inline="always")
def _max_n(top_ns, dup_ns):
    max_n = 0
    for n in top_ns:
        max_n = max(max_n, n)
    for n in dup_ns:
        max_n = max(max_n, n)
    return max_n


@njit(cache=True, nogil=True, inline="always")
def _repeating(where, slots, counts, k):
    """Keep in ``where`` the ``k`` positions whose gram occurs at least twice; returns their count."""
    live = 0
    for c in range(k):
        if counts[slots[c]] >= 2:
            where[live] = where[c]
            live += 1
    return live


@njit(cache=True, nogil=True)
def _doc_ngrams(hashes, lens, n_tok, top_ns, dup_ns, top_out, dup_out, gram, where, slots, keys, counts):
    """Gopher's n-gram measures of one document, sizes 1..max(n) level by level.

    An n-gram that occurs twice starts with an (n-1)-gram that occurs twice, so each level only
    looks at the positions whose previous-level gram repeats: on ordinary text a few percent of
    the positions reach n = 5. ``hashes`` (uint64) and ``lens`` (int32 characters) describe the
    tokens; ``gram`` (uint64: the hash of the gram at a position), ``where`` (the live positions)
    and ``slots`` (their table slots) hold at least ``n_tok`` items; a gram's characters are summed
    from ``lens`` only when they may matter. ``keys``/``counts`` hold at least ``_table_size(n_tok)``
    slots: room for every position at once (``_doc_ngrams_growing`` is the same for documents too
    large for that, with int32 ``where`` and ``slots``).
    """
    for p in range(n_tok):
        gram[p] = hashes[p]
        where[p] = p
    live = n_tok
    for n in range(1, _max_n(top_ns, dup_ns) + 1):
        top_k, dup_k = _level_columns(top_ns, dup_ns, n)
        if n == 1 and top_k < 0 and dup_k < 0:
            continue  # every token may start a repeated 2-gram
        size = _table_size(live)
        mask = np.uint64(size - 1)
        keys[:size] = 0
        counts[:size] = 0
        covered = 0
        repeated = 0
        best_count = 0
        best_chars = 0
        k = 0
        for c in range(live):
            p = where[c]
            if n > 1:  # extend the gram by one token
                if p + n > n_tok:
                    continue
                gram[p] = gram[p] * GOLDEN + hashes[p + n - 1]
            slot, seen = _find(keys, mask, fmix64(gram[p]))
            counts[slot] += 1
            where[k] = p
            slots[k] = slot
            k += 1
            if seen and dup_k >= 0:  # tokens p..p+n-1 copy earlier text
                for t in range(max(p, covered), p + n):
                    repeated += lens[t]
                covered = p + n
            count = counts[slot]
            if count >= best_count:  # the gram's characters, only when they may matter
                chars = 0
                for t in range(p, p + n):
                    chars += lens[t]
                if count > best_count or chars > best_chars:
                    best_count = count
                    best_chars = chars
        if dup_k >= 0:
            dup_out[dup_k] = repeated
        if top_k >= 0:
            top_out[top_k] = best_count * best_chars if best_count >= 2 else 0
        live = _repeating(where, slots, counts, k)
        if live == 0:
            break


@njit(cache=True, nogil=True)
def _grow_table(keys, counts, size, slots, k):
    """The n-gram table of ``size`` slots moved into one twice as large, with the slots of the ``k``
    positions counted so far (``slots[:k]``). Returns ``(keys, counts, size)``."""
    grown = 2 * size
    mask = np.uint64(grown - 1)
    new_keys = np.zeros(grown, np.uint64)
    new_counts = np.zeros(grown, np.int32)
    moved = np.empty(size, np.int32)
    for j in range(size):
        key = keys[j]
        if key == 0:
            continue
        at = np.int64(key & mask)
        while new_keys[at] != 0:
            at = (at + 1) & mask
        new_keys[at] = key
        new_counts[at] = counts[j]
        moved[j] = at
    for c in range(k):
        slots[c] = moved[slots[c]]
    return new_keys, new_counts, grown


@njit(cache=True, nogil=True)
def _doc_ngrams_growing(hashes, lens, n_tok, top_ns, dup_ns, top_out, dup_out, gram, where, slots, keys, counts,
                        start):
    """:func:`_doc_ngrams` for a document with more tokens than a table should have room for: the
    table of each level starts with room for ``start`` distinct grams and doubles when they need
    more (a 100 MB document of a repeated paragraph has a few dozen). Returns the tables (grown).
    Every position adds at most one gram, so a level runs in stretches of positions that cannot
    overfill the table, with no test inside."""
    for p in range(n_tok):
        gram[p] = hashes[p]
        where[p] = p
    live = n_tok
    for n in range(1, _max_n(top_ns, dup_ns) + 1):
        top_k, dup_k = _level_columns(top_ns, dup_ns, n)
        if n == 1 and top_k < 0 and dup_k < 0:
            continue
        size = _table_size(min(live, start))
        if size > keys.shape[0]:
            keys = np.zeros(size, np.uint64)
            counts = np.zeros(size, np.int32)
        keys[:size] = 0
        counts[:size] = 0
        mask = np.uint64(size - 1)
        covered = 0
        repeated = 0
        best_count = 0
        best_chars = 0
        k = 0
        distinct = 0
        c = 0
        while c < live:
            stop = min(live, c + (size // 2 - distinct))
            if stop <= c:  # the table is half full
                keys, counts, size = _grow_table(keys, counts, size, slots, k)
                mask = np.uint64(size - 1)
                continue
            for i in range(c, stop):
                p = where[i]
                if n > 1:
                    if p + n > n_tok:
                        continue
                    gram[p] = gram[p] * GOLDEN + hashes[p + n - 1]
                slot, seen = _find(keys, mask, fmix64(gram[p]))
                counts[slot] += 1
                where[k] = p
                slots[k] = slot
                k += 1
                if seen:
                    if dup_k >= 0:
                        for t in range(max(p, covered), p + n):
                            repeated += lens[t]
                        covered = p + n
                else:
                    distinct += 1
                count = counts[slot]
                if count >= best_count:
                    chars = 0
                    for t in range(p, p + n):
                        chars += lens[t]
                    if count > best_count or chars > best_chars:
                        best_count = count
                        best_chars = chars
            c = stop
        if dup_k >= 0:
            dup_out[dup_k] = repeated
        if top_k >= 0:
            top_out[top_k] = best_count * best_chars if best_count >= 2 else 0
        live = _repeating(where, slots, counts, k)
        if live == 0:
            break
    return keys, counts


@njit(cache=True, nogil=True, inline="always")
def _doc_token_hashes(data, s, e, table, seg, tokens, wk, seg_tokens, hashes, lens, exact_bytes):
    """Hashes and character lengths of the tokens of ``data[s:e]``, tokenized a batch at a time:
    ``(count, tokens, wk, seg_tokens, hashes, lens)``, the arrays grown when needed (to exactly the
    document's token count when it is over ``exact_bytes``)."""
    if e - s > exact_bytes:
        total = 0
        pos = s
        while pos < e:
            n, pos, tokens, wk, seg_tokens, toks = token_batch(data, pos, e, table, tokens, seg, wk, seg_tokens)
            total += n
        if total > hashes.shape[0]:
            hashes = np.empty(total, np.uint64)
            lens = np.empty(total, np.int32)
    n_tok = 0
    pos = s
    while pos < e:
        n, pos, tokens, wk, seg_tokens, toks = token_batch(data, pos, e, table, tokens, seg, wk, seg_tokens)
        if n_tok + n > hashes.shape[0]:
            grown = max(2 * hashes.shape[0], n_tok + n)
            more_hashes = np.empty(grown, np.uint64)
            more_hashes[:n_tok] = hashes[:n_tok]
            more_lens = np.empty(grown, np.int32)
            more_lens[:n_tok] = lens[:n_tok]
            hashes = more_hashes
            lens = more_lens
        for t in range(n):
            hashes[n_tok + t] = _hash_bytes(data, toks[t, TOKEN_START], toks[t, TOKEN_END], False)
            lens[n_tok + t] = toks[t, TOKEN_CHARS]
        n_tok += n
    return n_tok, tokens, wk, seg_tokens, hashes, lens


@njit(cache=True, nogil=True)
def _ngram_stats(offsets, data, table, top_ns, dup_ns, active, seg, limits):
    n_docs = offsets.shape[0] - 1
    top = np.zeros((n_docs, top_ns.shape[0]), np.int64)
    dup = np.zeros((n_docs, dup_ns.shape[0]), np.int64)
    batch, table_start, exact_bytes = limits[0], limits[1], limits[2]
    tokens = np.empty((batch, 4), np.int64)
    seg_tokens = np.empty((batch if seg[0] else 1, 4), np.int64)
    wk = segment._work(256 if seg[0] else 1)
    hashes = np.empty(1024, np.uint64)
    lens = np.empty(1024, np.int32)
    gram = np.empty(1024, np.uint64)
    where = np.empty(1024, np.int64)  # ordinary documents: int64 positions and slots (faster)
    slots = np.empty(1024, np.int64)
    where32 = np.empty(0, np.int32)  # documents over table_start tokens: int32 (smaller)
    slots32 = np.empty(0, np.int32)
    keys = np.zeros(16, np.uint64)
    counts = np.zeros(16, np.int32)
    for d in range(n_docs):
        if not active[d]:
            continue
        n_tok, tokens, wk, seg_tokens, hashes, lens = _doc_token_hashes(
            data, offsets[d], offsets[d + 1], table, seg, tokens, wk, seg_tokens, hashes, lens, exact_bytes)
        if n_tok > gram.shape[0]:
            # Exactly the count for a huge document, else with room to spare for the next ones.
            grown = max(n_tok, min(2 * gram.shape[0], table_start))
            gram = np.empty(0, np.uint64)  # let go of the old array before taking the new one
            gram = np.empty(grown, np.uint64)
        if n_tok <= table_start:
            if n_tok > where.shape[0]:
                grown = max(n_tok, min(2 * where.shape[0], table_start))
                where = np.empty(grown, np.int64)
                slots = np.empty(grown, np.int64)
            size = _table_size(n_tok)
            if size > keys.shape[0]:
                keys = np.zeros(size, np.uint64)
                counts = np.zeros(size, np.int32)
            _doc_ngrams(hashes, lens, n_tok, top_ns, dup_ns, top[d], dup[d], gram, where, slots, keys, counts)
        else:
            if n_tok > where32.shape[0]:
                where32 = np.empty(0, np.int32)
                slots32 = np.empty(0, np.int32)
                where32 = np.empty(n_tok, np.int32)
                slots32 = np.empty(n_tok, np.int32)
            keys, counts = _doc_ngrams_growing(hashes, lens, n_tok, top_ns, dup_ns, top[d], dup[d], gram, where32,
                                               slots32, keys, counts, table_start)
    return top, dup


def ngram_stats(
    column: pa.Array | pa.ChunkedArray,
    top_ns: Sequence[int] = (2, 3, 4),
    dup_ns: Sequence[int] = (5, 6, 7, 8, 9, 10),
    active: np.ndarray | None = None,
    segmentation: str = "spaces",
    *,
    _limits: Sequence[int] = NGRAM_LIMITS,
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Gopher's repeated n-gram measures over tokens, in characters of the tokens involved.

    Returns ``(top, dup)``: ``top[n]`` is the characters covered by the most frequent token n-gram
    (count times length; 0 if none repeats) and ``dup[n]`` the characters of tokens covered by an
    n-gram that repeats an earlier one. An n-gram's length is the sum of its tokens' lengths. Rows
    where ``active`` is False are skipped (left 0), so callers can leave out already-dropped rows.
    ``segmentation`` cuts words of scripts without spaces (:mod:`llmray.kernels.segment`).

    Memory: the tokenizer runs a batch of ``BATCH_TOKENS`` at a time; a document's tokens are kept
    as a 64-bit hash and a 32-bit length each, with three work arrays (gram hashes, live positions,
    their table slots): 28 bytes a token for a document of over a million tokens, whose n-gram table
    grows with its distinct grams instead of its positions (``NGRAM_LIMITS``; ``_limits`` overrides
    them, for tests).
    """
    top_arr = np.asarray(top_ns, dtype=np.int64)
    dup_arr = np.asarray(dup_ns, dtype=np.int64)
    if np.any(top_arr < 1) or np.any(dup_arr < 1):
        raise ValueError("n-gram sizes must be positive")
    table = char_table()
    seg = segmenter(segmentation)
    limits = np.asarray(_limits, dtype=np.int64)
    tops, dups, start = [], [], 0
    for chunk in column_chunks(column):
        mask = (np.ones(len(chunk), np.bool_) if active is None
                else np.ascontiguousarray(active[start:start + len(chunk)], dtype=np.bool_))
        top, dup = _ngram_stats(*string_buffers(chunk), table, top_arr, dup_arr, mask, seg, limits)
        tops.append(top)
        dups.append(dup)
        start += len(chunk)
    top_all = np.concatenate(tops) if len(tops) != 1 else tops[0]
    dup_all = np.concatenate(dups) if len(dups) != 1 else dups[0]
    return ({n: top_all[:, k] for k, n in enumerate(top_ns)}, {n: dup_all[:, k] for k, n in enumerate(dup_ns)})
