"""Dedup steps through a real Ray runtime, on generated corpora with known duplicates."""

import dataclasses
import json
import random
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmray.dedup.keep import KeepRule
from llmray.dedup.workflow import Layout, run_minhash
from llmray.ops.base import registry
from llmray.ops.dedup import ExactDedup, MinhashDedup
from llmray.pipeline.context import GlobalContext

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
        rows.append({"id": doc_id, "text": text, "source": "gen", "quality": float(rng.randint(0, 3))})
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


def context(tmp: Path, corpus: Corpus, num_cpus: int = 2, rejects: bool = True) -> GlobalContext:
    return GlobalContext(input_dir=corpus.path, output_dir=tmp / "data", work_dir=tmp / "work", output_root=tmp,
                         rejects_dir=tmp / "rejects" if rejects else None, num_cpus=num_cpus)


def kept_ids(ctx: GlobalContext) -> list[str]:
    return sorted(pq.read_table(ctx.output_dir).column("id").to_pylist())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus") / "in")


def test_ops_are_registered_with_their_parameters():
    ops = registry()
    assert ops["minhash_dedup"] is MinhashDedup and ops["exact_dedup"] is ExactDedup
    assert MinhashDedup().sketch_spec().bands * MinhashDedup().sketch_spec().rows == 128
    assert MinhashDedup(bands=32).sketch_spec().rows == 4
    assert MinhashDedup(shingle="char").sketch_spec().ngram == 9
    for bad in ({"bands": 7, "rows": 8}, {"bands": 5}, {"keep": "largest"}, {"threshold": 1.2}):
        with pytest.raises(ValueError):
            MinhashDedup(**bad)


def test_exact_dedup_counts_and_accounting(ray_session, corpus, tmp_path):
    exact_copies = sum(k == "exact" for k in corpus.kinds.values())
    cosmetic = sum(k == "cosmetic" for k in corpus.kinds.values())
    raw = context(tmp_path / "raw", corpus)
    result = ExactDedup(normalize=False).run(raw)
    assert result.dropped == {"exact_dedup.duplicate": exact_copies}
    assert result.docs_in == len(corpus.family) == result.docs_out + exact_copies
    norm = context(tmp_path / "norm", corpus)
    result = ExactDedup().run(norm)
    assert result.dropped == {"exact_dedup.duplicate": exact_copies + cosmetic}
    assert result.bytes_in > result.bytes_out > 0
    rejects = pq.read_table(norm.rejects_dir)
    assert rejects.num_rows == exact_copies + cosmetic
    assert set(rejects.column("reason").to_pylist()) == {"exact_dedup.duplicate"}
    assert set(rejects.schema.names) == {"id", "text", "source", "quality", "reason"}
    assert all(corpus.kinds[i] in ("exact", "cosmetic", "base") for i in rejects.column("id").to_pylist())


def test_minhash_finds_near_duplicates_and_writes_clusters(ray_session, corpus, tmp_path):
    ctx = context(tmp_path, corpus)
    result = MinhashDedup(write_clusters=True).run(ctx)
    kept = kept_ids(ctx)
    families = {corpus.family[i] for i in corpus.family}
    assert sorted({corpus.family[i] for i in kept}) == sorted(families)  # no family lost
    assert len(kept) == len(families)  # every duplicate found
    assert result.docs_in == result.docs_out + result.dropped["minhash_dedup.duplicate"]
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
    details = result.details
    assert details["candidate_pairs"] >= details["groups"] > 0 and details["empty_docs"] == 1
    assert {"signatures", "buckets", "components", "keep", "write"} <= set(details["seconds"])


def test_keep_rule_max_column(ray_session, corpus, tmp_path):
    ctx = context(tmp_path, corpus, rejects=False)
    MinhashDedup(keep="max:quality").run(ctx)
    table = pq.read_table(corpus.path).to_pylist()
    best: dict[str, tuple] = {}
    for row in table:
        key = (-row["quality"], row["id"])
        fam = corpus.family[row["id"]]
        best[fam] = min(best.get(fam, key), key)
    assert kept_ids(ctx) == sorted(k[1] for k in best.values())
    with pytest.raises(ValueError, match="no column"):
        MinhashDedup(keep="max:missing").run(context(tmp_path / "x", corpus))
    with pytest.raises(ValueError, match="not numeric"):
        ExactDedup(keep="max:source").run(context(tmp_path / "y", corpus))


