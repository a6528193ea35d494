"""`llmray bench`: the corpus generator's ground truth, the dedup scores, and what a quick run measures.

Timings are not checked (they depend on the machine); what was measured on what is.
"""

import json
import subprocess
import sys

import pytest

from llmray.bench import accuracy, corpus, measure, table


def test_generator_injects_duplicates_with_exact_ground_truth():
    docs, truth = corpus.generate(corpus.GeneratorParams(docs=400, seed=3))
    text = {d["id"]: d["text"] for d in docs}
    assert len(docs) == len(truth) == len(text) == 400
    kinds = {r["kind"].split(":")[0] for r in truth}
    assert kinds == {"orig", "exact", "near"}
    for record in truth:
        if record["kind"] == "orig":
            assert record["src"] is None and record["cluster"] == record["id"]
            continue
        source = text[record["src"]]
        similarity = corpus.jaccard(corpus.shingles(text[record["id"]]), corpus.shingles(source))
        assert similarity == record["jaccard_to_src"] or abs(similarity - record["jaccard_to_src"]) < 1e-3
        if record["kind"] == "exact":
            assert text[record["id"]] == source
        else:
            assert 0.65 <= similarity <= 0.98
        assert next(r for r in truth if r["id"] == record["cluster"])["kind"] == "orig"
    lengths = sorted(len(t) for t in text.values())
    assert 1000 < lengths[len(lengths) // 2] < 4000  # log-normal around 2,000 characters
    assert corpus.generate(corpus.GeneratorParams(docs=50, seed=3)) == corpus.generate(
        corpus.GeneratorParams(docs=50, seed=3))


def test_permuted_copy_keeps_duplicates_inside_and_shares_nothing_across():
    docs, truth = corpus.generate(corpus.GeneratorParams(docs=120, seed=1))
    copy, copy_truth = corpus.permuted_copy(docs, truth, 1)
    assert corpus.permuted_copy(docs, truth, 0) == (docs, truth)
    assert [d["id"] for d in copy] == [f"{d['id']}-r1" for d in docs]
    assert [len(d["text"]) for d in copy] == [len(d["text"]) for d in docs]
    assert [t["cluster"] for t in copy_truth] == [f"{t['cluster']}-r1" for t in truth]
    text, copied = {d["id"]: d["text"] for d in docs}, {d["id"]: d["text"] for d in copy}
    for record in (t for t in truth if t["src"]):
        before = corpus.jaccard(corpus.shingles(text[record["id"]]), corpus.shingles(text[record["src"]]))
        after = corpus.jaccard(corpus.shingles(copied[record["id"] + "-r1"]),
                               corpus.shingles(copied[record["src"] + "-r1"]))
        assert after == before
    shared = set().union(*map(corpus.shingles, text.values())) & set().union(*map(corpus.shingles, copied.values()))
    assert not shared


def test_scores_follow_the_research_definitions():
    truth = {"a": "1", "b": "1", "c": "1", "d": "2", "e": "3"}
    assert accuracy.removal_scores(truth, {"b", "c"}) == {
        "precision": 1.0, "recall": 1.0, "f1": 1.0, "removed": 2, "should_remove": 2}
    half = accuracy.removal_scores(truth, {"b", "d"})
    assert (half["precision"], half["recall"]) == (0.5, 0.5)
    labels, removed = accuracy.clusters_from_pairs(list(truth), [(0, 1), (3, 4)])
    assert removed == {"b", "e"} and labels == {"a": "a", "b": "a", "d": "d", "e": "d"}
    pair = accuracy.pair_scores(truth, labels)
    assert (pair["true_pairs"], pair["predicted_pairs"], pair["precision"]) == (3, 2, 0.5)


def bench(*args: str, cwd=None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmray.cli", "bench", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)


def test_core_parallelism_times_each_process_and_reads_as_the_efficiency_ceiling():
    """Two processes of the same pure compute against one alone: a figure near or below 1, and a
    line in the machine description that says what it bounds."""
    probe = measure.core_parallelism(2, n=300_000, repeats=2)
    assert probe["cores"] == 2 and probe["alone_s"] > 0 and probe["together_s"] > 0
    assert 0.2 < probe["efficiency"] < 2
    assert probe["efficiency"] == pytest.approx(probe["alone_s"] / probe["together_s"], abs=0.01)
    machine = {"cpu_model": "x", "cores_logical": 2, "os": "Linux", "python": "3.11", "libraries": {},
               "core_parallelism_start": probe, "core_parallelism_end": {**probe, "efficiency": 0.5}}
    line = table.machine_line({"machine": machine})
    assert f"each ran at {probe['efficiency']:.2f} of one alone's speed at the start, 0.50 at the end" in line


def test_unknown_stage_is_refused_before_any_work(tmp_path):
    proc = bench("--stages", "read,nope", "--output", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "unknown stage(s) nope" in proc.stderr and "jobs" in proc.stderr  # the known names are listed
    assert not (tmp_path / "out").exists()


def test_quick_bench_measures_whole_jobs_first(tmp_path):
    out = tmp_path / "bench"
    docs = 300
    # From outside the checkout: nothing of the repository is needed.
    proc = bench("--quick", "--docs", str(docs), "--cpus", "1", "--stages", "exact_dedup,minhash_signatures,jobs",
                 "--output", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["mode"] == "quick" and results["machine"]["libraries"]["ray"]
    for when in ("start", "end"):  # the host's memory speed, which swings by the hour on some VMs
        touch = results["machine"][f"memory_touch_{when}"]
        assert touch["fresh_mb_s"] > 0 and touch["warm_mb_s"] > 0
    assert "untouched memory written at" in (out / "results.md").read_text()
    main = results["corpora"]["synthetic"]
    assert main["docs"] == docs and main["duplicates"]["exact"] > 0

    jobs = results["jobs"]["jobs"]
    assert [j["file"] for j in jobs] == ["jobs/dedup.yaml", "jobs/clean.yaml", "jobs/pipeline.yaml"]
    for job in jobs:
        assert not job["failures"], job["failures"]
        (point,) = job["points"]
        assert point["cpus"] == 1 and point["docs_in"] == docs and round(point["bytes_in"] / 1e6, 2) == main["text_mb"]
        assert point["docs_out"] + sum(point["dropped"].values()) == docs
        per_core = point["bytes_in"] / 1e6 / point["wall_s"]["median"] / point["cpus"]
        assert point["mb_per_s_per_core"]["median"] == pytest.approx(per_core, rel=2e-3)
    dedup, clean, _ = jobs
    assert set(dedup["points"][0]["dropped"]) == {"exact_dedup.duplicate", "minhash_dedup.duplicate"}
    assert dedup["points"][0]["accuracy"]["removal"]["removed"] == docs - dedup["points"][0]["docs_out"]
    assert "accuracy" not in clean["points"][0] and not clean["peers"]  # filters drop more than duplicates
    (peer,) = dedup["peers"]
    assert (peer["tool"], peer["task"], peer["docs"]) == ("datasketch", "dedup_job", docs)
    assert peer["ratio"] == round(dedup["points"][0]["mb_per_s_per_core"]["median"]
                                  / peer["mb_per_s_per_core"]["median"], 2)

    stages = {s["name"]: s for s in results["stages"]}
    assert set(stages) == {"exact_dedup", "minhash_signatures"}
    exact = stages["exact_dedup"]
    assert (exact["kind"], exact["status"]) == ("job", "ok")
    figures = exact["corpora"]["synthetic"]
    # Exact copies are all exact_dedup removes, and each removal is right.
    assert figures["docs_in"] - figures["docs_out"] == main["duplicates"]["exact"]
    assert figures["ops"]["exact_dedup"]["details"]["duplicates"] == main["duplicates"]["exact"]
    assert figures["accuracy"]["removal"]["precision"]["median"] == 1.0
    assert results["corpora"]["quickstart"]["docs"] == exact["corpora"]["quickstart"]["docs_in"]
    (ratio,) = [r for r in results["ratios"] if r["task"] == "signatures"]
    assert ratio["llmray"] == stages["minhash_signatures"]["corpora"]["synthetic"]["mb_per_s_per_core"]["median"]
    (scaled,) = results["scaling"]["jobs"]
    assert (scaled["name"], scaled["steps"], scaled["points"][0]["docs_in"]) == ("dedup", ["exact_dedup"], docs)
    assert not (out / "work").exists()
    assert {"scaling.png", "dedup_accuracy.png"} <= set(results["files"]["plots"])

    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- bench:begin -->\nOLD TABLE\n<!-- bench:end -->\ntail\n")
    proc = subprocess.run([sys.executable, "-m", "llmray.bench.table", str(out / "results.json"), "--readme",
                           str(readme)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    block = readme.read_text()
    assert "OLD TABLE" not in block and block.endswith("<!-- bench:end -->\ntail\n")
    rows = [line for line in block.splitlines() if line.startswith("| ") and not line.startswith("| what")]
    assert [row.split("`")[1] for row in rows[:3]] == ["jobs/dedup.yaml", "jobs/clean.yaml", "jobs/pipeline.yaml"]
    assert all(row.startswith("| whole job") for row in rows[:3]) and rows[3].startswith("| part of a job")
