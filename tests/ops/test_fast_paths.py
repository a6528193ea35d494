"""Each step's shortcuts against the straightforward formulation it replaced (the code before them:
every statistic for every row, every regex over every row), with default and other parameters.

The shortcuts skip work whose result cannot change the outcome (rows already dropped by an earlier
rule, bounds that settle a rule, rows a pattern cannot match), so the outcome must be identical.
"""

from __future__ import annotations

import random

import ftfy
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from llmray.kernels.c4 import c4_lines
from llmray.kernels.clean import clean_whitespace_regex
from llmray.kernels.text import line_stats, word_stats
from llmray.ops.base import KEEP
from llmray.ops.clean.c4_lines import POLICY_PHRASES, C4Lines
from llmray.ops.clean.normalize import CleanWhitespace, FixMojibake, UnicodeNormalize, ftfy_config
from llmray.ops.clean.pii import PATTERNS, PiiRedact
from llmray.ops.filters._rules import above, below, first_failure, ratio
from llmray.ops.filters.c4_quality import C4Quality
from llmray.ops.filters.fineweb_quality import FineWebQuality
from llmray.ops.filters.gopher_quality import GopherQuality
from llmray.ops.filters.length import Length
from tests.helpers import ENGLISH, table
from tests.kernels.test_clean_kernels import ODD, docs

SENTENCES = ENGLISH.split(". ")
LINES = ["- item one", "Home | About | Contact", "Read more...", "Terms of use apply here.", "x = {1, 2}.",
         "lorem ipsum dolor sit amet.", "e.g. this one.", "Call 555-123-4567 or mail a@b.com now.", "#tag #tag",
         "ok", "See [1] and [edit] here.", "Done. [citation needed]", "…", "1.2.3.4 is an address.", ""]


def corpus(seed: int = 0, n: int = 1500) -> list[str]:
    """Documents from prose, menu and list lines, some repeated, some with odd characters."""
    rng = random.Random(seed)
    out = docs(seed, 300)
    for _ in range(n):
        lines = [rng.choice(SENTENCES + LINES) + rng.choice([".", "", "!", "..."]) for _ in range(rng.randint(0, 40))]
        text = "\n".join(lines)
        if rng.random() < 0.3:
            chars = list(text)
            for _ in range(rng.randint(1, 4)):
                chars.insert(rng.randint(0, len(chars)), rng.choice(ODD))
            text = "".join(chars)
        out.append(text)
    return out


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return corpus()


def test_clean_steps_match_the_plain_passes(texts):
    t = table(texts)
    for form in ("NFC", "NFKC", "NFD", "NFKD"):
        out, _ = UnicodeNormalize(form=form).map_rows(t)
        assert out.column("text").to_pylist() == pc.utf8_normalize(t.column("text"), form).to_pylist()
    for blank in (0, 1, 3):
        out, _ = CleanWhitespace(max_blank_lines=blank).map_rows(t)
        assert out.column("text").to_pylist() == clean_whitespace_regex(t.column("text"), blank).to_pylist()


def test_fix_mojibake_matches_fixing_every_suspect_row(texts):
    pattern = r"[ÃÂ][\x{80}-\x{BF}\x{A0}-\x{FF}]|â€|ï»¿"
    suspects = pc.match_substring_regex(pa.array(texts), pattern).to_pylist()
    expected = [ftfy.fix_text(t, ftfy_config()) if s else t for t, s in zip(texts, suspects, strict=True)]
    step = FixMojibake()
    out, _ = step.map_rows(table(texts))
    assert out.column("text").to_pylist() == expected
    assert step.counters() == {"documents_fixed": sum(a != b for a, b in zip(texts, expected, strict=True))}


@pytest.mark.parametrize("params", [{}, {"email": False}, {"ip": False, "phone_replacement": "#"},
                                    {"email_replacement": "<1.2.3.4 or 555-123-4567>",
                                     "ip_replacement": "(555) 1234 567"}])
def test_pii_matches_every_pattern_over_every_row(texts, params):
    step = PiiRedact(**params)
    text, counts = pa.array(texts), {}
    for kind, pattern in PATTERNS.items():
        if getattr(step, kind):
            found = int(pc.sum(pc.count_substring_regex(text, pattern)).as_py() or 0)
            if found:
                counts[f"{kind}_redacted"] = found
                text = pc.replace_substring_regex(text, pattern, getattr(step, f"{kind}_replacement"))
    out, _ = step.map_rows(table(texts))
    assert out.column("text").to_pylist() == text.to_pylist()
    assert step.counters() == counts


def test_c4_lines_matches_the_kernel_with_sentences(texts):
    expected, _ = c4_lines(pa.array(texts), policy=POLICY_PHRASES, min_words=3, max_word_chars=1000)
    out, _ = C4Lines().map_rows(table(texts))
    assert out.column("text").combine_chunks().equals(expected)


