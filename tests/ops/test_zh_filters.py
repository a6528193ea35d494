"""Per-language settings and the Chinese profiles: each zh threshold just inside and just outside,
rows of several languages in one batch, the shipped Chinese corpora, and the job file's mistakes.

Hand-written documents use two-character words that jieba keeps whole, separated by spaces, so the
word counts are known exactly; ``的`` and ``在`` are the stop words.
"""

from __future__ import annotations

import functools
import gzip
import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from llmray.config import parse_steps
from llmray.errors import JobError, UserError
from llmray.ops.base import KEEP
from llmray.ops.clean.c4_lines import C4Lines
from llmray.ops.filters.c4_quality import C4Quality
from llmray.ops.filters.fineweb_quality import FineWebQuality
from llmray.ops.filters.gopher_quality import GopherQuality
from llmray.ops.filters.gopher_repetition import GopherRepetition
from llmray.ops.filters.length import Length
from tests.helpers import ENGLISH

pytest.importorskip("jieba")
ROOT = Path(__file__).resolve().parents[2]
STOPS = ["的", "在"]


@functools.cache
def zh_words() -> list[str]:
    """Two-character dictionary words that jieba keeps whole, in a fixed random order."""
    from llmray.kernels.segment import _dictionary_bytes
    from llmray.kernels.text import cut

    lines = _dictionary_bytes().decode().splitlines()
    candidates = [w for w, f, *_ in (line.split(" ") for line in lines)
                  if len(w) == 2 and all("\u4e00" <= c <= "\u9fd5" for c in w) and int(f) > 200]
    random.Random(0).shuffle(candidates)
    return [w for w in candidates[:6000] if cut(w) == [w]][:4000]


def words(n: int, start: int = 0) -> list[str]:
    return zh_words()[start:start + n]


def prose(n: int) -> str:
    """``n`` words: the two stop words and distinct two-character words."""
    return " ".join(STOPS + words(n - 2))


def zh_table(texts: list[str], languages: list[str] | None = None) -> pa.Table:
    languages = languages or ["zh"] * len(texts)
    return pa.table({"id": [f"d{i}" for i in range(len(texts))], "text": texts, "language": languages})


def reasons(op, texts, languages=None):
    codes = op.codes(zh_table(texts, languages))
    return [None if c == KEEP else op.reasons[c] for c in codes]


