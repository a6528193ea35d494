"""Word segmentation for scripts written without spaces, inside the kernels' notion of a word.

The tokenizer of :mod:`llmray.kernels.text` splits text on spaces, so a Chinese sentence is one
"word". With a segmentation mode the word tokens that hold such scripts are cut again, in the same
compiled pass, once per batch (no Python object per document or per word):

* ``SPACES`` (0): no change; the tokens of :mod:`llmray.kernels.text` (English, and every decision
  made before segmentation existed, stay exactly as they were).
* ``JIEBA`` (1): runs of Han characters (U+4E00..U+9FD5, the range jieba itself segments) are cut
  as ``jieba.cut(run)`` does in its default mode (HMM on): jieba's prefix dictionary (its
  ``dict.txt``, MIT) gives a DAG of the dictionary words in the run; the most probable route
  through it (sum of log word frequencies) gives the words; runs of single characters that are not
  a dictionary word themselves go through jieba's HMM (its BMES Viterbi tables) to find unknown
  words. Ties are broken as jieba's Python ``max`` breaks them, so the words are jieba's own
  (``tests/kernels/test_segment.py`` compares them). Other ideographs, kana, Thai, Lao, Khmer and
  Myanmar letters are a word each (the ``CHARACTERS`` fallback).
* ``CHARACTERS`` (2): every character of those scripts, Han included, is a word of its own, with
  the combining marks that follow it (Thai vowel and tone marks, kana voicing marks). The
  documented fallback for Japanese and Thai, which have no segmenter here.

In both cutting modes, punctuation inside a word token becomes a token of its own when it is CJK
punctuation (U+3000..U+303F, U+FE10..U+FE1F, U+FE30..U+FE4F, U+FF00..U+FF0F and the other
full-width punctuation, ``…``) or when it touches a character of those scripts (``中文,English`` ->
``中文`` ``,`` ``English``; ``“中文”``, ``卡尔·马克思``). Letters and digits of other scripts next to
them stay words of their own (``使用Python3编程`` -> ``使用`` ``Python3`` ``编程``). Zero-width
spaces and joiners (U+200B..U+200D, U+2060, U+FEFF) separate words and belong to none. Hangul is
left alone: Korean separates words with spaces.

Speed and agreement on real text are in ``benchmarks/results/zh.json`` (``benchmarks/bench_zh.py``).
"""

from __future__ import annotations

import functools
import importlib.resources
import math
import unicodedata
from typing import NamedTuple

import numpy as np

from llmray.errors import UserError
from llmray.kernels.cache import cached_arrays, source_version
from llmray.kernels.hashing import GOLDEN, fmix64
from llmray.kernels.jit import njit
from llmray.kernels.utf8 import decode_char

SPACES, JIEBA, CHARACTERS = 0, 1, 2
#: Names of the modes as job files write them (``word_segmentation``).
MODES = {"spaces": SPACES, "jieba": JIEBA, "characters": CHARACTERS}

# Classes of :func:`cjk_table`.
OTHER = 0
HAN = 1  # segmented by the dictionary (U+4E00..U+9FD5)
CHAR = 2  # a word by itself (other ideographs, kana, Thai, ...)
MARK = 3  # combining mark: stays with the character before it
CJK_PUNCT = 4  # punctuation of CJK text: always a token of its own
INVISIBLE = 5  # zero-width space, joiners, BOM: no part of a word (a boundary)
_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"

# The bits of :mod:`llmray.kernels.text` this module reads (checked there): character classes
# PUNCT and ALPHA of its table, token flags WORD and HAS_ALPHA.
_PUNCT, _ALPHA, _WORD, _HAS_ALPHA = 2, 4, 1, 2
_EMOJI_FIRST, _EMOJI_LAST = 0x1F000, 0x1FBFF

_SEED = np.uint64(0x2545F4914F6CDD1D)
_MIN_FLOAT = -3.14e100  # jieba's "impossible" log probability
# HMM states in alphabetical order (jieba breaks ties by comparing the state letters).
_B, _E, _M, _S = 0, 1, 2, 3