@pytest.mark.parametrize("verify", [False, True])
def test_kept_ids_do_not_depend_on_layout(ray_session, corpus, tmp_path, verify):
    op = MinhashDedup(verify=verify, threshold=0.7)
    runs = []
    layouts = [Layout(), Layout(unit_mb=0.001, partitions=5, local_components_max_edges=0, verify_group_mb=0.01),
               Layout(partitions=1)]
    for k, (layout, cpus) in enumerate(zip(layouts, [2, 1, 2], strict=True)):
        ctx = context(tmp_path / str(k), corpus, num_cpus=cpus)
        result = run_minhash(ctx, op.sketch_spec(), op.threshold, verify, KeepRule(), False, op.name, layout)
        runs.append((kept_ids(ctx), result.details))
    assert runs[0][0] == runs[1][0] == runs[2][0]
    assert runs[1][1]["units"] > 3 and runs[1][1]["components_mode"] == "distributed"
    assert runs[0][1]["components_mode"] == "local"
    # A differently cut input with the same rows gives the same kept ids.
    recut = make_corpus(tmp_path / "recut", files=5, row_group=7)
    ctx = context(tmp_path / "recut-out", recut)
    run_minhash(ctx, op.sketch_spec(), op.threshold, verify, KeepRule(), False, op.name, Layout())
    assert kept_ids(ctx) == runs[0][0]


def test_empty_input(ray_session, tmp_path):
    (tmp_path / "in").mkdir()
    ctx = GlobalContext(tmp_path / "in", tmp_path / "data", tmp_path / "work", tmp_path, None, 2)
    assert MinhashDedup().run(ctx).docs_in == 0
    assert ExactDedup().run(ctx).dropped == {"exact_dedup.duplicate": 0}


@pytest.mark.cluster
def test_two_node_cluster_keeps_the_same_ids(ray_session, corpus, tmp_path):
    ctx = context(tmp_path / "local", corpus)
    MinhashDedup().run(ctx)
    script = Path(__file__).with_name("dedup_cluster_job.py")
    done = subprocess.run([sys.executable, str(script), str(corpus.path), str(tmp_path / "cluster")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["nodes"] == 2 and report["kept"] == kept_ids(ctx)


def test_runner_job_with_both_steps(ray_session, corpus, tmp_path):
    from llmray.config import parse_job
    from llmray.pipeline.runner import RunOptions, run_job
    from tests.helpers import job, write_jsonl

    rows = pq.read_table(corpus.path).to_pylist()
    source = write_jsonl(tmp_path / "in" / "docs.jsonl", [{"id": r["id"], "text": r["text"]} for r in rows])
    steps = ["exact_dedup", {"minhash_dedup": {"write_clusters": True}}]
    stats = run_job(parse_job(job(source, tmp_path / "out", steps, rejects=True)), RunOptions(progress=False))
    exact = sum(k in ("exact", "cosmetic") for k in corpus.kinds.values())
    assert stats["dropped"]["exact_dedup.duplicate"] == exact
    assert stats["docs_out"] == len(set(corpus.family.values())) and stats["accounting_ok"]
    assert set(stats["global_steps"]["minhash_dedup"]) >= {"candidate_pairs", "groups", "seconds"}
    assert (tmp_path / "out" / "clusters").is_dir()


def test_signatures_resume_from_the_work_dir_cache(corpus, tmp_path, monkeypatch):
    from llmray.dedup import signatures
    from llmray.dedup.units import plan_units

    unit = plan_units(corpus.path, 1 << 30)[0]
    spec = MinhashDedup().sketch_spec()
    first = signatures.sign_unit(unit, spec, 2, True, tmp_path)
    assert len(list(tmp_path.glob("u00000-*.npz"))) == 1

    def crash(*args, **kwargs):
        raise AssertionError("signatures recomputed instead of read from the cache")

    monkeypatch.setattr(signatures.minhash, "signatures", crash)
    again = signatures.sign_unit(unit, spec, 2, True, tmp_path)
    assert first[0] == again[0] and (first[1] == again[1]).all()
    assert all((a == b).all() for a, b in zip(first[2:], again[2:], strict=True))
