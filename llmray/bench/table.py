"""Markdown tables of a results dict: the README's performance section is pasted from this.

    python -m llmray.bench.table benchmarks/results/<run>/results.json [--readme README.md]

With ``--readme``, the text between ``<!-- bench:begin -->`` and ``<!-- bench:end -->`` in that file
is replaced by the headline table (one row per claim: llmray, the peer in the same run, the ratio;
whole jobs first, then parts of jobs, labelled so) and a pointer to the run's full tables
(``results.md`` beside the JSON).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def _num(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.{digits}g}"


def _stat(stat: dict[str, Any]) -> str:
    return _num(stat["median"])


def _spread(stat: dict[str, Any]) -> str:
    return "-" if stat["spread_pct"] is None or len(stat["runs"]) < 2 else f"±{stat['spread_pct'] / 2:.0f}%"


def _cell(text: str) -> str:
    """One table cell: no line breaks, no column separators."""
    return " ".join(str(text).split()).replace("|", "/")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(map(_cell, r)) + " |" for r in rows), ""]


def machine_line(results: dict[str, Any]) -> str:
    m = results["machine"]
    libs = m.get("libraries", {})
    return (f"{m['cpu_model']}, {m['cores_logical']} logical cores, {m.get('ram_gb', '?')} GiB RAM, "
            f"{m['os']}; Python {m['python']}, Ray {libs.get('ray')}, pyarrow {libs.get('pyarrow')}; "
            f"load average at start {m.get('load_avg_1m_5m_15m')}{_memory_touch(m)}{_core_parallelism(m)}")


def _memory_touch(m: dict[str, Any]) -> str:
    """Untouched memory written at ... MB/s: on a VM that swings by the hour (see measure.memory_touch)."""
    start, end = m.get("memory_touch_start"), m.get("memory_touch_end")
    if not start:
        return ""
    line = f"; untouched memory written at {start['fresh_mb_s']:,} MB/s at the start"
    if end:
        line += f", {end['fresh_mb_s']:,} at the end"
    return line + f" (touched again: {start['warm_mb_s']:,} MB/s)"


def _core_parallelism(m: dict[str, Any]) -> str:
    """N processes of identical pure compute against one alone: the ceiling of any job's efficiency."""
    start, end = m.get("core_parallelism_start"), m.get("core_parallelism_end")
    if not start:
        return ""
    line = (f"; {start['cores']} processes of pure compute side by side each ran at {start['efficiency']:.2f} of "
            f"one alone's speed at the start")
    if end:
        line += f", {end['efficiency']:.2f} at the end"
    return line + " (it bounds a job's parallel efficiency)"


def corpus_line(c: dict[str, Any]) -> str:
    line = (f"**{c['name']}**: {c['docs']:,} documents, {c['text_mb']} MB of text "
            f"(median {c['chars']['median']:,} characters, p90 {c['chars']['p90']:,})")
    if "duplicates" in c:
        d = c["duplicates"]
        line += (f"; {d['exact']:,} exact and {d['near']:,} near duplicates in {d['clusters_with_copies']:,} "
                 f"clusters, {d['should_remove']:,} to remove")
    return line


def render(results: dict[str, Any]) -> str:
    main = next(c for c in results["corpora"].values() if c["role"] == "main")["name"]
    s = results["settings"]
    lines = [f"Measured by `{' '.join(results['command'])}` ({results['mode']} mode, {s['repeats']} "
             f"repeat(s), median shown, ± is half the min-max range) on {results['created'][:10]}.", "",
             f"Machine: {machine_line(results)}.", ""]
    lines += [f"- {corpus_line(c)}" for c in results["corpora"].values()] + [""]
    lines += job_rows(results) + stage_rows(results, main) + scaling_rows(results) + accuracy_rows(results)
    lines += peer_rows(results)
    lines += external_rows(results)
    if results["skipped"]:
        lines += ["Not measured:", ""]
        lines += [f"- `{x['name']}`: {_cell(x['reason'])}" for x in results["skipped"]] + [""]
    return "\n".join(lines)


def _kept(figures: dict[str, Any]) -> str:
    return f"{figures['docs_out'] / figures['docs_in']:.0%}" if figures["docs_in"] else "-"


