"""The compiled cleaning passes and the cheap statistics against their definitions: the Arrow regex
passes and compute functions they replace, and the full statistics they stand in for."""

from __future__ import annotations

import random
import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from llmray.kernels.c4 import c4_lines
from llmray.kernels.clean import (
    EMAIL,
    FORMS,
    IP,
    PHONE,
    clean_whitespace,
    clean_whitespace_regex,
    inert_table,
    mojibake_suspects,
    normalization_suspects,
    normalize,
    pii_candidates,
)
from llmray.kernels.text import (
    LINE_STATS,
    char_counts,
    chunk_counts,
    has_word,
    line_stats,
    split_tokens,
    word_stats,
)
from llmray.ops.clean.pii import PATTERNS
from tests.ops import reference_filters as ref

# Characters the passes treat specially, and some that they must leave alone.
ODD = ["\x00", "\x01", "\x08", "\t", "\x0b", "\x0c", "\r", "\r\n", "\n", "\n\n", "\n\n\n", "\x1c", "\x1f", "\x7f",
       "\x85", "\x9f", "\xa0", "\u2000", "\u2009", "\u200a", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff",
       "\u3000", "\u1680", "\u2028", "\u2029", "\u202f", "\u205f", " ", "  ", " \n ", "\u0301", "\u0308", "e\u0301",
       "\u00e9", "\ufb01", "\u2126", "\u212b", "\uac00", "\u1100\u1161", "\u1161", "\u11a8", "\uff21", "\u2460",
       "\U0001f600", "\U0001d400", "\U000e0041", "\ufe0f", "\u0cc6\u0cd5", "\u0958", "\u0915\u093c", "\ufffd",
       "Ã©", "â€™", "Â\xa0", "ï»¿", "...", "…", "@", "a@b.com", "1.2.3.4", "10.0.0.255", "555-123-4567",
       "(555) 123 4567", "+44 20 7946 0958", "3.11.2", "[1]", "[edit]", "{", "lorem ipsum", "Cookie Policy", "東京"]
WORDS = ["the", "and", "of", "word", "Word", "x", ".", ",", "-", "!", "?", "'", "2024", "e.g.", "don't"]


def docs(seed: int, n: int = 3000) -> list[str]:
    """Mostly ordinary lines with a few odd characters: both the clean-row check and the rewrite run."""
    rng = random.Random(seed)
    out = ["", " ", "\n", "\r", "\r\n", "\t", "\u3000", "\ufeff", "\u200b", "a", " \u2028 x \u2028 ", "x\u2028",
           "\u1680x", "\r\r\n\n", "a\n\n\nb", "a\n\nb", "a \nb", "a\n b", "a  b", "a\u00a0b", "a\u2060b"]
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(0, 40))]
        text = " ".join(words)
        text = "\n".join(text[i:i + 30] for i in range(0, len(text), 30))
        chars = list(text)
        for _ in range(rng.choice([0, 0, 1, 2, 5])):
            chars.insert(rng.randint(0, len(chars)), rng.choice(ODD))
        out.append("".join(chars))
    return out


def broken(texts: list[str], seed: int) -> pa.Array:
    """Strings whose bytes are not all well-formed UTF-8 (every other row)."""
    rng = random.Random(seed)
    bad = [b"\x80", b"\xc3", b"\xff", b"\xe2\x80", b"\xed\xa0\x80", b"\xc0\xaf", b"\xe2\n", b"\xc3 ", b"\xc2\x0a",
           b"\xf0\x9f\x98", b"\xe0\x80\x80", b"\xf4\x90\x80\x80"]
    rows = []
    for k, text in enumerate(texts):
        raw = bytearray(text.encode())
        if k % 2:
            at = rng.randint(0, len(raw))
            raw[at:at] = rng.choice(bad)
        rows.append(bytes(raw))
    offsets = np.cumsum([0] + [len(r) for r in rows]).astype(np.int32)
    return pa.Array.from_buffers(pa.string(), len(rows), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(rows))])


@pytest.mark.parametrize("blank", [0, 1, 2, 5])
def test_clean_whitespace_is_the_regex_passes(blank):
    texts = docs(blank)
    got = clean_whitespace(pa.array(texts), blank)
    assert got.to_pylist() == clean_whitespace_regex(pa.array(texts), blank).to_pylist()