def old_length(step: Length, text) -> np.ndarray:
    if step.min_words is None and step.max_words is None:
        chars, words = pc.utf8_length(text).to_numpy(), None
    else:
        stats = word_stats(text)
        chars, words = stats["chars"], stats["words"]
    return first_failure([below(chars, step.min_chars), above(chars, step.max_chars),
                          None if words is None else below(words, step.min_words),
                          None if words is None else above(words, step.max_words)], len(text))


def old_gopher_quality(step: GopherQuality, text) -> np.ndarray:
    words = word_stats(text, step.stop_words)
    lines = line_stats(text)
    mean = ratio(words["word_chars"], words["words"])
    return first_failure([
        below(words["words"], step.min_words), above(words["words"], step.max_words),
        below(mean, step.min_mean_word_length), above(mean, step.max_mean_word_length),
        above(ratio(words["hashes"], words["tokens"]), step.max_symbol_word_ratio),
        above(ratio(words["ellipses"], words["tokens"]), step.max_symbol_word_ratio),
        above(ratio(lines["bullet_lines"], lines["lines"]), step.max_bullet_line_fraction),
        above(ratio(lines["ellipsis_lines"], lines["lines"]), step.max_ellipsis_line_fraction),
        below(ratio(words["alpha_tokens"], words["tokens"]), step.min_alpha_word_fraction),
        below(words["stop_words"], step.min_stop_words),
    ], len(text))


def old_fineweb(step: FineWebQuality, text) -> np.ndarray:
    lines = line_stats(text, step.short_line_chars)
    n_lines = lines["lines"]
    return first_failure([
        n_lines == 0,
        below(ratio(lines["terminal_lines"], n_lines), step.min_punctuated_line_fraction),
        above(ratio(lines["short_lines"], n_lines), step.max_short_line_fraction),
        above(ratio(lines["dup_line_chars"], lines["chars"] - lines["newlines"]),
              step.max_duplicate_line_char_fraction),
        None if step.max_newlines_per_word is None
        else above(ratio(lines["newlines"], word_stats(text)["tokens"]), step.max_newlines_per_word),
    ], len(text))


def old_c4_quality(step: C4Quality, text) -> np.ndarray:
    _, stats = c4_lines(text, javascript=("javascript",) if step.drop_javascript_lines else (),
                        policy=POLICY_PHRASES if step.drop_policy_lines else (), remove_citations=step.remove_citations,
                        require_terminal_punct=step.require_terminal_punct, min_words=step.min_words_per_line,
                        max_word_chars=step.max_word_length)
    return first_failure([
        stats["lorem_ipsum"] > 0 if step.drop_lorem_ipsum else None,
        stats["curly_bracket"] > 0 if step.drop_curly_bracket else None,
        below(stats["sentences"], step.min_sentences),
    ], len(text))


CASES = [
    (Length, old_length, [{}, {"min_words": 2}, {"min_words": 0, "min_chars": 40},
                          {"min_words": None, "max_chars": 300},
                          {"min_chars": 20, "max_chars": 900, "min_words": 5, "max_words": 120}]),
    (GopherQuality, old_gopher_quality, [{}, {"min_words": 5},
                                         {"min_stop_words": None, "max_bullet_line_fraction": 0.3},
                                         {"stop_words": ["the", "extraordinarily", "OF"], "min_stop_words": 1},
                                         {"max_bullet_line_fraction": None, "max_ellipsis_line_fraction": None}]),
    (FineWebQuality, old_fineweb, [{}, {"max_newlines_per_word": 0.05}, {"max_newlines_per_word": None},
                                   {"min_punctuated_line_fraction": None, "max_short_line_fraction": None,
                                    "max_duplicate_line_char_fraction": None, "max_newlines_per_word": 0.15}]),
    (C4Quality, old_c4_quality, [{}, {"require_terminal_punct": False},
                                 {"min_sentences": 2, "drop_curly_bracket": False},
                                 {"min_sentences": 12}, {"min_words_per_line": 0, "max_word_length": 5}]),
]


@pytest.mark.parametrize(("cls", "old", "params"), [(c, o, p) for c, o, ps in CASES for p in ps])
def test_filters_match_the_full_statistics(texts, cls, old, params):
    step = cls(**params)
    text = pa.array(texts)
    expected = old(step, text)
    assert (expected != KEEP).any() and (expected == KEEP).any()
    assert np.array_equal(step.codes(table(texts)), expected)
    chunked = pa.chunked_array([text.slice(0, 500), text.slice(500)])
    assert np.array_equal(step.codes(pa.table({"text": chunked})), expected)
