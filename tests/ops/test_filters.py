"""Every heuristic filter rule, on documents just inside and just outside its threshold.

Where a document cannot sit at one rule's threshold without tripping another, the other rules are
switched off (threshold None), so each test pins down exactly one rule.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pyarrow as pa
import pytest

from llmray.config import parse_steps
from llmray.errors import JobError
from llmray.ops import available
from llmray.ops.base import KEEP
from llmray.ops.clean.c4_lines import C4Lines
from llmray.ops.filters.c4_quality import C4Quality
from llmray.ops.filters.fineweb_quality import FineWebQuality
from llmray.ops.filters.gopher_quality import GopherQuality
from llmray.ops.filters.gopher_repetition import GopherRepetition
from llmray.ops.filters.length import Length
from tests.helpers import ENGLISH, table


def reasons(op, texts: list[str]) -> list[str | None]:
    codes = op.codes(table(texts))
    return [None if c == KEEP else op.reasons[c] for c in codes]


def reason(op, text: str) -> str | None:
    return reasons(op, [text])[0]


def unique_words(count: int, length: int = 5, seed: int = 0) -> list[str]:
    """Distinct lower-case words, so no n-gram repeats by accident."""
    rng = random.Random(seed)
    words: set[str] = set()
    while len(words) < count:
        words.add("".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(length)))
    return sorted(words)


def prose(words: int, seed: int = 0) -> str:
    """``words`` distinct words including two stop words: passes every Gopher quality rule."""
    return " ".join(["the", "of"] + unique_words(words - 2, seed=seed))


def only(cls, keep: str, **params):
    """An op with every threshold that can be off (None) off, except ``keep`` and those in ``params``."""
    off = {f.name: None for f in dataclasses.fields(cls)
           if f.init and "None" in str(f.type) and f.name != keep and f.name not in params}
    return cls(**{**off, **params})


def smallest_total(chars: int, limit: float) -> int:
    """The shortest document length at which ``chars`` repeated characters are not over ``limit``."""
    total = int(chars / limit) - 2
    while chars / total > limit:
        total += 1
    return total


# --- registry and parameters ---------------------------------------------------------------------


def test_filters_are_registered_with_reason_names():
    ops = available()
    for cls in (Length, GopherQuality, GopherRepetition, C4Quality, FineWebQuality, C4Lines):
        assert ops[cls.name] is cls and cls.summary and cls.__doc__
    assert GopherQuality().reason_names()[0] == "gopher_quality.too_few_words"
    assert "gopher_repetition.top_2gram_too_frequent" in GopherRepetition().reason_names()


def test_job_file_parameters():
    rep, quality = parse_steps([{"gopher_repetition": {"max_duplicate_ngram_char_fraction": {5: 0.2}}},
                                {"gopher_quality": {"min_words": 10, "stop_words": ["le", "la"]}}])
    assert rep.max_duplicate_ngram_char_fraction == {5: 0.2} and quality.stop_words == ["le", "la"]
    with pytest.raises(JobError, match="n must be one of"):
        parse_steps([{"gopher_repetition": {"max_top_ngram_char_fraction": {7: 0.1}}}])


def test_english_prose_passes_every_filter():
    text = ENGLISH + "\n\nLater, the board agreed to publish the plans. Everyone will be able to read them."
    for op in (Length(), GopherQuality(), GopherRepetition(), C4Quality(), FineWebQuality()):
        assert reason(op, text) is None, op.name


def test_first_failing_rule_wins():
    # Too few words and too few stop words: the earlier rule is reported.
    assert reason(GopherQuality(), "word " * 10) == "too_few_words"
    assert reasons(GopherQuality(), ["", prose(60)]) == ["too_few_words", None]


# --- length ----------------------------------------------------------------------------------------


def test_length_defaults_drop_only_wordless_documents():
    assert reasons(Length(), ["", "  \n ", "... !!", "a", "ok."]) == [
        "too_few_words", "too_few_words", "too_few_words", None, None]


def test_length_bounds():
    op = Length(min_chars=5, max_chars=7, min_words=None)
    assert reasons(op, ["abcd", "abcde", "abcdefg", "abcdefgh"]) == ["too_few_chars", None, None, "too_many_chars"]
    assert reasons(Length(min_chars=2), ["é", "éé"]) == ["too_few_chars", None]  # characters, not bytes
    op = Length(min_words=2, max_words=3)
    assert reasons(op, ["one.", "one, two", "one two three", "one two three four"]) == [
        "too_few_words", None, None, "too_many_words"]


# --- gopher_quality ----------------------------------------------------------------------------------


def test_gopher_word_count():
    assert reasons(GopherQuality(), [prose(49), prose(50)]) == ["too_few_words", None]
    op = GopherQuality(max_words=60)
    assert reasons(op, [prose(60), prose(61)]) == [None, "too_many_words"]
    assert reason(GopherQuality(), prose(48) + " , , ; !") == "too_few_words"  # punctuation is not a word


def test_gopher_max_words_default():
    long = prose(50) + " word" * (100_000 - 50)
    assert reasons(only(GopherQuality, "max_words"), [long, long + " word"]) == [None, "too_many_words"]


def test_gopher_mean_word_length():
    op = only(GopherQuality, "min_mean_word_length", max_mean_word_length=10.0)
    exactly_3 = " ".join(["the", "of"] + ["abc"] * 47 + ["abcd"])  # 150 chars / 50 words
    assert reasons(op, [exactly_3, exactly_3[:-1]]) == [None, "mean_word_too_short"]
    exactly_10 = " ".join(["the", "of"] + ["a" * 10] * 45 + ["b" * 15] * 3)  # 500 / 50
    assert reasons(op, [exactly_10, exactly_10 + "b"]) == [None, "mean_word_too_long"]


@pytest.mark.parametrize(("symbol", "rule"), [("#", "too_many_hashes"), ("...", "too_many_ellipses"),
                                              ("…", "too_many_ellipses")])
def test_gopher_symbol_ratio(symbol, rule):
    words = prose(54).split()
    inside = " ".join(words[:10] + [symbol] * 6 + words[10:])  # 6 symbols in 60 tokens: 0.1
    outside = " ".join(words[:10] + [symbol] * 7 + words[10:])
    assert reasons(GopherQuality(), [inside, outside]) == [None, rule]


def test_gopher_bullet_lines():
    lines = [" ".join(unique_words(5, seed=i)) for i in range(20)]
    make = lambda bullets: "the of\n" + "\n".join(("- " if i < bullets else "") + line  # noqa: E731
                                                  for i, line in enumerate(lines[:19]))
    # 18 of 20 lines bulleted is 0.9, 19 of 20 is over.
    assert reasons(GopherQuality(), [make(18), "• " + make(18)]) == [None, "too_many_bullet_lines"]


def test_gopher_ellipsis_lines():
    lines = [" ".join(unique_words(6, seed=i)) for i in range(10)]
    make = lambda k: "the of " + "\n".join(line + ("..." if i < k else ".") for i, line in enumerate(lines))  # noqa: E731
    assert reasons(GopherQuality(), [make(3), make(4)]) == [None, "too_many_ellipsis_lines"]
    assert reason(GopherQuality(), make(3).replace(lines[3] + ".", lines[3] + "…")) == "too_many_ellipsis_lines"


def test_gopher_alpha_words():
    words = prose(50).split()
    inside = " ".join(words[:40] + ["1234"] * 10)  # 40 of 50 tokens have a letter
    outside = " ".join(words[:39] + ["1234"] * 11)
    assert reasons(GopherQuality(), [inside, outside]) == [None, "too_few_alpha_words"]
    # Split-off punctuation counts as a token without letters.
    assert reason(GopherQuality(), " ".join(w + "," for w in words[:40]) + " x" * 10) == "too_few_alpha_words"


def test_gopher_stop_words():
    body = unique_words(60)
    assert reasons(GopherQuality(), [
        " ".join(["the"] + body), " ".join(["the", "the"] + body), " ".join(["The", "OF"] + body),
        " ".join(["the,", "(of)"] + body)]) == ["too_few_stop_words", "too_few_stop_words", None, None]
    assert reason(GopherQuality(stop_words=["le", "la"]), " ".join(["le", "la"] + body)) is None


# --- gopher_repetition -------------------------------------------------------------------------------


def paragraphs(texts: list[str]) -> str:
    return "\n\n".join(texts)


def test_duplicate_paragraph_fraction():
    op = only(GopherRepetition, "max_duplicate_paragraph_fraction", max_top_ngram_char_fraction={},
              max_duplicate_ngram_char_fraction={})
    unique = [" ".join(unique_words(8, seed=i)) for i in range(10)]
    three = paragraphs(unique[:7] + [unique[0]] * 3)  # 3 of 10 repeat an earlier one
    four = paragraphs(unique[:6] + [unique[0]] * 4)
    assert reasons(op, [three, four]) == [None, "too_many_duplicate_paragraphs"]
    # A blank line separates paragraphs even when it holds spaces.
    assert reason(op, "a\n \nb\n\t\nb\n\nb") == "too_many_duplicate_paragraphs"


def test_duplicate_paragraph_chars():
    op = only(GopherRepetition, "max_duplicate_paragraph_char_fraction", max_top_ngram_char_fraction={},
              max_duplicate_ngram_char_fraction={})
    rest = "x" * 293  # 100 + 100 + 293 + 1 characters and three 2-character separators: 500
    inside = paragraphs(["d" * 100, "d" * 100, rest, "y"])
    outside = paragraphs(["d" * 101, "d" * 101, rest[:-2], "y"])
    assert len(inside) == 500 == len(outside)
    assert reasons(op, [inside, outside]) == [None, "too_many_duplicate_paragraph_chars"]


def test_duplicate_line_fraction():
    op = only(GopherRepetition, "max_duplicate_line_fraction", max_top_ngram_char_fraction={},
              max_duplicate_ngram_char_fraction={})
    unique = [" ".join(unique_words(6, seed=i)) for i in range(10)]
    assert reasons(op, ["\n".join(unique[:7] + [unique[1]] * 3), "\n".join(unique[:6] + [unique[1]] * 4)]) == [
        None, "too_many_duplicate_lines"]
    # Trailing spaces and \r do not make a line different; blank lines are not lines.
    assert reason(op, "a\r\na\n\n\nb \nb\n") == "too_many_duplicate_lines"


def test_duplicate_line_chars():
    op = only(GopherRepetition, "max_duplicate_line_char_fraction", max_top_ngram_char_fraction={},
              max_duplicate_ngram_char_fraction={})
    inside = "\n".join(["d" * 100, "d" * 100, "x" * 298])  # 100 of 500 characters repeat
    outside = "\n".join(["d" * 101, "d" * 101, "x" * 296])
    assert reasons(op, [inside, outside]) == [None, "too_many_duplicate_line_chars"]


@pytest.mark.parametrize(("n", "limit"), [(2, 0.20), (3, 0.18), (4, 0.16)])
def test_top_ngram(n, limit):
    op = only(GopherRepetition, "", max_top_ngram_char_fraction={n: limit}, max_duplicate_ngram_char_fraction={})
    gram = " ".join(["ab"] * n)  # 2n characters per occurrence, in tokens
    filler = unique_words(400, length=4)
    def doc(count: int, total: int) -> str:
        text = " ".join([gram + " zq"] * count)
        return text + " " + " ".join(filler)[: total - len(text) - 1]
    # 10 occurrences of a 2n-character gram: 20n characters, just within or just over the limit.
    total = smallest_total(20 * n, limit)
    assert reasons(op, [doc(10, total), doc(10, total - 1)]) == [None, f"top_{n}gram_too_frequent"]


def test_top_ngram_needs_a_repeat():
    # Every 2-gram of a short document is unique: no repetition, whatever its share of the text.
    assert reason(only(GopherRepetition, "", max_duplicate_ngram_char_fraction={}), "hello world") is None


@pytest.mark.parametrize(("n", "limit"), [(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)])
def test_duplicate_ngrams(n, limit):
    op = only(GopherRepetition, "", max_top_ngram_char_fraction={}, max_duplicate_ngram_char_fraction={n: limit})
    words = unique_words(n, length=4, seed=n)  # a span of n distinct 4-character words, repeated once
    span = " ".join(words)
    filler = " ".join(unique_words(2000, length=6, seed=99))
    total = smallest_total(4 * n, limit)  # the copy's 4n characters, just within or just over the limit
    base = span + " " + span + " "
    inside = base + filler[: total - len(base)]
    outside = base + filler[: total - len(base) - 1]
    assert reasons(op, [inside, outside]) == [None, f"too_many_duplicate_{n}grams"]
    # One token short of the span, nothing of size n repeats.
    assert reason(op, " ".join(words[:-1] * 2) + " " + filler[:200]) is None


# --- c4 ----------------------------------------------------------------------------------------------

SENTENCE = "This line is a sentence."


def test_c4_too_few_sentences():
    assert reasons(C4Quality(), ["\n".join([SENTENCE] * 4), "\n".join([SENTENCE] * 5)]) == [
        "too_few_sentences", None]
    # Sentences are counted within lines; abbreviations do not end one.
    assert reason(C4Quality(), "One here. Two here! Three here? Four here. Five here.") is None
    assert reason(C4Quality(), "See e.g. this one. Two here. Three here. Four here.") == "too_few_sentences"


@pytest.mark.parametrize("line", [
    "a line without an end mark", "Too short.", "Ends in an ellipsis...", "Please enable JavaScript to view it.",
    "This site uses cookies to work.", "A word " + "x" * 1001 + " too long.",
])
def test_c4_dropped_lines_do_not_count(line):
    assert reason(C4Quality(), "\n".join([SENTENCE] * 4 + [line])) == "too_few_sentences"


def test_c4_lorem_ipsum_and_curly_bracket():
    base = "\n".join([SENTENCE] * 5)
    assert reasons(C4Quality(), [
        base + "\nLorem ipsum dolor sit amet.", base + "\nlorem ipsum dolor sit amet", base + "\nUse {x} here, please.",
        base + "\nUse {x} in javascript code.", base + "\n{x} y", base + "\nLorem ipsum {dolor} sit.",
    ]) == ["contains_lorem_ipsum", None, "contains_curly_bracket", None, None, "contains_lorem_ipsum"]
    assert reason(C4Quality(drop_curly_bracket=False), base + "\nUse {x} here, please.") is None


def test_c4_citations_are_removed_before_the_end_check():
    assert reason(C4Quality(), "\n".join([SENTENCE] * 4 + ["A cited claim holds. [citation needed]"])) is None
    assert reason(C4Quality(remove_citations=False),
                  "\n".join([SENTENCE] * 4 + ["A cited claim holds. [1]"])) == "too_few_sentences"


def test_c4_lines_cleans_and_counts():
    op = C4Lines()
    text = "\n".join(["Keep this line.", "menu", "Home About Contact", "Enable javascript now.",
                      "We use cookies here.", "Cited claim stays.[12]", "x" * 1001 + " a b.", "  ", "This is last!"])
    out = op(table([text, "", "menu only"]))
    assert out.column("text").to_pylist() == ["Keep this line.\nCited claim stays.\nThis is last!", "", ""]
    assert out.column("id").to_pylist() == ["d0", "d1", "d2"]
    assert op.counters() == {"lines_kept": 3, "lines_dropped_too_long_word": 1, "lines_dropped_no_terminal_punct": 3,
                             "lines_dropped_too_few_words": 0, "lines_dropped_javascript": 1,
                             "lines_dropped_policy": 1, "documents_emptied": 1}
    assert op.counters() == {}  # counters reset after reading
    assert C4Lines(drop_javascript_lines=False)(table(["Enable javascript now."])).column("text")[0].as_py() == (
        "Enable javascript now.")
    assert C4Lines(min_words_per_line=4)(table(["Too few words.", "Four words are here."])).column(
        "text").to_pylist() == ["", "Four words are here."]


# --- fineweb ---------------------------------------------------------------------------------------


def lines_of(count: int, seed: int = 0, words: int = 6) -> list[str]:
    """Distinct lines over 30 characters, without end punctuation."""
    return [" ".join(unique_words(words, seed=seed * 1000 + i)) for i in range(count)]


def test_fineweb_empty():
    assert reasons(FineWebQuality(), ["", " \n\t\n"]) == ["empty", "empty"]


def test_fineweb_punctuated_lines():
    lines = lines_of(100)
    make = lambda k: "\n".join(line + ("." if i < k else "") for i, line in enumerate(lines))  # noqa: E731
    assert reasons(FineWebQuality(), [make(12), make(11)]) == [None, "too_few_punctuated_lines"]
    # A closing quote ends a line too.
    assert reason(FineWebQuality(), make(11).replace(lines[11], lines[11] + '"')) is None


def test_fineweb_short_lines():
    long = [line + "." for line in lines_of(100)]
    short = [f"Short line {i}." for i in range(100)]
    make = lambda k: "\n".join(short[:k] + long[k:])  # noqa: E731
    assert reasons(FineWebQuality(), [make(67), make(68)]) == [None, "too_many_short_lines"]


def test_fineweb_duplicate_line_chars():
    op = only(FineWebQuality, "max_duplicate_line_char_fraction")
    inside = "\n".join(["d" * 10, "d" * 10, "x." * 490])  # 10 of 1000 characters (newlines aside)
    outside = "\n".join(["d" * 11, "d" * 11, "x." * 489])
    assert reasons(op, [inside, outside]) == [None, "too_many_duplicate_line_chars"]


def test_fineweb_newlines_per_word():
    op = only(FineWebQuality, "max_newlines_per_word")
    inside = "\n".join(["one two three"] * 9 + ["one two three"])  # 9 newlines, 30 tokens
    outside = "\n".join(["one two three"] * 9 + ["one two"])
    assert reasons(op, [inside, outside]) == [None, "too_many_newlines"]


def test_filters_accept_large_string_and_chunked_columns():
    texts = [prose(60), "", ENGLISH]
    expected = GopherQuality().codes(table(texts))
    big = pa.table({"text": pa.array(texts, pa.large_string())})
    chunked = pa.table({"text": pa.chunked_array([texts[:1], texts[1:]])})
    for op in (GopherQuality(),):
        assert np.array_equal(op.codes(big), expected)
        assert np.array_equal(op.codes(chunked), expected)
    kept, dropped, codes = GopherQuality().split(table(texts))
    assert kept.num_rows == np.count_nonzero(expected == KEEP)
    assert codes.tolist() == expected[expected != KEEP].tolist()


def test_a_drop_says_what_decided_it_value_and_threshold():
    """Rejects carry what the failed rule measured and its limit; a kept row, or a rule that is
    not a threshold, carries none."""
    texts = ["one two three", " ".join(unique_words(25)), "one two three four five six seven"]
    step = Length(min_words=5, max_words=20)
    kept, dropped, codes = step.split(table(texts))
    assert kept.column("text").to_pylist() == [texts[2]]
    assert [step.reasons[c] for c in codes] == ["too_few_words", "too_many_words"]
    assert dropped.column("value").to_pylist() == [3.0, 25.0]
    assert dropped.column("threshold").to_pylist() == [5.0, 20.0]
    _, dropped, codes = FineWebQuality().split(table(["   "]))
    assert [FineWebQuality.reasons[c] for c in codes] == ["empty"]
    assert dropped.column("value").to_pylist() == [None]  # a rule without a measure


def test_annotate_keeps_every_row_with_reason_value_and_threshold_and_the_first_drop_wins():
    texts = ["one two three", "one two three four five six seven", "a b c d e f g h i j k l"]
    first = Length(min_words=5, annotate=True).transform(table(texts))
    both = Length(max_words=10, annotate=True).transform(first)
    assert both.column("reason").to_pylist() == ["length.too_few_words", None, "length.too_many_words"]
    assert both.column("value").to_pylist() == [3.0, None, 12.0]
    assert both.column("threshold").to_pylist() == [5.0, None, 10.0]


def test_per_language_settings_report_their_own_thresholds():
    t = table(["一 二 三", "one two three"]).append_column("language", pa.array(["zh", "en"]))
    step = Length(min_words=5, languages={"zh": {"min_words": 4}})
    _, dropped, _ = step.split(t)
    assert dropped.column("threshold").to_pylist() == [4.0, 5.0]
    assert dropped.column("value").to_pylist() == [3.0, 3.0]
