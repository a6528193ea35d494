"""`llmray bench`: the corpus generator's ground truth, the dedup scores, and the shape of a quick run.

Timings are not checked (they depend on the machine); the structure of results.json is.
"""

import json
import subprocess
import sys

from benchmarks import accuracy, corpus


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


def bench(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmray.cli", "bench", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_unknown_stage_is_refused_before_any_work(tmp_path):
    proc = bench("--stages", "nope", "--output", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "unknown stage(s) nope" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_quick_bench_writes_results_plots_and_table(tmp_path):
    out = tmp_path / "bench"
    proc = bench("--quick", "--docs", "200", "--cpus", "1", "--stages", "read,normalize,minhash_signatures",
                 "--output", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["schema"] == 1 and results["mode"] == "quick"
    assert {"cpu_model", "cores_logical", "ram_gb", "python", "libraries"} <= set(results["machine"])
    assert results["machine"]["libraries"]["ray"]
    main = results["corpora"]["synthetic"]
    assert main["docs"] == 200 and main["duplicates"]["should_remove"] > 0
    assert results["corpora"]["quickstart"]["docs"] > 1000

    names = [s["name"] for s in results["stages"]]
    assert names[0] == "read" and "normalize:all" in names and "minhash_signatures" in names
    assert "python" in {x["name"] for x in results["skipped"]}  # needs parameters: listed, not measured
    for stage in results["stages"]:
        assert stage["status"] == "ok", stage
        for figures in stage["corpora"].values():
            for key in ("docs_per_s", "mb_per_s", "mb_per_s_per_core", "wall_s"):
                assert set(figures[key]) == {"median", "min", "max", "spread_pct", "runs"}
            assert figures["peak_rss_mb"] > 0 and figures["docs_in"] > 0

    (job,) = results["scaling"]["jobs"]
    assert job["name"] == "normalize" and not job["failures"]
    (point,) = job["points"]
    assert point["cpus"] == 1 and point["efficiency"] == 1.0 and point["peak_tree_rss_mb"] > 0

    tasks = {(p["tool"], p["task"]) for p in results["peers"]["results"] if p["status"] == "ok"}
    assert tasks == {("datasketch", "signatures"), ("datasketch", "neardup")}
    (ratio,) = results["ratios"]
    assert (ratio["llmray_stage"], ratio["peer"]) == ("minhash_signatures", "datasketch")
    assert ratio["ratio"] > 0
    (scored,) = results["accuracy"]
    assert scored["tool"] == "datasketch"
    assert set(scored["removal"]["f1"]) == {"median", "min", "max", "spread_pct", "runs"}

    assert set(results["files"]["plots"]) == {"throughput.png", "scaling.png", "peers.png",
                                              "dedup_accuracy.png"}
    for name in results["files"]["plots"]:
        assert (out / name).stat().st_size > 1000
    table = (out / "results.md").read_text()
    assert "### Stages, one core each" in table and "### Against peers" in table
    assert not (out / "work").exists()

    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- bench:begin -->\nold\n<!-- bench:end -->\ntail\n")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.table", str(out / "results.json"), "--readme",
                           str(readme)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    block = readme.read_text()
    assert "old" not in block and block.endswith("<!-- bench:end -->\ntail\n")
    assert "| MinHash signatures, one core each |" in block and "bench/results.md" in block