_CHAR_BLOCKS = ((0x0E00, 0x0EFF), (0x1000, 0x109F), (0x1780, 0x17FF), (0x19E0, 0x19FF), (0x3040, 0x30FF),
                (0x31F0, 0x31FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0xFF66, 0xFF9F))
_PUNCT_BLOCKS = ((0x3000, 0x303F), (0xFE10, 0xFE1F), (0xFE30, 0xFE4F), (0xFF00, 0xFF0F), (0xFF1A, 0xFF20),
                 (0xFF3B, 0xFF40), (0xFF5B, 0xFF65))
_CJK_PUNCT_EXTRA = "…‥"


def cjk_class(ch: str) -> int:
    """Segmentation class of one character (the definitions in the module docstring)."""
    cp = ord(ch)
    if cp >= 0x10000:
        return CHAR if 0x20000 <= cp <= 0x3FFFF else OTHER
    if ch in _INVISIBLE:
        return INVISIBLE
    category = unicodedata.category(ch)
    if category[0] in "PS" and (any(a <= cp <= b for a, b in _PUNCT_BLOCKS) or ch in _CJK_PUNCT_EXTRA):
        return CJK_PUNCT
    if not any(a <= cp <= b for a, b in _CHAR_BLOCKS):
        return OTHER
    if 0x4E00 <= cp <= 0x9FD5:
        return HAN
    if category[0] == "M":
        return MARK
    if category[0] in "LN":
        return CHAR
    return OTHER  # punctuation and symbols of those blocks (the tokenizer's punctuation), spaces


@functools.cache
def cjk_table() -> np.ndarray:
    """:func:`cjk_class` of every BMP code point: 0.25 s of Python, so derived once per Unicode version
    and version of this module and read back from the kernel cache after."""
    return cached_arrays(f"cjk-{unicodedata.unidata_version}-{source_version(__file__)}", lambda: {"classes": np.array(
        [cjk_class(chr(cp)) for cp in range(0x10000)], dtype=np.uint8)})["classes"]


class Segmenter(NamedTuple):
    """What the kernels need to segment: one argument (a tuple of arrays) for every mode."""

    mode: int
    classes: np.ndarray  # uint8[65536], cjk_table()
    #: The prefix dictionary, an open-addressing table of 2^k slots, one cache line per probe: slot s
    #: is keys[2s] (hashed code point sequence, 0: empty) and logp[2s + 1] (the same buffer as
    #: float64: log(freq) - log(total), +inf for a prefix that is not a word).
    keys: np.ndarray
    logp: np.ndarray
    single: np.ndarray  # float64[65536]: logp of one-character entries, NaN where there is none
    hmm: np.ndarray  # float64[6, 4]: start (row 4), transitions (rows 0..3), log(total) at [5, 0]
    emit: np.ndarray  # float64[4, 65536]: HMM emission log probabilities


@njit(cache=True, nogil=True, inline="always")
def _step(h, cp):
    return (h + np.uint64(cp) + np.uint64(1)) * GOLDEN


@njit(cache=True, nogil=True, inline="always")
def _key(h):
    k = fmix64(h)
    return k if k != 0 else np.uint64(1)


