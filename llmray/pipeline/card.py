"""``README.md`` at a run's output root: the output as a Hugging Face dataset.

The card's YAML front matter declares the configs, so ``load_dataset(OUT)`` (or the Hub's
``load_dataset("ORG/NAME")`` and its dataset viewer) reads ``data/`` alone as the default config,
and each of ``rejects/<step>/`` (their columns differ per step), ``quarantine/`` and ``clusters/``
as configs of their own, instead of mixing everything under ``train``. The body is the run's
summary: documents in and out, drop reasons, sources, the job's steps, how it was made.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from llmray.io.storage import Storage
from llmray.pipeline.report import funnel, human_size, percent, redact

CARD = "README.md"
#: The run's bookkeeping and scratch: not data, never part of the dataset (nor of a push).
PRIVATE = ("_progress/", "_work/")


def _family(path: str) -> str:
    return "parquet" if path.endswith(".parquet") else "json"


def folders(output: Storage) -> list[dict[str, Any]]:
    """Every folder of the output a dataset can be read from, as a config: name, files, format."""
    files = [f for f in output.find() if not f.startswith(PRIVATE)]

    def pattern(folder: str, exts: tuple[str, ...]) -> str | None:
        inside = [f for f in files if f.startswith(folder + "/") and f.endswith(exts)
                  and "/" not in f[len(folder) + 1:]]
        if not inside:
            return None
        ext = next(e for e in exts if any(f.endswith(e) for f in inside))
        return f"{folder}/*{ext}"

    found: list[tuple[str, str | None]] = [("default", pattern("data", (".parquet", ".jsonl.gz", ".jsonl")))]
    found += [(f"rejects_{folder}", pattern(f"rejects/{folder}", (".parquet", ".jsonl.gz")))
              for folder in output.listdir("rejects")]
    found.append(("quarantine", pattern("quarantine", (".jsonl",))))
    stems = sorted({m.group(1) for f in files if (m := re.fullmatch(r"clusters/(.+)-\d{5}\.parquet", f))})
    found += [(f"clusters_{stem}", f"clusters/{stem}-*.parquet") for stem in stems]
    found.append(("tokens", pattern("tokens", (".parquet",))))
    return [{"config_name": name, "data_files": [{"split": "train", "path": path}], "format": _family(path)}
            for name, path in found if path]


def dataset_configs(output: Storage) -> list[dict[str, Any]]:
    """The ``configs:`` of the card: the kept documents as the default config, and each other folder
    of the same file format as a config of its own. (``datasets`` reads every config of a dataset
    with one builder, the default config's: a folder of another format is described in the card
    with its own loading line instead.)"""
    found = folders(output)
    if not found or found[0]["config_name"] != "default":
        return []
    family = found[0]["format"]
    configs = [{k: v for k, v in c.items() if k != "format"} for c in found if c["format"] == family]
    configs[0] = {"config_name": "default", "default": True, "data_files": configs[0]["data_files"]}
    return configs


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                        (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")):
        if n < limit:
            return name
    return "n>1B"


def _steps(job: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    steps = []
    for entry in job.get("steps", []):
        if isinstance(entry, dict):
            (name, params), = entry.items()
            steps.append((name, params or {}))
        else:
            steps.append((str(entry), {}))
    return steps


def _what(config: dict[str, Any]) -> str:
    name = config["config_name"]
    if name == "default":
        return "the kept documents"
    if name.startswith("rejects_"):
        return (f"documents dropped by `{name[len('rejects_'):]}`, with `reason`, `duplicate_of`, "
                "and the `value` and `threshold` that decided")
    if name == "quarantine":
        return "records that could not be read: file, line, error, raw"
    if name.startswith("clusters_"):
        return f"duplicate clusters of `{name[len('clusters_'):]}`: id, cluster_id (the kept id), cluster_size"
    return "token rows (`input_ids`) of the tokenize step"


def render_card(stats: dict[str, Any], output: Storage, repo: str | None = None) -> str:
    """The dataset card for a finished run in ``output`` (``repo``: the Hub name, for the examples)."""
    import yaml

    from llmray import __version__

    job_record = redact(output.get_json("job.json")) if output.exists("job.json") else {}
    job = job_record.get("job", {})
    configs = dataset_configs(output)
    steps = _steps(job)
    languages = sorted({lang for name, params in steps if name == "language" for lang in params.get("languages", [])})
    meta: dict[str, Any] = {"configs": configs} if configs else {}
    meta.update({"tags": ["llmray", "text"], "size_categories": [_size_category(stats["docs_out"])]})
    if languages:
        meta["language"] = languages
    pretty = repo.split("/", 1)[1] if repo else Path(output.url.rstrip("/")).name or "llmray dataset"
    meta["pretty_name"] = pretty
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000)
    read, kept = stats["docs_in"], stats["docs_out"]
    dropped = sum(stats["dropped"].values())
    where = f'"{repo}"' if repo else f'"{output.url}"'
    job_file = stats.get("job_file") or job_record.get("job_file")
    lines = [f"---\n{front}---", "", f"# {pretty}", "",
             f"Made with llmray {__version__}"
             + (f" from the job `{job_file}`" if job_file else "") + f", started {stats.get('started_at', '?')}: "
             f"{read:,} documents read ({human_size(stats['bytes_in'])} of text), **{kept:,} kept** "
             f"({percent(kept, read)}, {human_size(stats['bytes_out'])}), {dropped:,} dropped with a reason, "
             f"{stats.get('quarantined', 0):,} quarantined (unreadable).", ""]
    if configs:
        lines += ["## Load it", "", "```python", "from datasets import load_dataset", "",
                  f"kept = load_dataset({where}, split=\"train\")  # data/: the kept documents"]
        other = [c["config_name"] for c in configs if c["config_name"] != "default"]
        if other:
            first = other[0]
            name = "dropped" if first.startswith("rejects_") else "unreadable" if first == "quarantine" else "more"
            lines.append(f"{name} = load_dataset({where}, \"{other[0]}\", split=\"train\")")
        apart = [c for c in folders(output) if c["config_name"] not in {d["config_name"] for d in configs}]
        base = f"hf://datasets/{repo}" if repo else output.url
        for c in apart[:1]:
            lines.append(f"more = load_dataset(\"{c['format']}\", data_files=\"{base}/{c['data_files'][0]['path']}\", "
                         f"split=\"train\")  # {c['config_name']}")
        lines += ["```", "", "| config | files | what |", "| --- | --- | --- |"]
        lines += [f"| `{c['config_name']}` | `{c['data_files'][0]['path']}` | {_what(c)} |" for c in configs]
        if apart:
            lines += ["", "These folders hold files of another format than `data/`, so they are not configs of this "
                      "dataset (`datasets` reads every config with the default config's builder); load each with "
                      "`load_dataset(FORMAT, data_files=...)` as above:", "",
                      "| files | format | what |", "| --- | --- | --- |"]
            lines += [f"| `{c['data_files'][0]['path']}` | {c['format']} | {_what(c)} |" for c in apart]
        lines += ["", "`report.html` is the run's full report (funnel, drop reasons with samples, deduplication, "
                  "time); `stats.json` holds its numbers and `job.json` the resolved job.", ""]
    else:
        lines += ["No documents were kept.", ""]
    lines += ["## What was removed", "", "| step | documents in | documents out | dropped | text out |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for row in funnel(stats):
        lines.append(f"| `{row['name']}` | {row['docs_in']:,} | {row['docs_out']:,} | {row['docs_dropped']:,} | "
                     f"{human_size(row['bytes_out'])} |")
    reasons = [(r, n) for r, n in sorted(stats["dropped"].items(), key=lambda kv: (-kv[1], kv[0])) if n]
    if reasons:
        lines += ["", "| drop reason | documents | share of read |", "| --- | ---: | ---: |"]
        lines += [f"| `{r}` | {n:,} | {percent(n, read)} |" for r, n in reasons]
    sources = stats.get("sources") or {}
    if sources:
        lines += ["", "| source | documents in | documents out | kept |", "| --- | ---: | ---: | ---: |"]
        lines += [f"| {name} | {s.get('docs_in', 0):,} | {s.get('docs_out', 0):,} | "
                  f"{percent(s.get('docs_out', 0), s.get('docs_in', 0))} |" for name, s in sorted(sources.items())]
    lines += ["", "## How it was made", ""]
    inputs = job.get("input", [])
    for spec in inputs if isinstance(inputs, list) else [inputs]:
        if isinstance(spec, dict):
            lines.append(f"- input `{spec.get('source', 'default')}`: " + ", ".join(
                f"`{p}`" for p in spec.get("paths", [])) + f" ({spec.get('format', 'auto')})")
    if steps:
        lines.append("- steps, in order:")
        for i, (name, params) in enumerate(steps, 1):
            shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in params.items() if v not in (None, [], {}))
            lines.append(f"  {i}. `{name}`" + (f" ({shown})" if shown else ""))
    out = job.get("output", {})
    if out:
        lines.append(f"- output format `{out.get('format', 'parquet')}`, rejects "
                     f"{'kept' if out.get('rejects') else 'not kept'}")
    lines.append(f"- llmray {__version__}, {stats.get('num_cpus', '?')} CPUs on {stats.get('nodes', '?')} node(s), "
                 f"{stats.get('wall_s', 0):,.1f} s; job fingerprint `{stats.get('fingerprint', '')}`; every document "
                 f"is accounted for ({read:,} read = {kept:,} kept + {dropped:,} dropped + "
                 f"{stats.get('quarantined', 0):,} quarantined)")
    lines += ["", "The license of the data is that of its input; llmray adds none.", ""]
    return "\n".join(lines)


def write_dataset_card(stats: dict[str, Any], output: Storage) -> None:
    """Write ``README.md`` at the output's root (the runner calls it after the report). A card that
    cannot be made is logged, never a reason to fail the run it describes."""
    try:
        card = render_card(stats, output)
    except Exception as exc:
        logging.getLogger(__name__).warning("%s: no dataset card (%s: %s)", output.url, type(exc).__name__, exc)
        return
    output.put(CARD, card.encode())