def _removal_f1(figures: dict[str, Any]) -> str:
    return _stat(figures["accuracy"]["removal"]["f1"]) if "accuracy" in figures else "-"


def job_rows(results: dict[str, Any]) -> list[str]:
    """Whole jobs: one row per CPU count, then the peers on the same file."""
    jobs = results["jobs"]["jobs"]
    rows, peer_rows_ = [], []
    for job in jobs:
        for p in sorted(job["points"], key=lambda p: p["cpus"]):
            rows.append([f"`{job['file']}`", job["corpus"], f"{p['docs_in']:,}", _num(p["bytes_in"] / 1e6),
                         f"{p['cpus']}" + (" (cluster)" if p["cluster"] else ""), _stat(p["wall_s"]),
                         _stat(p["mb_per_s_per_core"]), _spread(p["mb_per_s_per_core"]), _num(p.get("efficiency")),
                         _kept(p), _num(p["peak_tree_rss_mb"]), _removal_f1(p)])
        rows += [[f"`{job['file']}`", job["corpus"], "", "", f["run"], "failed", "", "", "", "", "", ""]
                 for f in job["failures"]]
        for peer in job["peers"]:
            if peer["status"] != "ok":
                peer_rows_.append([f"`{job['file']}`", peer["tool"], "failed", _cell(peer["reason"]), "", "", ""])
                continue
            peer_rows_.append([f"`{job['file']}`", f"{peer['tool']} {peer['version']} "
                               f"{JOB_PEER_LABELS.get(peer['task'], peer['task'])}",
                               f"{peer['docs']:,}", _stat(peer["wall_s"]), _stat(peer["mb_per_s_per_core"]),
                               _removal_f1(peer), f"**{_num(peer.get('ratio'))}x**"])
    if not rows:
        return []
    steps = "; ".join(f"`{j['file']}` = {', '.join(j['steps'])}" for j in jobs)
    lines = ["### Whole jobs through the runner", "",
             "The shipped job files as `llmray run JOB --input FILE --num-cpus N` runs them, each on one "
             "uncompressed JSONL file, Ray started afresh for every timed run (new worker processes that import "
             "llmray and load its compiled kernels and models, as one `llmray run` does); MB/s per core = input "
             "MB / stats.json's wall_s (from the start of the run to the end of its report; Ray's start-up "
             "apart) / CPUs; "
             f"efficiency against the smallest CPU count. Steps: {steps}.", ""]
    lines += _table(["job", "corpus", "docs", "MB", "CPUs", "wall s", "MB/s per core", "spread", "efficiency",
                     "kept", "peak tree RSS MB", "removal F1"], rows)
    if peer_rows_:
        lines += ["Peers on the same file in the same run, one process each; ratio: llmray's MB/s per core "
                  "on 1 CPU over the peer's.", ""]
        lines += _table(["job", "peer", "docs", "wall s", "MB/s per core", "removal F1", "ratio"], peer_rows_)
    return lines


def stage_rows(results: dict[str, Any], main: str) -> list[str]:
    """One row per stage: the main corpus's figures, then MB/s per core on each other corpus."""
    others = [name for name in results["corpora"] if name != main]
    measured_alone = {s["name"] for s in results["stages"] if s["status"] == "ok"}
    rows = []
    for stage in results["stages"]:
        name = f"`{stage['name']}`" + (" (without " + ", ".join(x["name"] for x in stage["excluded"]) + ")"
                                       if stage.get("excluded") else "")
        if stage["status"] != "ok":
            rows.append([name, stage["group"], stage["status"], "", "", "", "", *([""] * len(others))])
            continue
        f = stage["corpora"][main]
        rows.append([name, stage["group"], _stat(f["docs_per_s"]), _stat(f["mb_per_s_per_core"]),
                     _spread(f["mb_per_s_per_core"]), _num(f["peak_rss_mb"]), _kept(f),
                     *(_stat(stage["corpora"][o]["mb_per_s_per_core"]) for o in others)])
        for op, g in f.get("ops", {}).items() if len(stage["ops"]) > 1 else ():
            if op not in measured_alone:  # e.g. tokenize, which needs train_tokenizer before it
                rows.append([f"`{op}` (inside `{stage['name']}`)", stage["group"], _stat(g["docs_per_s"]),
                             _stat(g["mb_per_s_per_core"]), _spread(g["mb_per_s_per_core"]), "", "",
                             *(_stat(stage["corpora"][o]["ops"][op]["mb_per_s_per_core"]) for o in others)])
    if not rows:
        return []
    note = (f"Parts of jobs. Figures on the {main} corpus; the last column(s): MB/s per core on the other corpus. "
            "Row-local stages run in one process over Arrow batches; `job` stages (global steps) as a job of "
            "just their steps through the runner on 1 CPU, read and write included; a global step's seconds hold "
            "what it gathers as the data passes (the pass two dedups share is minhash's).")
    return ["### Stages, one core each", "", note, ""] + _table(
        ["stage", "group", "docs/s", "MB/s per core", "spread", "peak RSS MB", "kept",
         *(f"{o} MB/s per core" for o in others)], rows)


