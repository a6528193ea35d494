"""``llmray bench``: whole jobs, every stage's throughput and memory, scaling, dedup accuracy, peers.

The order of a run, each measurement in a child process of its own (see ``measure.run_child``):

1. corpora: the generated one (or ``--input``) with ground truth, and the quickstart corpus;
2. whole jobs (part ``jobs``): the shipped ``jobs/dedup.yaml``, ``clean.yaml`` and ``pipeline.yaml``
   through the runner at each ``--cpus`` count, each on one uncompressed JSONL file, with
   datasketch (and datatrove, with ``--peers``) on the dedup job's file: the headline figures;
3. stages, one core each, on both corpora (``stages.py``; global ones as one-CPU jobs, ``runs.py``);
4. scaling: the stage groups as jobs through the runner at each ``--cpus`` count, and on ``--address``;
5. each part's own benchmark, ``./benchmarks/bench_*.py`` ``run()`` in a checkout (``external.py``);
6. peers on the stages' corpus: datasketch always, datatrove and rensa with ``--peers`` (``peers.py``);
7. ``results.json``, PNG plots and ``results.md``.

A stage that cannot run is recorded with the reason and the run goes on; only a broken harness
stops it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from llmray.bench import corpus, external, measure, peers, stages
from llmray.errors import UserError

SCHEMA_VERSION = 2
#: (docs, repeats) of each mode.
MODES = {"quick": (3000, 1), "full": (20000, 3)}
#: datatrove runs at about 100-200 documents/s: on stages it gets a sample of this many documents.
PEER_DOCS = {"quick": 500, "full": 5000}
#: The part that runs the shipped job files, and the corpus each runs on: ``main`` (the stages'
#: corpus) or ``large`` (about LARGE_DOCS documents, near-duplicate removal's scale).
JOBS_PART = "jobs"
JOB_FILES = {"dedup": "large", "clean": "main", "pipeline": "main"}
LARGE_DOCS = {"quick": None, "full": 100_000}
#: Peers beside the dedup job, on its file: (tool, task of peers.py).
JOB_PEERS = (("datasketch", "dedup_job"), ("datatrove", "neardup"))


@dataclasses.dataclass
class Settings:
    output: Path
    quick: bool = False
    docs: int | None = None
    repeats: int | None = None
    cpus: list[int] | None = None
    #: Stage names, groups or part names to run; None runs everything.
    stages: list[str] | None = None
    peers: bool = False
    peers_python: str | None = None
    peer_docs: int | None = None
    input: list[str] | None = None
    truth: str | None = None
    address: str | None = None
    seed: int = 0
    timeout_s: float | None = None
    keep_corpus: bool = False

    @property
    def mode(self) -> str:
        return "quick" if self.quick else "full"

    def resolved(self) -> Settings:
        """Fill the mode's defaults: documents, repeats, CPU counts, peer sample, child timeout."""
        docs, repeats = MODES[self.mode]
        n = os.cpu_count() or 1
        cpus = self.cpus or sorted({1, n} if self.quick else {1, n, *(2**k for k in range(1, 8) if 2**k < n)})
        return dataclasses.replace(
            self, docs=self.docs or docs, repeats=self.repeats or repeats, cpus=cpus,
            peer_docs=self.peer_docs or PEER_DOCS[self.mode],
            timeout_s=self.timeout_s or (600 if self.quick else 3600))


