"""Dedup sketches computed by numba kernels straight from Arrow string buffers.

One compiled pass per batch tokenizes, shingles, hashes and sketches every document; there is no
Python object per document or per word. Definitions (the dedup view of a text; the text itself is
never changed):

* **Normalization**: ASCII letters are lower-cased; full-width ASCII forms (U+FF01..U+FF5E: ``Ａ``,
  ``１``, ``！``) count as the ASCII character they stand for; separators are the characters that the
  shared class table of :mod:`llmray.kernels.text` marks as space or punctuation (Unicode categories
  Z*, P*, S*, controls, and the emoji block; so the ideographic space U+3000 and CJK punctuation
  such as ``，。「」`` too). Every other code point (letters of any script, digits, marks, CJK
  ideographs) is a word character, kept as it is: non-ASCII case is not folded, so run
  ``unicode_normalize`` first where that matters.
* **CJK characters**: the word characters of U+2E80..U+9FFF except Hangul compatibility jamo (CJK
  radicals, ``々〆〇``, hiragana, katakana, bopomofo, unified ideographs and extension A),
  U+F900..U+FAFF (compatibility ideographs), U+FF66..U+FF9F (half-width katakana) and the
  ideographic planes U+20000..U+3FFFF. Hangul is written with spaces and stays with words.
* **Tokens** (``mode``): *word* (``chars=False``): words, maximal runs of word characters; *char*
  (``chars=True``): the characters of the normalized text, where each run of separators between two
  words counts as one space (leading and trailing separators are dropped); *auto*
  (``chars=Auto(cjk_ngram)``): two streams, the words of the text with every CJK character taken
  out as a separator (``使用apt-get命令`` has the words ``apt get``), and the CJK characters in text
  order with everything else skipped (``使用命令``). Text without CJK characters has the words of
  *word* mode and no CJK stream. For exact hashes the normalized tokens are one stream in text
  order: the words, with each CJK character a word of its own (so spacing and punctuation between
  CJK characters are ignored, as between words).
* **Shingles**: ``ngram`` consecutive tokens, hashed to 64 bits; in *auto* ``ngram`` consecutive
  words plus ``cjk_ngram`` consecutive CJK characters, one set with the two kinds hashed apart. The
  windows run over the whole stream (across punctuation, lines and, for CJK, the words in between),
  as word n-grams run across sentences. A stream with fewer tokens than its n-gram length is one
  shingle of all its tokens, so short documents match only when their tokens do; an empty stream
  adds nothing. A document without tokens has an empty set: ``ntokens == 0`` and its signature is
  meaningless.
* **Signature**: one-permutation hashing (OPH). A shingle hash picks one of ``num_perm`` bins with
  its high 32 bits and competes for that bin's minimum with its low 32 bits, so the cost is one hash
  per shingle instead of ``num_perm``. Empty bins are filled by *optimal densification* (Shrivastava,
  2017): empty bin ``i`` probes bins ``g(i, 1), g(i, 2), ...`` from a fixed hash sequence and copies
  the first bin that is non-empty in the original sketch. The probe sequence depends only on ``i``
  and the seed, so two documents that share bin ``i``'s emptiness borrow from the same place and a
  slot collides with probability equal to the Jaccard similarity. The older rotation scheme (borrow
  from the next bin to the right) makes neighbouring slots copies of each other, so whole LSH bands
  agree by accident on short documents; random probing keeps slots nearly independent.
* **Exact hashes**: 128 bits (two independent 64-bit lanes) of the raw bytes, or of the normalized
  token sequence.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pyarrow as pa

from llmray.kernels.hashing import FNV_OFFSET, FNV_PRIME, GOLDEN, fmix64, rotl64
from llmray.kernels.jit import njit
from llmray.kernels.text import PUNCT, SPACE, char_class, char_table, decode_char, string_buffers

#: Default length of the CJK character n-grams of ``shingle: auto``: on the Chinese near-dup set of
#: ``benchmarks/bench_dedup_zh.py``, 3 keeps near copies above and unrelated pairs below Jaccard 0.5
#: with the widest margins (see ``MinhashDedup``).
CJK_NGRAM = 3
WORD, CHAR, AUTO = 0, 1, 2

_LANE2 = np.uint64(0xD6E8FEB86659FD93)
_SEED_BANDS = np.uint64(0x8EBC6AF09C88C6E3)
_SEED_PROBE = np.uint64(0x589965CC75374CC3)
_SEED_CJK = np.uint64(0x3C6EF372FE94F82B)
_LOW32 = np.uint64(0xFFFFFFFF)
_EMPTY_BIN = np.uint64(1 << 32)
_S27 = np.uint64(27)
_S37 = np.uint64(37)
_S32 = np.uint64(32)
_SPACE_TOKEN = np.uint64(0x20)
_SEPARATOR = SPACE | PUNCT
_FULLWIDTH_FIRST = 0xFF01
_FULLWIDTH_LAST = 0xFF5E
_FULLWIDTH_SHIFT = 0xFEE0


@dataclasses.dataclass(frozen=True)
class Auto:
    """The ``chars`` value of *auto* shingles: words, and CJK characters in n-grams of ``cjk_ngram``."""

    cjk_ngram: int = CJK_NGRAM


def shingle_mode(chars: bool | Auto) -> tuple[int, int]:
    """(mode, CJK n-gram length) of a ``chars`` argument: False (words), True (characters) or Auto."""
    if isinstance(chars, Auto):
        if chars.cjk_ngram < 1:
            raise ValueError("cjk_ngram must be positive")
        return AUTO, chars.cjk_ngram
    return (CHAR if chars else WORD), 1


def texts_buffers(texts: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(int64 offsets, UTF-8 bytes) of a text column: zero-copy for one chunk, nulls read as ''."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks != 1 else texts.chunk(0)
    if texts.null_count:
        texts = texts.fill_null("")
    if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
        texts = texts.cast(pa.large_string())
    return string_buffers(texts)


@functools.cache
def _ascii_map() -> np.ndarray:
    """Each ASCII byte lower-cased, or 0 where it is a separator (the fast path of the tokenizer)."""
    table = char_table()
    codes = np.arange(128, dtype=np.uint8)
    lower = np.where((codes >= 65) & (codes <= 90), codes + 32, codes).astype(np.uint8)
    return np.where((table[:128] & _SEPARATOR) != 0, 0, lower).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Compiled helpers


@njit(cache=True, nogil=True, inline="always")
def _is_cjk(cp):
    """Whether a word character is a CJK character (see the module docstring)."""
    if cp < 0x2E80:
        return False
    if cp <= 0x9FFF:
        return cp < 0x3130 or cp > 0x318F
    if cp < 0xF900:
        return False
    if cp <= 0xFAFF:
        return True
    if cp <= 0xFF9F:
        return cp >= 0xFF66
    return 0x20000 <= cp <= 0x3FFFF


@njit(cache=True, nogil=True, inline="always")
def _cjk_token(cp):
    return fmix64(np.uint64(cp) ^ _SEED_CJK)


@njit(cache=True, nogil=True)
def _word_tokens(data, i, end, table, ascii_map, buf, cjk, mode):
    """Token hashes of ``data[i:end]``: returns (words in ``buf``, CJK characters in ``cjk``).

    ``mode`` WORD: words (CJK characters are word characters); AUTO: CJK characters end words and
    go to ``cjk``; CHAR (the exact hashes' normalization): CJK characters are words of their own,
    in ``buf`` in text order. ``buf`` (and ``cjk``) hold at least ``end - i + 1``.

    Word hashes are FNV-1a with a finalizer. The ASCII path has no branch on word boundaries (they
    are unpredictable): every byte stores the running hash at ``buf[n]`` and a boundary advances
    ``n``. A running hash equal to the FNV offset means "not in a word" (a word hashing to it:
    p = 2**-64). ``ascii_map`` gives each ASCII byte lower-cased, or 0 for a separator.
    """
    n = 0
    m = 0
    h = FNV_OFFSET
    while i < end:
        b = data[i]
        if b < 0x80:
            c = ascii_map[b]
            extended = (h ^ np.uint64(c)) * FNV_PRIME
            buf[n] = h
            if c != 0:
                h = extended
            else:
                n += h != FNV_OFFSET
                h = FNV_OFFSET
            i += 1
            continue
        cp, width = decode_char(data, i, end)
        i += width
        if _FULLWIDTH_FIRST <= cp <= _FULLWIDTH_LAST:
            c = ascii_map[cp - _FULLWIDTH_SHIFT]
            if c != 0:
                h = (h ^ np.uint64(c)) * FNV_PRIME
                continue
        elif (char_class(table, cp) & _SEPARATOR) == 0:
            if mode == WORD or not _is_cjk(cp):
                for k in range(i - width, i):
                    h = (h ^ np.uint64(data[k])) * FNV_PRIME
                continue
            buf[n] = h
            n += h != FNV_OFFSET
            h = FNV_OFFSET
            if mode == AUTO:
                cjk[m] = _cjk_token(cp)
                m += 1
            else:
                buf[n] = _cjk_token(cp) ^ _SEED_CJK  # a raw token, mixed below
                n += 1
            continue
        buf[n] = h
        n += h != FNV_OFFSET
        h = FNV_OFFSET
    buf[n] = h
    n += h != FNV_OFFSET
    for t in range(n):
        buf[t] = fmix64(buf[t])
    return n, m


@njit(cache=True, nogil=True)
def _char_tokens(data, i, end, table, ascii_map, buf):
    """One token per character; a run of separators between two tokens is one space token,
    separators at either end yield none."""
    n = 0
    gap = False
    while i < end:
        b = data[i]
        if b < 0x80:
            cp = np.int64(ascii_map[b])
            width = 1
            is_word = cp != 0
        else:
            cp, width = decode_char(data, i, end)
            if _FULLWIDTH_FIRST <= cp <= _FULLWIDTH_LAST:
                cp = np.int64(ascii_map[cp - _FULLWIDTH_SHIFT])
                is_word = cp != 0
            else:
                is_word = (char_class(table, cp) & _SEPARATOR) == 0
        if is_word:
            if gap and n > 0:
                buf[n] = _SPACE_TOKEN
                n += 1
            gap = False
            buf[n] = fmix64(np.uint64(cp) + GOLDEN)
            n += 1
        else:
            gap = True
        i += width
    return n


@njit(cache=True, nogil=True)
def _capacity(buf, need):
    """``buf`` if it holds ``need`` tokens, else a larger one (a document has at most one per byte)."""
    if buf.shape[0] >= need:
        return buf
    return np.empty(max(need, 2 * buf.shape[0]), dtype=np.uint64)


@njit(cache=True, nogil=True)
def _add_shingle(bins, h, k):
    b = ((h >> _S32) * np.uint64(k)) >> _S32
    bins[b] = min(bins[b], h & _LOW32)


@njit(cache=True, nogil=True)
def _add_shingles(bins, tokens, count, ngram, seed):
    """Every ``ngram``-token window of ``tokens[:count]`` (one window of all of them when fewer) into
    the bins. Rolling polynomial hash: drop the oldest token's term, shift, add the newest."""
    if count == 0:
        return
    k = bins.shape[0]
    top = np.uint64(1)
    for _ in range(ngram - 1):
        top *= GOLDEN
    window = min(count, ngram)
    h = np.uint64(0)
    for t in range(window):
        h = h * GOLDEN + tokens[t]
    _add_shingle(bins, fmix64(h ^ seed), k)
    for t in range(ngram, count):
        h = (h - tokens[t - ngram] * top) * GOLDEN + tokens[t]
        _add_shingle(bins, fmix64(h ^ seed), k)


@njit(cache=True, nogil=True)
def _densify(bins, out, seed):
    """Fill ``out`` from ``bins``: empty bins copy the first non-empty bin of their probe sequence."""
    k = bins.shape[0]
    uk = np.uint64(k)
    limit = 64 * k
    for i in range(k):
        if bins[i] != _EMPTY_BIN:
            out[i] = bins[i]
            continue
        base = seed ^ (np.uint64(i) << _S32)
        j = -1
        for attempt in range(1, limit + 1):
            probe = np.int64(((fmix64(base + np.uint64(attempt)) >> _S32) * uk) >> _S32)
            if bins[probe] != _EMPTY_BIN:
                j = probe
                break
        if j < 0:  # vanishingly rare: fall back to the next non-empty bin to the right
            j = (i + 1) % k
            while bins[j] == _EMPTY_BIN:
                j = (j + 1) % k
        out[i] = bins[j]


@njit(cache=True, nogil=True)
def _signatures(offsets, data, table, ascii_map, mode, ngram, cjk_ngram, num_perm, seed, exact):
    """Signatures and token counts; with ``exact`` also each text's normalized exact hash (as
    ``_text_hashes`` with normalize gives it), from the same tokens where the text has no CJK
    character (the exact hash's tokens are then the same), from a second pass where it has."""
    n_docs = offsets.shape[0] - 1
    sig = np.zeros((n_docs, num_perm), dtype=np.uint32)
    ntokens = np.zeros(n_docs, dtype=np.int64)
    hashes = np.empty((n_docs if exact else 0, 2), dtype=np.uint64)
    bins = np.empty(num_perm, dtype=np.uint64)
    dense = np.empty(num_perm, dtype=np.uint64)
    tokens = np.empty(4096, dtype=np.uint64)
    cjk = np.empty(4096 if mode == AUTO else 1, dtype=np.uint64)
    again = np.empty(4096 if exact else 1, dtype=np.uint64)
    unused = np.empty(1, dtype=np.uint64)
    shingle_seed = fmix64(seed ^ GOLDEN)
    cjk_seed = fmix64(seed ^ _SEED_CJK)
    probe_seed = fmix64(seed ^ _SEED_PROBE)
    for d in range(n_docs):
        need = offsets[d + 1] - offsets[d] + 1
        tokens = _capacity(tokens, need)
        m = 0
        if mode == CHAR:
            count = _char_tokens(data, offsets[d], offsets[d + 1], table, ascii_map, tokens)
        else:
            if mode == AUTO:
                cjk = _capacity(cjk, need)
            count, m = _word_tokens(data, offsets[d], offsets[d + 1], table, ascii_map, tokens, cjk, mode)
        if exact:
            if mode == AUTO and m == 0:
                hashes[d, 0], hashes[d, 1] = _fold_tokens(tokens, count)
            else:
                again = _capacity(again, need)
                words, _ = _word_tokens(data, offsets[d], offsets[d + 1], table, ascii_map, again, unused, CHAR)
                hashes[d, 0], hashes[d, 1] = _fold_tokens(again, words)
        ntokens[d] = count + m
        if count + m == 0:
            continue
        bins[:] = _EMPTY_BIN
        _add_shingles(bins, tokens, count, ngram, shingle_seed)
        _add_shingles(bins, cjk, m, cjk_ngram, cjk_seed)
        _densify(bins, dense, probe_seed)
        for b in range(num_perm):
            sig[d, b] = np.uint32(dense[b])
    return sig, ntokens, hashes


@njit(cache=True, nogil=True)
def _band_keys(sig, bands, rows, seed):
    n_docs = sig.shape[0]
    keys = np.empty((n_docs, bands), dtype=np.uint64)
    band_seed = fmix64(seed ^ _SEED_BANDS)
    for d in range(n_docs):
        for b in range(bands):
            h = band_seed + np.uint64(b) * GOLDEN
            for r in range(b * rows, (b + 1) * rows):
                h = rotl64((h ^ np.uint64(sig[d, r])) * GOLDEN, _S27)
            keys[d, b] = fmix64(h)
    return keys


@njit(cache=True, nogil=True, inline="always")
def _fold_tokens(tokens, count):
    """The normalized exact hash (two lanes) of a token sequence."""
    h1 = FNV_OFFSET
    h2 = _LANE2
    for t in range(count):
        h1 = rotl64((h1 ^ tokens[t]) * GOLDEN, _S27)
        h2 = rotl64((h2 ^ rotl64(tokens[t], _S37)) * _LANE2, _S37)
    return fmix64(h1 ^ np.uint64(count)), fmix64(h2 + np.uint64(count) * GOLDEN)


@njit(cache=True, nogil=True)
def _text_hashes(offsets, data, table, ascii_map, normalize):
    n_docs = offsets.shape[0] - 1
    out = np.empty((n_docs, 2), dtype=np.uint64)
    tokens = np.empty(4096, dtype=np.uint64)
    unused = np.empty(1, dtype=np.uint64)
    for d in range(n_docs):
        if normalize:
            tokens = _capacity(tokens, offsets[d + 1] - offsets[d] + 1)
            count, _ = _word_tokens(data, offsets[d], offsets[d + 1], table, ascii_map, tokens, unused, CHAR)
            out[d, 0], out[d, 1] = _fold_tokens(tokens, count)
            continue
        h1 = FNV_OFFSET
        h2 = _LANE2
        count = offsets[d + 1] - offsets[d]
        for k in range(offsets[d], offsets[d + 1]):
            c = np.uint64(data[k])
            h1 = (h1 ^ c) * FNV_PRIME
            h2 = rotl64((h2 ^ c) * _LANE2, _S27)
        out[d, 0] = fmix64(h1 ^ np.uint64(count))
        out[d, 1] = fmix64(h2 + np.uint64(count) * GOLDEN)
    return out


# ---------------------------------------------------------------------------------------------
# Public API


def signatures(texts: pa.Array | pa.ChunkedArray, num_perm: int = 128, ngram: int = 5,
               chars: bool | Auto = False, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(uint32 signatures [docs, num_perm], token count per document) of a text column.

    ``chars``: False for word shingles, True for character shingles, ``Auto(cjk_ngram)`` for words
    (``ngram`` of them) plus CJK characters (``cjk_ngram`` of them) in one set.
    """
    sig, ntokens, _ = _sketch(texts, num_perm, ngram, chars, seed, False)
    return sig, ntokens


def sketches(texts: pa.Array | pa.ChunkedArray, num_perm: int = 128, ngram: int = 5,
             chars: bool | Auto = False, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``signatures`` and the normalized exact hashes (``text_hashes(texts, True)``) from one pass."""
    return _sketch(texts, num_perm, ngram, chars, seed, True)


def _sketch(texts: pa.Array | pa.ChunkedArray, num_perm: int, ngram: int, chars: bool | Auto, seed: int,
            exact: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if num_perm < 1 or ngram < 1:
        raise ValueError("num_perm and ngram must be positive")
    mode, cjk_ngram = shingle_mode(chars)
    offsets, data = texts_buffers(texts)
    return _signatures(offsets, data, char_table(), _ascii_map(), mode, ngram, cjk_ngram, num_perm,
                       np.uint64(seed), exact)


def band_keys(sig: np.ndarray, bands: int, rows: int, seed: int = 0) -> np.ndarray:
    """uint64 LSH key of each band [docs, bands]; keys of different bands never mean the same."""
    if bands * rows > sig.shape[1]:
        raise ValueError(f"{bands} bands x {rows} rows need {bands * rows} slots, signatures have {sig.shape[1]}")
    return _band_keys(np.ascontiguousarray(sig), bands, rows, np.uint64(seed))


def text_hashes(texts: pa.Array | pa.ChunkedArray, normalize: bool = False) -> np.ndarray:
    """128-bit hash [docs, 2] of each raw text, or of its normalized token sequence."""
    offsets, data = texts_buffers(texts)
    return _text_hashes(offsets, data, char_table(), _ascii_map(), normalize)


@njit(cache=True, nogil=True)
def _estimate_jaccard(a, rows_a, b, rows_b, out):
    n = a.shape[1]
    for k in range(rows_a.shape[0]):
        x, y = a[rows_a[k]], b[rows_b[k]]
        equal = 0
        for j in range(n):
            equal += x[j] == y[j]
        out[k] = equal / n


def estimate_jaccard(a: np.ndarray, b: np.ndarray, rows_a: np.ndarray | None = None,
                     rows_b: np.ndarray | None = None) -> np.ndarray:
    """Jaccard similarity estimated from signatures: the fraction of equal slots of ``a[rows_a[k]]``
    and ``b[rows_b[k]]`` (row k of each where rows are not given), read in place, without copying
    the pairs' signatures out first. Two single signatures give one number."""
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim == 1:
        return (a == b).mean()
    rows_a = np.arange(len(a)) if rows_a is None else rows_a
    rows_b = np.arange(len(b)) if rows_b is None else rows_b
    out = np.empty(len(rows_a), np.float64)
    _estimate_jaccard(a, np.asarray(rows_a, np.int64), b, np.asarray(rows_b, np.int64), out)
    return out
