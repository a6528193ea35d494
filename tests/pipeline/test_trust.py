"""Trust under misuse: what --overwrite may delete, where a run may write, two runs on one output,
an input changed between a crash and the rerun, a record that kills its worker (and attempts that
got through every batch, which never count as crashes), a finished run whose data was deleted."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from llmray.config import parse_job
from llmray.errors import UserError
from llmray.pipeline import outdir
from llmray.pipeline.runner import RunOptions, run_job
from tests.helpers import ENGLISH, job, run_isolated, write_jsonl
from tests.slow_ops import RELEASE_ENV

ROOT = Path(__file__).resolve().parents[2]
QUIET = RunOptions(progress=False)


@pytest.fixture
def corpus(tmp_path):
    for f in range(4):
        write_jsonl(tmp_path / "in" / f"part{f}.jsonl",
                    [{"id": f"f{f}-{i}", "text": f"{ENGLISH} Number {f * 100 + i}."} for i in range(25)])
    return tmp_path / "in"


def ids(out: Path) -> list[str]:
    return sorted(pq.read_table(out / "data").column("id").to_pylist())


def test_overwrite_removes_only_what_llmray_wrote(ray_session, corpus, tmp_path):
    out = tmp_path / "out"
    run_job(parse_job(job(corpus, out, ["clean_whitespace"])), QUIET)
    mine = out / "data" / "mine.txt"
    mine.write_text("my own notes")
    (out / "notes").mkdir()
    (out / "notes" / "keep.md").write_text("also mine")
    with pytest.raises(UserError, match="holds files llmray did not write.*data/mine.txt"):
        run_job(parse_job(job(corpus, out, ["unicode_normalize"])), RunOptions(progress=False, overwrite=True))
    assert mine.read_text() == "my own notes" and (out / "notes" / "keep.md").exists()
    mine.unlink()
    stats = run_job(parse_job(job(corpus, out, ["unicode_normalize"])), RunOptions(progress=False, overwrite=True))
    assert stats["docs_out"] == 100 and (out / "notes" / "keep.md").read_text() == "also mine"


@pytest.mark.parametrize("where", [".", "", "/", "~", "data-of-checkout", "inside-input"])
def test_places_a_run_must_not_write_are_refused_in_one_line(corpus, tmp_path, monkeypatch, where, capsys):
    from llmray.cli import main

    monkeypatch.chdir(tmp_path)
    target = {"~": str(Path.home()), "data-of-checkout": str(ROOT / "data"),
              "inside-input": str(corpus / "out")}.get(where, where)
    job_file = tmp_path / "job.yaml"
    job_file.write_text(json.dumps(job(corpus, Path("unused"), ["clean_whitespace"])))
    assert main(["run", str(job_file), "--output", target, "--overwrite", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and ("choose an output" in err or "folder of its own" in err)
    assert (ROOT / "data" / "quickstart").is_dir() and (corpus / "part0.jsonl").exists()


def test_a_second_run_on_the_same_output_stops_at_once(corpus, tmp_path, children):
    job_file = tmp_path / "job.yaml"
    raw = job(corpus, tmp_path / "out", [{"python": {"function": "tests.slow_ops:wait_for_release"}}], chunk_mb=0.001)
    job_file.write_text(json.dumps(raw))
    release = tmp_path / "release"
    env = {**os.environ, "PYTHONPATH": str(ROOT), RELEASE_ENV: str(release)}
    args = [sys.executable, "-m", "llmray.cli", "run", str(job_file), "--quiet", "--num-cpus", "1"]
    first = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    children.append(first)
    deadline = time.monotonic() + 60
    while not (tmp_path / "out" / outdir.LEASE).exists():
        assert first.poll() is None and time.monotonic() < deadline, first.stdout.read()
        time.sleep(0.1)
    started = time.monotonic()
    second = run_isolated(args + ["--overwrite"], timeout=60, env=env, cwd=ROOT)  # nor does it clear the output
    assert second.returncode == 2 and time.monotonic() - started < 30
    assert "in use by another llmray run" in second.stderr and f"pid {first.pid}" in second.stderr
    assert first.poll() is None, "the first run ended before the second one was refused"
    release.touch()
    assert first.wait(timeout=120) == 0
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["accounting_ok"] and stats["docs_out"] == 100 and len(set(ids(tmp_path / "out"))) == 100


def test_a_lease_left_by_a_dead_run_is_taken_over(ray_session, corpus, tmp_path):
    out = tmp_path / "out"
    (out / "_progress").mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lease = {"host": os.uname().nodename, "pid": dead.pid, "id": "gone", "since": "earlier", "heartbeat": time.time()}
    (out / outdir.LEASE).write_text(json.dumps(lease))
    (out / "job.json").write_text(json.dumps({"fingerprint": parse_job(job(corpus, out)).fingerprint()}))
    assert run_job(parse_job(job(corpus, out)), QUIET)["docs_out"] == 100
    assert not (out / outdir.LEASE).exists()


def test_an_input_changed_between_a_crash_and_the_rerun_is_picked_up(ray_session, corpus, tmp_path):
    out = tmp_path / "out"
    raw = job(corpus, out, ["clean_whitespace", "exact_dedup"], chunk_mb=0.001)
    run_job(parse_job(raw), QUIET)
    (out / "stats.json").unlink()  # as if the run had died before its end
    write_jsonl(corpus / "part9.jsonl", [{"id": f"new-{i}", "text": f"{ENGLISH} Fresh {i}."} for i in range(10)])
    (corpus / "part0.jsonl").unlink()
    stats = run_job(parse_job(raw), QUIET)
    assert stats["docs_in"] == 85 and stats["accounting_ok"]
    kept = ids(out)
    assert len(kept) == len(set(kept)) == stats["docs_out"] == 85
    assert "new-3" in kept and not [i for i in kept if i.startswith("f0-")]


def test_a_record_that_kills_its_worker_is_quarantined_and_the_run_ends(ray_session, tmp_path):
    rows = [{"id": f"d{i}", "text": f"{ENGLISH} {i}" + (" POISON" if i == 7 else "")} for i in range(30)]
    write_jsonl(tmp_path / "in" / "a.jsonl", rows)
    raw = job(tmp_path / "in", tmp_path / "out", [{"python": {"function": "tests.slow_ops:die_on_poison"}}])
    stats = run_job(parse_job(raw), RunOptions(progress=False, max_retries=3))
    assert stats["accounting_ok"] and stats["retries"] >= 2
    assert stats["quarantined"] + stats["docs_out"] == 30 and stats["quarantined"] >= 1
    records = [json.loads(line) for p in (tmp_path / "out" / "quarantine").glob("*.jsonl")
               for line in p.read_text().splitlines()]
    assert "d7" in {r["id"] for r in records} and all("worker died 2 times" in r["error"] for r in records)


def test_attempts_that_got_through_their_batches_never_set_a_batch_aside(ray_session, corpus, tmp_path):
    # A worker that dies after its unit's last batch (its marker lost) has its unit run again;
    # such attempts are no crash on that batch, however often it happens.
    out = tmp_path / "out"
    raw = job(corpus, out, ["clean_whitespace"])
    for _ in range(2):
        run_job(parse_job(raw), QUIET)
        for marker in (out / "_progress" / "s0").glob("*.json"):
            marker.unlink()
        (out / "stats.json").unlink()
    stats = run_job(parse_job(raw), QUIET)
    assert stats["quarantined"] == 0 and stats["docs_out"] == 100


def test_a_finished_run_whose_data_was_deleted_is_redone(ray_session, corpus, tmp_path):
    out = tmp_path / "out"
    raw = job(corpus, out, ["clean_whitespace"], chunk_mb=0.001)
    first = run_job(parse_job(raw), QUIET)
    lost = sorted((out / "data").glob("*.parquet"))[0]
    lost.unlink()
    again = run_job(parse_job(raw), QUIET)
    assert "already_complete" not in again and again["docs_out"] == first["docs_out"]
    assert len(ids(out)) == first["docs_out"]
    assert run_job(parse_job(raw), QUIET)["already_complete"]