class Harness:
    def __init__(self, settings: Settings):
        self.s = settings.resolved()
        self.out = self.s.output
        self.work = self.out / "work"
        self.skipped: list[dict[str, str]] = []
        self.main_name = ""
        self.warmup = ""
        self._peer_pythons: dict[str, Any] | None = None

    def log(self, message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    def wanted(self, part: str) -> bool:
        return not self.s.stages or part in self.s.stages

    # --- 1. corpora ---------------------------------------------------------------------------------

    def corpora(self) -> dict[str, dict[str, Any]]:
        self.work.mkdir(parents=True, exist_ok=True)
        if self.s.input:
            truth = self.s.truth or corpus.guess_truth(self.s.input[0])
            main = corpus.from_input(self.s.input, truth, self.s.docs, self.work / "corpus")
        else:
            main = corpus.synthetic(corpus.GeneratorParams(docs=self.s.docs, seed=self.s.seed),
                                    self.work / "corpus")
        main["role"] = "main"
        quick = {**corpus.quickstart(), "role": "real"}
        self.log(f"corpus {main['name']}: {main['docs']:,} docs, {main['text_mb']} MB; "
                 f"quickstart: {quick['docs']:,} docs, {quick['text_mb']} MB")
        return {main["name"]: main, quick["name"]: quick}

    # --- through the runner, at each CPU count ------------------------------------------------------

    def through_runner(self, jobs: list[dict[str, Any]], what: str) -> list[dict[str, Any]]:
        """Each job (name, file or steps, input, truth?) at every ``--cpus`` count and on ``--address``:
        one child per count; the job with its points (efficiency against the smallest) and failures."""
        runs = [{"cpus": n} for n in self.s.cpus] + ([{"address": self.s.address}] if self.s.address else [])
        by_job: dict[str, dict[str, Any]] = {j["name"]: {**j, "points": [], "failures": []} for j in jobs}
        for run in runs:
            label = f"{run['cpus']} CPU(s)" if "cpus" in run else f"cluster {run['address']}"
            work = self.work / f"runs-{run.get('cpus', 'cluster')}"
            request = {"jobs": jobs, "warmup": self.warmup, "repeats": self.s.repeats, "work_dir": str(work),
                       "cold": True, **run}
            try:
                points = measure.run_child("runs", request, self.s.timeout_s)
            except measure.ChildFailed as exc:
                points = {j["name"]: {"error": str(exc)} for j in jobs}
            finally:
                shutil.rmtree(work, ignore_errors=True)
            for name, point in points.items():
                reason = point.get("error") or point.get("skipped")
                if reason:
                    by_job[name]["failures"].append({"run": label, "reason": reason})
                    self.log(f"{what} {name} at {label}: FAILED {reason}")
                    continue
                by_job[name]["points"].append({**point, "cluster": "address" in run})
                self.log(f"{what} {name} at {label}: {point['mb_per_s']['median']} MB/s "
                         f"({point['mb_per_s_per_core']['median']} per core) in {point['wall_s']['median']} s")
        for job in by_job.values():
            _efficiency(job["points"])
        return list(by_job.values())

    # --- 2. whole jobs ------------------------------------------------------------------------------

    def whole_jobs(self, main: dict[str, Any]) -> dict[str, Any]:
        """The shipped job files as a user runs them (``llmray run JOB --input FILE``), and peers on the
        dedup job's file in the same run."""
        from llmray.config import load_job

        large_docs = LARGE_DOCS[self.s.mode]
        files = {"main": main, "large": corpus.larger(main, large_docs, self.work / "large") if large_docs else main}
        self.log(f"jobs: {files['large']['name']} ({files['large']['docs']:,} docs, {files['large']['text_mb']} MB) "
                 f"for dedup, {main['name']} for clean and pipeline")
        jobs, specs = [], {}
        for name, which in JOB_FILES.items():
            path = corpus.JOBS / f"{name}.yaml"
            specs[name] = load_job(path)
            steps = [step.name for step in specs[name].steps]
            data = files[which]
            jobs.append({"name": name, "file": str(path), "steps": steps, "input": [data["path"]],
                         "truth": data["truth"] if stages.removes_duplicates(steps) else None})
        measured = self.through_runner(jobs, "job")
        for job, (name, which) in zip(measured, JOB_FILES.items(), strict=True):
            job.update(file=f"jobs/{name}.yaml", corpus=files[which]["name"], peers=[])
            near = [step for step in specs[name].steps if step.name == stages.near_dup_op()]
            if near and stages.removes_duplicates(job["steps"]):  # peers only dedup: beside a dedup job
                job["peers"] = self.job_peers(job, files[which], stages.sketch_params(near[0]))
        return {"corpora": {key: {k: v for k, v in c.items() if k != "role"} for key, c in files.items()},
                "jobs": measured}

    def job_peers(self, job: dict[str, Any], data: dict[str, Any], sketch: dict[str, Any]) -> list[dict[str, Any]]:
        """datasketch (always) and datatrove (with --peers) on the job's own file, whole; the ratio is
        llmray's MB/s per core on one CPU over the peer's (one process)."""
        one = next((p for p in job["points"] if p["cpus"] == 1 and not p["cluster"]), None)
        results = []
        for tool, task in JOB_PEERS:
            if tool != "datasketch" and not self.s.peers:
                continue
            # datatrove takes about ten minutes per 100k documents: one run of it.
            repeats = self.s.repeats if tool == "datasketch" else 1
            result = self.peer(tool, task, data, None, sketch, repeats)
            if result is None:
                continue
            if one and result["status"] == "ok":
                result["ratio"] = round(one["mb_per_s_per_core"]["median"] / result["mb_per_s_per_core"]["median"], 2)
            results.append(result)
        return results

    # --- 3. stages ----------------------------------------------------------------------------------

    def selected(self, all_stages: list[stages.Stage]) -> list[stages.Stage]:
        """The stages ``--stages`` names (by stage, group or part); unknown names are refused."""
        if not self.s.stages:
            return all_stages
        picks = set(self.s.stages)
        known = {st.name for st in all_stages} | {st.group for st in all_stages} | {JOBS_PART} | {
            n for m in external.discover() for n in (m, external.part(m))}
        unknown = sorted(picks - known)
        if unknown:
            raise UserError(f"--stages: unknown stage(s) {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(known))}")
        return [st for st in all_stages if st.name in picks or st.group in picks]

    def measure_stages(self, chosen: list[stages.Stage], corpora: dict[str, dict]) -> list[dict[str, Any]]:
        entries = []
        targets = [{"name": c["name"], "path": c["path"], "truth": c.get("truth")} for c in corpora.values()]
        targets.sort(key=lambda c: c["name"] != "quickstart")  # the small one first: its peak stays its own
        for k, stage in enumerate(chosen, 1):
            entry: dict[str, Any] = {**dataclasses.asdict(stage)}
            try:
                if stage.kind == "job":
                    entry.update(self.job_stage(stage, targets))
                else:
                    request = {"stage": dataclasses.asdict(stage), "corpora": targets, "repeats": self.s.repeats}
                    entry.update(measure.run_child("stages", request, self.s.timeout_s))
            except measure.ChildFailed as exc:
                entry.update(status="failed", reason=str(exc))
            if entry["status"] == "ok":
                main = entry["corpora"][self.main_name]
                self.log(f"stage {k}/{len(chosen)} {stage.name}: "
                         f"{main['mb_per_s_per_core']['median']} MB/s per core, "
                         f"{main['docs_per_s']['median']} docs/s, peak {main['peak_rss_mb']} MB")
            else:
                self.log(f"stage {k}/{len(chosen)} {stage.name}: {entry['status'].upper()} {entry['reason']}")
            entries.append(entry)
        return entries

    def job_stage(self, stage: stages.Stage, targets: list[dict[str, Any]]) -> dict[str, Any]:
        """A stage with global steps as a job of just its steps on one CPU, on each corpus: the job's
        ``wall_s`` gives the rates, each step's stage seconds and decision details are kept."""
        scored = stages.removes_duplicates(stage.ops)
        jobs = [{"name": t["name"], "steps": stage.ops, "input": [t["path"]], "truth": t["truth"] if scored else None}
                for t in targets]
        work = self.work / "stage-job"
        request = {"cpus": 1, "jobs": jobs, "warmup": self.warmup, "repeats": self.s.repeats, "work_dir": str(work)}
        try:
            points = measure.run_child("runs", request, self.s.timeout_s)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        for point in points.values():
            if "error" in point or "skipped" in point:
                return {"status": "failed" if "error" in point else "skipped",
                        "reason": point.get("error") or point["skipped"]}
        return {"status": "ok", "excluded": [], "corpora": {name: _stage_figures(point, stage.ops)
                                                             for name, point in points.items()}}

    # --- 4. scaling ---------------------------------------------------------------------------------

    def scaling_jobs(self, chosen: list[stages.Stage], measured: list[dict[str, Any]]) -> list[dict]:
        """One job per selected group (its chain, or its selected steps), plus all of them as one.

        Steps that could not run on the corpus in the stage measurements are left out. Quick mode
        runs only the last of these jobs: all groups together, or the one group selected.
        """
        unusable = {x["name"] for m in measured for x in m.get("excluded", [])}
        # A job step skipped alone (tokenize needs train_tokenizer first) still runs in its group's job.
        unusable |= {op for m in measured if m["status"] == "skipped" and m["kind"] != "job" for op in m["ops"]}
        groups: dict[str, list[str]] = {}
        for stage in chosen:
            ops = groups.setdefault(stage.group, [])
            ops += [s for s in stage.steps() or [] if s not in ops and s not in unusable]
        for stage in chosen:  # a group's own chain, when chosen, fixes the order
            if stage.name.startswith(f"{stage.group}:all"):
                groups[stage.group] = [s for s in stage.ops if s not in unusable]
        groups = {group: steps for group, steps in groups.items() if steps or group == "read"}
        jobs = [{"name": group, "steps": steps} for group, steps in groups.items()]
        together = [s for group, steps in groups.items() if group != "read" for s in steps]
        if len([j for j in jobs if j["name"] != "read"]) > 1:
            jobs.append({"name": "all groups", "steps": together})
        if self.s.quick and len(jobs) > 1:
            jobs = [j for j in jobs if j["name"] != "read"][-1:]
        return jobs

    def scaling(self, chosen: list[stages.Stage], measured: list[dict[str, Any]],
                main: dict[str, Any]) -> dict[str, Any]:
        jobs = [{**job, "input": [main["path"]]} for job in self.scaling_jobs(chosen, measured)]
        return {"jobs": self.through_runner(jobs, "scaling") if jobs else []}

    # --- 5. each part's own benchmark ---------------------------------------------------------------

    def externals(self, main: dict[str, Any]) -> dict[str, Any]:
        results = {}
        for module in external.discover():
            name = external.part(module)
            if self.s.stages and not {module, name} & set(self.s.stages):
                continue
            if module in external.EXCLUDED:
                results[name] = {"status": "skipped", "reason": external.EXCLUDED[module]}
                continue
            args = {"input_path": main["path"], "truth_path": main.get("truth"), "docs": main["docs"],
                    "output_dir": str(self.out / "external" / name), "quick": self.s.quick,
                    "repeats": self.s.repeats, "cpus": self.s.cpus, "peers": self.s.peers,
                    "seed": self.s.seed}
            started = time.perf_counter()
            try:
                result = measure.run_child("external", {"module": module, "args": args}, self.s.timeout_s)
            except measure.ChildFailed as exc:
                result = {"status": "failed", "reason": str(exc)}
            result["wall_s"] = round(time.perf_counter() - started, 2)
            self.log(f"{module}.run(): {result['status']} {result.get('reason', '')}")
            results[name] = result
        return results

    # --- 6. peers -----------------------------------------------------------------------------------

    def peer_pythons(self) -> dict[str, Any]:
        """Which interpreter runs each peer: this one, or ``--peers-python`` where only it has the tool."""
        if self._peer_pythons is None:
            found: dict[str, Any] = {}
            for python in [sys.executable] + ([self.s.peers_python] if self.s.peers_python else []):
                try:
                    probe = measure.run_child("peers", {"probe": True}, 120, python=python)
                except measure.ChildFailed as exc:
                    self.skipped.append({"name": f"peers via {python}", "reason": str(exc)})
                    continue
                for tool, info in probe.items():
                    if info["version"] and not (found.get(tool) or {}).get("version"):
                        found[tool] = {**info, "python": python}
                    found.setdefault(tool, info)
            self._peer_pythons = found
        return self._peer_pythons

    def peer(self, tool: str, task: str, data: dict[str, Any], docs: int | None, sketch: dict[str, Any],
             repeats: int) -> dict[str, Any] | None:
        """One peer task on a corpus file; None (and a skipped entry) when the tool is not there."""
        info = self.peer_pythons().get(tool, {})
        if not info.get("version"):
            self.skipped.append({"name": f"peer {tool}", "reason": info.get("reason", "not found")})
            return None
        request = {"tool": tool, "task": task, "corpus_file": data["path"], "truth": data.get("truth"),
                   "docs": docs, "repeats": repeats, "seed": self.s.seed, "work_dir": str(self.work),
                   **{k: sketch[k] for k in ("ngram", "num_perm", "bands", "rows", "threshold")}}
        try:
            result = measure.run_child("peers", request, self.s.timeout_s, python=info["python"])
        except measure.ChildFailed as exc:
            self.log(f"peer {tool} {task}: FAILED {exc}")
            return {"tool": tool, "task": task, "status": "failed", "reason": str(exc)}
        self.log(f"peer {tool} {task}: {result['mb_per_s_per_core']['median']} MB/s per core "
                 f"on {result['docs']:,} docs")
        return {**result, "status": "ok", "version": info["version"]}

    def peers(self, chosen: list[stages.Stage], main: dict[str, Any]) -> dict[str, Any]:
        groups = {st.group for st in chosen}
        tasks = {"signatures": "dedup" in groups, "neardup": "dedup" in groups, "filters": "filters" in groups}
        sketch = stages.sketch_params()
        results = []
        for tool, tool_tasks in peers.TOOLS.items():
            if tool != "datasketch" and not self.s.peers:
                self.skipped.append({"name": f"peer {tool}", "reason": "pass --peers to measure it"})
                continue
            docs = self.s.peer_docs if tool == "datatrove" else None
            for task in tool_tasks:
                if tasks[task]:
                    result = self.peer(tool, task, main, docs, sketch, self.s.repeats)
                    if result is None:
                        break
                    results.append(result)
        return {"available": self._peer_pythons or {}, "lsh": sketch, "results": results}

    # --- all of it ----------------------------------------------------------------------------------

    def machine_state(self, when: str) -> dict[str, Any]:
        """What swings on a shared host and bounds the figures: memory speed and how well the cores
        run side by side (at the largest local CPU count measured)."""
        cores = max(self.s.cpus)
        return {f"memory_touch_{when}": measure.memory_touch(),
                **({f"core_parallelism_{when}": measure.core_parallelism(cores)} if cores > 1 else {})}

    def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        results: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": ["llmray", "bench", *sys.argv[2:]] if sys.argv[1:2] == ["bench"] else sys.argv,
            "mode": self.s.mode, "machine": {**measure.machine(), **self.machine_state("start")},
            "settings": {k: str(v) if isinstance(v, Path) else v
                         for k, v in dataclasses.asdict(self.s).items()},
        }
        all_stages, not_measurable = stages.plan()
        chosen = self.selected(all_stages)
        corpus.require_data([f"{name}.yaml" for name in JOB_FILES] if self.wanted(JOBS_PART) else [])
        self.skipped += not_measurable
        corpora = self.corpora()
        main = next(c for c in corpora.values() if c["role"] == "main")
        self.main_name = main["name"]
        self.warmup = str(corpus.write_jsonl(self.work / "warmup.jsonl", corpus.read_jsonl(main["path"], 200)))
        results["corpora"] = corpora
        results["jobs"] = self.whole_jobs(main) if self.wanted(JOBS_PART) else {"corpora": {}, "jobs": []}
        results["stages"] = self.measure_stages(chosen, corpora)
        results["scaling"] = self.scaling(chosen, results["stages"], main)
        results["external"] = self.externals(main)
        results["peers"] = self.peers(chosen, main)
        results["accuracy"] = collect_accuracy(results, main["name"])
        results["ratios"] = ratios(results, main["name"])
        results["skipped"] = _unique(self.skipped)
        results["machine"].update(self.machine_state("end"))
        results["total_wall_s"] = round(time.perf_counter() - started, 1)
        self.write(results)
        return results

    def write(self, results: dict[str, Any]) -> None:
        from llmray.bench import plots, table

        self.out.mkdir(parents=True, exist_ok=True)
        results["files"] = {"results": "results.json", "table": "results.md",
                            "plots": plots.write_all(results, self.out)}
        (self.out / "results.md").write_text(table.render(results))
        (self.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
        if not self.s.keep_corpus:
            shutil.rmtree(self.work, ignore_errors=True)
        self.log(f"wrote {self.out}/results.json, results.md and {len(results['files']['plots'])} plots "
                 f"in {results['total_wall_s']} s")


def _stage_figures(point: dict[str, Any], ops: list[str]) -> dict[str, Any]:
    """A one-CPU job as a stage's figures: the job's rates, and each step's own seconds as a rate
    over the job's input, with its decision's details."""
    figures = {k: v for k, v in point.items() if k not in ("stage_seconds", "global_steps", "cluster")}
    figures["peak_rss_mb"] = point["peak_process_rss_mb"]
    figures["ops"] = {op: {**measure.rates(point["stage_seconds"][op]["runs"], point["docs_in"], point["bytes_in"], 1),
                           "details": point["global_steps"].get(op, {})}
                      for op in ops if op in point["stage_seconds"]}
    return figures


def _unique(entries: list[dict[str, str]]) -> list[dict[str, str]]:
    return list({e["name"]: e for e in entries}.values())


def _efficiency(points: list[dict[str, Any]]) -> None:
    """Scaling efficiency of each local point: its throughput over the smallest run's, per core."""
    local = [p for p in points if not p["cluster"] and p["mb_per_s"]["median"]]
    if not local:
        return
    base = min(local, key=lambda p: p["cpus"])
    per_core = base["mb_per_s"]["median"] / base["cpus"]
    for p in points:
        if p["mb_per_s"]["median"]:
            p["efficiency"] = round(p["mb_per_s"]["median"] / (per_core * p["cpus"]), 3)
            p["speedup"] = round(p["mb_per_s"]["median"] / base["mb_per_s"]["median"], 3)


def collect_accuracy(results: dict[str, Any], main: str) -> list[dict[str, Any]]:
    """Every dedup accuracy figure of the run, llmray's and the peers', in one list: whole jobs first."""
    rows = []
    for job in results["jobs"]["jobs"]:
        for point in job["points"][:1]:
            if "accuracy" in point:
                rows.append({"tool": "llmray", "what": job["file"], "docs": point["docs_in"], **point["accuracy"]})
        rows += [{"tool": p["tool"], "what": f"beside {job['file']}", "docs": p["docs"], **p["accuracy"]}
                 for p in job["peers"] if "accuracy" in p]
    for stage in results["stages"]:
        figures = stage.get("corpora", {}).get(main, {})
        if "accuracy" in figures:
            rows.append({"tool": "llmray", "what": stage["name"], "docs": figures["docs_in"],
                         **figures["accuracy"]})
    for peer in results["peers"]["results"]:
        if "accuracy" in peer:
            rows.append({"tool": peer["tool"], "what": peer["task"], "docs": peer["docs"],
                         **peer["accuracy"]})
    return rows


#: Which llmray stage each peer task compares with (the first one measured).
COMPARISONS = {"signatures": ["minhash_signatures"], "filters": [*stages.PEER_CHAINS, "filters:all"]}


def ratios(results: dict[str, Any], main: str) -> list[dict[str, Any]]:
    """llmray's MB/s per core over each peer's, on the same corpus, task by task."""
    near = stages.near_dup_op()
    candidates = {**COMPARISONS, "neardup": [near] if near else []}
    by_name = {s["name"]: s for s in results["stages"] if s.get("status") == "ok"}
    rows = []
    for peer in results["peers"]["results"]:
        stage = next((by_name[n] for n in candidates.get(peer["task"], []) if n in by_name), None)
        if peer.get("status") != "ok" or stage is None:
            continue
        ours = stage["corpora"][main]
        mine, theirs = ours["mb_per_s_per_core"]["median"], peer["mb_per_s_per_core"]["median"]
        row = {"task": peer["task"], "llmray_stage": stage["name"], "llmray_ops": stage["ops"],
               "peer": peer["tool"], "metric": "mb_per_s_per_core", "llmray": mine, "peer_value": theirs,
               "ratio": round(mine / theirs, 2) if mine and theirs else None, "peer_docs": peer["docs"]}
        if "accuracy" in ours and "accuracy" in peer:
            row["removal_f1"] = {"llmray": ours["accuracy"]["removal"]["f1"]["median"],
                                 "peer": peer["accuracy"]["removal"]["f1"]["median"]}
        rows.append(row)
    return rows


def default_output() -> Path:
    return Path("benchmarks") / "results" / dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def summary(results: dict[str, Any], out: Path) -> str:
    """A few lines for the terminal: whole jobs, the main corpus's stages, peer ratios, where the files are."""
    main = next(c for c in results["corpora"].values() if c["role"] == "main")["name"]
    lines = [f"llmray bench ({results['mode']}): {results['total_wall_s']} s "
             f"on {results['machine']['cpu_model']}"]
    for job in results["jobs"]["jobs"]:
        for p in job["points"]:
            lines.append(f"  {job['file']:<24} {p['cpus']} CPU(s) {p['mb_per_s_per_core']['median']:>9} MB/s per core"
                         f"  efficiency {p.get('efficiency')}")
        lines += [f"  {job['file']} vs {p['tool']}: {p['ratio']}x MB/s per core" for p in job["peers"] if "ratio" in p]
    for stage in results["stages"]:
        f = stage.get("corpora", {}).get(main)
        figures = (f"{f['mb_per_s_per_core']['median']:>9} MB/s per core  "
                   f"{f['docs_per_s']['median']:>9} docs/s" if f else stage["status"])
        lines.append(f"  {stage['name']:<24} {figures}")
    for r in results["ratios"]:
        lines.append(f"  {r['task']} vs {r['peer']}: {r['ratio']}x MB/s per core")
    lines.append(f"results: {out}/results.json  table: {out}/results.md  "
                 f"plots: {', '.join(results['files']['plots'])}")
    return "\n".join(lines)