def test_clean_whitespace_keeps_types_chunks_slices_and_nulls():
    texts = docs(7, 400) + [None, "a  b", None]
    for kind in (pa.string(), pa.large_string()):
        column = pa.chunked_array([pa.array(texts[:100], kind), pa.array(texts[100:], kind).slice(3)])
        got = clean_whitespace(column, 1)
        assert isinstance(got, pa.ChunkedArray) and got.type == kind and got.num_chunks == 2
        assert got.to_pylist() == clean_whitespace_regex(column, 1).to_pylist()


def outcome(fn, *args):
    try:
        return fn(*args)
    except pa.ArrowInvalid as exc:
        return str(exc)


def test_clean_whitespace_hands_broken_utf8_to_the_regex_passes():
    """Row by row, the same text, or the same error (Arrow refuses to trim some broken bytes)."""
    column = broken(docs(3, 300), 3)
    errors = 0
    for k in range(len(column)):
        row = column.slice(k, 1)
        old, new = outcome(clean_whitespace_regex, row, 1), outcome(clean_whitespace, row, 1)
        errors += isinstance(old, str)
        assert old == new if isinstance(old, str) else old.equals(new), k
    assert 0 < errors < len(column) // 4


def test_clean_whitespace_outside_the_kernel_range_is_re2s():
    column = pa.array(["a\n\n\nb", "c\r\n\r\nd"])
    assert clean_whitespace(column, -1).equals(clean_whitespace_regex(column, -1))


@pytest.mark.parametrize("form", FORMS)
def test_normalize_is_arrows(form):
    texts = docs(11) + ["".join(random.Random(k).choice(ODD) for _ in range(8)) for k in range(2000)]
    column = pa.array(texts)
    assert normalize(column, form).to_pylist() == pc.utf8_normalize(column, form).to_pylist()
    # Rows left out really are in that form.
    clean = ~normalization_suspects(column, form)
    assert all(unicodedata.normalize(form, t) == t for t, c in zip(texts, clean, strict=True) if c)


@pytest.mark.parametrize("form", FORMS)
def test_strings_of_inert_characters_are_normalized(form):
    """The table's claim, on random strings of inert characters (BMP and beyond, many scripts)."""
    bit = 1 << FORMS.index(form)
    inert = np.flatnonzero(inert_table() & bit)
    rng = np.random.default_rng(5)
    strings = ["".join(map(chr, rng.choice(inert, rng.integers(1, 12)))) for _ in range(20000)]
    near = ["".join(map(chr, inert[k:k + 3])) for k in range(0, len(inert) - 3, 5)]  # neighbours in a block
    column = pa.array(strings + near)
    assert pc.all(pc.equal(pc.utf8_normalize(column, form), column)).as_py()


def test_normalize_raises_on_broken_utf8_like_arrow():
    column = broken(["café", "x"], 1)
    with pytest.raises(pa.ArrowInvalid):
        pc.utf8_normalize(column, "NFC")
    with pytest.raises(pa.ArrowInvalid):
        normalize(column, "NFC")


def test_mojibake_suspects_are_the_regex():
    pattern = r"[ÃÂ][\x{80}-\x{BF}\x{A0}-\x{FF}]|â€|ï»¿"
    texts = docs(13) + ["Ã", "Ã©", "Â", "Â\xa0", "â€", "â€™", "ï»", "ï»¿", "Ãx", "xÃ\x80", "â"]
    column = pa.array(texts)
    assert mojibake_suspects(column).tolist() == pc.match_substring_regex(column, pattern).to_pylist()


def test_pii_candidates_hold_every_match():
    rng = random.Random(17)
    pieces = ["1", "12", "123", "1234", ".", "-", " ", "(", ")", "+", "@", "a", "b.c", "x", "\n", "255", "1.", "22."]
    texts = docs(17) + ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 25))) for _ in range(20000)]
    texts += ["1.2.3.4", "1.22.33.4", "5.2.1.2\u205f.", "a.1.2.3", "555-123-4567", "(555) 123 4567", "a@b.co"]
    column = pa.array(texts)
    candidates = pii_candidates(column)
    for bit, kind in ((EMAIL, "email"), (IP, "ip"), (PHONE, "phone")):
        matched = pc.match_substring_regex(column, PATTERNS[kind]).to_numpy(zero_copy_only=False)
        assert not (matched & ~(candidates & bit).astype(bool)).any(), kind
        assert matched.sum() > 50 and (candidates & bit).astype(bool).mean() < 0.9, kind  # both sides tested
    assert (pii_candidates(column, EMAIL) == candidates & EMAIL).all()


