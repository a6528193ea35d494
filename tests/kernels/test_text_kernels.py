"""The numba text kernels against the plain-Python reference on randomized and hand-picked text."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

import tests.ops.reference_filters as ref
from llmray.kernels.c4 import C4_STATS, c4_lines
from llmray.kernels.text import (
    LINE_STATS,
    NGRAM_LIMITS,
    WORD_STATS,
    line_stats,
    ngram_stats,
    split_tokens,
    string_buffers,
    word_stats,
)

WORDS = ["the", "The", "of", "OF", "and", "to", "with", "have", "be", "that", "cat", "dog", "naïve", "café",
         "Straße", "东京", "Москва", "don't", "it's", "I’m", "they're", "can't", "well-known", "and/or", "x=y",
         "a,b", "end.Next", "--verbose", "/etc/hosts", "C++", "e.g.", "U.S.", "3.14", "1,000", "http://a.b/c-d",
         "#tag", "##", "...", "…", "—", "(paren)", "\"quoted\"", "'single'", "[1]", "[edit]", "{x}", "😀",
         "𝔘𝔫𝔦", "𐌰𐌱", "lorem", "ipsum", "javascript", "cookies", "'s", "n't", "-", "*", "•", ".", "!", "?",
         "x", "ab", "abcdefghijk"]
SPACES = [" ", " ", " ", "  ", "\t", "\u00a0", "\u3000", " \r"]


def random_doc(rng: random.Random) -> str:
    """Lines of random words, with repeated lines, blank lines, bullets and odd whitespace."""
    if rng.random() < 0.05:
        return rng.choice(["", " ", "\n", "\n\n \n", "...", "x"])
    lines: list[str] = []
    for _ in range(rng.randint(1, 12)):
        roll = rng.random()
        if lines and roll < 0.15:
            lines.append(rng.choice(lines))
        elif roll < 0.25:
            lines.append(rng.choice(["", "   ", "\t"]))
        else:
            words = [rng.choice(WORDS) for _ in range(rng.randint(0, 14))]
            line = "".join(w + rng.choice(SPACES) for w in words).rstrip(" ")
            if rng.random() < 0.2:
                line = rng.choice(["- ", "• ", "  * "]) + line
            if rng.random() < 0.4:
                line += rng.choice([".", "!", "?", "...", "…", "\"", ":", " [2]", ". [citation needed]"])
            lines.append(line)
    text = "\n".join(lines)
    if rng.random() < 0.3:  # repeated phrases, for the n-gram measures
        phrase = " ".join(rng.choice(WORDS[:12]) for _ in range(rng.randint(2, 7)))
        text += "\n" + " ".join([phrase] * rng.randint(2, 5)) + rng.choice(["", "\n"])
    return text


@pytest.fixture(scope="module")
def docs() -> list[str]:
    rng = random.Random(20240611)
    return [random_doc(rng) for _ in range(300)]


def rows(stats: dict[str, np.ndarray], names: tuple[str, ...]) -> list[dict[str, int]]:
    return [{name: int(stats[name][i]) for name in names} for i in range(len(stats[names[0]]))]


def test_word_stats_match_reference(docs):
    got = rows(word_stats(pa.array(docs), ref.STOP_WORDS), WORD_STATS)
    for text, row in zip(docs, got, strict=True):
        assert row == ref.word_stats(text), text


def test_line_stats_match_reference(docs):
    got = rows(line_stats(pa.array(docs), short_line_chars=12), LINE_STATS)
    for text, row in zip(docs, got, strict=True):
        assert row == ref.line_stats(text, short_line_chars=12), text


def test_ngram_stats_match_reference(docs):
    top_ns, dup_ns = (1, 2, 3, 4), (2, 5, 6, 10)
    top, dup = ngram_stats(pa.array(docs), top_ns, dup_ns)
    for i, text in enumerate(docs):
        toks = [t for t, _ in ref.tokens(text)]
        assert [int(top[n][i]) for n in top_ns] == [ref.top_ngram_chars(toks, n) for n in top_ns], text
        assert [int(dup[n][i]) for n in dup_ns] == [ref.dup_ngram_chars(toks, n) for n in dup_ns], text


def test_c4_lines_match_reference(docs):
    text, stats = c4_lines(pa.array(docs), policy=ref.POLICY_PHRASES, min_words=3, max_word_chars=12)
    for i, doc in enumerate(docs):
        expected = ref.c4_lines(doc, max_word_length=12)
        assert text[i].as_py() == expected["text"], doc
        got = {name: int(stats[name][i]) for name in C4_STATS}
        assert got == {
            "sentences": expected["sentences"],
            "lorem_ipsum": int(expected["lorem_ipsum"]),
            "curly_bracket": int(expected["curly_bracket"]),
            "lines_kept": len(expected["text"].split("\n")) if expected["text"] else 0,
            **{rule: expected["dropped"][rule] for rule in C4_STATS[4:]},
        }, doc


def test_tokens_match_reference(docs):
    for text in docs:
        assert split_tokens(text) == ref.tokens(text), text


@pytest.mark.parametrize(("text", "expected"), [
    ("Hello, world.", ["Hello", ",", "world", "."]),
    ("don't it's I’m they're", ["do", "n't", "it", "'s", "I", "’m", "they", "'re"]),
    ("well-known and/or x=y a,b 1,000 end.Next", ["well", "-", "known", "and", "/", "or", "x", "=", "y", "a", ",",
                                                  "b", "1,000", "end", ".", "Next"]),
    ("--verbose /etc/hosts C++ .git ..x", ["--verbose", "/etc", "/", "hosts", "C++", ".git", "..", "x"]),
    ("http://a.b/c-d (see) \"q\"...", ["http://a.b/c-d", "(", "see", ")", "\"", "q", "\"", "..."]),
    ("---- ** 😀x", ["----", "*", "*", "😀", "x"]),
    ("e.g. A. U.S. etc. Key= 1-7 a-1 2+3", ["e.g.", "A.", "U.S.", "etc", ".", "Key=", "1", "-", "7", "a-1", "2", "+",
                                          "3"]),
])
def test_token_definition(text, expected):
    assert [t for t, _ in split_tokens(text)] == expected


def test_chunked_sliced_and_large_string_columns(docs):
    expected = word_stats(pa.array(docs))["words"]
    chunked = pa.chunked_array([pa.array(docs[:100]), pa.array(docs[100:], pa.string())])
    assert np.array_equal(word_stats(chunked)["words"], expected)
    assert np.array_equal(word_stats(pa.array(docs, pa.large_string()))["words"], expected)
    sliced = pa.array(["skip me", *docs, "and me"]).slice(1, len(docs))
    assert np.array_equal(word_stats(sliced)["words"], expected)
    assert np.array_equal(line_stats(sliced)["dup_lines"], line_stats(pa.array(docs))["dup_lines"])
    assert len(word_stats(pa.array([], pa.string()))["words"]) == 0
    assert len(word_stats(pa.chunked_array([], pa.string()))["words"]) == 0
    text, _ = c4_lines(chunked)
    assert isinstance(text, pa.ChunkedArray) and text.num_chunks == 2 and text.type == pa.string()
    assert c4_lines(pa.array(docs, pa.large_string()))[0].type == pa.large_string()


def test_string_buffers_are_zero_copy():
    array = pa.array(["abc", "de", "f"]).slice(1)
    offsets, data = string_buffers(array)
    assert offsets.tolist() == [3, 5, 6]
    assert data.ctypes.data == array.buffers()[2].address


def test_ngram_active_mask_skips_rows(docs):
    active = np.arange(len(docs)) % 2 == 0
    top, dup = ngram_stats(pa.array(docs), (2,), (5,), active=active)
    full_top, _ = ngram_stats(pa.array(docs), (2,), (5,))
    assert not top[2][~active].any() and not dup[5][~active].any()
    assert np.array_equal(top[2][active], full_top[2][active])


def test_large_document_grows_buffers():
    """One document far bigger than the initial token table (and with a repeated half)."""
    rng = random.Random(7)
    half = " ".join(f"w{rng.randrange(10**6)}" for _ in range(40_000))
    text = half + "\n" + half
    stats = word_stats(pa.array([text]))
    assert stats["tokens"][0] == 80_000
    top, dup = ngram_stats(pa.array([text]), (2,), (10,))
    assert dup[10][0] == sum(len(w) for w in half.split())


# --- documents of any size: bounded token batches, compact n-gram arrays ----------------------------

#: The smallest limits of the n-gram kernel: a one-row token table (it grows to fit a chunk, about
#: a thousand rows), a table with room for 16 grams (it doubles again and again), and the counting
#: pass for every document over 64 bytes. They take the paths a 100 MB document takes.
TINY_LIMITS = (1, 16, 64)


@pytest.fixture(scope="module")
def long_docs(docs) -> list[str]:
    """Documents of thousands of tokens: the random ones joined, a repeated paragraph, distinct words,
    and a chunk between spaces longer than a token table."""
    return (["\n".join(docs[i:i + 40]) for i in range(0, len(docs), 40)]
            + [" ".join(["The committee met on Tuesday, and agreed."] * 600),
               " ".join(f"w{i}" for i in range(6000)) + " " + " ".join(f"w{i}" for i in range(100)),
               "a" * 5000 + " " + "-x." * 3000 + " the end"])


def test_word_stats_of_long_documents_in_small_batches(long_docs):
    column = pa.array(long_docs)
    expected = [ref.word_stats(text) for text in long_docs]
    assert rows(word_stats(column, ref.STOP_WORDS), WORD_STATS) == expected
    assert rows(word_stats(column, ref.STOP_WORDS, _batch=1), WORD_STATS) == expected


def test_ngram_stats_of_long_documents_with_every_limit(long_docs):
    top_ns, dup_ns = (1, 2, 3, 4), (2, 5, 6, 10)
    expected = []
    for text in long_docs:
        toks = [t for t, _ in ref.tokens(text)]
        expected.append(([ref.top_ngram_chars(toks, n) for n in top_ns],
                         [ref.dup_ngram_chars(toks, n) for n in dup_ns]))
    for limits in (NGRAM_LIMITS, TINY_LIMITS, (1, 1 << 20, 64), (1 << 16, 16, 1 << 30)):
        top, dup = ngram_stats(pa.array(long_docs), top_ns, dup_ns, _limits=limits)
        for i, (want_top, want_dup) in enumerate(expected):
            assert [int(top[n][i]) for n in top_ns] == want_top, (limits, i)
            assert [int(dup[n][i]) for n in dup_ns] == want_dup, (limits, i)


def test_small_limits_change_nothing_on_ordinary_documents(docs):
    column = pa.array(docs)
    assert rows(word_stats(column, ref.STOP_WORDS, _batch=1), WORD_STATS) == rows(
        word_stats(column, ref.STOP_WORDS), WORD_STATS)
    default, tiny = ngram_stats(column), ngram_stats(column, _limits=TINY_LIMITS)
    for a, b in zip(default, tiny, strict=True):
        assert all(np.array_equal(a[n], b[n]) for n in a)