def scaling_rows(results: dict[str, Any]) -> list[str]:
    rows = []
    for job in results["scaling"]["jobs"]:
        for p in sorted(job["points"], key=lambda p: p["cpus"]):
            where = f"{p['cpus']}" + (f" (cluster, {p['nodes']} node{'s' if p['nodes'] > 1 else ''})"
                                      if p["cluster"] else "")
            rows.append([job["name"], where, _stat(p["mb_per_s"]), _stat(p["mb_per_s_per_core"]),
                         _spread(p["mb_per_s"]), _num(p.get("speedup")), _num(p.get("efficiency")),
                         _num(p["peak_tree_rss_mb"])])
        rows += [[job["name"], f["run"], "failed", "", "", "", "", ""] for f in job["failures"]]
    if not rows:
        return []
    steps = "; ".join(f"{j['name']} = {', '.join(j['steps']) or 'read, write'}"
                      for j in results["scaling"]["jobs"])
    return ["### Parts of jobs: stage groups through the runner", "",
            f"Each group's steps alone as a job: {steps}. Ray start-up excluded.", ""] + _table(
        ["job", "CPUs", "MB/s", "MB/s per core", "spread", "speedup", "efficiency", "peak tree RSS MB"], rows)


def accuracy_rows(results: dict[str, Any]) -> list[str]:
    rows = []
    for r in results["accuracy"]:
        pair = r.get("pair")
        removal = r["removal"]
        f1 = f"{_stat(removal['f1'])} {_spread(removal['f1']).replace('-', '')}"
        rows.append([r["tool"], r["what"], f"{r['docs']:,}", _stat(removal["precision"]),
                     _stat(removal["recall"]), f1, _stat(pair["f1"]) if pair else "-"])
    if not rows:
        return []
    return ["### Near-duplicate removal against ground truth", ""] + _table(
        ["tool", "what", "docs", "removal precision", "removal recall", "removal F1", "pair F1"], rows)


def peer_rows(results: dict[str, Any]) -> list[str]:
    rows = [[r["task"], f"`{r['llmray_stage']}`", f"{r['peer']} {_version(results, r['peer'])}",
             _num(r["llmray"]), _num(r["peer_value"]), f"**{_num(r['ratio'])}x**", f"{r['peer_docs']:,}",
             f"{r['removal_f1']['llmray']} / {r['removal_f1']['peer']}" if "removal_f1" in r else "-"]
            for r in results["ratios"]]
    if not rows:
        return []
    lsh = results["peers"]["lsh"]
    return ["### Parts of jobs against peers (same corpus, one core each)", "",
            f"MinHash settings for every tool: word {lsh['ngram']}-shingles, {lsh['bands']} bands x "
            f"{lsh['rows']} rows (threshold about {lsh['threshold']}).", ""] + _table(
        ["task", "llmray stage", "peer", "llmray MB/s per core", "peer MB/s per core", "ratio", "peer docs",
         "removal F1 llmray / peer"], rows)


def _version(results: dict[str, Any], tool: str) -> str:
    return (results["peers"]["available"].get(tool) or {}).get("version") or ""


