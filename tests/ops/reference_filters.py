"""Plain per-document Python version of llmray's heuristic filters, to check the compiled kernels.

Written from the published rules and the definitions in ``llmray/kernels/text.py`` with ordinary
string operations (``str.split``, sets, ``collections.Counter``), one document at a time. It is slow
on purpose: it is the yardstick for the numba kernels (tests) and for the benchmark's agreement
figure. Character classes come from :func:`llmray.kernels.text.char_flags`, the definition itself.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable

from llmray.kernels.text import (
    ALPHA,
    BULLET,
    INFIX,
    LEAD_STICKY,
    PUNCT,
    SENT_END,
    TERMINAL,
    TRAIL_STICKY,
    char_flags,
)

STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
POLICY_PHRASES = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies",
                  "use cookies")
CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]")
ABBREVIATION = re.compile(r"[A-Za-z](\.[A-Za-z])*")


def has(ch: str, flag: int) -> bool:
    return bool(char_flags(ch) & flag)


def ascii_lower(s: str) -> str:
    return s.encode().lower().decode()


# --- tokens ------------------------------------------------------------------------------------


def punct_tokens(s: str) -> list[str]:
    out, i = [], 0
    while i < len(s):
        j = i + 1
        if s[i] in ".-":
            while j < len(s) and s[j] == s[i]:
                j += 1
        out.append(s[i:j])
        i = j
    return out


def is_word_char(c: str) -> bool:
    return not has(c, PUNCT)


def clitic_length(word: str) -> int:
    """Length of a final 's 'd 'm n't 're 've 'll (apostrophe ' or ’) after a word character, or 0."""
    low = ascii_lower(word)
    for quote in "'’":
        for clitic in ("s", "d", "m", "re", "ve", "ll", "n't"):
            end = quote + clitic if clitic != "n't" else "n" + quote + "t"
            if low.endswith(end) and len(word) > len(end) and is_word_char(word[-len(end) - 1]):
                return len(end)
    return 0


def split_core(core: str) -> list[tuple[str, bool]]:
    """Words of a chunk's core, split at infixes and before a final clitic; URLs stay whole."""
    if "://" in core:
        return [(core, True)]
    out, start, k = [], 0, 1
    while k < len(core) - 1:
        c, r = core[k], k + 1
        while c == "-" and r < len(core) and core[r] == "-":
            r += 1
        if r == len(core):
            break
        prev, nxt = core[k - 1], core[r]
        if c == ".":
            split = "a" <= prev <= "z" and "A" <= nxt <= "Z"
        elif c == ",":
            split = has(prev, ALPHA) and has(nxt, ALPHA)
        else:
            split = has(c, INFIX) and is_word_char(prev) and has(nxt, ALPHA)
        if c in "+-*^" and r == k + 1 and "0" <= prev <= "9" and "0" <= nxt <= "9":
            split = True
        if split:
            out += [(core[start:k], True), (core[k:r], False)]
            start, k = r, r + 1
        else:
            k += 1
    last = core[start:]
    cut = clitic_length(last)
    if cut:
        return out + [(last[:-cut], True), (last[-cut:], True)]
    return out + [(last, True)]


def tokens(text: str) -> list[tuple[str, bool]]:
    """(token, is_word) pairs: chunks split on spaces, punctuation peeled off both ends up to the
    sticky characters, cores split by :func:`split_core`."""
    out = []
    for chunk in text.split():
        word_at = [i for i, c in enumerate(chunk) if is_word_char(c)]
        if not word_at:
            out += [(t, False) for t in punct_tokens(chunk)]
            continue
        a = 0
        while a < word_at[0]:
            if chunk[a] == ".":
                run = len(chunk[a:word_at[0]]) - len(chunk[a:word_at[0]].lstrip("."))
                if run < 2:
                    break
                a += run
            elif has(chunk[a], LEAD_STICKY):
                break
            else:
                a += 1
        b = max([word_at[-1] + 1] + [i + 1 for i in range(word_at[-1], len(chunk))
                                     if has(chunk[i], TRAIL_STICKY)])
        words = split_core(chunk[a:b])
        if chunk[b:b + 1] == "." and chunk[b + 1:b + 2] != "." and ABBREVIATION.fullmatch(words[-1][0]):
            words[-1] = (words[-1][0] + ".", True)
            b += 1
        out += [(t, False) for t in punct_tokens(chunk[:a])]
        out += words
        out += [(t, False) for t in punct_tokens(chunk[b:])]
    return out


