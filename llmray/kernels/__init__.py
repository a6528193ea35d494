"""Compiled kernels: pure functions over Arrow buffers and numpy arrays (no Ray, no steps), one module
per topic: :mod:`~llmray.kernels.text` (word, line, paragraph and n-gram statistics),
:mod:`~llmray.kernels.c4` (C4's line rules), :mod:`~llmray.kernels.minhash` (sketches and hashes),
:mod:`~llmray.kernels.graph` (bucket edges, union-find), :mod:`~llmray.kernels.partition` (rows by partition),
:mod:`~llmray.kernels.langid` (language identification), :mod:`~llmray.kernels.segment` (word
segmentation of Chinese and other scripts without spaces).

The kernels are numba functions with ``cache=True``: compiled once, the machine code is kept beside
the package (or in numba's user cache where the package is read-only) and later processes load it.
``compile_all`` compiles every kernel in one process, at install (``make setup``) or, where that did
not happen, once on the driver before a run's tasks start, so the workers of the user's first run
load compiled code instead of each compiling it again. The install then compiles the same
signatures ahead of time into one module that runs without numba (:mod:`~llmray.kernels.aot`,
:mod:`~llmray.kernels.jit`).
"""

from __future__ import annotations

import time
from pathlib import Path

from llmray.kernels.cache import cache_folder


def _stamp() -> Path:
    import numba

    from llmray import __version__

    return cache_folder() / f"llmray-{__version__}-numba-{numba.__version__}.compiled"


def compile_all(force: bool = False) -> float:
    """Compile (or load) every kernel once; returns the seconds spent (0 when already done, or when
    this process runs the kernels compiled ahead of time, which the install built after these)."""
    from llmray.kernels import jit

    if jit.ahead_of_time() and not force:
        return 0.0
    stamp = _stamp()
    if stamp.exists() and not force:
        return 0.0
    started = time.perf_counter()
    import numpy as np
    import pyarrow as pa

    from llmray.kernels import c4, clean, graph, minhash, partition, text

    for kind in (pa.string(), pa.large_string()):
        # Rows that take every path: clean and dirty whitespace, non-ASCII, citations, patterns.
        column = pa.array(["Hello world. This is a test line.\n- second line here …", "", "\u0301",
                           "  a\r\n\n\n\n b\u00a0c [1] lorem ipsum {x}. café 1.2.3.4 a@b.co 555-123-4567 "], kind)
        text.word_stats(column, ["the", "and"])
        text.word_stats(column, ["the", "extraordinarily"])
        text.line_stats(column)
        text.line_stats(column, active=np.array([True, False, True, True]), duplicates=False)
        text.ngram_stats(column)
        text.ngram_stats(column, _limits=(1, 16, 64))  # the paths of documents of millions of tokens
        text.has_word(column)
        text.char_counts(column)
        text.chunk_counts(column)
        for sentences in (False, True):
            c4.c4_lines(column, policy=("cookie policy",), min_words=3, max_word_chars=1000, sentences=sentences)
            c4.c4_lines(column, policy=("cookie policy",), min_words=3, max_word_chars=1000, sentences=sentences,
                        text=False)
        clean.clean_whitespace(column, 1)
        clean.normalize(column, "NFC")
        clean.mojibake_suspects(column)
        clean.pii_candidates(column)
        for chars in (False, True):
            sig, _ = minhash.signatures(column, 16, 3, chars, 1)
            minhash.band_keys(sig, 4, 4, 1)
            rows = np.concatenate([sig[:, :2], sig], axis=1)  # as verify receives them: after 2 columns
            minhash.estimate_jaccard(rows[:, 2:], sig, None, np.arange(len(sig)))
            minhash.estimate_jaccard(sig, sig, np.arange(len(sig)), np.arange(len(sig)))
        for normalize in (False, True):
            minhash.text_hashes(column, normalize)
    graph.union_find_min(3, np.array([0, 1]), np.array([1, 2]))
    graph.star_edges(np.array([[1, 1, 0], [1, 1, 1]], np.uint64))
    partition.part_order(np.array([1, 0, 1], np.uint64), 2)
    partition.grouped(np.array([[1, 2], [3, 4], [5, 6]], np.uint32), np.array([1, 0, 1]), 2)
    _compile_segmentation()
    from llmray.errors import UserError
    from llmray.kernels import langid

    try:
        langid.predict(pa.array(["compile me"]), langid.lid176())
    except UserError:
        pass  # no language model installed: its kernel compiles when a language step first runs
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text("compiled\n")
    except OSError:
        pass  # a read-only install: numba keeps its cache elsewhere; the next run loads it quickly
    return time.perf_counter() - started


def _compile_segmentation() -> None:
    """The text kernels with word segmentation on (Chinese, Japanese, Thai; CJK line shapes)."""
    import pyarrow as pa

    from llmray.errors import UserError
    from llmray.kernels import text

    for kind in (pa.string(), pa.large_string()):
        column = pa.array(["中文分词，使用Python3编程……\n・第二行「引用」。", "", "日本語のテキスト ภาษาไทย",
                           "English only. The end"], kind)
        text.line_stats(column, cjk=True)
        text.line_stats(column, active=None, duplicates=False, cjk=True)
        for mode in ("characters", "jieba"):
            try:
                text.word_stats(column, ["的", "在"], mode)
                text.ngram_stats(column, segmentation=mode)
                text.chunk_counts(column, segmentation=mode)
            except UserError:
                pass  # jieba not installed: jieba segmentation compiles when a step first uses it
    try:
        text.cut("预热", "jieba")
    except UserError:
        pass