def external_rows(results: dict[str, Any]) -> list[str]:
    rows = []
    for name, r in results["external"].items():
        if r["status"] == "ok":
            scalars = [f"{k}={_num(v) if isinstance(v, float) else v}" for k, v in r["result"].items()
                       if isinstance(v, (int, float, str)) and not isinstance(v, bool)][:6]
            note = ", ".join(scalars) + " (full dict in results.json)"
        else:
            note = r["reason"]
        rows.append([f"`bench_{name}`", r["status"], _num(r.get("wall_s")), note])
    if not rows:
        return []
    return ["### Each part's own benchmark", ""] + _table(["module", "status", "wall s", "summary"], rows)


def headline(results: dict[str, Any], full_tables: str) -> str:
    """The README's performance block: the claims a user buys, each from this run."""
    s = results["settings"]
    lines = [f"From `{' '.join(results['command'])}` ({results['mode']} mode, {s['repeats']} repeat(s), medians) "
             f"on {results['created'][:10]}; every table of that run: `{full_tables}`.", "",
             f"Machine: {machine_line(results)}.", "",
             "Whole jobs first, as `llmray run` runs them: each timed run starts Ray afresh, and its time runs "
             "from the start of the run to the end of its report, Ray's start-up apart (ratio: llmray on 1 CPU "
             "against the peer in one process, on the same file); then parts of jobs.", ""]
    rows = _job_claims(results) + _peer_claims(results)
    rows += _dedup_claims(results) + _part_claims(results) + _scaling_claims(results)
    return "\n".join(lines + _table(["what", "llmray", "peer, same run", "ratio"], rows))


#: Peer tasks in the order the headline shows them, with their labels.
TASKS = {"signatures": "part of a job: MinHash signatures, one core each",
         "neardup": "part of a job: near-duplicate removal alone (job of `minhash_dedup`), one core each",
         "filters": "part of a job: Gopher + C4 + FineWeb quality filters, one core each"}


#: What each peer task beside a whole job runs.
JOB_PEER_LABELS = {"dedup_job": "MinHashLSH at the job's threshold", "neardup": "MinHash pipeline"}


def _job_peer(peer: dict[str, Any]) -> str:
    f1 = f", F1 {_stat(peer['accuracy']['removal']['f1'])}" if "accuracy" in peer else ""
    return (f"{peer['tool']} {JOB_PEER_LABELS.get(peer['task'], peer['task'])}: "
            f"{_num(peer['mb_per_s_per_core']['median'])} MB/s, one process{f1}")


def _job_claims(results: dict[str, Any]) -> list[list[str]]:
    """One row per whole job (and per peer beside it): MB/s per core at each CPU count."""
    rows = []
    for job in results["jobs"]["jobs"]:
        points = sorted((p for p in job["points"] if not p["cluster"]), key=lambda p: p["cpus"])
        if not points:
            continue
        first, last = points[0], points[-1]
        ours = "; ".join(f"{p['cpus']} CPU{'s' if p['cpus'] > 1 else ''}: {_num(p['mb_per_s_per_core']['median'])} "
                         f"MB/s per core" for p in points)
        if len(points) > 1:
            ours += f" (efficiency {_num(last.get('efficiency'))})"
        if "accuracy" in first:
            ours += f", removal F1 {_stat(first['accuracy']['removal']['f1'])}"
        what = (f"whole job `{job['file']}`, {first['docs_in']:,} docs ({_num(first['bytes_in'] / 1e6)} MB, "
                f"one JSONL file)")
        rows += [[what, ours, _job_peer(p), f"**{_num(p['ratio'])}x**" if "ratio" in p else ""]
                 for p in job["peers"] if p["status"] == "ok"] or [[what, ours, "", ""]]
    return rows


def _f1(ratio: dict[str, Any], side: str) -> str:
    return f", removal F1 {ratio['removal_f1'][side]:.3f}" if "removal_f1" in ratio else ""


def _peer_claims(results: dict[str, Any]) -> list[list[str]]:
    """One row per (task, peer) ratio of the run, tasks in the order of ``TASKS``."""
    order = [*TASKS, None]
    rows = []
    for r in sorted(results["ratios"], key=lambda r: order.index(r["task"] if r["task"] in TASKS else None)):
        rows.append([TASKS.get(r["task"], r["task"]), f"{_num(r['llmray'])} MB/s per core" + _f1(r, "llmray"),
                     f"{r['peer']} {_num(r['peer_value'])}" + _f1(r, "peer"), f"**{_num(r['ratio'])}x**"])
    return rows


