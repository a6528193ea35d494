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


def test_lsh_params():
    assert lsh_params(0.8, 128) == (16, 8)
    assert lsh_params(0.8, 128, fn_weight=1.0) == (8, 16)
    for threshold in (0.5, 0.7, 0.9):
        bands, rows = lsh_params(threshold, 120)
        assert bands * rows == 120
        assert collision_probability(threshold, bands, rows) > 0.5
    with pytest.raises(ValueError):
        lsh_params(1.5, 128)


def _components(tmp_path, edges: np.ndarray, parts: int, distributed: bool) -> dict[int, int]:
    """Run the components stage as the workflow does (files, one task per partition, in-process)."""
    work = Storage(str(tmp_path / f"w{parts}{distributed}"))
    shared = Shared(work=work, output=work, step="step", sides=[], markers=[], starts=np.array([0]),
                    parts=parts, fine=parts)
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
