"""Several sources mixed into one corpus in chosen shares, deterministically."""

import pyarrow.compute as pc
import pyarrow.parquet as pq

from llmray.config import parse_job
from llmray.ops.mix import Mix
from llmray.pipeline.runner import RunOptions, run_job
from tests.helpers import write_jsonl


def test_rates_honour_shares_without_upsampling():
    rates = Mix(shares={"web": 0.6, "books": 0.3, "code": 0.1}).rates({"web": 600, "books": 100, "code": 100})
    assert rates["books"] == 1.0
    kept = {"web": rates["web"] * 600, "books": 100, "code": rates["code"] * 100}
    total = sum(kept.values())
    assert abs(kept["web"] / total - 0.6) < 1e-9 and abs(kept["code"] / total - 0.1) < 1e-9


def test_two_sources_mixed_to_target_shares(ray_session, tmp_path):
    write_jsonl(tmp_path / "web.jsonl", [{"id": f"w{i}", "text": "web page text " * 10} for i in range(2000)])
    write_jsonl(tmp_path / "books.jsonl", [{"id": f"b{i}", "text": "a book passage " * 10} for i in range(1000)])
    raw = {"input": [{"paths": str(tmp_path / "web.jsonl"), "source": "web", "share": 0.5},
                     {"paths": str(tmp_path / "books.jsonl"), "source": "books", "share": 0.5}],
           "steps": ["clean_whitespace"], "output": {"path": str(tmp_path / "out")}}
    stats = run_job(parse_job(raw), RunOptions(progress=False))
    assert stats["docs_in"] == 3000
    assert stats["docs_in"] == stats["docs_out"] + stats["dropped"]["mix.over_share"]
    data = pq.read_table(tmp_path / "out" / "data")
    web = pc.sum(pc.equal(data.column("source"), "web")).as_py()
    books = pc.sum(pc.equal(data.column("source"), "books")).as_py()
    assert books == 1000 and abs(web - 1000) < 100
    assert stats["sources"]["web"]["docs_in"] == 2000 and stats["sources"]["web"]["docs_out"] == web
    again = run_job(parse_job({**raw, "output": {"path": str(tmp_path / "again")}}), RunOptions(progress=False))
    assert again["docs_out"] == stats["docs_out"]
    assert sorted(pq.read_table(tmp_path / "again" / "data").column("id").to_pylist()) == \
        sorted(data.column("id").to_pylist())