def _ok(results: dict[str, Any], part: str) -> dict[str, Any] | None:
    entry = results["external"].get(part)
    return entry["result"] if entry and entry["status"] == "ok" else None


def _dedup_claims(results: dict[str, Any]) -> list[list[str]]:
    """End-to-end ``minhash_dedup`` through Ray against datasketch, at each corpus size measured."""
    dedup = _ok(results, "dedup")
    rows = []
    for run in (dedup or {}).get("runs", []):
        if run["threshold"] != dedup["runs"][0]["threshold"]:
            continue
        f1 = run.get("scores", {}).get("removal", {}).get("f1")
        ours = (f"{_num(run['mb_s_per_core'])} MB/s per core" + (f", removal F1 {f1:.3f}" if f1 else "")
                + f", peak {_num(run['peak_worker_private_mb'])} MB per worker")
        peer, ratio = "", ""
        if "datasketch" in run:
            ds = run["datasketch"]
            ds_f1 = (ds.get("scores") or {}).get("removal", {}).get("f1")
            peer = f"datasketch MinHashLSH {_num(ds['mb_s_per_core'])}" + (f", F1 {ds_f1:.3f}" if ds_f1 else "")
            ratio = f"**{_num(run['mb_s_per_core'] / ds['mb_s_per_core'])}x**"
        rows.append([f"part of a job: `minhash_dedup` alone through the runner, {run['docs']:,} docs "
                     f"({run['text_mb']} MB, {dedup['cpus']} CPUs, threshold {run['threshold']}, `bench_dedup`)",
                     ours, peer, ratio])
    return rows


def _part_claims(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    if filters := _ok(results, "filters"):
        chain = filters["throughput"]["chain"]
        agree = filters.get("agreement", {})
        rows.append([f"part of a job: quality filter chain ({filters['docs']:,} docs, `bench_filters`)",
                     f"{_num(chain['cpu_mb_per_s']['median'])} MB/s per core (CPU time)", "", ""])
        same = [f"{name} {agree[name]['all_four']['same_decision_pct']}%" for name in ("reference", "datatrove")
                if "all_four" in agree.get(name, {})]
        if same:
            rows.append([f"same keep/drop decisions as ({agree['docs']:,} docs)", ", ".join(same), "", ""])
    if extract := _ok(results, "extract"):
        best = max(extract["extractors"].items(), key=lambda kv: kv[1]["token"]["f1"])
        rows.append([f"part of a job: HTML main-text extraction ({extract['pages']} benchmark pages)",
                     f"token F1 {best[1]['token']['f1']:.3f} ({best[0]})", "", ""])
    if train := _ok(results, "train"):
        rows.append(["BERT MLM steps: Ray Train vs the plain PyTorch loop",
                     f"steady-state overhead {_percent(train['overhead'])}, fixed start-up "
                     f"{_num(train['ray_fixed_startup_s'])} s", "", ""])
    return rows


def _percent(fraction: float) -> str:
    points = round(fraction * 100)
    return f"{points:+d}%" if points else "0%"


def _scaling_claims(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    for job in results["scaling"]["jobs"]:
        points = sorted(job["points"], key=lambda p: p["cpus"])
        if len(points) > 1:
            last = points[-1]
            rows.append([f"part of a job: the `{job['name']}` steps alone through the runner, 1 -> {last['cpus']} CPUs",
                         f"{_num(last['mb_per_s']['median'])} MB/s, efficiency {_num(last.get('efficiency'))}", "", ""])
    return rows


def update_readme(readme: Path, text: str) -> None:
    content = readme.read_text()
    if BEGIN not in content or END not in content:
        raise SystemExit(f"{readme} has no {BEGIN} ... {END} block to replace")
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    readme.write_text(pattern.sub(lambda _: f"{BEGIN}\n{text}\n{END}", content))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path)
    parser.add_argument("--readme", type=Path, help="replace the bench block of this file with the tables")
    args = parser.parse_args()
    results = json.loads(args.results.read_text())
    if args.readme:
        tables = args.results.with_name("results.md")
        try:
            tables = tables.resolve().relative_to(args.readme.resolve().parent)
        except ValueError:
            pass
        update_readme(args.readme, headline(results, str(tables)))
    else:
        print(render(results))


if __name__ == "__main__":
    main()