TOKEN_DOCS = docs(19) + ["...", "—", "- * •", "(x)", "\u00a0", "😀", "\ufffd", "\u2028a", "x\u3000y"]


def test_has_word_and_char_counts_are_the_word_stats():
    for column in (pa.array(TOKEN_DOCS), broken(TOKEN_DOCS, 19)):
        stats = word_stats(column)
        assert (has_word(column) == (stats["words"] > 0)).all()
        assert (char_counts(column) == stats["chars"]).all()


def test_chunk_counts_bound_the_tokens():
    for column in (pa.array(TOKEN_DOCS), broken(TOKEN_DOCS, 23)):
        tokens = word_stats(column)["tokens"]
        chunks = chunk_counts(column)
        assert (chunks <= tokens).all() and ((chunks == 0) == (tokens == 0)).all()
    assert chunk_counts(pa.array(TOKEN_DOCS)).tolist() == [len(t.split()) for t in TOKEN_DOCS]
    active = np.arange(len(TOKEN_DOCS)) % 3 == 0
    assert (chunk_counts(pa.array(TOKEN_DOCS), active) == np.where(active, chunk_counts(pa.array(TOKEN_DOCS)), 0)).all()


def test_line_stats_rows_and_duplicates_switches():
    column = pa.array(TOKEN_DOCS)
    full = line_stats(column, 12)
    active = np.arange(len(TOKEN_DOCS)) % 2 == 0
    part = line_stats(column, 12, active=active, duplicates=False)
    for name in LINE_STATS:
        expected = np.where(active, full[name], 0)
        if name.startswith("dup_"):
            expected = np.zeros_like(expected)
        assert (part[name] == expected).all(), name


def test_line_stats_match_reference_on_odd_characters():
    got = line_stats(pa.array(TOKEN_DOCS), 12)
    for k, text in enumerate(TOKEN_DOCS):
        assert {name: int(got[name][k]) for name in LINE_STATS} == ref.line_stats(text, short_line_chars=12), text


@pytest.mark.parametrize("stop", [["the", "and", "of", "THE", "x"], ["the", "extraordinarily", "of"], ["é", "a\u00e9"]])
def test_stop_words_count_distinct_case_folded_words(stop):
    texts = TOKEN_DOCS + ["The the THE and", "extraordinarily Extraordinarily of", "é É a\u00e9 A\u00e9"]
    got = word_stats(pa.array(texts), stop)["stop_words"]
    folded = {w.encode().lower() for w in stop}
    for text, count in zip(texts, got, strict=True):
        words = {t.encode().lower() for t, is_word in split_tokens(text) if is_word}
        assert count == len(words & folded), text


def test_c4_lines_without_sentences_or_text_changes_nothing_else():
    column = pa.array(TOKEN_DOCS + ["Done. [1]", "lo[1]rem ipsum is here now.", "A {b} c d.", "use of cookies here ok.",
                                    "x" * 2000 + " a b.", "Dr. No went. Then e.g. this!"])
    kwargs = {"policy": ("terms of use", "cookie policy", "use of cookies"), "min_words": 3, "max_word_chars": 1000}
    text, stats = c4_lines(column, **kwargs)
    for sentences in (True, False):
        for with_text in (True, False):
            got_text, got = c4_lines(column, **kwargs, sentences=sentences, text=with_text)
            assert (got_text is None) == (not with_text)
            if with_text:
                assert got_text.equals(text)
            for name, values in stats.items():
                assert (got[name] == (values if sentences or name != "sentences" else 0)).all(), name
    assert (stats["sentences"] >= stats["lines_kept"]).all()  # what c4_quality relies on


def test_short_patterns_and_patterns_across_cut_citations():
    column = pa.array(["We do it. ab cd ef.", "lo[2]rem ipsum dolor sit.", "x lorem ipsum y z."])
    _, stats = c4_lines(column, javascript=("ab",), policy=(), min_words=3)
    assert stats["javascript"].tolist() == [1, 0, 0]
    assert stats["lorem_ipsum"].tolist() == [0, 1, 1]
    _, stats = c4_lines(pa.array(["LOREM IPSUM is here."]), min_words=3)
    assert stats["lorem_ipsum"].tolist() == [1]
