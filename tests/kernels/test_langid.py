"""The compiled language-ID kernel gives fastText's own labels and scores, bit for bit."""

import random

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from llmray.kernels import langid


def reference(col: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """fastText's predict, one document at a time, on what the kernel reads (2000 code points,
    newlines as blanks): the implementation the kernel replaces."""
    import fasttext

    f = fasttext.load_model(str(langid.model_path())).f
    sample = pc.replace_substring(pc.utf8_slice_codeunits(pc.fill_null(col, ""), 0, langid.SAMPLE_CHARS), "\n", " ")
    labels, scores = [], np.zeros(len(col))
    for i, text in enumerate(sample.to_pylist()):
        prediction = f.predict(text + "\n", 1, 0.0, "replace")
        score, label = prediction[0] if prediction else (0.0, "unknown")
        labels.append(label.removeprefix("__label__"))
        scores[i] = score
    return np.array(labels, object), np.minimum(scores, 1.0)


def same(col):
    labels, scores = langid.predict(col, langid.lid176())
    expected_labels, expected_scores = reference(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)
    assert list(labels) == list(expected_labels)
    np.testing.assert_array_equal(scores, expected_scores)


EDGE = [
    "", " ", "\n\n\n", "\t\r\x0b\x0c\x00", "a", "de", "</s>", "__label__en", "__label__xx foo", "__label__",
    "x" * 10_000, "é" * 3000, "😀" * 2500, "中文" * 1500 + " english words", "a\x00b", "non\xa0breaking\u2028space",
    "mixed 中文 and English\nwith\r\nnewlines", "Ελληνικά κείμενα", "العربية", "日本語のテキスト",
    ("word " * 1000) + "tail",  # cut inside the sample window
]


def test_edge_cases():
    same(pa.array(EDGE))


def test_random_texts_of_many_scripts():
    rng = random.Random(1)
    alphabet = list("abcdefghijklmnopqrstuvwxyz ABC .,;!?-'\"") + list("éàüßøñçšž") + list("абвгдежзий") \
        + list("中文字的是不了人我在") + list("あいうえおかき") + list("αβγδε") + ["😀", "𝔘", "\u0301"] \
        + [" ", " ", " ", "\n", "\t", "\r", "\x0b", "\x0c", "\x00", "\xa0"]
    texts = ["".join(rng.choice(alphabet) for _ in range(int(rng.expovariate(1 / 600)))) for _ in range(300)]
    same(pa.array(texts))


def test_the_token_cache_fills_up_and_stays_exact():
    """Out-of-vocabulary tokens reuse the rows found the first time; past the cache's capacity
    (32,768 tokens, 1 MB of token bytes) the rest are worked out afresh: same answers throughout."""
    rng = random.Random(2)
    letters = "abcdefghijklmnopqrstuvwxyzäöü"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(3, 12))) for _ in range(40_000)]
    many = [" ".join(words[i:i + 200] + words[i:i + 200]) for i in range(0, len(words), 200)]
    long_tokens = ["".join(rng.choice(letters) for _ in range(2500)) for _ in range(600)]
    same(pa.array(many + long_tokens + many[:20]))


def test_slices_chunks_nulls_and_large_strings():
    col = pa.array(["The quick brown fox jumps over the lazy dog.", "Der schnelle braune Fuchs.", None, "今天天气很好"])
    same(col)
    same(col.slice(1))
    same(pa.chunked_array([col.slice(0, 2), col.slice(2)]))
    a, b = langid.predict(col, langid.lid176()), langid.predict(col.cast(pa.large_string()), langid.lid176())
    assert list(a[0]) == list(b[0]) and np.array_equal(a[1], b[1])
    assert [len(x) for x in langid.predict(pa.chunked_array([], pa.string()), langid.lid176())] == [0, 0]
    assert list(a[0][[0, 1, 3]]) == ["en", "de", "zh"]


def test_other_models_are_refused(tmp_path):
    (tmp_path / "m.bin").write_bytes(b"\0" * 64)
    with pytest.raises(ValueError, match="not a fastText model"):
        langid.load_model(tmp_path / "m.bin")


def test_the_decoded_model_is_cached_and_read_back_the_same(tmp_path, monkeypatch):
    """Decoding lid.176 costs every worker 0.2 s; after the first time its arrays come from a cache
    file, and must be exactly what decoding gives."""
    import dataclasses

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    decoded = langid.load_model(langid.model_path())
    langid.lid176.cache_clear()
    try:
        langid.lid176()
        assert len(list(tmp_path.glob("lid176-*.npz"))) == 1
        langid.lid176.cache_clear()
        cached = langid.lid176()
    finally:
        langid.lid176.cache_clear()
    for field in dataclasses.fields(decoded):
        a, b = getattr(cached, field.name), getattr(decoded, field.name)
        assert type(a) is type(b) and (a == b if isinstance(a, int) else a.dtype == b.dtype and np.array_equal(a, b))