def shipped(name: str) -> list[str]:
    with gzip.open(ROOT / "data" / "zh" / name, "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


# --- the design ---------------------------------------------------------------------------------


def test_job_file_forms():
    plain, listed, mapped, skipped = parse_steps([
        "gopher_quality", {"gopher_quality": {"languages": ["zh"]}},
        {"gopher_quality": {"min_words": 80, "languages": {
            "zh": {"min_words": 40}, "yue": {"profile": "zh"}, "ko": "default",
            "ja": {"word_segmentation": "characters"}}}},
        {"c4_quality": {"languages": {"zh": None, "th": "skip"}}}])
    assert plain.languages is None and not plain._by_language
    zh = listed._by_language["zh"]
    assert (zh.word_segmentation, zh.max_mean_word_length, zh.min_alpha_word_fraction) == ("jieba", 5.0, 0.6)
    assert zh.stop_words[:3] == ["的", "年", "在"] and zh.languages is None
    assert mapped._by_language["zh"].min_words == 40 and mapped._by_language["zh"].word_segmentation == "jieba"
    yue = mapped._by_language["yue"]  # the zh profile leaves min_words alone: the step's own 80
    assert yue.min_words == 80 and yue.word_segmentation == "jieba"
    assert mapped._by_language["ko"].min_words == 80 and mapped._by_language["ko"].word_segmentation == "spaces"
    assert mapped._by_language["ja"].word_segmentation == "characters" and mapped._by_language["ja"].min_words == 80
    assert skipped._by_language == {"zh": None, "th": None}


@pytest.mark.parametrize(("languages", "message"), [
    ({"zh": {"min_wrds": 3}},
     r"steps\[0\].gopher_quality.languages.zh.min_wrds: unknown key \(did you mean 'min_words'"),
    ({"zh": {"min_words": "many"}}, r"languages.zh.min_words: expected an integer or null"),
    ({"zh": "chinese"}, r"languages.zh.profile: unknown profile"),
    ({"zh": {"word_segmentation": "icu"}}, r"languages.zh.word_segmentation: expected one of"),
    ({"zh": {"languages": ["en"]}}, r"languages.zh.languages: not a per-language setting"),
    (3, r"languages: expected"),
])
def test_job_file_mistakes_name_their_place(languages, message):
    with pytest.raises(JobError, match=message):
        parse_steps([{"gopher_quality": {"languages": languages}}])


def test_a_skipping_profile_refuses_settings():
    with pytest.raises(JobError, match="zh profile of this step skips these rows"):
        parse_steps([{"c4_quality": {"languages": {"zh": {"min_sentences": 2}}}}])
    assert parse_steps([{"c4_quality": {"languages": {"zh": {"profile": "default", "min_sentences": 2}}}}])


def test_languages_need_the_language_column():
    table = pa.table({"id": ["a"], "text": [prose(60)]})
    with pytest.raises(UserError, match="run the `language` step before this one"):
        GopherQuality(languages=["zh"]).codes(table)
    assert GopherQuality().codes(table).tolist() == [GopherQuality().reasons.index("mean_word_too_short")]


def test_each_row_is_judged_with_the_settings_of_its_language():
    english = [ENGLISH * 3, "Too short.", ENGLISH + "\n" + ENGLISH]
    chinese = [prose(60), prose(30), " ".join(STOPS + words(58, 100))]
    texts = [english[0], chinese[0], english[1], chinese[1], english[2], chinese[2], chinese[0]]
    langs = ["en", "zh", "en", "zh", None, "zh", "ja"]
    for cls in (GopherQuality, GopherRepetition, FineWebQuality, C4Quality, Length):
        mixed = reasons(cls(languages=["zh"]), texts, langs)
        plain = reasons(cls(), texts, langs)
        en_rows = [0, 2, 4, 6]  # English, null and unlisted languages: the step's own settings
        assert [mixed[i] for i in en_rows] == [plain[i] for i in en_rows], cls.name
    assert reasons(GopherQuality(languages=["zh"]), texts, langs) == [
        None, None, "too_few_words", "too_few_words", None, None, "mean_word_too_short"]


def test_annotate_and_split_work_per_language():
    op = GopherQuality(languages=["zh"], annotate=True)
    out = op.transform(zh_table([prose(60), prose(20), ENGLISH], ["zh", "zh", "en"]))
    assert out.column("reason").to_pylist() == [None, "gopher_quality.too_few_words", "gopher_quality.too_few_words"]


# --- gopher_quality, zh profile --------------------------------------------------------------------


def test_zh_word_count():
    op = GopherQuality(languages=["zh"])
    assert reasons(op, [prose(49), prose(50)]) == ["too_few_words", None]
    assert reasons(GopherQuality(), [prose(50).replace(" ", "")]) == ["too_few_words"]  # one "word" without it


def test_zh_mean_word_length_is_at_most_five():
    op = GopherQuality(languages={"zh": {"min_stop_words": None}})
    rng = random.Random(1)
    latin = lambda n: "".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(n))  # noqa: E731
    exactly_5 = " ".join(STOPS + [latin(5) for _ in range(46)] + [latin(9), latin(9)])  # 250 chars / 50 words
    assert reasons(op, [exactly_5, exactly_5 + "x"]) == [None, "mean_word_too_long"]


def test_zh_alpha_fraction():
    op = GopherQuality(languages=["zh"])
    body = " ".join(STOPS + words(58))  # 60 words
    assert reasons(op, [body + " ，" * 40, body + " ，" * 41]) == [None, "too_few_alpha_words"]  # 60/100, 60/101
    assert reasons(op, [body + " 2024" * 40]) == [None]  # digits are words without a letter: 60/100
    assert reasons(op, [body + " 2024" * 41]) == ["too_few_alpha_words"]


def test_zh_stop_words():
    op = GopherQuality(languages=["zh"])
    body = words(60)
    assert reasons(op, [" ".join(["的", *body]), " ".join(["的", "的", *body]), " ".join(["的", "在", *body]),
                        " ".join(["於", "為", *body]), "的在" + " ".join(body)]) == [
        "too_few_stop_words", "too_few_stop_words", None, None, None]  # Traditional forms; no spaces needed