def word_stats(text: str, stop_words=STOP_WORDS) -> dict[str, int]:
    toks = tokens(text)
    words = [t for t, is_word in toks if is_word]
    stops = {ascii_lower(w) for w in stop_words}
    return {
        "chars": len(text),
        "tokens": len(toks),
        "words": len(words),
        "word_chars": sum(len(w) for w in words),
        "alpha_tokens": sum(any(has(c, ALPHA) for c in t) for t, _ in toks),
        "stop_words": len(stops & {ascii_lower(w) for w in words}),
        "hashes": text.count("#"),
        "ellipses": text.count("...") + text.count("…"),
        "newlines": text.count("\n"),
    }


# --- lines ----------------------------------------------------------------------------------------


def paragraphs(text: str) -> list[list[str]]:
    """Runs of non-blank lines (trailing space removed)."""
    paras, current = [], []
    for raw in text.split("\n"):
        line = raw.rstrip()
        if line:
            current.append(line)
        elif current:
            paras.append(current)
            current = []
    if current:
        paras.append(current)
    return paras


def duplicates(items: list[str]) -> tuple[int, int]:
    """(items equal to an earlier item, their characters)."""
    seen, count, chars = set(), 0, 0
    for item in items:
        if item in seen:
            count += 1
            chars += len(item)
        seen.add(item)
    return count, chars


def line_stats(text: str, short_line_chars: int = 30) -> dict[str, int]:
    paras = paragraphs(text)
    lines = [line for para in paras for line in para]
    dup_lines, dup_line_chars = duplicates(lines)
    dup_paras, dup_para_chars = duplicates(["\n".join(p) for p in paras])
    return {
        "chars": len(text),
        "newlines": text.count("\n"),
        "lines": len(lines),
        "bullet_lines": sum(has(line.lstrip()[0], BULLET) for line in lines),
        "ellipsis_lines": sum(line.endswith(("...", "…")) for line in lines),
        "terminal_lines": sum(has(line[-1], TERMINAL) for line in lines),
        "short_lines": sum(len(line) <= short_line_chars for line in lines),
        "dup_lines": dup_lines,
        "dup_line_chars": dup_line_chars,
        "paragraphs": len(paras),
        "dup_paragraphs": dup_paras,
        "dup_paragraph_chars": dup_para_chars,
    }


# --- n-grams --------------------------------------------------------------------------------------


def top_ngram_chars(toks: list[str], n: int) -> int:
    grams = Counter(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1))
    if not grams:
        return 0
    best = max(grams.values())
    if best < 2:
        return 0
    return best * max(sum(map(len, g)) for g, c in grams.items() if c == best)


def dup_ngram_chars(toks: list[str], n: int) -> int:
    seen, covered = set(), [False] * len(toks)
    for i in range(len(toks) - n + 1):
        gram = tuple(toks[i:i + n])
        if gram in seen:
            covered[i:i + n] = [True] * n
        seen.add(gram)
    return sum(len(t) for t, c in zip(toks, covered, strict=True) if c)


# --- C4 lines ---------------------------------------------------------------------------------------


def sentences(line: str) -> int:
    """Chunks that end a sentence: the last one, and any whose trailing punctuation has a sentence
    end while its word part has no inner '.' (e.g., U.S. are abbreviations)."""
    chunks = line.split()
    count = 1
    for chunk in chunks[:-1]:
        word_at = [i for i, c in enumerate(chunk) if not has(c, PUNCT)]
        trail = chunk[word_at[-1] + 1:] if word_at else chunk
        core = chunk[word_at[0]:word_at[-1] + 1] if word_at else ""
        if any(has(c, SENT_END) for c in trail) and "." not in core:
            count += 1
    return count


def c4_lines(text: str, remove_citations=True, require_terminal_punct=True, min_words_per_line=3,
             max_word_length: int | None = 1000, drop_javascript_lines=True, drop_policy_lines=True) -> dict:
    """Kept text, the count of lines dropped per rule, sentences kept and the doc-level flags."""
    kept, dropped = [], Counter()
    lorem = curly = False
    n_sentences = 0
    for raw in text.split("\n"):
        line = raw.strip()
        if not line:
            continue
        if remove_citations:
            line = CITATION.sub("", line).strip()
        words = line.split()
        lower = ascii_lower(line)
        if max_word_length is not None and any(len(w) > max_word_length for w in words):
            dropped["too_long_word"] += 1
            continue
        if require_terminal_punct and not (line and has(line[-1], TERMINAL) and not line.endswith("...")):
            dropped["no_terminal_punct"] += 1
            continue
        if len(words) < min_words_per_line:
            dropped["too_few_words"] += 1
            continue
        lorem |= "lorem ipsum" in lower
        if drop_javascript_lines and "javascript" in lower:
            dropped["javascript"] += 1
            continue
        curly |= "{" in line
        if drop_policy_lines and any(p in lower for p in POLICY_PHRASES):
            dropped["policy"] += 1
            continue
        kept.append(line)
        n_sentences += sentences(line)
    return {"text": "\n".join(kept), "dropped": dropped, "sentences": n_sentences, "lorem_ipsum": lorem,
            "curly_bracket": curly}


