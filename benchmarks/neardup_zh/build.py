#!/usr/bin/env python3
"""Build a Chinese near-duplicate evaluation set from real Chinese technical prose.

    python -m benchmarks.neardup_zh.build [--out /tmp/llmray-neardup-zh] [--seed 2024]
                                          [--handbook /usr/share/doc/debian-handbook/html]
                                          [--reference DEB] [--near-share 0.35] [--exact-share 0.05]

Only the builder is in the project, never the data: the sources are GPL-2+ / CC-BY-SA-3.0 (fine to
measure with, not to ship), so the set is built locally, by default under /tmp. Same sources and
seed give byte-identical files. Writes ``corpus.jsonl.gz`` ({"id", "text"}), ``truth.jsonl.gz``
({"id", "cluster", "kind", "src", "jaccard_to_src"}, the format of ``truth_20k.jsonl.gz``, scored by
``eval_dedup.py`` and ``llmray.bench.accuracy``) and ``build_stats.json``.

Sources (Debian packages, fetched with the ordinary client):

* ``debian-handbook`` 11.20220922 (``apt-get install debian-handbook``): the zh-CN and zh-TW HTML
  under ``/usr/share/doc/debian-handbook/html/``. GPL-2+ or CC-BY-SA-3.0 (Hertzog, Mas, Freexian
  and the translators). Much of both translations is still English: only blocks that are Chinese
  are used (below).
* ``debian-reference-zh-cn`` 2.100 (``apt-get download debian-reference-zh-cn``; optional, with
  ``--reference``): the Debian Reference in Simplified Chinese. GPL-2+ (Osamu Aoki and the
  translators). Its zh-TW package is a script conversion of the zh-CN text and is not used.

Pipeline

1. Each HTML page -> text blocks (paragraphs, headings, list items, table cells; navigation and
   scripts removed; the stdlib parser of ``benchmarks.neardup2.sources``). A block is kept when at
   least 30% of its word characters are CJK (Chinese prose with its commands, paths and names left
   in Latin script); a block of 20+ normalized characters that occurred before is dropped. Blocks
   over 1,500 characters are cut after a sentence end (。！？).
2. Base documents: consecutive blocks of one page (joined by newlines) up to a length drawn from a
   mixture (short / medium / long, in characters), pages dealt out without replacement.
3. Base filter: a base document whose reference Jaccard (below) with an earlier kept one is 0.4 or
   more is dropped, so the only duplicates are the ones made in step 4.
4. Near duplicates of earlier documents (a base document, a popular one, or a near duplicate: chains),
   each with one or more of: character edits at 1-4% of the CJK characters (substitution by a
   character drawn from the corpus' own frequencies, deletion, insertion, swap of neighbours); a
   dropped or a swapped paragraph; boilerplate (Chinese site furniture: sources, copyright lines,
   "share to", next/previous page...) appended or put in front; cosmetic changes (full-width Latin
   letters and digits, ideographic spaces, half-width punctuation, spaces between CJK and Latin
   added or removed). A near duplicate is kept when its reference Jaccard to its source is 0.5 or
   more (else it is made again with the edit rates halved, up to 4 times). Exact copies. Shuffle;
   ids are positions.

Reference Jaccard (``jaccard_to_src``): exact Jaccard of token 5-grams, where a token is a CJK
character or a run of other word characters of the NFKC, lower-cased text. It is independent of
llmray's shingles; it only sorts near duplicates by how far they moved.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import hashlib
import json
import math
import re
import subprocess
import tarfile
import tempfile
import time
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks.neardup2.build import LSH, hash_set, jaccard
from benchmarks.neardup2.sources import _HandbookParser

HANDBOOK = Path("/usr/share/doc/debian-handbook/html")
DEFAULT_OUT = Path("/tmp/llmray-neardup-zh")
CJK_CLASS = "\u2e80-\u312f\u3190-\u9fff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003ffff"
CJK = re.compile(f"(?=\\w)[{CJK_CLASS}]")  # CJK word characters (not the CJK punctuation in the ranges)
TOKEN = re.compile(f"(?=\\w)[{CJK_CLASS}]|[^\\W{CJK_CLASS}]+")
WORD_CHAR = re.compile(r"\w")
SENTENCE_END = re.compile(r"(?<=[。！？])")
MIN_CJK_SHARE = 0.3
MIN_CHARS = 60
J_MIN = 0.5
BASE_J_MAX = 0.4


# ----------------------------------------------------------------------------- reference shingles

def tokens(text: str) -> list[str]:
    return TOKEN.findall(unicodedata.normalize("NFKC", text).lower())


def shingles(text: str, n: int = 5) -> set[str]:
    toks = tokens(text)
    if len(toks) < n:
        return {" ".join(toks)} if toks else set()
    return {" ".join(toks[i:i + n]) for i in range(len(toks) - n + 1)}


# ----------------------------------------------------------------------------- sources

def page_blocks(html: str) -> list[str]:
    parser = _HandbookParser()
    parser.feed(html)
    parser.flush()
    out = []
    for block in parser.parts:
        block = block.strip()
        if len(block) > 1500:
            out.extend(_split_sentences(block, 1500))
        elif block:
            out.append(block)
    return out


def _split_sentences(block: str, limit: int) -> list[str]:
    out, cur = [], ""
    for piece in SENTENCE_END.split(block):
        if cur and len(cur) + len(piece) > limit:
            out.append(cur)
            cur = piece
        else:
            cur += piece
    return out + ([cur] if cur else [])


def is_chinese(block: str) -> bool:
    letters = len(WORD_CHAR.findall(block))
    cjk = len(CJK.findall(block))
    return cjk >= 2 and cjk >= MIN_CJK_SHARE * letters


def handbook_pages(root: Path, lang: str) -> list[tuple[str, str]]:
    pages = []
    for path in sorted(glob.glob(str(root / lang / "*.html"))):
        if path.endswith("/index.html"):
            continue
        pages.append((f"handbook-{lang}/{Path(path).stem}", Path(path).read_text(encoding="utf-8")))
    return pages


def reference_pages(deb: Path) -> list[tuple[str, str]]:
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True, capture_output=True).stdout
    pages = []
    with tempfile.TemporaryFile() as f:
        f.write(tar)
        f.seek(0)
        with tarfile.open(fileobj=f) as tf:
            names = sorted(m.name for m in tf.getmembers() if m.isfile() and m.name.endswith(".zh-cn.html")
                           and not m.name.endswith("/index.zh-cn.html"))
            for name in names:
                pages.append((f"reference-zh-cn/{Path(name).name[:-11]}", tf.extractfile(name).read().decode()))
    return pages


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_works(handbook: Path, reference: Path | None) -> tuple[list[tuple[str, list[str]]], dict]:
    """(page name, Chinese blocks) of every page; and what was read."""
    pages = handbook_pages(handbook, "zh-CN") + handbook_pages(handbook, "zh-TW")
    info: dict = {"handbook": str(handbook), "handbook_pages": len(pages)}
    if reference is not None:
        ref = reference_pages(reference)
        pages += ref
        info.update(reference=reference.name, reference_sha256=sha256(reference), reference_pages=len(ref))
    seen: set[str] = set()
    works, repeats, english = [], 0, 0
    for name, html in pages:
        blocks = []
        for block in page_blocks(html):
            if not is_chinese(block):
                english += 1
                continue
            key = "".join(tokens(block))
            if len(key) >= 20:
                if key in seen:
                    repeats += 1
                    continue
                seen.add(key)
            blocks.append(block)
        if blocks:
            works.append((name, blocks))
    info.update(blocks_not_chinese=english, blocks_repeated=repeats,
                pool_chars=sum(len(b) for _, bl in works for b in bl))
    return works, info


# ----------------------------------------------------------------------------- base documents

LEN_MIX = [  # (share, median chars, sigma, lo, hi)
    (0.45, 220, 0.5, MIN_CHARS, 700),
    (0.45, 800, 0.6, 250, 3000),
    (0.10, 2600, 0.7, 1200, 12000),
]


def draw_length(rng: np.random.Generator) -> int:
    u, acc = rng.random(), 0.0
    for share, med, sigma, lo, hi in LEN_MIX:
        acc += share
        if u < acc or share == LEN_MIX[-1][0]:
            return int(min(max(med * math.exp(sigma * rng.standard_normal()), lo), hi))
    raise AssertionError


def base_documents(works: list[tuple[str, list[str]]], rng: np.random.Generator) -> list[tuple[str, str]]:
    """(text, page) of consecutive blocks of one page, each page cut into documents of drawn lengths."""
    docs = []
    for i in rng.permutation(len(works)):
        name, blocks = works[i]
        cur: list[str] = []
        size, target = 0, draw_length(rng)
        for block in blocks:
            cur.append(block)
            size += len(block) + 1
            if size >= target:
                docs.append(("\n".join(cur), name))
                cur, size, target = [], 0, draw_length(rng)
        if cur and size >= MIN_CHARS:
            docs.append(("\n".join(cur), name))
    rng.shuffle(docs)
    return [d for d in docs if len(d[0]) >= MIN_CHARS]


# ----------------------------------------------------------------------------- edits

BOILERPLATE = [
    "本文来源：{site}　转载请注明出处",
    "版权所有 © {y} {site} 保留所有权利",
    "分享到：微博 | 微信 | QQ空间 | 豆瓣",
    "上一页 | 下一页 | 返回目录",
    "更多精彩内容，请关注微信公众号“{w}{w}”",
    "责任编辑：{name}",
    "（完）",
    "点击这里订阅我们的新闻通讯，第一时间获取最新动态！",
    "本站部分内容来自网络，如有侵权请联系删除。",
    "阅读 {n}　评论 {m}　收藏 {k}",
    "发布时间：{y}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}",
    "相关阅读：{w}{w}的{w}{w}（{y}）",
    "广告",
    "扫描二维码，下载客户端",
    "标签：{w}，{w}，{w}",
    "第 {n} 页 / 共 {m} 页",
    "返回顶部 ↑",
    "免责声明：本文仅代表作者个人观点，与本站无关。",
    "原文链接：https://{host}/{n}.html",
    "热门推荐：1. {w}{w} 2. {w}{w}{w} 3. {w}{w}",
]
FILL_WORDS = "系统 软件 网络 安全 配置 管理 服务 用户 文件 数据 技术 社区 开源 发行 版本 内核 桌面 命令".split()
NAMES = "张伟 王芳 李娜 刘洋 陈静 杨帆 赵磊 黄敏".split()
SITES = "技术文库 开源之家 运维笔记 知识频道 学习园地".split()
HOSTS = ["www.example.cn", "blog.example.com.cn", "docs.example.org"]


def make_boilerplate(rng: np.random.Generator) -> str:
    template = BOILERPLATE[int(rng.integers(len(BOILERPLATE)))]

    def pick(items):
        return items[int(rng.integers(len(items)))]

    def value(field: str) -> object:
        return {"w": lambda: pick(FILL_WORDS), "name": lambda: pick(NAMES), "site": lambda: pick(SITES),
                "host": lambda: pick(HOSTS), "y": lambda: int(rng.integers(2005, 2025)),
                "mo": lambda: int(rng.integers(1, 13)), "d": lambda: int(rng.integers(1, 29)),
                "h": lambda: int(rng.integers(0, 24)), "mi": lambda: int(rng.integers(0, 60))
                }.get(field, lambda: int(rng.integers(1, 5000)))()

    return re.sub(r"\{(\w+)(?::([^}]*))?\}", lambda m: format(value(m.group(1)), m.group(2) or ""), template)


def char_edits(text: str, rate: float, rng: np.random.Generator, alphabet: np.ndarray,
               weights: np.ndarray) -> tuple[str, int]:
    """Edits at ``rate`` of the CJK characters: substitution (50%), deletion (20%), insertion (15%),
    swap with the next character (15%)."""
    chars = list(text)
    out: list[str] = []
    edits = 0
    i = 0
    draws = rng.random(len(chars))
    while i < len(chars):
        ch = chars[i]
        if not CJK.match(ch) or draws[i] >= rate:
            out.append(ch)
            i += 1
            continue
        edits += 1
        op = rng.random()
        if op < 0.5:
            out.append(str(alphabet[rng.choice(len(alphabet), p=weights)]))
        elif op < 0.7:
            pass
        elif op < 0.85:
            out += [ch, str(alphabet[rng.choice(len(alphabet), p=weights)])]
        elif i + 1 < len(chars):
            out += [chars[i + 1], ch]
            i += 1
        else:
            out.append(ch)
        i += 1
    return "".join(out), edits


_HALF = {"，": ", ", "。": ". ", "：": ": ", "；": "; ", "（": " (", "）": ") ", "！": "! ", "？": "? "}


def cosmetic(text: str, rng: np.random.Generator) -> tuple[str, str]:
    """A change the normalized view ignores: full-width Latin, ideographic spaces, half-width
    punctuation, or spaces between CJK and Latin characters."""
    mode = rng.random()
    if mode < 0.3:
        return re.sub(r"[A-Za-z0-9]", lambda m: chr(ord(m.group(0)) + 0xFEE0), text), "fullwidth"
    if mode < 0.5:
        return text.replace(" ", "\u3000"), "ideographic_space"
    if mode < 0.75:
        return re.sub("|".join(map(re.escape, _HALF)), lambda m: _HALF[m.group(0)], text), "halfwidth_punct"
    if rng.random() < 0.5:
        return re.sub(f"(?<=[{CJK_CLASS}]) (?=[A-Za-z0-9])|(?<=[A-Za-z0-9]) (?=[{CJK_CLASS}])", "", text), "unspaced"
    return re.sub(f"(?<=[{CJK_CLASS}])(?=[A-Za-z0-9])|(?<=[A-Za-z0-9])(?=[{CJK_CLASS}])", " ", text), "spaced"


def make_near(text: str, rng: np.random.Generator, alphabet: np.ndarray, weights: np.ndarray,
              scale: float = 1.0) -> tuple[str, str]:
    """One near duplicate of ``text``; ``scale`` (<= 1) shrinks the edit rates on a retry."""
    ops = {"chars": rng.random() < 0.6, "paragraph": rng.random() < 0.35, "boilerplate": rng.random() < 0.35,
           "cosmetic": rng.random() < 0.25}
    if not (ops["chars"] or ops["paragraph"] or ops["boilerplate"]):
        ops[("chars", "paragraph", "boilerplate")[int(rng.integers(3))]] = True
    tags = []
    paragraphs = text.split("\n")
    if ops["paragraph"] and len(paragraphs) >= 3:
        k = int(rng.integers(len(paragraphs) - 1))
        if rng.random() < 0.5:
            del paragraphs[k + int(rng.integers(2))]
            tags.append("drop1")
        else:
            paragraphs[k], paragraphs[k + 1] = paragraphs[k + 1], paragraphs[k]
            tags.append("swap1")
    t = "\n".join(paragraphs)
    if ops["chars"] or not tags and not ops["boilerplate"]:
        rate = rng.uniform(0.01, 0.04) * scale
        t, n = char_edits(t, rate, rng, alphabet, weights)
        tags.append(f"chars{n / max(1, len(CJK.findall(text))):.3f}")
    if ops["boilerplate"]:
        k = 1 if scale < 1 else int(rng.integers(1, 3))
        lines = [make_boilerplate(rng) for _ in range(k)]
        t = "\n".join(lines + [t]) if rng.random() < 0.3 else "\n".join([t] + lines)
        tags.append(f"boilerplate{k}")
    if ops["cosmetic"]:
        t, how = cosmetic(t, rng)
        tags.append(f"cosmetic:{how}")
    return t, "near:" + "+".join(tags)


# ----------------------------------------------------------------------------- main

def build(out: Path, seed: int, handbook: Path, reference: Path | None, near_share: float,
          exact_share: float) -> dict:
    t0 = time.time()
    rng = np.random.default_rng(seed)
    works, info = load_works(handbook, reference)
    stats: dict = {"seed": seed, "sources": info}
    counts = Counter(ch for _, blocks in works for b in blocks for ch in CJK.findall(b))
    alphabet = np.array(sorted(counts))
    weights = np.array([counts[c] for c in alphabet], dtype=float)
    weights /= weights.sum()

    base = base_documents(works, rng)
    lsh = LSH(seed + 1)
    sh = [shingles(t) for t, _ in base]
    sigs = np.stack([lsh.signature(hash_set(s)) for s in sh])
    bad: set[int] = set()
    for i, j in sorted(lsh.pairs(sigs)):
        if i not in bad and j not in bad and jaccard(sh[i], sh[j]) >= BASE_J_MAX:
            bad.add(j)
    kept = [i for i in range(len(base)) if i not in bad]
    stats["base_filter"] = {"candidates": len(base), "dropped_similar": len(bad), "kept": len(kept)}
    docs = [{"text": base[i][0], "root": k, "kind": "orig", "src": -1, "j": 1.0, "page": base[i][1]}
            for k, i in enumerate(kept)]
    cache = {k: sh[i] for k, i in enumerate(kept)}
    n_base = len(docs)
    total = int(round(n_base / (1 - near_share - exact_share)))
    n_near, n_exact = int(round(total * near_share)), int(round(total * exact_share))
    popular = rng.choice(n_base, max(1, n_base // 100), replace=False).tolist()

    near_ids: list[int] = []
    attempts: Counter = Counter()
    rejected = 0
    while len(near_ids) < n_near:
        u = rng.random()
        s = (int(rng.integers(n_base)) if u < 0.62 or not near_ids else
             popular[int(rng.integers(len(popular)))] if u < 0.82 else near_ids[int(rng.integers(len(near_ids)))])
        source = docs[s]["text"]
        src_sh = cache.setdefault(s, shingles(source))
        scale, made = 1.0, None
        for attempt in range(4):
            t, kind = make_near(source, rng, alphabet, weights, scale)
            if t == source:
                continue
            j = jaccard(src_sh, shingles(t))
            if j >= J_MIN:
                made = (t, kind, j)
                attempts[attempt + 1] += 1
                break
            rejected += 1
            scale *= 0.5
        if made is None:
            continue
        near_ids.append(len(docs))
        docs.append({"text": made[0], "root": docs[s]["root"], "kind": made[1], "src": s, "j": round(made[2], 4),
                     "page": docs[s]["page"]})
    for _ in range(n_exact):
        s = popular[int(rng.integers(len(popular)))] if rng.random() < 0.25 else int(rng.integers(len(docs)))
        docs.append({**docs[s], "kind": "exact", "src": s, "j": 1.0})

    perm = rng.permutation(len(docs))
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

    lengths = np.array([len(d["text"]) for d in docs])
    js = np.array([d["j"] for d in docs if d["kind"].startswith("near")])
    clusters = Counter(d["root"] for d in docs)
    tags = Counter(re.match(r"[a-z_]+", tag).group(0) for d in docs if d["kind"].startswith("near")
                   for tag in d["kind"][5:].split("+"))
    all_sh = [cache.get(i) or shingles(d["text"]) for i, d in enumerate(docs)]
    cand = lsh.pairs(np.stack([lsh.signature(hash_set(s)) for s in all_sh]), max_bucket=2000)
    cross = np.array([jaccard(all_sh[i], all_sh[j]) for i, j in cand if docs[i]["root"] != docs[j]["root"]])
    stats.update({
        "docs": len(docs), "orig": n_base, "near": len(near_ids), "exact": n_exact,
        "text_mb": round(sum(len(d["text"].encode()) for d in docs) / 1e6, 2),
        "cjk_share_of_chars": round(sum(len(CJK.findall(d["text"])) for d in docs) / lengths.sum(), 3),
        "length_chars": {f"p{p}": int(np.percentile(lengths, p)) for p in (10, 50, 90, 99)},
        "near_generation": {"attempts_hist": dict(attempts), "rejected_below_j_min": rejected},
        "near_jaccard": {f"p{p}": round(float(np.percentile(js, p)), 3) for p in (10, 25, 50, 75, 90)},
        "near_edit_counts": dict(tags),
        "dup_clusters": sum(c > 1 for c in clusters.values()), "largest_cluster": max(clusters.values()),
        "should_remove": sum(c - 1 for c in clusters.values()),
        "noise_floor_cross_cluster_pairs": {f"J>={x}": int((cross >= x).sum()) for x in (0.2, 0.3, 0.4, 0.5)},
        "build_seconds": round(time.time() - t0, 1),
    })
    (out / "build_stats.json").write_text(json.dumps(stats, indent=1, ensure_ascii=False) + "\n")
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--handbook", type=Path, default=HANDBOOK, help="debian-handbook's html/ folder")
    ap.add_argument("--reference", type=Path, help="debian-reference-zh-cn_2.100_all.deb (optional)")
    ap.add_argument("--near-share", type=float, default=0.35)
    ap.add_argument("--exact-share", type=float, default=0.05)
    a = ap.parse_args()
    print(json.dumps(build(a.out, a.seed, a.handbook, a.reference, a.near_share, a.exact_share), indent=1,
                     ensure_ascii=False))


if __name__ == "__main__":
    main()