def test_zh_ellipses_count_once_per_run():
    op = GopherQuality(languages=["zh"])
    body = " ".join(STOPS + words(54))  # 56 words
    seven, eight = "……" * 7 + body, "…… " * 8 + body  # 7 in 14 + 56 tokens (0.1) / 8 in 16 + 56 (0.11)
    assert reasons(op, [seven, eight]) == [None, "too_many_ellipses"]
    assert reasons(GopherQuality(languages={"zh": {"word_segmentation": "spaces"}}), [seven]) == ["too_many_ellipses"]


def test_zh_full_width_bullets():
    op = GopherQuality(languages=["zh"])
    lines = [" ".join(words(5, 5 * i)) for i in range(20)]
    make = lambda k: "的 在\n" + "\n".join(("・" if i < k else "") + line for i, line in enumerate(lines[:19]))  # noqa: E731
    assert reasons(op, [make(18), "★" + make(18)]) == [None, "too_many_bullet_lines"]  # 18/20, 19/20


# --- gopher_repetition, zh profile -----------------------------------------------------------------

ISOLATE = {"max_duplicate_paragraph_fraction": None, "max_duplicate_paragraph_char_fraction": None,
           "max_duplicate_line_fraction": None, "max_duplicate_line_char_fraction": None,
           "max_top_ngram_char_fraction": {}, "max_duplicate_ngram_char_fraction": {}}


def only_zh(cls, **keep):
    """The zh profile with every rule of ``ISOLATE`` off except those in ``keep`` (profile values)."""
    profile = cls.PROFILES["zh"]
    overrides = {k: v for k, v in ISOLATE.items() if k not in keep}
    overrides.update({k: profile[k] if v is None else v for k, v in keep.items()})
    return cls(languages={"zh": overrides})


def padded(core: str, total: int) -> str:
    """``core`` then distinct words and a last Latin word, ``total`` characters in all."""
    filler = iter(words(3000, 1000))
    text = core
    while len(text) + 3 + 2 <= total:
        text += " " + next(filler)
    return text + " " + "q" * (total - len(text) - 1) if total - len(text) >= 2 else text + " " * (total - len(text))


def test_zh_duplicate_line_fraction():
    op = only_zh(GopherRepetition, max_duplicate_line_fraction=None)
    unique = [" ".join(words(2, 2 * i)) for i in range(713)]
    inside = "\n".join(unique + [unique[0]] * 287)  # 287 of 1000 lines repeat an earlier one
    outside = "\n".join(unique[:712] + [unique[0]] * 288)
    assert reasons(op, [inside, outside]) == [None, "too_many_duplicate_lines"]


def test_zh_top_2gram():
    op = only_zh(GopherRepetition, max_top_ngram_char_fraction={2: 0.256})
    core = " ".join(["北京 上海"] * 10)  # the 2-gram 北京 上海: 10 x 4 characters
    # 40 / 156.25: a document of 157 characters is within 25.6%, one of 156 is over.
    assert reasons(op, [padded(core, 157), padded(core, 156)]) == [None, "top_2gram_too_frequent"]


def test_zh_duplicate_5grams():
    op = only_zh(GopherRepetition, max_duplicate_ngram_char_fraction={5: 0.198})
    gram = " ".join(words(5, 3000))
    core = gram + " " + gram  # the second copy: 10 characters of words in a repeated 5-gram
    assert reasons(op, [padded(core, 51), padded(core, 50)]) == [None, "too_many_duplicate_5grams"]  # 10/51, 10/50


def test_english_thresholds_would_drop_what_the_zh_profile_keeps():
    core = " ".join(["北京 上海"] * 10)
    text = padded(core, 180)  # 40 / 180 = 22%: over Gopher's 20%, within FineWeb-2's Mandarin 25.6%
    assert reasons(only_zh(GopherRepetition, max_top_ngram_char_fraction={2: 0.256}), [text]) == [None]
    assert reasons(only_zh(GopherRepetition, max_top_ngram_char_fraction={2: 0.2}), [text]) == [
        "top_2gram_too_frequent"]


# --- fineweb_quality, zh profile -------------------------------------------------------------------