# --- decisions ------------------------------------------------------------------------------------


def ratio(num: float, den: float) -> float:
    """num/den; 0/0 is NaN (no rule fires on it), x/0 is infinite."""
    if den == 0:
        return math.nan if num == 0 else math.inf
    return num / den


def first(rules: list[tuple[str, bool]]) -> str | None:
    return next((name for name, failed in rules if failed), None)


def length(text: str) -> str | None:
    return first([("too_few_words", word_stats(text)["words"] < 1)])


def gopher_quality(text: str) -> str | None:
    w, ln = word_stats(text), line_stats(text)
    mean = ratio(w["word_chars"], w["words"])
    return first([
        ("too_few_words", w["words"] < 50),
        ("too_many_words", w["words"] > 100_000),
        ("mean_word_too_short", mean < 3),
        ("mean_word_too_long", mean > 10),
        ("too_many_hashes", ratio(w["hashes"], w["tokens"]) > 0.1),
        ("too_many_ellipses", ratio(w["ellipses"], w["tokens"]) > 0.1),
        ("too_many_bullet_lines", ratio(ln["bullet_lines"], ln["lines"]) > 0.9),
        ("too_many_ellipsis_lines", ratio(ln["ellipsis_lines"], ln["lines"]) > 0.3),
        ("too_few_alpha_words", ratio(w["alpha_tokens"], w["tokens"]) < 0.8),
        ("too_few_stop_words", w["stop_words"] < 2),
    ])


TOP_NGRAMS = {2: 0.20, 3: 0.18, 4: 0.16}
DUP_NGRAMS = {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}


def gopher_repetition(text: str) -> str | None:
    ln = line_stats(text)
    chars = len(text)
    reason = first([
        ("too_many_duplicate_paragraphs", ratio(ln["dup_paragraphs"], ln["paragraphs"]) > 0.3),
        ("too_many_duplicate_paragraph_chars", ratio(ln["dup_paragraph_chars"], chars) > 0.2),
        ("too_many_duplicate_lines", ratio(ln["dup_lines"], ln["lines"]) > 0.3),
        ("too_many_duplicate_line_chars", ratio(ln["dup_line_chars"], chars) > 0.2),
    ])
    if reason:
        return reason
    toks = [t for t, _ in tokens(text)]
    for n, limit in TOP_NGRAMS.items():
        if ratio(top_ngram_chars(toks, n), chars) > limit:
            return f"top_{n}gram_too_frequent"
    for n, limit in DUP_NGRAMS.items():
        if ratio(dup_ngram_chars(toks, n), chars) > limit:
            return f"too_many_duplicate_{n}grams"
    return None


def c4_quality(text: str) -> str | None:
    c4 = c4_lines(text)
    return first([
        ("contains_lorem_ipsum", c4["lorem_ipsum"]),
        ("contains_curly_bracket", c4["curly_bracket"]),
        ("too_few_sentences", c4["sentences"] < 5),
    ])


def fineweb_quality(text: str) -> str | None:
    ln, w = line_stats(text), word_stats(text, ())
    return first([
        ("empty", ln["lines"] == 0),
        ("too_few_punctuated_lines", ratio(ln["terminal_lines"], ln["lines"]) < 0.12),
        ("too_many_short_lines", ratio(ln["short_lines"], ln["lines"]) > 0.67),
        ("too_many_duplicate_line_chars", ratio(ln["dup_line_chars"], ln["chars"] - ln["newlines"]) > 0.01),
        ("too_many_newlines", ratio(ln["newlines"], w["tokens"]) > 0.3),
    ])


FILTERS: dict[str, Callable[[str], str | None]] = {
    "gopher_quality": gopher_quality,
    "gopher_repetition": gopher_repetition,
    "c4_quality": c4_quality,
    "fineweb_quality": fineweb_quality,
}