@njit(cache=True, nogil=True, inline="always")
def _lookup(keys, k):
    """Index of the value of key ``k`` in the interleaved table (``2 * slot + 1``), or -1."""
    mask = np.uint64(keys.shape[0] // 2 - 1)
    slot = np.int64(k & mask)
    while True:
        stored = keys[2 * slot]
        if stored == k:
            return 2 * slot + 1
        if stored == 0:
            return -1
        slot = (slot + 1) & np.int64(mask)


@njit(cache=True, nogil=True)
def _build_dictionary(data, size):
    """jieba's prefix dictionary from the bytes of its ``dict.txt`` ("word freq tag" lines), as
    ``gen_pfdict`` builds it: every prefix of a word is present (frequency 0 unless it is a word),
    a later line for the same word replaces its frequency, and the total adds up every line."""
    keys = np.zeros(size, np.uint64)
    freq = np.zeros(size, np.int64)
    total = 0
    i = 0
    n = data.shape[0]
    slots = np.empty(64, np.int64)
    while i < n:
        h = _SEED
        depth = 0
        # word: up to the first space
        while i < n and data[i] != 32 and data[i] != 10:
            b = np.int64(data[i])
            if b < 0x80:
                cp, w = b, 1
            elif b >= 0xF0:
                cp = ((b & 0x07) << 18) | ((np.int64(data[i + 1]) & 0x3F) << 12) | (
                    (np.int64(data[i + 2]) & 0x3F) << 6) | (np.int64(data[i + 3]) & 0x3F)
                w = 4
            elif b >= 0xE0:
                cp = ((b & 0x0F) << 12) | ((np.int64(data[i + 1]) & 0x3F) << 6) | (np.int64(data[i + 2]) & 0x3F)
                w = 3
            else:
                cp = ((b & 0x1F) << 6) | (np.int64(data[i + 1]) & 0x3F)
                w = 2
            h = _step(h, cp)
            k = _key(h)
            mask = np.uint64(size - 1)
            slot = np.int64(k & mask)
            while keys[slot] != 0 and keys[slot] != k:
                slot = (slot + 1) & np.int64(mask)
            keys[slot] = k
            if depth < 64:
                slots[depth] = slot
            depth += 1
            i += w
        f = 0
        if i < n and data[i] == 32:
            i += 1
            while i < n and 48 <= data[i] <= 57:
                f = f * 10 + np.int64(data[i] - 48)
                i += 1
        while i < n and data[i] != 10:
            i += 1
        i += 1
        if depth:
            freq[slots[min(depth, 64) - 1]] = f
            total += f
    return keys, freq, total


@njit(cache=True, nogil=True)
def _single_chars(keys, logp):
    out = np.full(0x10000, np.nan)
    for cp in range(0x10000):
        at = _lookup(keys, _key(_step(_SEED, cp)))
        if at >= 0:
            out[cp] = logp[at]
    return out


def _dictionary_bytes() -> bytes:
    try:
        return (importlib.resources.files("jieba") / "dict.txt").read_bytes()
    except (ModuleNotFoundError, FileNotFoundError):
        raise UserError("word_segmentation: jieba needs the jieba package (its dictionary and HMM tables, MIT): "
                        "pip install jieba") from None


@functools.cache
def segmenter(mode: int | str) -> Segmenter:
    """The arrays of one mode, built once per process (jieba's dictionary: ~0.3 s, 16 MB)."""
    mode = MODES[mode] if isinstance(mode, str) else int(mode)
    classes = cjk_table()
    if mode != JIEBA:
        empty = np.zeros(2, np.uint64)
        return Segmenter(mode, classes, empty, empty.view(np.float64), np.zeros(1), np.zeros((6, 4)),
                         np.zeros((4, 1)))
    data = np.frombuffer(_dictionary_bytes(), np.uint8)
    lines = int(np.count_nonzero(data == 10)) + 1
    size = 16
    while size < 2 * 2 * lines:  # prefixes: ~1.5 entries per word; at most half full
        size *= 2
    keys, freq, total = _build_dictionary(data, size)
    logtotal = math.log(total)
    with np.errstate(divide="ignore"):
        values = np.where(freq > 0, np.log(np.maximum(freq, 1).astype(np.float64)) - logtotal, np.inf)
    table = np.zeros(2 * size, np.uint64)
    table[0::2] = keys
    logp = table.view(np.float64)
    logp[1::2] = values
    single = _single_chars(table, logp)
    from jieba.finalseg import prob_emit, prob_start, prob_trans

    order = "BEMS"
    hmm = np.full((6, 4), _MIN_FLOAT)
    for a, row in prob_trans.P.items():
        for b, p in row.items():
            hmm[order.index(a), order.index(b)] = p
    for a, p in prob_start.P.items():
        hmm[4, order.index(a)] = p
    hmm[5, 0] = logtotal
    emit = np.full((4, 0x10000), _MIN_FLOAT)
    for state, probs in prob_emit.P.items():
        cps = np.fromiter((ord(c) for c in probs), np.int64, len(probs))
        emit[order.index(state), cps] = np.fromiter(probs.values(), np.float64, len(probs))
    return Segmenter(mode, classes, table, logp, single, hmm, emit)


# ---------------------------------------------------------------------------------------------
# Compiled segmentation


@njit(cache=True, nogil=True, inline="always")
def _class_of(classes, cp):
    if cp < 0x10000:
        return np.int64(classes[cp])
    return CHAR if 0x20000 <= cp <= 0x3FFFF else OTHER


@njit(cache=True, nogil=True, inline="always")
def _char(data, i, end, table):
    """(code point, byte length, class bits of the text module's table) at ``data[i]``."""
    c = data[i]
    if c < 128:
        return np.int64(c), 1, np.int64(table[c])
    cp, w = decode_char(data, i, end)
    if cp < 0x10000:
        return cp, w, np.int64(table[cp])
    return cp, w, (_PUNCT if _EMOJI_FIRST <= cp <= _EMOJI_LAST else _ALPHA)


@njit(cache=True, nogil=True)
def _is_word(keys, logp, cps, a, b):
    """Whether cps[a:b] is a dictionary word with a frequency (``FREQ.get(buf)`` is truthy)."""
    h = _SEED
    for k in range(a, b):
        h = _step(h, cps[k])
    slot = _lookup(keys, _key(h))
    return slot >= 0 and logp[slot] != np.inf


@njit(cache=True, nogil=True)
def _viterbi(cps, a, b, hmm, emit, v, back, out, m):
    """jieba's ``finalseg`` on cps[a:b]: append word ends (indices into cps) to ``out`` from ``m``."""
    n = b - a
    for y in range(4):
        v[0, y] = hmm[4, y] + emit[y, cps[a]]
    for t in range(1, n):
        c = cps[a + t]
        for y in range(4):
            em = emit[y, c]
            # predecessors of y (jieba's PrevStatus), in the order it lists them
            if y == _B:
                p0, p1 = _E, _S
            elif y == _M:
                p0, p1 = _M, _B
            elif y == _S:
                p0, p1 = _S, _E
            else:  # E
                p0, p1 = _B, _M
            s0 = v[t - 1, p0] + hmm[p0, y] + em
            s1 = v[t - 1, p1] + hmm[p1, y] + em
            if s1 > s0 or (s1 == s0 and p1 > p0):
                v[t, y] = s1
                back[t, y] = p1
            else:
                v[t, y] = s0
                back[t, y] = p0
    state = _S if v[n - 1, _S] >= v[n - 1, _E] else _E
    # Walk the path back into back[:, 0] (free now), then cut as finalseg.__cut does.
    for t in range(n - 1, -1, -1):
        cur = state
        if t > 0:
            state = back[t, cur]
        back[t, 0] = cur
    begin = 0
    nexti = 0
    for t in range(n):
        pos = back[t, 0]
        if pos == _B:
            begin = t
        elif pos == _E:
            if begin < t + 1:
                out[m] = a + t + 1
                m += 1
            nexti = t + 1
        elif pos == _S:
            out[m] = a + t + 1
            m += 1
            nexti = t + 1
    if nexti < n:
        out[m] = b
        m += 1
    return m


@njit(cache=True, nogil=True)
def _flush_buf(cps, bs, be, keys, logp, hmm, emit, v, back, out, m):
    if be - bs == 1:
        out[m] = be
        return m + 1
    if not _is_word(keys, logp, cps, bs, be):
        return _viterbi(cps, bs, be, hmm, emit, v, back, out, m)
    for k in range(bs + 1, be + 1):
        out[m] = k
        m += 1
    return m


@njit(cache=True, nogil=True)
def cut_han(cps, n, keys, logp, single, hmm, emit, route_p, route_x, v, back, out):
    """Word ends of the Han run cps[:n] as jieba's ``__cut_DAG`` gives them; returns their count.
    Work arrays: route_p/route_x at least n + 1, v/back at least (n, 4), out at least n."""
    logtotal = hmm[5, 0]
    route_p[n] = 0.0
    route_x[n] = 0
    for idx in range(n - 1, -1, -1):
        best_p = -np.inf
        best_x = -1
        h = _SEED
        i = idx
        while i < n:
            h = _step(h, cps[i])
            if i == idx and cps[i] < 0x10000:  # one character: a dense table, no probe
                lp = single[cps[i]]
                if np.isnan(lp):
                    break
            else:
                slot = _lookup(keys, _key(h))
                if slot < 0:
                    break
                lp = logp[slot]
            if lp != np.inf:
                p = lp + route_p[i + 1]
                if p > best_p or (p == best_p and i > best_x):
                    best_p = p
                    best_x = i
            i += 1
        if best_x < 0:  # no word starts here: the character alone, frequency 1
            best_p = (0.0 - logtotal) + route_p[idx + 1]
            best_x = idx
        route_p[idx] = best_p
        route_x[idx] = best_x
    m = 0
    x = 0
    buf = -1
    while x < n:
        y = route_x[x] + 1
        if y - x == 1:
            if buf < 0:
                buf = x
        else:
            if buf >= 0:
                m = _flush_buf(cps, buf, x, keys, logp, hmm, emit, v, back, out, m)
                buf = -1
            out[m] = y
            m += 1
        x = y
    if buf >= 0:
        m = _flush_buf(cps, buf, n, keys, logp, hmm, emit, v, back, out, m)
    return m


@njit(cache=True, nogil=True, inline="always")
def _push(out, m, a, b, chars, kind):
    """Write a token at row ``m`` (the caller made room) and return ``m + 1``. Returning only the
    count, never the table, keeps numba from reference counting an array per token."""
    out[m, 0] = a
    out[m, 1] = b
    out[m, 2] = chars
    out[m, 3] = kind
    return m + 1


class Work(NamedTuple):
    cps: np.ndarray
    pos: np.ndarray
    route_p: np.ndarray
    route_x: np.ndarray
    v: np.ndarray
    back: np.ndarray
    ends: np.ndarray


def work(capacity: int = 256) -> Work:
    """Work arrays for :func:`segment_tokens` (grown by the kernels when a run is longer)."""
    return _work(capacity)


@njit(cache=True, nogil=True)
def _work(capacity):
    return (np.empty(capacity, np.int64), np.empty(capacity + 1, np.int64), np.empty(capacity + 1, np.float64),
            np.empty(capacity + 1, np.int64), np.empty((capacity, 4), np.float64),
            np.empty((capacity, 4), np.int64), np.empty(capacity + 1, np.int64))


@njit(cache=True, nogil=True)
def segment_tokens(data, tokens, n, table, seg, wk, out):
    """Cut the word tokens ``tokens[:n]`` (rows: byte start, end, characters, flags) that hold CJK,
    Thai, ... characters into words (module docstring); returns ``(out, count, wk)`` where ``out``
    is a token table (grown when needed) and ``wk`` the work arrays (grown for long runs).
    ``table`` is :func:`llmray.kernels.text.char_table`, ``seg`` a :class:`Segmenter`.

    Arrays are taken out of the tuples once: numba reference-counts an array each time it is taken
    from a tuple or returned, which per character would cost more than the work itself."""
    mode = seg[0]
    classes = seg[1]
    keys, logp, single, hmm, emit = seg[2], seg[3], seg[4], seg[5], seg[6]
    cps, pos, route_p, route_x, v, back, ends = wk
    m = 0
    for t in range(n):
        a = tokens[t, 0]
        b = tokens[t, 1]
        kind = tokens[t, 3]
        high = False
        if kind & _WORD:
            for k in range(a, b):
                if data[k] >= 0xE0:
                    high = True
                    break
        if m + (b - a) + 1 > out.shape[0]:  # room for a token per byte: more than enough
            grown = np.empty((2 * out.shape[0] + (b - a) + 64, 4), np.int64)
            grown[:m] = out[:m]
            out = grown
        if not high:
            m = _push(out, m, a, b, tokens[t, 2], kind)
            continue
        if b - a + 1 >= cps.shape[0]:
            wk = _work(2 * (b - a) + 2)
            cps, pos, route_p, route_x, v, back, ends = wk
        # Walk the characters: runs of Han, single characters, punctuation, other words. One
        # position past the end flushes what is pending.
        run = -1  # -1: nothing pending; HAN: a Han run in cps/pos; OTHER: other word characters
        run_start = a
        run_chars = 0
        run_alpha = 0
        n_han = 0
        prev_cjk = False
        i = a
        while True:
            here = -1  # -1: the end; HAN; CHAR: a word alone; CJK_PUNCT: a token alone; OTHER
            w = 0
            f = 0
            cp = 0
            if i < b:
                cp, w, f = _char(data, i, b, table)
                cls = _class_of(classes, cp)
                if cls == HAN and mode == CHARACTERS:
                    cls = CHAR
                if cls == MARK:
                    if m > 0 and run < 0 and prev_cjk and out[m - 1, 1] == i:
                        out[m - 1, 1] = i + w  # stays with the character before it
                        i += w
                        continue
                    cls = CJK_PUNCT if f & _PUNCT else OTHER
                if cls == INVISIBLE:
                    here = INVISIBLE
                elif cls == HAN or cls == CHAR:
                    here = cls
                elif f & _PUNCT:
                    here = OTHER
                    if cls == CJK_PUNCT or prev_cjk:
                        here = CJK_PUNCT
                    elif i + w < b:  # punctuation before a CJK character splits too
                        cp2, _, _ = _char(data, i + w, b, table)
                        c2 = _class_of(classes, cp2)
                        if c2 == HAN or c2 == CHAR:
                            here = CJK_PUNCT
                else:
                    here = OTHER
            if run == HAN and here != HAN:
                pos[n_han] = i
                if mode == CHARACTERS:
                    for k in range(n_han):
                        m = _push(out, m, pos[k], pos[k + 1], 1, _WORD | _HAS_ALPHA)
                else:
                    count = cut_han(cps, n_han, keys, logp, single, hmm, emit, route_p, route_x, v, back, ends)
                    begin = 0
                    for k in range(count):
                        m = _push(out, m, pos[begin], pos[ends[k]], ends[k] - begin, _WORD | _HAS_ALPHA)
                        begin = ends[k]
                run = -1
            if run == OTHER and here != OTHER:
                m = _push(out, m, run_start, i, run_chars, _WORD | run_alpha)
                run = -1
            if here < 0:
                break
            if here == INVISIBLE:
                i += w
                continue
            if here == HAN:
                if run != HAN:
                    run = HAN
                    n_han = 0
                cps[n_han] = cp
                pos[n_han] = i
                n_han += 1
            elif here == CHAR:
                m = _push(out, m, i, i + w, 1, _WORD | (_HAS_ALPHA if f & _ALPHA else 0))
            elif here == CJK_PUNCT:
                m = _push(out, m, i, i + w, 1, 0)
            else:
                if run != OTHER:
                    run = OTHER
                    run_start = i
                    run_chars = 0
                    run_alpha = 0
                run_chars += 1
                if f & _ALPHA:
                    run_alpha = _HAS_ALPHA
            prev_cjk = here == HAN or here == CHAR
            i += w
    return out, m, wk
