"""Benchmark corpora: a generator of realistic documents with known duplicates, given inputs, and
larger corpora made of letter-permuted copies.

The generator needs no data beyond the package: its text is real English prose, the sentences of
the quickstart corpus that comes with it (``data/quickstart``: State of the Union addresses, public
domain). Documents are runs of
consecutive sentences with the original paragraph breaks, their lengths drawn from a log-normal
(median about 2 KB, like web text), so the filters and the tokenizer see natural text.

The pool is small (35k sentences, 4 MB) next to a 100k-document corpus (290 MB), so it is dealt out
many times. The first pass keeps the addresses' own order; every later pass shuffles the sentences,
so two documents of different passes share at most a few scattered sentences and never become
accidental near-duplicates: the only duplicates are the injected ones, and the truth file is exact.

Injected duplicates (rates as in the research corpus): 3% exact copies, 20% near-duplicates made by
word insertions, deletions and substitutions (0.3-4% of words) and paragraph swaps, accepted only
when the word 5-shingle Jaccard to the source lies in [0.65, 0.98]. Sources are drawn uniformly, from
a small popular subset (clusters of many copies), or from an earlier near-duplicate (chains).
"""

from __future__ import annotations

import dataclasses
import gzip
import itertools
import json
import math
import random
import re
import statistics
import string
from collections import Counter
from pathlib import Path
from typing import Any

#: What the package brings for its benchmark (links into the repository's data/ and jobs/, which a
#: wheel holds as files): the quickstart text and the job files the jobs part runs.
DATA = Path(__file__).parent / "data"
QUICKSTART = DATA / "quickstart"
JOBS = DATA / "jobs"
CORPUS_FILE = "corpus.jsonl"
TRUTH_FILE = "truth.jsonl"

#: A sentence ends at . ! or ? before a capital or a quote, unless it ends in a common abbreviation.
_SENTENCE_END = re.compile(r"(?<!\bMr\.)(?<!\bMrs\.)(?<!\bDr\.)(?<!\bSt\.)(?<!U\.S\.)"
                           r"(?<=[.!?])\s+(?=[\"A-Z])")
_WORD = re.compile(r"\w+")


@dataclasses.dataclass(frozen=True)
class GeneratorParams:
    docs: int
    seed: int = 0
    median_chars: int = 2000
    sigma: float = 0.8
    min_chars: int = 200
    max_chars: int = 60_000
    exact_rate: float = 0.03
    near_rate: float = 0.20
    #: Share of words edited in a near-duplicate, drawn uniformly from this range.
    edit_rate: tuple[float, float] = (0.003, 0.04)
    swap_prob: float = 0.3
    jaccard: tuple[float, float] = (0.65, 0.98)
    #: Share of originals that are "popular" (copied often), and the share of sources drawn from them.
    popular_share: float = 0.007
    popular_pick: float = 0.25
    #: Share of near-duplicate sources that are themselves near-duplicates.
    chain_pick: float = 0.15
    ngram: int = 5


def require_data(job_files: list[str]) -> None:
    """Refuse to start without the data a run reads: the quickstart text and the job files."""
    missing = [] if quickstart_files() else [f"{QUICKSTART}/*.jsonl.gz"]
    missing += [str(JOBS / name) for name in job_files if not (JOBS / name).is_file()]
    if missing:
        from llmray.errors import UserError

        raise UserError(f"this llmray was installed without the benchmark's data ({', '.join(missing)}): "
                        f"install it from a checkout, or from a wheel built with llmray/bench/data as package data")


def quickstart_files(directory: Path = QUICKSTART) -> list[Path]:
    return sorted(directory.glob("*.jsonl.gz"))


def sentence_pool(directory: Path = QUICKSTART) -> list[tuple[str, bool]]:
    """(sentence, starts a paragraph) for every sentence of the quickstart corpus, in order."""
    pool = []
    for path in quickstart_files(directory):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                for paragraph in json.loads(line)["text"].split("\n\n"):
                    for k, sentence in enumerate(_SENTENCE_END.split(paragraph.strip())):
                        if sentence:
                            pool.append((sentence, k == 0))
    return pool


def shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    """Word n-grams of the lower-cased text; a text shorter than n words is one shingle."""
    words = _WORD.findall(text.lower())
    if len(words) <= n:
        return {tuple(words)}
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class _SentenceStream:
    """Deals out the pool: the original order first, then freshly shuffled passes."""

    def __init__(self, pool: list[tuple[str, bool]], rng: random.Random):
        self.pool, self.rng = pool, rng
        self.order = list(range(len(pool)))
        self.cursor, self.passes = 0, 0

    def take(self, target_chars: int) -> str:
        parts: list[str] = []
        size = 0
        while size < target_chars:
            if self.cursor == len(self.order):
                self.rng.shuffle(self.order)
                self.cursor, self.passes = 0, self.passes + 1
            sentence, starts = self.pool[self.order[self.cursor]]
            self.cursor += 1
            if self.passes:
                starts = self.rng.random() < 0.3
            if parts:
                parts.append("\n\n" if starts else " ")
            parts.append(sentence)
            size += len(sentence) + 1
        return "".join(parts)


def _edit_words(text: str, rate: float, rng: random.Random, vocab: list[str]) -> str:
    """Insert, delete or substitute about ``rate`` of the words; paragraph breaks survive."""
    paragraphs = []
    for paragraph in text.split("\n\n"):
        words = paragraph.split(" ")
        out: list[str] = []
        for word in words:
            if rng.random() >= rate:
                out.append(word)
                continue
            action = rng.randrange(3)
            if action == 0:
                out += [word, rng.choice(vocab)]
            elif action == 1:
                out.append(rng.choice(vocab))
        paragraphs.append(" ".join(out) or rng.choice(vocab))
    return "\n\n".join(paragraphs)


def _near_duplicate(text: str, params: GeneratorParams, rng: random.Random,
                    vocab: list[str]) -> tuple[str, str, float] | None:
    """(edited text, edit description, Jaccard to the source), or None if no try lands in the window."""
    source = shingles(text, params.ngram)
    for _ in range(6):
        edits = []
        paragraphs = text.split("\n\n")
        if len(paragraphs) > 1 and rng.random() < params.swap_prob:
            i = rng.randrange(len(paragraphs) - 1)
            paragraphs[i], paragraphs[i + 1] = paragraphs[i + 1], paragraphs[i]
            edits.append("swap")
        rate = rng.uniform(*params.edit_rate)
        edited = _edit_words("\n\n".join(paragraphs), rate, rng, vocab)
        edits.append(f"words{rate:.3f}")
        similarity = jaccard(source, shingles(edited, params.ngram))
        if params.jaccard[0] <= similarity <= params.jaccard[1]:
            return edited, "+".join(edits), round(similarity, 4)
    return None


