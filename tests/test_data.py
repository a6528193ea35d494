"""llmray inside a user's own Ray Data pipeline: readers, steps as batch functions, global steps on
datasets, the writer; and the same result as the runner on the same job."""

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

import llmray.data as ld
from llmray.config import parse_job
from llmray.ops import CleanWhitespace, ExactDedup, GopherQuality, Language, Length, MinhashDedup
from llmray.pipeline.runner import RunOptions, run_job
from tests.helpers import ENGLISH, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "data" / "quickstart" / "*.jsonl.gz")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """English with exact and near copies, a French text, a short line and a broken record."""
    root = tmp_path_factory.mktemp("data")
    rows = []
    for i in range(30):
        text = f"{ENGLISH} Paragraph {i % 10} of the minutes."
        rows.append({"id": f"d{i:02d}", "text": text if i < 20 else text.replace("minutes", "record")})
    rows.append({"id": "fr", "text": "Le conseil municipal a voté le budget de la bibliothèque et les horaires."})
    rows.append({"id": "short", "text": "Too short."})
    path = write_jsonl(root / "in.jsonl", rows + ['{"id": "broken", "text": '])
    return path


def test_steps_are_ray_data_batch_functions_in_any_batch_format(ray_session, corpus):
    ds = ld.read(str(corpus))
    ds = ds.map_batches(CleanWhitespace(), batch_format="pandas")
    ds = ds.map_batches(Length(min_words=5), batch_format="numpy")
    ds = ds.map_batches(Language(languages=["en"]), batch_format="pyarrow")
    rows = ds.take_all()
    assert sorted(r["id"] for r in rows) == [f"d{i:02d}" for i in range(30)]
    assert {r["language"] for r in rows} == {"en"} and all(r["language_score"] > 0.65 for r in rows)


def test_annotate_keeps_every_row_and_says_why(ray_session, corpus):
    ds = ld.read(str(corpus)).map_batches(Length(min_words=5, annotate=True), batch_format="pyarrow")
    ds = ds.map_batches(Language(annotate=True), batch_format="pyarrow")
    reasons = {r["id"]: r["reason"] for r in ds.take_all()}
    assert len(reasons) == 32 and reasons["short"] == "length.too_few_words"
    assert reasons["fr"] == "language.other_language" and reasons["d00"] is None


def test_other_column_names_and_python_checks(ray_session):
    table = pa.table({"doc": ["a", "b"], "content": [ENGLISH, "tiny"]})
    out = Length(min_words=5).on(text="content", id="doc")(table)
    assert out.column_names == ["doc", "content"] and out.column("doc").to_pylist() == ["a"]
    frame = Length(min_words=5).on(text="content")(pd.DataFrame({"content": [ENGLISH, "x"], "text": ["y", "z"]}))
    assert list(frame["content"]) == [ENGLISH] and list(frame["text"]) == ["y"]  # their own `text` is kept apart
    with pytest.raises(TypeError, match="llmray.data.apply"):
        MinhashDedup()(table)


def test_global_steps_take_and_return_datasets_like_the_runner(ray_session, corpus, tmp_path):
    quarantine = tmp_path / "quarantine"
    ds = ld.read(str(corpus), quarantine=str(quarantine))
    ds = ld.apply(ds, [CleanWhitespace(), ExactDedup(), MinhashDedup()], work_dir=str(tmp_path / "work"))
    kept = sorted(r["id"] for r in ds.take_all())
    job = {"input": str(corpus), "steps": ["clean_whitespace", "exact_dedup", "minhash_dedup"],
           "output": {"path": str(tmp_path / "run")}}
    stats = run_job(parse_job(job), RunOptions(progress=False))
    assert kept == sorted(pq.read_table(tmp_path / "run" / "data").column("id").to_pylist())
    assert len(kept) == stats["docs_out"] < 30
    bad = [json.loads(line) for p in quarantine.glob("*.jsonl") for line in p.read_text().splitlines()]
    assert [b["line"] for b in bad] == [33] and "in.jsonl" in bad[0]["file"]


def test_annotated_duplicates_and_the_writer(ray_session, corpus, tmp_path):
    ds = ld.read(str(corpus)).map_batches(GopherQuality(annotate=True), batch_format="pyarrow")
    ds = ld.apply(ds, ExactDedup(), work_dir=str(tmp_path / "work"), annotate=True)
    rows = ds.take_all()
    assert len(rows) == 32
    copies = [r for r in rows if r["reason"] == "exact_dedup.duplicate"]
    assert copies and all(r["duplicate_of"] < r["id"] for r in copies)
    counts = ld.write(ray.data.from_items(rows), str(tmp_path / "out"))
    assert counts["docs_in"] == 32 and counts["docs_out"] + sum(counts["dropped"].values()) == 32
    assert counts["dropped"]["exact_dedup.duplicate"] == len(copies)
    assert pq.read_table(tmp_path / "out" / "data").num_rows == counts["docs_out"]
    assert pq.read_table(tmp_path / "out" / "rejects" / "exact_dedup").num_rows == len(copies)
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["docs_out"] == counts["docs_out"]


def test_the_readme_example_runs(ray_session, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ds = ld.read(QUICKSTART, quarantine="out/quarantine")
    ds = ds.map_batches(CleanWhitespace(), batch_format="pyarrow")
    ds = ds.map_batches(GopherQuality(annotate=True), batch_format="pyarrow")
    ds = ld.apply(ds, MinhashDedup(), work_dir="out/work", annotate=True)
    counts = ld.write(ds, "out/api")
    assert counts["docs_in"] == 1540 == counts["docs_out"] + sum(counts["dropped"].values())
    assert set(counts["dropped"]) <= {"minhash_dedup.duplicate"} | set(GopherQuality().reason_names())