def fw_zh(**keep):
    off = {"min_punctuated_line_fraction": None, "max_short_line_fraction": None,
           "max_duplicate_line_char_fraction": None, "max_newlines_per_word": None}
    profile = FineWebQuality.PROFILES["zh"]
    off.update({k: profile[k] for k in keep})
    return FineWebQuality(languages={"zh": off})


def test_zh_punctuated_lines():
    op = fw_zh(min_punctuated_line_fraction=True)
    lines = [" ".join(words(3, 3 * i)) for i in range(1000)]
    ends = ["。", "！", "？", "…", "」"]
    make = lambda k: "\n".join(line + (ends[i % 5] if i < k else "") for i, line in enumerate(lines))  # noqa: E731
    assert reasons(op, [make(106), make(105)]) == [None, "too_few_punctuated_lines"]  # 10.6% of 1000 lines


def test_zh_newlines_per_token():
    op = fw_zh(max_newlines_per_word=True)
    pool = iter(words(1000, 2000))
    rows = [" ".join(next(pool) for _ in range(5)) for _ in range(179)]  # 179 lines, 895 words
    extra = [next(pool) for _ in range(105)]
    inside = "\n".join(rows) + " " + " ".join(extra)  # 178 newlines / 1000 tokens
    outside = "\n".join(rows) + " " + " ".join(extra[:-1])  # 178 / 999
    assert reasons(op, [inside, outside]) == [None, "too_many_newlines"]


def test_zh_duplicate_line_chars_and_no_short_line_rule():
    op = fw_zh(max_duplicate_line_char_fraction=True)
    line = "".join(words(5))  # 10 characters
    body = "\n".join(" ".join(words(3, 3 * i)) for i in range(100, 130))  # 30 lines of 8 characters
    # One repeated 10-character line: 10 of 10 + 10 + 240 = 260 characters (3.8%) is within 10%.
    assert reasons(op, ["\n".join([line, line, body])]) == [None]
    many = "\n".join([line] * 5 + [body])  # 40 of 290 (13.8%)
    assert reasons(op, [many]) == ["too_many_duplicate_line_chars"]
    short = "\n".join(words(200))  # only short lines: FineWeb-2 has no short-line rule
    assert reasons(FineWebQuality(languages=["zh"]), [short + "。"]) != ["too_many_short_lines"]


# --- C4 steps and length ------------------------------------------------------------------------------


def test_c4_steps_skip_chinese_rows():
    zh = "\n".join(f"{''.join(words(4, 4 * i))}。" for i in range(10))  # no spaces: one C4 "word" a line
    table = zh_table([zh, "Menu\nHome\n" + ENGLISH], ["zh", "en"])
    out = C4Lines(languages=["zh"]).map(table)
    assert out.column("text").to_pylist() == [zh, ENGLISH] and out.column("id").to_pylist() == ["d0", "d1"]
    assert C4Lines().map(table).column("text").to_pylist()[0] == ""  # C4's rules empty a Chinese page
    assert reasons(C4Quality(languages=["zh"]), [zh], ["zh"]) == [None]
    assert reasons(C4Quality(), [zh], ["zh"]) == ["too_few_sentences"]


def test_length_counts_jieba_words():
    op = Length(min_words=10, languages=["zh"])
    assert reasons(op, ["".join(words(9)), "".join(words(10))]) == ["too_few_words", None]


# --- real text --------------------------------------------------------------------------------------


def test_shipped_chinese_prose_passes_the_zh_profiles_and_fails_the_english_rules():
    kicad = [t for t in shipped("kicad-zh.jsonl.gz") if sum("\u4e00" <= c <= "\u9fff" for c in t) > 0.3 * len(t)]
    guwen = shipped("guwenguanzhi.jsonl.gz")
    for docs in (guwen, [t for t in kicad if len(t) > 300]):
        table = zh_table(docs)
        zh = [GopherRepetition(languages=["zh"]), GopherQuality(languages=["zh"]), FineWebQuality(languages=["zh"])]
        kept = np.ones(len(docs), bool)
        for op in zh:
            kept &= op.codes(table) == KEEP
        assert kept.mean() >= 0.9, kept.mean()
        assert (GopherQuality().codes(table) != KEEP).mean() >= 0.9  # the issue: English rules drop it
