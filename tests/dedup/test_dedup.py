"""Dedup steps through a real Ray runtime and the runner, on generated corpora with known duplicates."""

import dataclasses
import json
import random
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmray.config import parse_job
from llmray.kernels import minhash
from llmray.ops import available
from llmray.ops.dedup import ExactDedup, MinhashDedup, _Dedup
from llmray.pipeline.runner import RunOptions, run_job
from tests.helpers import write_jsonl

VOCAB = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ro", "su", "ta", "vi", "ze") for b in range(300)]


@dataclasses.dataclass
class Corpus:
    path: Path
    #: id -> family name (documents of one family are copies or near copies of its base).
    family: dict[str, str]
    kinds: dict[str, str]


def make_corpus(root: Path, families: int = 60, seed: int = 1, files: int = 3, row_group: int = 16) -> Corpus:
    """Bases of random words; families add an exact copy, a cosmetic variant, a copy with 1-3 words changed."""
    rng = random.Random(seed)
    rows, family, kinds = [], {}, {}

    def add(doc_id: str, text: str, fam: str, kind: str) -> None:
        rows.append({"id": doc_id, "text": text, "quality": float(rng.randint(0, 3))})
        family[doc_id], kinds[doc_id] = fam, kind

    for f in range(families):
        words = [rng.choice(VOCAB) for _ in range(rng.randint(80, 250))]
        add(f"f{f:03d}-base", " ".join(words), f"f{f}", "base")
        for k in range(f % 4):
            if k == 0:
                add(f"f{f:03d}-copy{k}", " ".join(words), f"f{f}", "exact")
            elif k == 1:
                add(f"f{f:03d}-cosm{k}", " ".join(words).upper().replace(" ", ", ", 5), f"f{f}", "cosmetic")
            else:
                edit = list(words)
                for pos in rng.sample(range(len(words)), len(words) // 80):
                    edit[pos] = rng.choice(VOCAB)
                add(f"f{f:03d}-near{k}", " ".join(edit), f"f{f}", "near")
    add("empty-1", "", "empty-1", "base")
    add("short-1", "just three words", "short-1", "base")
    rng.shuffle(rows)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        part = rows[i::files]
        pq.write_table(pa.Table.from_pylist(part), root / f"part-{i}.parquet", row_group_size=row_group)
    return Corpus(root, family, kinds)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus") / "in")


def dedup(corpus: Corpus, out: Path, steps: list, chunk_mb: float = 64.0, **output) -> dict:
    raw = {"input": {"paths": [str(corpus.path)], "keep_fields": ["quality"], "chunk_mb": chunk_mb},
           "steps": steps, "output": {"path": str(out), **output}}
    return run_job(parse_job(raw), RunOptions(progress=False))


def small_layout(monkeypatch, **settings) -> None:
    """Dedup steps of this test run with these ``Layout`` settings (the driver decides, so a patch
    here reaches every task)."""
    original = _Dedup.layout
    monkeypatch.setattr(_Dedup, "layout", lambda self, **o: dataclasses.replace(original(self, **o), **settings))


def kept_ids(out: Path) -> list[str]:
    return sorted(pq.read_table(out / "data").column("id").to_pylist())


def test_steps_are_registered_with_their_parameters():
    steps = available()
    assert steps["minhash_dedup"] is MinhashDedup and steps["exact_dedup"] is ExactDedup
    assert MinhashDedup().sketch_spec().bands * MinhashDedup().sketch_spec().rows == 128
    assert MinhashDedup(bands=32).sketch_spec().rows == 4
    assert MinhashDedup(shingle="char").sketch_spec().ngram == 9
    auto = MinhashDedup().sketch_spec()  # auto: words of 5, CJK characters of minhash.CJK_NGRAM
    assert MinhashDedup().shingle == "auto" and auto.ngram == 5 and auto.chars == minhash.Auto(minhash.CJK_NGRAM)
    assert MinhashDedup(ngram=4, cjk_ngram=2).sketch_spec().chars == minhash.Auto(2)
    assert MinhashDedup(shingle="word").sketch_spec().chars is False
    for bad in ({"bands": 7, "rows": 8}, {"bands": 5}, {"keep": "largest"}, {"threshold": 1.2}, {"cjk_ngram": 0},
                {"shingle": "word", "cjk_ngram": 3}):
        with pytest.raises(ValueError):
            MinhashDedup(**bad)


def test_exact_dedup_counts_and_names_the_kept_document(ray_session, corpus, tmp_path):
    exact_copies = sum(k == "exact" for k in corpus.kinds.values())
    cosmetic = sum(k == "cosmetic" for k in corpus.kinds.values())
    stats = dedup(corpus, tmp_path / "raw", [{"exact_dedup": {"normalize": False}}])
    assert stats["dropped"] == {"exact_dedup.duplicate": exact_copies}
    assert stats["docs_in"] == len(corpus.family) == stats["docs_out"] + exact_copies
    stats = dedup(corpus, tmp_path / "norm", ["exact_dedup"], rejects=True)
    assert stats["dropped"] == {"exact_dedup.duplicate": exact_copies + cosmetic}
    assert stats["bytes_in"] > stats["bytes_out"] > 0
    rejects = pq.read_table(tmp_path / "norm" / "rejects")
    assert rejects.num_rows == exact_copies + cosmetic
    assert set(rejects.column("reason").to_pylist()) == {"exact_dedup.duplicate"}
    assert set(rejects.schema.names) == {"id", "text", "source", "quality", "reason", "duplicate_of", "value",
                                         "threshold"}
    kept = set(kept_ids(tmp_path / "norm"))
    for row in rejects.to_pylist():  # each copy names the kept document of its own family
        assert row["duplicate_of"] in kept and corpus.family[row["duplicate_of"]] == corpus.family[row["id"]]
        assert corpus.kinds[row["id"]] in ("exact", "cosmetic") and row["duplicate_of"] < row["id"]


def test_pairs_below_the_threshold_stay_apart_though_lsh_pairs_many(ray_session, tmp_path):
    """200 pairs sharing a 94-word prefix of 200 words: word 5-gram Jaccard 0.30, under the default
    threshold of 0.5. The default bands (32 x 4) make about a quarter of them candidates; the check
    of each candidate's estimated Jaccard (std 0.04 here) must keep every pair apart."""
    rng = random.Random(7)
    records = []
    for p in range(200):
        words = [f"w{p}x{rng.randrange(10**9)}" for _ in range(306)]
        records.append({"id": f"p{p}-a", "text": " ".join(words[:200])})
        records.append({"id": f"p{p}-b", "text": " ".join(words[:94] + words[200:])})
    write_jsonl(tmp_path / "in" / "pairs.jsonl", records)
    raw = {"input": {"paths": [str(tmp_path / "in")]}, "steps": ["minhash_dedup"],
           "output": {"path": str(tmp_path / "out")}}
    stats = run_job(parse_job(raw), RunOptions(progress=False))
    details = stats["global_steps"]["minhash_dedup"]
    assert details["candidate_pairs"] >= 20  # LSH did pair many of them: the check had work to do
    assert stats["docs_out"] == 400 and stats["dropped"] == {"minhash_dedup.duplicate": 0}


def test_minhash_finds_near_duplicates_and_writes_clusters(ray_session, corpus, tmp_path):
    stats = dedup(corpus, tmp_path, [{"minhash_dedup": {"write_clusters": True}}])
    kept = kept_ids(tmp_path)
    families = {corpus.family[i] for i in corpus.family}
    assert sorted({corpus.family[i] for i in kept}) == sorted(families)  # no family lost
    assert len(kept) == len(families)  # every duplicate found
    assert stats["docs_in"] == stats["docs_out"] + stats["dropped"]["minhash_dedup.duplicate"]
    assert all(i.endswith("-base") or i in ("empty-1", "short-1") for i in kept)  # smallest id: "-base" < others
    clusters = pq.read_table(tmp_path / "clusters").to_pylist()
    sizes = {f: list(corpus.family.values()).count(f) for f in families}
    assert len(clusters) == sum(1 for i in corpus.family if sizes[corpus.family[i]] > 1)
    by_cluster: dict[str, list[dict]] = {}
    for row in clusters:
        by_cluster.setdefault(row["cluster_id"], []).append(row)
    for keeper, members in by_cluster.items():
        assert keeper in kept and {corpus.family[m["id"]] for m in members} == {corpus.family[keeper]}
        assert all(m["cluster_size"] == len(members) > 1 for m in members)
    details = stats["global_steps"]["minhash_dedup"]
    multi = [f for f in families if sizes[f] > 1]
    assert details["groups"] == len(multi) and details["largest_group"] == max(sizes.values())
    assert details["duplicates"] == len(corpus.family) - len(families) and details["empty_docs"] == 1
    assert {"buckets", "components", "keep"} <= set(details["seconds"])


def test_keep_rule_max_column(ray_session, corpus, tmp_path):
    dedup(corpus, tmp_path / "a", [{"minhash_dedup": {"keep": "max:quality"}}])
    best: dict[str, tuple] = {}
    for row in pq.read_table(corpus.path).to_pylist():
        key = (-row["quality"], row["id"])
        fam = corpus.family[row["id"]]
        best[fam] = min(best.get(fam, key), key)
    assert kept_ids(tmp_path / "a") == sorted(k[1] for k in best.values())
    with pytest.raises(Exception, match="no column 'missing'"):
        dedup(corpus, tmp_path / "x", [{"minhash_dedup": {"keep": "max:missing"}}])
    with pytest.raises(Exception, match="not numeric"):
        dedup(corpus, tmp_path / "y", [{"exact_dedup": {"keep": "max:source"}}])


@pytest.mark.parametrize("verify", [False, True])
def test_kept_ids_do_not_depend_on_layout(ray_session, corpus, tmp_path, monkeypatch, verify):
    step = {"minhash_dedup": {"verify": verify, "threshold": 0.7}}
    base = dedup(corpus, tmp_path / "a", [step])
    tiny = {"minhash_dedup": {**step["minhash_dedup"], "partitions": 5, "local_components_max_edges": 0}}
    # several verify groups, every exchange read through combined objects (groups of 2 senders)
    small_layout(monkeypatch, verify_group_mb=0.01, combine_group=2)
    many = dedup(corpus, tmp_path / "b", [tiny], chunk_mb=0.005)
    one = dedup(corpus, tmp_path / "c", [{"minhash_dedup": {**step["minhash_dedup"], "partitions": 1}}])
    assert kept_ids(tmp_path / "a") == kept_ids(tmp_path / "b") == kept_ids(tmp_path / "c")
    details = many["global_steps"]["minhash_dedup"]
    assert details["units"] > 3 and details["partitions"] == 5 and details["components_mode"] == "distributed"
    assert details["combined_exchanges"] >= 6
    assert base["global_steps"]["minhash_dedup"]["combined_exchanges"] == 0
    assert base["global_steps"]["minhash_dedup"]["components_mode"] == "local"
    assert one["global_steps"]["minhash_dedup"]["partitions"] == 1
    if verify:  # checked where both signatures were at hand or after the exchange: the same pairs
        pairs = [run["global_steps"]["minhash_dedup"] for run in (base, many, one)]
        assert len({(p["candidate_pairs"], p["verified_pairs"]) for p in pairs}) == 1, pairs
        assert 0 < pairs[0]["verified_pairs"] <= pairs[0]["candidate_pairs"]
    recut = make_corpus(tmp_path / "recut", files=5, row_group=7)  # the same rows, cut otherwise
    dedup(recut, tmp_path / "d", [step])
    assert kept_ids(tmp_path / "d") == kept_ids(tmp_path / "a")


def test_verifying_shares_the_work_between_the_groups(ray_session, tmp_path, monkeypatch):
    """Each verify group gathers and checks about as many pairs as the others, however the
    documents are numbered (routing every pair by its larger number made the later groups gather
    and the first ones check: 1.7x and 2.6-2.9x the mean on this corpus)."""
    small_layout(monkeypatch, verify_group_mb=0.12)
    stats = dedup(make_corpus(tmp_path / "in", families=400), tmp_path / "out", [{"minhash_dedup": {"verify": True}}],
                  chunk_mb=0.05)
    details = stats["global_steps"]["minhash_dedup"]
    assert details["verify_groups"] == 5 and details["candidate_pairs"] > 600
    gathered, checked = details["verify_busiest"]
    assert gathered < 1.6 and checked < 1.6, details["verify_busiest"]


def test_combined_exchanges_keep_the_same_documents(ray_session, corpus, tmp_path, monkeypatch):
    """Exact then near duplicates with every exchange combined (groups of 2 senders) against none."""
    steps = [{"exact_dedup": {"partitions": 5}}, {"minhash_dedup": {"partitions": 5}}]
    plain = dedup(corpus, tmp_path / "plain", steps, chunk_mb=0.005)
    small_layout(monkeypatch, combine_group=2)
    combined = dedup(corpus, tmp_path / "combined", steps, chunk_mb=0.005)
    assert kept_ids(tmp_path / "plain") == kept_ids(tmp_path / "combined")
    assert plain["dropped"] == combined["dropped"] and combined["accounting_ok"]
    assert plain["global_steps"]["exact_dedup"]["combined_exchanges"] == 0
    # the sidecars and components (rank and choose tasks take groups of units and partitions instead)
    assert combined["global_steps"]["exact_dedup"]["combined_exchanges"] == 2
    assert combined["global_steps"]["minhash_dedup"]["combined_exchanges"] >= 2
    # the units' sidecars twice: first in groups of 2 units, then groups of those by receiver range
    assert combined["global_steps"]["exact_dedup"]["units"] > 8
    assert combined["global_steps"]["exact_dedup"]["combined_twice"] == 1
    assert combined["global_steps"]["minhash_dedup"]["combined_twice"] == 1
    assert plain["global_steps"]["minhash_dedup"]["combined_twice"] == 0


def test_nothing_to_deduplicate(ray_session, tmp_path):
    empty = tmp_path / "in" / "empty.jsonl"
    empty.parent.mkdir()
    empty.write_text("")
    raw = {"input": str(empty), "steps": ["exact_dedup", "minhash_dedup"], "output": {"path": str(tmp_path / "o")}}
    stats = run_job(parse_job(raw), RunOptions(progress=False))
    assert stats["docs_out"] == 0 and stats["quarantined"] == 1 and stats["accounting_ok"]
    assert stats["dropped"] == {"exact_dedup.duplicate": 0, "minhash_dedup.duplicate": 0}


@pytest.mark.cluster
def test_two_node_cluster_keeps_the_same_ids_and_both_nodes_work(ray_session, corpus, tmp_path):
    dedup(corpus, tmp_path / "local", [{"minhash_dedup": {"local_components_max_edges": 0}}], chunk_mb=0.01)
    script = Path(__file__).with_name("cluster_job.py")
    done = subprocess.run([sys.executable, str(script), str(corpus.path), str(tmp_path / "cluster")],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["nodes"] == 2 and report["kept"] == kept_ids(tmp_path / "local")


def test_exact_then_near_duplicates_in_one_pass(ray_session, corpus, tmp_path):
    rows = pq.read_table(corpus.path).to_pylist()
    source = write_jsonl(tmp_path / "in" / "docs.jsonl", [{"id": r["id"], "text": r["text"]} for r in rows])
    raw = {"input": str(source), "steps": ["exact_dedup", {"minhash_dedup": {"write_clusters": True}}],
           "output": {"path": str(tmp_path / "out"), "rejects": True}}
    stats = run_job(parse_job(raw), RunOptions(progress=False))
    exact = sum(k in ("exact", "cosmetic") for k in corpus.kinds.values())
    assert stats["dropped"]["exact_dedup.duplicate"] == exact
    assert stats["docs_out"] == len(set(corpus.family.values())) and stats["accounting_ok"]
    # minhash ignores what exact_dedup drops: no document is dropped twice, near copies go
    near = sum(k == "near" for k in corpus.kinds.values())
    assert stats["dropped"]["minhash_dedup.duplicate"] == near
    rejects = pq.read_table(tmp_path / "out" / "rejects").column("id").to_pylist()
    assert len(rejects) == len(set(rejects)) == exact + near
    # the text was read once for both: one intermediate write, no rewrite per step
    names = [s["name"] for s in stats["stages"]]
    assert names[:3] == ["read", "exact_dedup", "minhash_dedup"]
    assert stats["stages"][names.index("intermediate_io")]["docs_in"] == 2 * len(rows)  # written once, read once


HANZI = (
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多"
    "定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由"
)


def test_the_sidecar_that_takes_the_shared_pass_says_so():
    # the runner feeds it first, so the pass over the text is timed as minhash's, not exact_dedup's
    near, exact, ids = MinhashDedup().sidecar(4), ExactDedup().sidecar(4), ExactDedup(normalize=False).sidecar(4)
    assert not exact.share([exact, near]) and near.share([exact, near]) and near.text_pass is exact.text_pass
    assert not MinhashDedup().sidecar(4).share([ids]) and ids.text_pass is None
    table = pa.table({"text": ["the quick brown fox jumps over the lazy dog again", "a b c d e f g"]})
    near.add(table, 0)
    assert near.text_pass._table is table  # exact's add, next, finds the batch's pass done


def test_chinese_near_duplicates_with_the_default_job(ray_session, tmp_path):
    """The shipped job's steps, unchanged, on Chinese: 2-3% of the characters edited, a boilerplate
    line added, full-width and spacing variants; ``shingle: word`` misses most of the near copies."""
    rng = random.Random(4)
    rows, family = [], {}
    for f in range(30):
        sentences = ["".join(rng.choice(HANZI) for _ in range(rng.randint(8, 30))) for _ in range(rng.randint(6, 20))]
        base = "，".join(sentences[:3]) + "。" + "。\n".join(sentences[3:]) + "。运行 apt-get 命令。"
        near = "".join(rng.choice(HANZI) if c in HANZI and rng.random() < 0.025 else c for c in base)
        variants = {"base": base, "near": near, "boiler": base + "\n本文来源：技术文库　转载请注明出处",
                    "wide": base.replace("apt-get", "ＡＰＴ－ＧＥＴ").replace(" ", "\u3000")}
        for kind, text in list(variants.items())[: 1 + f % 4]:
            rows.append({"id": f"f{f:02d}-{kind}", "text": text})
            family[f"f{f:02d}-{kind}"] = f
    source = write_jsonl(tmp_path / "in" / "zh.jsonl", rows)
    kept = {}
    for name, minhash_step in (("auto", "minhash_dedup"), ("word", {"minhash_dedup": {"shingle": "word"}})):
        raw = {"input": str(source), "steps": ["exact_dedup", minhash_step], "output": {"path": str(tmp_path / name)}}
        stats = run_job(parse_job(raw), RunOptions(progress=False))
        kept[name] = kept_ids(tmp_path / name)
        if name == "auto":  # the full-width copy is an exact copy once normalized
            assert stats["dropped"]["exact_dedup.duplicate"] == sum(r["id"].endswith("-wide") for r in rows)
    assert kept["auto"] == sorted(f"f{f:02d}-base" for f in range(30))
    assert len(kept["word"]) > len(kept["auto"]) + 10
