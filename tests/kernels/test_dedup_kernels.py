"""Dedup kernels without Ray: normalization, MinHash estimates, densification, band keys, components."""

import random
import re
import types

import numpy as np
import pyarrow as pa
import pytest

from llmray.dedup import buckets, components, shuffle, workflow
from llmray.dedup.layout import Shared
from llmray.dedup.signatures import collision_probability, lsh_params
from llmray.io import exchange
from llmray.io.storage import Storage
from llmray.kernels import minhash
from llmray.pipeline.engine import LocalEngine

WORDS = [f"w{i}" for i in range(3000)]
#: Frequent hanzi first, then random ones: Chinese-like text has a few thousand characters.
HANZI = list(
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本"
    "去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总"
    "次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权"
    "收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连"
    "断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严龙飞"
)


def shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    """Reference word n-grams for ASCII text (the kernel's normalization restricted to ASCII)."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: str, b: str) -> float:
    x, y = shingles(a), shingles(b)
    return len(x & y) / len(x | y)


def edited(words: list[str], rate: float, rng: random.Random) -> list[str]:
    out = []
    for w in words:
        r = rng.random()
        if r < rate / 2:
            continue
        out.append(rng.choice(WORDS) if r < rate else w)
    return out


CJK_RUN = re.compile(r"[\u2e80-\u312f\u3190-\u9fff\uf900-\ufaff\uff66-\uff9f]")


def auto_shingles(text: str, n: int = 5, k: int = 3) -> set[tuple[str, ...]]:
    """Reference shingles of ``shingle: auto`` for ASCII words and CJK characters: word n-grams of
    the text with CJK characters as separators, plus character k-grams of its CJK characters."""
    words = re.findall(r"[a-z0-9]+", CJK_RUN.sub(" ", text.lower()))
    cjk = [c for c in text if CJK_RUN.match(c) and c.isalnum()]
    out: set[tuple[str, ...]] = set()
    for kind, toks, size in (("w", words, n), ("c", cjk, k)):
        if 0 < len(toks) < size:
            out.add((kind, *toks))
        out |= {(kind, *toks[i:i + size]) for i in range(len(toks) - size + 1)}
    return out


def test_normalization_ignores_case_punctuation_and_spacing():
    same = ["Hello, World! It's 2024.", "hello world it s 2024", "HELLO—world… “it’s” 2024!!",
            "  hello\tworld\nit s 2024 "]
    other = ["helloworld it s 2024", "hello world it s 2025", "héllo world it s 2024"]
    norm = minhash.text_hashes(pa.array(same + other), normalize=True)
    assert len({tuple(h) for h in norm[: len(same)]}) == 1
    assert len({tuple(h) for h in norm}) == 1 + len(other)
    raw = minhash.text_hashes(pa.array(["abc", "ABC", "abc"]), normalize=False)
    assert tuple(raw[0]) == tuple(raw[2]) != tuple(raw[1])
    sig, ntokens = minhash.signatures(pa.array(same[:2]), chars=True, ngram=3)
    assert (sig[0] == sig[1]).all() and ntokens[0] == ntokens[1] == len("hello world it s 2024")


def test_normalization_folds_full_width_forms_and_keeps_cjk():
    same = ["ＡＢＣ　ｄｅｆ，１２３！", "abc def 123", "ABC, def... 123", "abc\u3000def\u3000123"]
    cjk = ["使用 apt-get 命令安装软件。", "使用apt-get命令，安装软件", "使用　ＡＰＴ－ＧＥＴ　命令 安装 软件！"]
    other = ["使用 apt-get 命令安装软體。", "使用 apt 命令安装软件。", "命令使用 apt-get 安装软件。", "abc def 124"]
    norm = minhash.text_hashes(pa.array(same + cjk + other), normalize=True)
    keys = [tuple(h) for h in norm]
    assert len(set(keys[:4])) == 1 and len(set(keys[4:7])) == 1
    assert len(set(keys)) == 2 + len(other)  # every CJK character counts, in order
    raw = minhash.text_hashes(pa.array(cjk[:2]), normalize=False)
    assert tuple(raw[0]) != tuple(raw[1])
    for chars in (False, True, minhash.Auto()):
        sig, ntokens = minhash.signatures(pa.array(same[:2]), ngram=2, chars=chars)
        assert (sig[0] == sig[1]).all() and ntokens[0] == ntokens[1] > 0
    sig, ntokens = minhash.signatures(pa.array(cjk), ngram=2, chars=minhash.Auto(2))
    assert (sig[0] == sig[1]).all() and (sig[1] == sig[2]).all() and ntokens.tolist() == [10, 10, 10]


def test_english_sketches_and_hashes_are_pinned():
    """Values computed by the kernels before CJK support: Latin, other spaced scripts, no change."""
    texts = pa.array(["The quick brown fox jumps over the lazy dog, again and again.", "Ünïcödé wörds — and ÀÉÎ",
                      "한국어 문장은 띄어쓰기를 합니다 그렇죠"])
    for chars in (False, minhash.Auto(), minhash.Auto(7)):
        sig, ntokens = minhash.signatures(texts, 128, 5, chars, 7)
        assert sig[0, :4].tolist() == [824909445, 3508175916, 893213518, 2960030879]
        assert sig.astype(np.int64).sum(axis=1).tolist() == [232466381415, 308610698112, 500434766208]
        assert ntokens.tolist() == [12, 4, 5]
    assert minhash.text_hashes(texts, True).tolist() == [
        [12571723976721048949, 12248574898788704554], [9084556271981298058, 18134101725219079676],
        [9433813413132595047, 16013085633622891452]]


def test_auto_is_word_shingles_without_cjk():
    rng = random.Random(5)
    pool = WORDS[:400] + ["café", "naïve", "Straße", "Москва", "αβγ", "한국어", "ＦＵＬＬ", "x-1", "e.g."]
    texts = [(" " if rng.random() < 0.8 else ", ").join(rng.choice(pool) for _ in range(rng.randint(0, 120)))
             for _ in range(200)]
    texts += ["", "   ", "one", "Hello, World!", "emoji 🎉, marks \u0301 and ﬁ ligatures", "\x00\x7f tab\tnewline\n"]
    for ngram in (1, 3, 5):
        word, n_word = minhash.signatures(pa.array(texts), 64, ngram, False, 11)
        auto, n_auto = minhash.signatures(pa.array(texts), 64, ngram, minhash.Auto(), 11)
        assert (word == auto).all() and (n_word == n_auto).all()


@pytest.mark.parametrize("chars", [False, True, minhash.Auto(), minhash.Auto(2)])
def test_one_pass_sketches_give_the_exact_hashes_and_signatures_of_two(chars):
    """``sketches`` (what a job with both dedups computes) against ``text_hashes`` and ``signatures``
    apart, on English, Chinese, Japanese, full-width and mixed text, and empty documents."""
    rng = random.Random(3)
    pool = WORDS[:300] + ["使用", "命令", "中文", "日本語", "かな", "ＡＰＴ", "café", "x-1", "。", "，"]
    texts = pa.array([(" " if rng.random() < 0.7 else "").join(rng.choice(pool) for _ in range(rng.randint(0, 80)))
                      for _ in range(300)] + ["", "使用 apt 命令。", "使用ＡＰＴ命令", "   "])
    sig, ntokens, hashes = minhash.sketches(texts, 64, 3, chars, 5)
    alone, counted = minhash.signatures(texts, 64, 3, chars, 5)
    assert (sig == alone).all() and (ntokens == counted).all()
    assert (hashes == minhash.text_hashes(texts, True)).all()
    assert (hashes[-3] == hashes[-2]).all()  # the normalization's own promise holds in one pass too


def test_auto_signatures_of_cjk_and_mixed_text():
    rng = random.Random(9)
    equal = ["数据去重，处理中文。", "数据去重 处理中文", "「数据」去重：处理——中文！"]
    sig, ntokens = minhash.signatures(pa.array(equal), chars=minhash.Auto())
    assert (sig == sig[0]).all() and ntokens.tolist() == [8, 8, 8]
    # CJK characters end words: the Latin part of a mixed text is the same words however it is glued
    mixed = ["运行apt-get install命令", "运行 apt get install 命令"]
    sig, _ = minhash.signatures(pa.array(mixed), ngram=3, chars=minhash.Auto())
    assert (sig[0] == sig[1]).all()
    word, _ = minhash.signatures(pa.array(mixed), ngram=3)
    assert not (word[0] == word[1]).all()

    def text(n_chars: int, n_words: int) -> list[str]:
        items = [rng.choice(HANZI) for _ in range(n_chars)] + [f" {rng.choice(WORDS)} " for _ in range(n_words)]
        return sorted(items, key=lambda _: rng.random()) if n_words else items

    def edit(items: list[str], rate: float) -> list[str]:
        out = []
        for x in items:
            r = rng.random()
            if r < rate / 3:
                continue
            out.append(rng.choice(HANZI) if r < rate else x)
            if rate * 2 / 3 < r < rate:
                out.append(rng.choice(HANZI))
        return out

    pairs = []
    for i in range(240):
        base = text(rng.randint(150, 900), 0 if i < 160 else rng.randint(20, 200))
        pairs.append(("".join(base), "".join(edit(base, rng.uniform(0.0, 0.12)))))
    for k in (3, 5):
        sig, _ = minhash.signatures(pa.array([t for p in pairs for t in p]), 128, 5, minhash.Auto(k), 3)
        estimates = minhash.estimate_jaccard(sig[0::2], sig[1::2])
        exact = []
        for a, b in pairs:
            x, y = auto_shingles(a, 5, k), auto_shingles(b, 5, k)
            exact.append(len(x & y) / len(x | y))
        errors = estimates - np.array(exact)
        assert min(exact) < 0.5 < 0.9 < max(exact)
        assert abs(errors.mean()) < 0.01
        assert np.abs(errors).mean() < 0.04  # std of a 128-slot estimate is <= 0.045
        assert np.abs(errors).max() < 0.2
    with pytest.raises(ValueError):
        minhash.signatures(pa.array(["x"]), chars=minhash.Auto(0))


def test_signature_estimates_track_exact_jaccard():
    rng = random.Random(7)
    pairs = []
    for _ in range(150):
        base = [rng.choice(WORDS) for _ in range(rng.randint(200, 600))]
        pairs.append((" ".join(base), " ".join(edited(base, rng.uniform(0.0, 0.12), rng))))
    sig, _ = minhash.signatures(pa.array([t for p in pairs for t in p]), num_perm=128, seed=3)
    estimates = minhash.estimate_jaccard(sig[0::2], sig[1::2])
    exact = np.array([jaccard(a, b) for a, b in pairs])
    errors = estimates - exact
    assert exact.min() < 0.5 < 0.9 < exact.max()
    assert abs(errors.mean()) < 0.01
    assert np.abs(errors).mean() < 0.04  # std of a 128-slot estimate is <= 0.045


def test_densified_short_documents_collide_like_minhash():
    """Short docs have mostly empty OPH bins; densification must keep slots nearly independent."""
    rng = random.Random(11)
    pairs, exact = [], []
    for _ in range(400):
        shared = [rng.choice(WORDS) for _ in range(10)]
        a = shared + [rng.choice(WORDS) for _ in range(4)]
        b = shared + [rng.choice(WORDS) for _ in range(4)]
        pairs += [" ".join(a), " ".join(b)]
        exact.append(jaccard(pairs[-2], pairs[-1]))
    sig, _ = minhash.signatures(pa.array(pairs), num_perm=128, seed=5)
    estimates = minhash.estimate_jaccard(sig[0::2], sig[1::2])
    assert abs(estimates.mean() - np.mean(exact)) < 0.02
    keys = minhash.band_keys(sig, 16, 8, seed=5)
    candidates = (keys[0::2] == keys[1::2]).any(axis=1).mean()
    expected = collision_probability(np.array(exact), 16, 8).mean()
    assert 0.3 < np.mean(exact) < 0.5
    assert candidates <= expected + 0.03  # rotation densification makes this several times larger


def test_short_and_empty_documents():
    texts = pa.array(["one two three", "One, two; three!", "one two four", "", None, "... !!"])
    sig, ntokens = minhash.signatures(texts, ngram=5)
    assert ntokens.tolist() == [3, 3, 3, 0, 0, 0]
    assert (sig[0] == sig[1]).all()
    assert minhash.estimate_jaccard(sig[0], sig[2]) < 0.1


def test_band_keys_are_deterministic_across_slices_and_types():
    rng = random.Random(3)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 300))) for _ in range(60)]
    whole = minhash.band_keys(minhash.signatures(pa.array(texts), seed=9)[0], 16, 8, seed=9)
    big = pa.array(texts, pa.large_string())
    pieces = [minhash.signatures(big.slice(i, 7), seed=9)[0] for i in range(0, 60, 7)]
    chunked = minhash.signatures(pa.chunked_array([pa.array(texts[:25]), pa.array(texts[25:])]), seed=9)[0]
    assert (minhash.band_keys(np.concatenate(pieces), 16, 8, seed=9) == whole).all()
    assert (minhash.band_keys(chunked, 16, 8, seed=9) == whole).all()
    other = minhash.band_keys(minhash.signatures(pa.array(texts), seed=10)[0], 16, 8, seed=10)
    assert (other != whole).mean() > 0.99
    assert len(np.unique(whole)) == whole.size


def test_equal_bands_give_equal_keys_wherever_the_documents_sit():
    rng = random.Random(4)
    texts = [" ".join(rng.choice(WORDS) for _ in range(200)) for _ in range(30)]
    sig = minhash.signatures(pa.array(texts), seed=2)[0]
    keys = minhash.band_keys(sig, 16, 8, seed=2)
    moved = minhash.band_keys(sig[::-1].copy(), 16, 8, seed=2)[::-1]
    assert (moved == keys).all()
    # Two signatures equal in exactly one band share that band's key and no other.
    other = minhash.signatures(pa.array([texts[0][::-1]]), seed=2)[0]
    other[0, 3 * 8:4 * 8] = sig[0, 3 * 8:4 * 8]
    shared = minhash.band_keys(other, 16, 8, seed=2)[0] == keys[0]
    assert shared.tolist() == [b == 3 for b in range(16)]


def test_near_duplicates_collide_at_the_s_curve_rate():
    """Pairs around the middle of the S-curve (Jaccard 0.6-0.8): the share that shares a band is
    the rate 1 - (1 - J^rows)^bands predicts, on both sides."""
    rng = random.Random(8)
    pairs, exact = [], []
    while len(exact) < 600:
        base = [rng.choice(WORDS) for _ in range(400)]
        copy = " ".join(edited(base, rng.uniform(0.03, 0.06), rng))
        j = jaccard(" ".join(base), copy)
        if 0.6 <= j <= 0.8:
            pairs += [" ".join(base), copy]
            exact.append(j)
    sig, _ = minhash.signatures(pa.array(pairs), num_perm=128, seed=6)
    keys = minhash.band_keys(sig, 16, 8, seed=6)
    candidates = (keys[0::2] == keys[1::2]).any(axis=1).mean()
    expected = collision_probability(np.array(exact), 16, 8).mean()
    assert 0.3 < expected < 0.8
    assert abs(candidates - expected) < 0.05  # 600 pairs: the standard error is about 0.02


def test_lsh_params():
    assert lsh_params(0.8, 128) == (16, 8)
    assert lsh_params(0.8, 128, fn_weight=1.0) == (8, 16)
    for threshold in (0.5, 0.7, 0.9):
        bands, rows = lsh_params(threshold, 120)
        assert bands * rows == 120
        assert collision_probability(threshold, bands, rows) > 0.5
    with pytest.raises(ValueError):
        lsh_params(1.5, 128)


@pytest.mark.parametrize(("shape", "dtype"), [((5000, 3), np.uint64), ((5000,), np.uint64), ((700, 130), np.uint32),
                                             ((300, 2), np.int64), ((0, 3), np.uint64), ((40, 3), np.uint8)])
def test_split_groups_rows_by_part_in_their_order(shape, dtype):
    rng = np.random.default_rng(7)
    rows = rng.integers(0, 250, size=shape).astype(dtype)
    part = rng.integers(0, 17, size=shape[0])
    got = exchange.split(rows, part, 17)
    assert len(got) == 17
    for p, block in enumerate(got):
        assert block.dtype == rows.dtype and block.shape[1:] == rows.shape[1:]
        np.testing.assert_array_equal(block, rows[part == p])


def test_combined_exchange_objects_read_as_their_senders(tmp_path):
    work = Storage(str(tmp_path))
    rng = np.random.default_rng(4)
    raw = [exchange.split(rows, rng.integers(0, 4, len(rows)), 4)
           for rows in (rng.integers(0, 99, (int(n), 3)).astype(np.uint64) for n in (0, 7, 30, 1, 12))]
    for k, parts in enumerate(raw):
        exchange.write_parts(work, f"raw/{k}", parts)
    exchange.combine(work, ["raw/0", "raw/1", "raw/2"], "raw+/0")
    exchange.combine(work, ["raw/3", "raw/4"], "raw+/1", lambda k, rows: rows + np.uint64(1000 * (k + 1)))
    for lo, hi in ((0, 1), (1, 3), (0, 4)):
        expected = np.concatenate([np.concatenate(parts[lo:hi]) + np.uint64(1000 * max(0, k - 2))
                                   for k, parts in enumerate(raw)])
        found = exchange.gather(work, ["raw+/0", "raw+/1"], lo, hi, shape=(3,))
        if hi - lo == 1:  # one part: senders in order
            np.testing.assert_array_equal(found, expected)
        else:  # several: part by part, the same rows (the receivers do not depend on row order)
            np.testing.assert_array_equal(np.unique(found, axis=0), np.unique(expected, axis=0))
    tables = [[pa.table({"row": list(range(k * i)), "id": [f"{k}-{j}" for j in range(k * i)]}) for i in range(3)]
              for k in range(4)]
    for k, parts in enumerate(tables):
        exchange.write_parts(work, f"arrow/{k}", parts)
    exchange.combine(work, [f"arrow/{k}" for k in range(4)], "arrow+/0")
    for part in range(3):
        expected = exchange.gather_tables(work, [f"arrow/{k}" for k in range(4)], part)
        found = exchange.gather_tables(work, ["arrow+/0"], part)
        assert (found is None and expected is None) or found.equals(expected)
    with pytest.raises(ValueError, match="different shapes"):
        exchange.combine(work, ["raw/0", "arrow/0"], "bad")


def _components(tmp_path, edges: np.ndarray, parts: int, distributed: bool, combine_group: int = 32) -> dict[int, int]:
    """Run the components stage as the workflow does (files, one task per partition, in-process)."""
    work = Storage(str(tmp_path / f"w{parts}{distributed}{combine_group}"))
    shared = Shared(work=work, output=work, step="step", sides=[], markers=[], starts=np.array([0]),
                    parts=parts, fine=parts, combine_group=combine_group)
    larger, _ = shuffle.unpack(edges)
    shared.write("buckets", 0, exchange.split(edges, larger % parts, parts))
    ctx = types.SimpleNamespace(engine=LocalEngine(1))
    if distributed:
        workflow._distributed_components(ctx, shared, "buckets", 1, {})
        senders = parts
    else:
        components.local_components(shared, "buckets", 1)
        senders = 1
    rows = shared.gather("components", senders, 0, shape=(2,), dtype=np.int64)
    return {int(d): int(r) for d, r in rows}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_star_steps_match_union_find(tmp_path, seed):
    rng = np.random.default_rng(seed)
    n = 400
    a = rng.integers(0, n, 300)
    b = np.where(rng.random(300) < 0.5, a + 1, rng.integers(0, n, 300)) % n  # chains and random links
    keep = a != b
    a, b = a[keep], b[keep]
    edges = np.unique(shuffle.pack(np.maximum(a, b), np.minimum(a, b)))
    expected = _components(tmp_path, edges, 1, distributed=False)
    assert _components(tmp_path, edges, 3, True) == expected == _components(tmp_path, edges, 1, True)
    assert _components(tmp_path, edges, 5, True, combine_group=2) == expected  # rounds read combined objects
    assert all(r == min(d for d, rr in expected.items() if rr == r) for r in expected.values())
    # every linked pair ends up in one component, and no component is joined without a link
    roots = {d: expected[d] for d in expected}
    assert all(roots[int(x)] == roots[int(y)] for x, y in zip(a, b, strict=True))


def test_bucket_edges_link_members_to_the_smallest_signature_hash():
    rng = np.random.default_rng(3)
    for _ in range(50):
        n = int(rng.integers(0, 200))
        rows = np.stack([rng.integers(0, 30, n), rng.integers(0, 4, n), rng.permutation(1000)[:n]],
                        axis=1).astype(np.uint64).reshape(n, 3)
        expected = set()
        for key in np.unique(rows[:, 0]):
            bucket = sorted((int(h), int(d)) for k, h, d in rows if k == key)
            center = bucket[0][1]
            expected |= {(max(d, center), min(d, center)) for _, d in bucket[1:] if d != center}
        larger, smaller = shuffle.unpack(buckets.bucket_edges(rows))
        assert set(zip(larger.tolist(), smaller.tolist(), strict=True)) == expected