def generate(params: GeneratorParams, pool: list[tuple[str, bool]] | None = None
             ) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """(documents ``{"id", "text"}``, truth ``{"id", "cluster", "kind", "src", "jaccard_to_src"}``)."""
    rng = random.Random(params.seed)
    pool = pool or sentence_pool()
    stream = _SentenceStream(pool, rng)
    vocab = _WORD.findall(" ".join(s for s, _ in rng.sample(pool, min(len(pool), 3000))))
    texts: list[str] = []
    meta: list[tuple[int, str, int, float]] = []  # (root, kind, source index or -1, jaccard)
    originals: list[int] = []
    near: list[int] = []
    for i in range(params.docs):
        draw = rng.random()
        made = None
        if originals and draw < params.exact_rate + params.near_rate:
            src = _pick_source(rng, params, originals, near, texts)
            if draw < params.exact_rate:
                made = (texts[src], "exact", 1.0)
            else:
                dup = _near_duplicate(texts[src], params, rng, vocab)
                made = (dup[0], f"near:{dup[1]}", dup[2]) if dup else None
            if made:
                texts.append(made[0])
                meta.append((meta[src][0], made[1], src, made[2]))
                if made[1].startswith("near"):
                    near.append(i)
        if made is None:
            target = math.exp(rng.gauss(math.log(params.median_chars), params.sigma))
            texts.append(stream.take(int(min(max(target, params.min_chars), params.max_chars))))
            meta.append((i, "orig", -1, 1.0))
            originals.append(i)
    order = list(range(params.docs))
    rng.shuffle(order)
    ids = {index: f"doc-{position:07d}" for position, index in enumerate(order)}
    docs = [{"id": ids[i], "text": texts[i]} for i in order]
    truth = [{"id": ids[i], "cluster": ids[meta[i][0]], "kind": meta[i][1],
              "src": ids[meta[i][2]] if meta[i][2] >= 0 else None, "jaccard_to_src": meta[i][3]}
             for i in order]
    return docs, truth


