"""The ``classify`` step: a tiny BERT classifier and a fastText one over a corpus, in a real job run
(``run_job`` on the test session's Ray) with keep/drop counts that reconcile, as a Ray Data batch
function, with the same labels as ``llmray predict``; the model loads once per process; mistakes in
the job file stop before Ray starts."""

from __future__ import annotations

import gzip
import json
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import llmray.ops.classify as classify_module  # registers the step
from llmray.config import parse_job
from llmray.errors import JobError
from llmray.ops.classify import Classify
from llmray.pipeline.runner import RunOptions, run_job
from tests.helpers import write_jsonl
from tests.serve import tiny

DOCS = tiny.labeled(120, seed=21)


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    return tiny.cached(tmp_path_factory.getbasetemp(), "classifier", tiny.classifier)


@pytest.fixture(scope="module")
def fasttext_model(tmp_path_factory) -> Path:
    return tiny.cached(tmp_path_factory.getbasetemp(), "fasttext", tiny.fasttext_model)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Three files (three units of work), each document with its true topic as `truth`."""
    directory = tmp_path_factory.mktemp("corpus")
    for part in range(3):
        rows = [{"id": d["id"], "text": d["text"], "truth": d["label"]} for d in DOCS[part::3]]
        write_jsonl(directory / f"part-{part}.jsonl", rows)
    return directory


def offline(model: Path, tmp: Path) -> dict[str, dict]:
    from llmray.train.predict import predict

    write_jsonl(tmp / "all.jsonl", [{"id": d["id"], "text": d["text"]} for d in DOCS])
    predict(str(model), [str(tmp / "all.jsonl")], str(tmp / "pred.jsonl"))
    return {r["id"]: r for r in map(json.loads, (tmp / "pred.jsonl").read_text().splitlines())}


def run(corpus: Path, out: Path, step: dict) -> dict:
    job = {"input": {"paths": [str(corpus)], "keep_fields": ["truth"], "chunk_mb": 0.001},
           "steps": [{"classify": step}], "output": {"path": str(out), "rejects": True}}
    return run_job(parse_job(job), RunOptions(progress=False))


@pytest.mark.parametrize("which", ["bert", "fasttext_model"])
def test_job_keeps_one_label_and_counts_reconcile(ray_session, request, corpus, tmp_path, which):
    model = request.getfixturevalue(which)
    truth = offline(model, tmp_path)
    stats = run(corpus, tmp_path / "out", {"model": str(model), "keep_labels": ["sport"], "probabilities": True})
    kept = pq.read_table(tmp_path / "out" / "data")
    rejects = pq.read_table(tmp_path / "out" / "rejects")
    want_sport = {i for i, r in truth.items() if r["label"] == "sport"}
    assert stats["docs_in"] == len(DOCS) == stats["docs_out"] + sum(stats["dropped"].values())
    assert stats["dropped"] == {"classify.label": len(DOCS) - len(want_sport)}
    assert set(kept.column("id").to_pylist()) == want_sport and kept.num_rows == stats["docs_out"]
    assert set(kept.column("label").to_pylist()) == {"sport"}
    assert set(rejects.column("reason").to_pylist()) == {"classify.label"}
    assert set(rejects.column("label").to_pylist()) == {"food"}
    for row in kept.to_pylist():  # the same scores as llmray predict, and every class's probability
        assert abs(row["score"] - truth[row["id"]]["score"]) < 1e-4
        assert abs(row["score_food"] + row["score_sport"] - 1) < 1e-4 and row["score_sport"] == row["score"]
    right = sum(t == "sport" for t in kept.column("truth").to_pylist())
    assert right >= 0.9 * kept.num_rows


def test_min_score_drops_with_its_own_reason(ray_session, bert, corpus, tmp_path):
    truth = offline(bert, tmp_path)
    cut = sorted(r["score"] for r in truth.values())[len(truth) // 3]  # about a third below it
    stats = run(corpus, tmp_path / "out", {"model": str(bert), "min_score": cut})
    low = sum(r["score"] < cut - 1e-4 for r in truth.values())
    dropped = stats["dropped"].get("classify.below_min_score", 0)
    assert abs(dropped - low) <= sum(abs(r["score"] - cut) < 1e-4 for r in truth.values())
    assert set(stats["dropped"]) <= {"classify.below_min_score"} and dropped > 0
    assert stats["docs_in"] == stats["docs_out"] + dropped
    rejects = pq.read_table(tmp_path / "out" / "rejects").to_pylist()  # what decided: the score and the limit
    assert len(rejects) == dropped and all(r["reason"] == "classify.below_min_score" for r in rejects)
    assert all(abs(r["value"] - r["score"]) < 1e-6 and r["value"] < cut and r["threshold"] == cut for r in rejects)


def test_ray_data_batch_function(ray_session, bert):
    import ray.data

    rows = pa.table({"id": [d["id"] for d in DOCS], "text": [d["text"] for d in DOCS],
                     "source": ["t"] * len(DOCS)})
    ds = ray.data.from_arrow([rows.slice(0, 40), rows.slice(40, 40), rows.slice(80)])
    out = ds.map_batches(Classify(model=str(bert)), batch_format="pyarrow").to_arrow_refs()
    table = pa.concat_tables(ray.get(out))
    direct, _, _ = Classify(model=str(bert)).split(rows)
    assert sorted(zip(table.column("id").to_pylist(), table.column("label").to_pylist(), strict=True)) == sorted(
        zip(direct.column("id").to_pylist(), direct.column("label").to_pylist(), strict=True))
    annotated = Classify(model=str(bert), keep_labels=["food"], annotate=True, concurrency=1).apply(ds).to_arrow_refs()
    marked = pa.concat_tables(ray.get(annotated))
    assert marked.num_rows == len(DOCS)
    reasons = dict(zip(marked.column("id").to_pylist(), marked.column("reason").to_pylist(), strict=True))
    labels = dict(zip(marked.column("id").to_pylist(), marked.column("label").to_pylist(), strict=True))
    assert all((reasons[i] is None) == (labels[i] == "food") for i in reasons)
    assert {r for r in reasons.values() if r} == {"classify.label"}
    assert marked.column("value").null_count == marked.num_rows  # a label drop measures nothing
    cut = float(np.median(direct.column("score").to_numpy()))
    low = Classify(model=str(bert), min_score=cut, annotate=True).transform(rows).to_pylist()
    dropped = [r for r in low if r["reason"]]
    assert len(dropped) == sum(r["score"] < cut for r in low) > 0
    assert all(r["threshold"] == cut and r["value"] == r["score"] for r in dropped)
    assert all(r["value"] is None and r["threshold"] is None for r in low if not r["reason"])


def test_setup_is_cheap_and_the_model_loads_once_per_process(bert):
    step = Classify(model=str(bert))
    step.setup()
    model = step._model
    copy = pickle.loads(pickle.dumps(step))
    assert copy._model is None and len(pickle.dumps(step)) < 2000  # the model never travels
    copy.setup()
    step.setup()
    again = Classify(model=str(bert))
    again.setup()
    assert copy._model is model and step._model is model and again._model is model
    assert sum(1 for key in classify_module._LOADED if key[0] == str(bert)) == 1


def test_empty_null_and_huge_texts(bert):
    table = pa.table({"id": ["a", "b", "c"], "text": ["", None, "goal " * 30_000], "source": ["t"] * 3})
    kept, dropped, _ = Classify(model=str(bert)).split(table)
    assert kept.num_rows == 3 and dropped.num_rows == 0 and kept.column("label").to_pylist()[2] == "sport"
    assert kept.column("label").to_pylist()[0] == kept.column("label").to_pylist()[1]  # null reads as ""


def test_fasttext_export_is_a_standard_fasttext_model(fasttext_model):
    import fasttext  # fasttext-predict, which knows nothing of floret

    meta = json.loads((fasttext_model / "llmray.json").read_text())
    assert meta["task"] == "fasttext" and meta["labels"] == ["food", "sport"]
    labels, probs = fasttext.load_model(str(fasttext_model / "model.bin")).predict("oven sugar bake flour", k=2)
    assert labels[0] == "__label__food" and probs[0] > 0.5
    step = Classify(model=str(fasttext_model / "model.bin"))  # the bare file works too (labels from the model)
    kept, _, _ = step.split(pa.table({"id": ["x"], "text": ["oven sugar bake flour"], "source": ["t"]}))
    assert kept.column("label").to_pylist() == ["food"]


def test_fasttext_train_command_writes_metrics(tmp_path):
    from tests.train.test_train import cli

    write_jsonl(tmp_path / "train.jsonl", tiny.labeled(200, seed=7))
    with gzip.open(tmp_path / "test.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in tiny.labeled(60, seed=8)))
    job = tmp_path / "ft.yaml"
    job.write_text(json.dumps({"train": {"task": "fasttext", "data": str(tmp_path / "train.jsonl"),
                                         "eval_data": str(tmp_path / "test.jsonl.gz"), "output": str(tmp_path / "run"),
                                         "dim": 8, "bucket": 1000, "threads": 1}}))
    assert cli("train", job) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.jsonl").read_text())
    assert metrics["accuracy"] >= 0.9 and metrics["eval_rows"] == 60 and metrics["train_rows"] == 200
    job.write_text(json.dumps({"train": {"task": "fasttext", "data": str(tmp_path / "train.jsonl"), "dimm": 8}}))
    with pytest.raises(JobError, match="train.dimm: unknown key"):
        cli("train", job)
    with pytest.raises(JobError, match="--max-steps: not used by task: fasttext"):
        cli("train", job, "--max-steps", "3")


@pytest.mark.parametrize(
    "step, message",
    [
        ({}, r"steps\[0\].classify.model: missing"),
        ({"model": "/no/such/model"}, "no such model directory"),
        ({"model": "MLM"}, "has no classification head \\(a masked-language model\\)"),
        ({"model": "BERT", "keep_labels": ["spam"]}, "keep_labels: 'spam' is not a label"),
        ({"model": "BERT", "min_score": 2}, "min_score: 2.0 is not in"),
        ({"model": "BERT", "batch_size": "big"}, "batch_size: expected an integer"),
    ],
)
def test_job_file_mistakes_stop_before_ray_starts(bert, tmp_path_factory, step, message):
    mlm = tiny.cached(tmp_path_factory.getbasetemp(), "mlm", tiny.mlm_checkpoint)
    step = {k: {"MLM": str(mlm), "BERT": str(bert)}.get(v, v) if k == "model" else v for k, v in step.items()}
    with pytest.raises(JobError, match=message):
        parse_job({"input": "x.jsonl", "steps": [{"classify": step}], "output": {"path": "out"}})


def test_fasttext_training_without_floret_is_one_clear_error(tmp_path, monkeypatch):
    import sys

    from llmray.errors import UserError
    from llmray.train import fasttext

    write_jsonl(tmp_path / "train.jsonl", tiny.labeled(20, seed=9))
    spec = fasttext.parse({"train": {"task": "fasttext", "data": str(tmp_path / "train.jsonl"),
                                     "output": str(tmp_path / "run")}})
    monkeypatch.setitem(sys.modules, "floret", None)  # as if it were not installed
    with pytest.raises(UserError, match=r'needs floret.*pip install "llmray\[fasttext\]"'):
        fasttext.train(spec)
    assert not (tmp_path / "run").exists()
