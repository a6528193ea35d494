"""Word segmentation inside the kernels: jieba's own words, the character fallback, punctuation,
other scripts, and English left exactly as it was."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from llmray.kernels.text import chunk_counts, cut, line_stats, ngram_stats, split_tokens, word_stats
from tests.helpers import ENGLISH

jieba = pytest.importorskip("jieba")
jieba.setLogLevel(60)

ROOT = Path(__file__).resolve().parents[2]
HAN_RUN = re.compile(r"[\u4e00-\u9fd5]+")


def shipped(name: str) -> list[str]:
    with gzip.open(ROOT / "data" / "zh" / name, "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def words(text: str, mode: str = "jieba") -> list[str]:
    return [t for t, _ in split_tokens(text, mode)]


@pytest.mark.parametrize("text", [
    "我来到北京清华大学", "他来到了网易杭研大厦", "小明硕士毕业于中国科学院计算所后在日本京都大学深造",
    "永和服装饰品有限公司", "结过婚的和尚未结过婚的",
    "工信处女干事每月经过下属科室都要亲口交代二十四口交换机等技术性器件的安装工作",
])
def test_known_sentences_are_cut_as_jieba_cuts_them(text):
    assert cut(text) == jieba.lcut(text)


def test_every_han_run_of_the_shipped_corpora_is_cut_as_jieba_cuts_it():
    """Dictionary route and HMM for unknown words, Simplified (KiCad) and Traditional (古文觀止)."""
    runs = sorted({run for name in ("kicad-zh.jsonl.gz", "guwenguanzhi.jsonl.gz") for text in shipped(name)
                   for run in HAN_RUN.findall(text)})
    assert len(runs) > 5000
    column = pa.array(runs)
    ours = word_stats(column, segmentation="jieba")["words"]
    theirs = np.array([len(jieba.lcut(run)) for run in runs])
    assert (ours == theirs).all()
    assert all(cut(run) == jieba.lcut(run) for run in runs[::25])


def test_punctuation_and_other_scripts_inside_chinese():
    assert split_tokens("我来到北京，使用Python3编程……真的吗？「好」", "jieba") == [
        ("我", True), ("来到", True), ("北京", True), ("，", False), ("使用", True), ("Python3", True),
        ("编程", True), ("…", False), ("…", False), ("真的", True), ("吗", True), ("？", False), ("「", False),
        ("好", True), ("」", False)]
    assert words("中文,English和“引号”卡尔·马克思") == ["中文", ",", "English", "和", "“", "引号", "”", "卡尔", "·",
                                                  "马克思"]
    assert words("3.5版本的e.g.用法") == ["3.5", "版本", "的", "e.g", ".", "用法"]  # "." touches a Han character
    assert words("全角\u3000空格\u200b零宽\ufeff字符") == ["全角", "空格", "零宽", "字符"]  # invisible: boundaries


def test_character_fallback_for_japanese_and_thai():
    expected = [*"こんにちは", "、", *"世界", "。", *"カタカナ"]
    assert words("こんにちは、世界。カタカナ", "characters") == expected
    # Thai vowel and tone marks stay with the consonant before them.
    assert words("ง่ายนิดเดียว", "characters") == ["ง่", "า", "ย", "นิ", "ด", "เ", "ดี", "ย", "ว"]
    # In jieba mode kana and Thai are the character fallback; Han is cut by the dictionary.
    assert words("日本語のテキスト世界", "jieba")[-1] == "世界"
    assert words("한국어 텍스트", "jieba") == ["한국어", "텍스트"]  # Hangul: words between spaces


def test_english_is_untouched():
    text = ENGLISH + " It's well-known—don’t “quote” me… 5€."
    spaces = split_tokens(text)
    assert split_tokens(text, "spaces") == spaces
    column = pa.array([ENGLISH, "The cat sat on the mat.", ""])
    for mode in ("jieba", "characters"):
        assert (word_stats(column, ["the"], mode)["words"] == word_stats(column, ["the"])["words"]).all()
        top, dup = ngram_stats(column, segmentation=mode)
        top0, dup0 = ngram_stats(column)
        assert all((top[n] == top0[n]).all() for n in top) and all((dup[n] == dup0[n]).all() for n in dup)


def test_batches_chunks_and_large_strings_give_the_per_document_figures():
    docs = shipped("kicad-zh.jsonl.gz")[:60]
    one = np.array([word_stats(pa.array([d]), ["的"], "jieba")["words"][0] for d in docs])
    assert (word_stats(pa.array(docs), ["的"], "jieba")["words"] == one).all()
    chunked = pa.chunked_array([pa.array(docs[:25], pa.large_string()),
                                pa.array(["x", *docs[25:]], pa.large_string()).slice(1)])  # offsets into a buffer
    assert (word_stats(chunked, ["的"], "jieba")["words"] == one).all()


def test_stop_words_and_cjk_ellipses():
    stats = word_stats(pa.array(["我的书在桌子上……", "我的书在桌子上..."]), ["的", "在"], "jieba")
    assert stats["stop_words"].tolist() == [2, 2]
    assert stats["ellipses"].tolist() == [1, 1]  # "……" is one ellipsis in CJK text
    assert word_stats(pa.array(["好……"]))["ellipses"].tolist() == [2]  # unchanged without segmentation


def test_cjk_line_shapes():
    text = pa.array(["・第一项\n★第二项\n他说…\n「好」\n没有标点"])
    cjk, plain = line_stats(text, cjk=True), line_stats(text)
    assert (cjk["bullet_lines"][0], cjk["terminal_lines"][0]) == (2, 2)
    assert (plain["bullet_lines"][0], plain["terminal_lines"][0]) == (0, 0)


def test_chunk_counts_stay_a_lower_bound_of_the_tokens():
    docs = shipped("kicad-zh.jsonl.gz") + shipped("guwenguanzhi.jsonl.gz")[:50] + ["……——「」", "a b c", ""]
    column = pa.array(docs)
    bound = chunk_counts(column, segmentation="jieba")
    assert (bound <= word_stats(column, segmentation="jieba")["tokens"]).all()
    assert (bound >= chunk_counts(column)).all() and bound.sum() > chunk_counts(column).sum()


def test_long_runs_and_odd_input_do_not_crash():
    long_run = "中华人民共和国" * 5000 + "萌萌哒" * 3000  # one token of 50,000 characters
    assert "".join(words(long_run)) == long_run
    odd = ["\ud7ff", "\U00020000\U0002a6d6𠀀", "🙂中文🙂", "\x00中\x00", "\u0301\u0e48中"]
    for text in odd:
        assert isinstance(split_tokens(text, "jieba"), list)
    bad = pa.array([b"\xe4\xb8", b"\xff\xfe\xe4\xb8\xad\xe6"], pa.binary()).cast(pa.string(), safe=False)
    word_stats(bad, segmentation="jieba")  # malformed UTF-8 reads as U+FFFD, never out of bounds


def test_segmented_statistics_of_long_documents_do_not_depend_on_the_limits():
    """Word and n-gram statistics stream the tokens a batch at a time and keep compact n-gram arrays;
    the smallest limits (a token table that grows only to fit a chunk, a 16-gram table, the counting
    pass for every document) give the figures of the defaults, segmented or not."""
    guwen, kicad = shipped("guwenguanzhi.jsonl.gz"), shipped("kicad-zh.jsonl.gz")
    docs = ["\n".join(guwen[i:i + 20]) for i in range(0, 100, 20)] + ["\n".join(kicad[:60]), "中文" * 30000,
                                                                      "我的书在桌子上。" * 3000]
    column = pa.array(docs)
    for mode in ("jieba", "characters", "spaces"):
        stats = word_stats(column, ["的", "在"], mode)
        small = word_stats(column, ["的", "在"], mode, _batch=1)
        assert all((stats[k] == small[k]).all() for k in stats), mode
        top, dup = ngram_stats(column, segmentation=mode)
        top1, dup1 = ngram_stats(column, segmentation=mode, _limits=(1, 16, 64))
        assert all((top[n] == top1[n]).all() for n in top) and all((dup[n] == dup1[n]).all() for n in dup), mode
        assert stats["tokens"].max() > 10_000
