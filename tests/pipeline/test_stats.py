"""The accounting check: it passes exactly when every document is kept, dropped or quarantined; and
whose time a stage's seconds are."""

import pytest

from llmray.pipeline import stats as st


def counts(docs_in: int, docs_out: int, dropped: dict[str, int], quarantined: int) -> dict:
    return {"docs_in": docs_in, "docs_out": docs_out, "dropped": dropped, "quarantined": quarantined}


def test_a_run_that_reconciles_passes():
    assert st.check_accounting(counts(100, 60, {"a.x": 30, "b.y": 5}, 5)) is None
    assert st.check_accounting(counts(0, 0, {}, 0)) is None


@pytest.mark.parametrize("bad", [
    counts(100, 60, {"a.x": 30}, 5),        # five documents lost
    counts(100, 61, {"a.x": 30, "b.y": 5}, 5),  # one counted twice
    counts(100, 60, {"a.x": 35}, 0),        # quarantine forgotten
    counts(99, 60, {"a.x": 35}, 5),
])
def test_any_mismatch_is_reported_with_the_numbers(bad):
    problem = st.check_accounting(bad)
    assert problem is not None and "accounting mismatch" in problem
    assert f"docs_in {bad['docs_in']}" in problem and f"docs_out {bad['docs_out']}" in problem


def test_counts_merge_by_adding_and_keep_node_names_once():
    total = st.new_counts()
    part = st.new_counts()
    part.update(docs_in=3, docs_out=2, nodes=["n1"], dropped={"r.a": 1})
    st.merge(total, part)
    st.merge(total, {**part, "nodes": ["n1", "n2"]})
    assert total["docs_in"] == 6 and total["dropped"] == {"r.a": 2} and total["nodes"] == ["n1", "n2"]


def test_the_runner_stops_loudly_when_counts_do_not_reconcile(ray_session, tmp_path, monkeypatch):
    """A step that loses rows behind the runner's back (here: a bug planted in the counting) must
    fail the run, not produce stats that look fine."""
    from llmray.config import parse_job
    from llmray.pipeline import runner
    from llmray.pipeline.runner import RunOptions, run_job
    from tests.helpers import ENGLISH, job, write_jsonl

    write_jsonl(tmp_path / "in.jsonl", [{"id": str(i), "text": ENGLISH} for i in range(10)])
    real = runner._take

    def one_more_read(marker, *args):
        marker["counts"]["docs_in"] += 1  # one document read that is nowhere
        real(marker, *args)

    monkeypatch.setattr(runner, "_take", one_more_read)
    spec = parse_job(job(tmp_path / "in.jsonl", tmp_path / "out", ["clean_whitespace"]))
    with pytest.raises(RuntimeError, match="accounting mismatch: docs_in 11 != docs_out 10"):
        run_job(spec, RunOptions(progress=False, num_cpus=1))


def test_what_a_global_step_gathers_as_the_data_passes_is_its_own_time(ray_session, tmp_path):
    from llmray.config import parse_job
    from llmray.ops import UniqueIds
    from llmray.pipeline.runner import RunOptions, run_job
    from tests.helpers import ENGLISH, job, write_jsonl
    from tests.slow_ops import SIDECAR_S, SlowIdCheck

    write_jsonl(tmp_path / "in.jsonl", [{"id": str(i), "text": ENGLISH} for i in range(10)])
    spec = parse_job(job(tmp_path / "in.jsonl", tmp_path / "out", ["clean_whitespace"]))
    spec.steps = [SlowIdCheck(drop=False) if isinstance(s, UniqueIds) else s for s in spec.steps]
    stats = run_job(spec, RunOptions(progress=False, num_cpus=1))
    seconds = {s["name"]: s["wall_s"] for s in stats["stages"]}
    # the one batch's sidecar is the id check's time, not the writing it happens beside
    assert seconds["unique_ids"] >= SIDECAR_S > seconds["write"]