def _pick_source(rng: random.Random, params: GeneratorParams, originals: list[int], near: list[int],
                 texts: list[str]) -> int:
    draw = rng.random()
    if near and draw < params.chain_pick:
        return rng.choice(near)
    if draw < params.chain_pick + params.popular_pick:
        popular = max(1, int(params.docs * (1 - params.exact_rate - params.near_rate) * params.popular_share))
        return originals[rng.randrange(min(popular, len(originals)))]
    return rng.randrange(len(texts))


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def describe(texts: list[str], truth: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Size and length distribution of a corpus and, with truth, its duplicate structure."""
    lengths = sorted(len(t) for t in texts)
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    info: dict[str, Any] = {
        "docs": len(texts), "text_mb": round(nbytes / 1e6, 2),
        "chars": {"median": int(statistics.median(lengths)) if lengths else 0,
                  "mean": int(statistics.fmean(lengths)) if lengths else 0,
                  "p90": lengths[int(0.9 * (len(lengths) - 1))] if lengths else 0,
                  "max": lengths[-1] if lengths else 0},
    }
    if truth is not None:
        sizes = Counter(str(r["cluster"]) for r in truth)
        present = {str(r["id"]) for r in truth}
        # A sample of a corpus may hold a copy without its source: count copies whose source is there.
        kinds = Counter(str(r["kind"]).split(":")[0] for r in truth if str(r.get("src")) in present)
        info["duplicates"] = {
            "exact": kinds.get("exact", 0), "near": kinds.get("near", 0),
            "clusters_with_copies": sum(1 for n in sizes.values() if n > 1),
            "largest_cluster": max(sizes.values(), default=0),
            "should_remove": sum(n - 1 for n in sizes.values()),
        }
    return info


def synthetic(params: GeneratorParams, work_dir: Path, name: str = "synthetic") -> dict[str, Any]:
    """Generate a corpus into ``work_dir``; return its description with the paths."""
    docs, truth = generate(params)
    return _written(name, docs, truth, work_dir, {"generator": dataclasses.asdict(params)})


def from_input(paths: list[str], truth_path: str | None, docs: int | None, work_dir: Path) -> dict[str, Any]:
    """The first ``docs`` documents of a given input (any format llmray reads) as a benchmark corpus.

    Ground truth, when given (``{"id", "cluster", ...}`` per line), is cut to the same documents.
    """
    from llmray.io.readers import plan_chunks, read_chunk
    from llmray.io.specs import InputSpec

    spec = InputSpec(paths=paths)
    records: list[dict[str, str]] = []
    for chunk in plan_chunks([spec], 1)[0]:
        for batch in read_chunk(chunk, spec):
            columns = batch.table.to_pydict()
            records += [{"id": i, "text": t} for i, t in zip(columns["id"], columns["text"], strict=True)]
            if docs and len(records) >= docs:
                break
        if docs and len(records) >= docs:
            break
    records = records[:docs] if docs else records
    truth = None
    if truth_path:
        wanted = {r["id"] for r in records}
        truth = [r for r in read_jsonl(truth_path) if str(r["id"]) in wanted]
        for r in truth:
            r["id"], r["cluster"] = str(r["id"]), str(r["cluster"])
    return _written(Path(paths[0]).name, records, truth, work_dir, {"source": paths})


def _written(name: str, docs: list[dict[str, Any]], truth: list[dict[str, Any]] | None, work_dir: Path,
             extra: dict[str, Any]) -> dict[str, Any]:
    """Write a corpus as one uncompressed JSONL file (and its truth beside it); return its description."""
    return {"name": name, "path": str(write_jsonl(work_dir / CORPUS_FILE, docs)),
            "truth": str(write_jsonl(work_dir / TRUTH_FILE, truth)) if truth is not None else None,
            **describe([d["text"] for d in docs], truth), **extra}


def read_jsonl(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The records of a JSONL file (gzipped or not), the first ``limit`` of them when given."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in itertools.islice(f, limit)]


def quickstart() -> dict[str, Any]:
    """The real corpus that comes with the package, read where it lies (no ground truth)."""
    texts = [record["text"] for path in quickstart_files() for record in read_jsonl(path)]
    return {"name": "quickstart", "path": str(QUICKSTART / "*.jsonl.gz"), "truth": None, **describe(texts, None)}


def _cipher(r: int) -> dict[int, int]:
    letters = list(string.ascii_lowercase)
    random.Random(r).shuffle(letters)
    lower = "".join(letters)
    return str.maketrans(string.ascii_lowercase + string.ascii_uppercase, lower + lower.upper())


def permuted_copy(docs: list[dict[str, Any]], truth: list[dict[str, Any]] | None, r: int
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """Copy ``r`` of a corpus and its truth: copy 0 is the corpus itself; copy r > 0 has its ASCII letters
    put through a permutation of its own and ``-r<r>`` added to ids and true clusters. Lengths, word
    boundaries and every duplicate relation stay as they were inside a copy, while copies share no
    words, so the ground truth scales with the corpus."""
    if not r:
        return docs, truth

    def suffix(value: Any) -> Any:
        return f"{value}-r{r}" if value is not None else None

    table = _cipher(r)
    copied = [{**d, "id": suffix(d["id"]), "text": d["text"].translate(table)} for d in docs]
    return copied, None if truth is None else [
        {**t, "id": suffix(t["id"]), "cluster": suffix(t["cluster"]), "src": suffix(t.get("src"))} for t in truth]


def larger(main: dict[str, Any], docs: int, work_dir: Path) -> dict[str, Any]:
    """A corpus of about ``docs`` documents like ``main``: generated at that size when ``main`` was,
    otherwise letter-permuted copies of ``main`` (and of its truth)."""
    if "generator" in main:
        return synthetic(GeneratorParams(**{**main["generator"], "docs": docs}), work_dir, f"synthetic {docs:,}")
    copies = max(1, math.ceil(docs / main["docs"]))
    base = read_jsonl(main["path"]), read_jsonl(main["truth"]) if main["truth"] else None
    records: list[dict[str, Any]] = []
    truth: list[dict[str, Any]] | None = None if base[1] is None else []
    for r in range(copies):
        part, part_truth = permuted_copy(*base, r)
        records += part
        if truth is not None and part_truth is not None:
            truth += part_truth
    return _written(f"{main['name']} x{copies}", records, truth, work_dir, {"copies_of": main["name"]})


def guess_truth(path: str) -> str | None:
    """The ground truth beside a corpus file, by the research corpus's naming (corpus_X -> truth_X)."""
    candidate = Path(path)
    if "corpus" not in candidate.name:
        return None
    truth = candidate.with_name(candidate.name.replace("corpus", "truth"))
    return str(truth) if truth.is_file() else None
