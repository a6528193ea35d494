"""report.html: one run as a page a person can read, and print, without a network.

Everything the page shows comes from ``stats.json`` (passed in) and from what the run wrote in its
output, read back through its :class:`Storage` (a local folder or any fsspec URL):

* the funnel: documents and bytes in and out of each step, in order, in percent and counts; bytes a
  map step rewrote are kept apart from bytes dropped with documents;
* drop reasons per step and per source (per source from ``rejects/`` when the run wrote it);
* a few dropped documents per reason, from ``rejects/<step>/`` (or a line saying the run kept none);
* the dedup view: pairs, groups and seconds per phase of each dedup step, the cluster-size
  histogram from ``clusters/``, and a kept document beside one it replaced (``duplicate_of``);
* time per step and per global phase (``intermediate_io`` and ``write`` are the runner's own I/O,
  shown only there); the resolved job (``job.json``, credentials masked).

Plots are SVG bar charts (:mod:`llmray.pipeline.charts`) inlined as data URIs, with logarithmic
axes where counts span orders of magnitude, so 40 drops among 1,540 documents draw a visible bar. Reading the output is
bounded (``SCAN_ROWS``, ``DATA_SHARDS``) and never fails the run: a part that cannot be read says so.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import re
from typing import Any

from llmray.io.storage import Storage
from llmray.kernels import arrow
from llmray.pipeline import charts

#: Stages of the runner's own I/O, not steps of the job.
INTERNAL = ("intermediate_io", "write")
SAMPLES_PER_REASON = 3
SAMPLE_CHARS = 420
PAIRS_PER_STEP = 2
#: Removed documents looked at per dedup step to find pairs whose kept documents share a shard.
PAIR_CANDIDATES = 64
#: At most this many rejects are counted per source and reason (the rest is said to be uncounted).
SCAN_ROWS = 2_000_000
#: Kept documents of dedup examples are looked up in at most this many shards of data/.
DATA_SHARDS = 64
QUARANTINE_SAMPLES = 5
#: Keys of storage_options whose values are masked wherever the job is shown.
SECRET = re.compile(r"key|secret|token|passw|credential|sas|signature|auth|connection_string", re.I)
COLORS = ["#00798c", "#edae49", "#8d6a9f", "#66a182", "#c17c74", "#2e4057", "#b56576", "#6d597a", "#a8a8a8"]
KEPT, DROPPED, REWRITTEN = "#3b6fb6", "#d1495b", "#edae49"


def write_report(stats: dict[str, Any], storage: Storage, name: str = "report.html") -> None:
    storage.put(name, render(stats, storage).encode())


# -- what the output holds beyond stats.json ---------------------------------------------------------


@dataclasses.dataclass
class Evidence:
    job: dict[str, Any] | None = None
    #: Whether the run kept its dropped documents in rejects/ (None: its output was not read).
    rejects: bool | None = None
    samples: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)
    #: source -> reason -> documents, counted over rejects/ (None: not counted).
    by_source: dict[str, dict[str, int]] | None = None
    by_source_complete: bool = True
    #: dedup stage -> cluster size -> number of clusters, from clusters/.
    clusters: dict[str, dict[int, int]] = dataclasses.field(default_factory=dict)
    #: dedup stage -> [(kept row or None, removed row)].
    pairs: dict[str, list[tuple[dict[str, Any] | None, dict[str, Any]]]] = dataclasses.field(default_factory=dict)
    quarantine: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)


def gather(stats: dict[str, Any], output: Storage | None) -> Evidence:
    """Read what the report shows besides the stats; each part that fails becomes a note."""
    found = Evidence()
    if output is None:
        return found
    found.rejects = False
    for part in (_job, _rejects, _clusters, _pairs, _quarantine):
        try:
            part(stats, output, found)
        except Exception as exc:  # a report must never fail the run it reports
            found.notes.append(f"{part.__name__.strip('_')}: could not be read ({type(exc).__name__}: {exc})")
    return found


def _job(stats: dict[str, Any], output: Storage, found: Evidence) -> None:
    if output.exists("job.json"):
        found.job = redact(output.get_json("job.json"))


def _shards(output: Storage, folder: str) -> list[str]:
    return [f for f in output.find(folder) if f.endswith((".parquet", ".jsonl.gz"))
            and not any(part.startswith("_") for part in f.split("/"))]


def _tables(output: Storage, files: list[str], columns: list[str]) -> Any:
    from llmray.io.writers import read_shard

    for rel in files:
        yield from read_shard(output, rel, columns=columns, batch_rows=8192)


def _rejects(stats: dict[str, Any], output: Storage, found: Evidence) -> None:
    import numpy as np

    folders = [name for name in output.listdir("rejects") if _shards(output, f"rejects/{name}")]
    wanted = (found.job or {}).get("job", {}).get("output", {}).get("rejects")
    found.rejects = bool(folders) or bool(wanted)
    if not folders:
        return
    counts: dict[str, dict[str, int]] = {}
    scanned = 0
    for folder in folders:
        files = _shards(output, f"rejects/{folder}")
        here: set[str] = set()
        for table in _tables(output, files, ["source", "reason"]):
            if scanned >= SCAN_ROWS:
                found.by_source_complete = False
                break
            scanned += table.num_rows
            for (source, reason), n in _pair_counts(table.column("source"), table.column("reason")):
                bucket = counts.setdefault(str(source), {})
                bucket[reason] = bucket.get(reason, 0) + n
                here.add(reason)
        # samples: the first few rows of each reason of this folder, text truncated
        read = 0
        for table in _tables(output, files, ["id", "text", "source", "reason", "duplicate_of", "value", "threshold"]):
            read += table.num_rows
            codes, names = arrow.codes(table.column("reason"))
            picks = [np.flatnonzero(codes == c)[:SAMPLES_PER_REASON - len(found.samples.get(name, []))]
                     for c, name in enumerate(names)]
            rows = np.sort(np.concatenate([np.zeros(0, np.int64), *picks]))
            for row in table.take(arrow.from_numpy(rows)).to_pylist():  # the text of the rows shown only
                found.samples.setdefault(row["reason"], []).append(_truncated(row))
            if read >= SCAN_ROWS or all(len(found.samples.get(r, [])) >= SAMPLES_PER_REASON for r in here):
                break
    found.by_source = counts


def _pair_counts(first: Any, second: Any) -> list[tuple[tuple[Any, Any], int]]:
    """How often each (first, second) value pair occurs (Arrow's group_by would import pandas into
    the driver: a quarter of a second of every run's report)."""
    import numpy as np

    (a, names_a), (b, names_b) = arrow.codes(first), arrow.codes(second)
    width = max(len(names_b), 1)
    pairs, n = np.unique(a * width + b, return_counts=True)
    return [((names_a[c // width], names_b[c % width]), int(k)) for c, k in zip(pairs.tolist(), n.tolist(),
                                                                               strict=True)]


def counts_for(counts: dict[str, dict[str, int]]) -> set[str]:
    return {reason for per in counts.values() for reason in per}


def _truncated(row: dict[str, Any]) -> dict[str, Any]:
    text = row.get("text") or ""
    row = dict(row)
    row["chars"] = len(text)
    row["text"] = text if len(text) <= SAMPLE_CHARS else text[:SAMPLE_CHARS].rstrip() + " …"
    return row


def _clusters(stats: dict[str, Any], output: Storage, found: Evidence) -> None:
    import numpy as np

    by_stage: dict[str, list[str]] = {}
    for rel in output.find("clusters"):
        match = re.fullmatch(r"clusters/(.+)-\d{5}\.parquet", rel)
        if match:
            by_stage.setdefault(match.group(1), []).append(rel)
    for stage, files in sorted(by_stage.items()):
        hist: dict[int, int] = {}
        for table in _tables(output, files, ["cluster_size"]):
            sizes, rows = np.unique(arrow.to_numpy(table.column("cluster_size")), return_counts=True)
            for size, n in zip(sizes.tolist(), rows.tolist(), strict=True):
                hist[int(size)] = hist.get(int(size), 0) + int(n)
        # every member of a cluster has a row: rows / size = clusters
        found.clusters[stage] = {size: max(1, rows // max(size, 1)) for size, rows in sorted(hist.items())}


def _pairs(stats: dict[str, Any], output: Storage, found: Evidence) -> None:
    """A kept document beside one it replaced, per dedup step. The text of data/ is read only in
    the shards that hold the pairs shown: candidates are found by id, then the pairs are taken from
    the fewest shards (reading the text of every shard that held one would be most of the report's
    time, on the driver, after the run's last task)."""
    import pyarrow.compute as pc

    candidates: dict[str, list[tuple[str, int, str]]] = {}  # stage -> (rejects file, row, kept id)
    for stage in _dedup_steps(stats):
        files = _shards(output, f"rejects/{stage.replace('#', '-')}")
        for rel in files:
            for table in _tables(output, [rel], ["duplicate_of"]):
                column = table.column("duplicate_of")
                rows = arrow.to_numpy(pc.indices_nonzero(pc.is_valid(column)), 0)[:PAIR_CANDIDATES]
                kept_ids = column.take(arrow.from_numpy(rows)).to_pylist()
                candidates.setdefault(stage, []).extend((rel, int(r), k) for r, k in zip(rows, kept_ids, strict=True))
                break  # the first table of a shard is enough
            if len(candidates.get(stage, [])) >= PAIR_CANDIDATES:
                break
    wanted = {k for rows in candidates.values() for _, _, k in rows}
    home: dict[str, str] = {}  # kept id -> the data shard that holds it
    for rel in _shards(output, "data")[:DATA_SHARDS]:
        for table in _tables(output, [rel], ["id"]):
            home.update((i, rel) for i in table.filter(pc.is_in(table.column("id"), value_set=arrow.strings(
                sorted(wanted - home.keys())))).column("id").to_pylist())
        if len(home) == len(wanted):
            break
    # the pairs whose kept documents lie in the shards that hold most of all steps' kept documents
    shards = [home.get(k) for rows in candidates.values() for _, _, k in rows]
    hits = {rel: shards.count(rel) for rel in set(shards) if rel is not None}
    removed: dict[str, list[dict[str, Any]]] = {}
    for stage, rows in candidates.items():
        shard = [home.get(k) for _, _, k in rows]
        order = sorted(range(len(rows)), key=lambda i: (shard[i] is None, -hits.get(shard[i], 0), shard[i] or "", i))
        removed[stage] = _rows_at(output, [rows[i][:2] for i in order[:PAIRS_PER_STEP]],
                                  ["id", "text", "source", "duplicate_of"])
    kept = {row["id"]: row for row in _rows_with_ids(output, home, {r["duplicate_of"] for rows in removed.values()
                                                                    for r in rows})}
    for stage, rows in removed.items():
        found.pairs[stage] = [(kept.get(r["duplicate_of"]), r) for r in rows]


def _rows_at(output: Storage, places: list[tuple[str, int]], columns: list[str]) -> list[dict[str, Any]]:
    """The rows at (file, row in its first table), truncated for the page, in the order given."""
    import numpy as np

    by_file: dict[str, list[int]] = {}
    for rel, row in places:
        by_file.setdefault(rel, []).append(row)
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for rel, numbers in by_file.items():
        for table in _tables(output, [rel], columns):
            picked = table.take(arrow.from_numpy(np.asarray(numbers, np.int64))).to_pylist()
            rows.update(((rel, n), _truncated(r)) for n, r in zip(numbers, picked, strict=True))
            break
    return [rows[place] for place in places]


def _rows_with_ids(output: Storage, home: dict[str, str], ids: set[str]) -> list[dict[str, Any]]:
    """The data/ rows of these ids, reading only the shards that hold them."""
    import pyarrow.compute as pc

    found, wanted = [], arrow.strings(sorted(ids))
    for rel in sorted({home[i] for i in ids if i in home}):
        for table in _tables(output, [rel], ["id", "text", "source"]):
            hits = table.filter(pc.is_in(table.column("id"), value_set=wanted))
            found += [_truncated(r) for r in hits.to_pylist()]
    return found


def _quarantine(stats: dict[str, Any], output: Storage, found: Evidence) -> None:
    if not stats.get("quarantined"):
        return
    for rel in output.find("quarantine"):
        for line in output.get(rel).decode("utf-8", "replace").splitlines():
            if len(found.quarantine) >= QUARANTINE_SAMPLES:
                return
            if line.strip():
                record = json.loads(line)
                raw = str(record.get("raw") or "")
                record["raw"] = raw if len(raw) <= 160 else raw[:160] + " …"
                found.quarantine.append(record)


def redact(value: Any, inside: bool = False) -> Any:
    """The job with the values of credential-like keys of its ``storage_options`` masked."""
    if isinstance(value, dict):
        return {k: ("***" if inside and SECRET.search(str(k)) and v not in (None, "") else
                    redact(v, inside or k == "storage_options")) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, inside) for v in value]
    return value


# -- numbers -------------------------------------------------------------------------------------------


def _base(stage: str) -> str:
    return stage.split("#", 1)[0]


def _kinds() -> dict[str, str]:
    try:
        from llmray import ops
        from llmray.ops.base import kind_of

        return {name: kind_of(cls) for name, cls in ops.available().items()}
    except Exception:
        return {}


KIND_LABEL = {"read": "read", "map": "rewrites", "filter": "filter", "global": "corpus-wide"}


def _dedup_steps(stats: dict[str, Any]) -> list[str]:
    return [name for name, d in stats.get("global_steps", {}).items()
            if isinstance(d, dict) and "duplicates" in d and (_base(name) != "unique_ids" or d["duplicates"])]


def funnel(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per step of the job, in order, from ``read`` to the last step: documents and bytes
    in and out, documents dropped, bytes dropped with them and bytes changed by rewriting."""
    kinds = _kinds()
    dropped, dropped_bytes = stats.get("dropped", {}), stats.get("dropped_bytes", {})
    global_steps = stats.get("global_steps", {})
    names = [s["name"] for s in stats["stages"] if s["name"] not in INTERNAL]
    rows = []
    for stage in stats["stages"]:
        name = stage["name"]
        reasons = {r: n for r, n in dropped.items() if r.split(".", 1)[0] == _base(name)}
        if name in INTERNAL or (name in global_steps and not reasons):
            continue  # the runner's I/O, or a global step that drops nothing (unique_ids without dedupe_ids)
        shared = sum(_base(n) == _base(name) for n in names) > 1
        docs_dropped = stage["docs_in"] - stage["docs_out"]
        bytes_removed = stage["bytes_in"] - stage["bytes_out"]
        with_docs = None if shared else sum(dropped_bytes.get(r, 0) for r in reasons)
        rows.append({
            "name": name, "kind": KIND_LABEL.get("read" if name == "read" else kinds.get(_base(name), ""), ""),
            "docs_in": stage["docs_in"], "docs_out": stage["docs_out"], "docs_dropped": docs_dropped,
            "bytes_in": stage["bytes_in"], "bytes_out": stage["bytes_out"],
            "bytes_dropped": with_docs, "bytes_rewritten": None if with_docs is None else bytes_removed - with_docs,
            "reasons": None if shared else reasons,
            "quarantined": stats.get("quarantined", 0) if name == "read" else 0,
        })
    return rows


def percent(part: float, whole: float) -> str:
    if not whole:
        return "–"
    p = 100.0 * part / whole
    if p == 0:
        return "0%"
    if p == 100:
        return "100%"
    if 99.5 <= p < 100:
        digits = 2
        while round(p, digits) >= 100 and digits < 6:
            digits += 1
        return f"{p:.{digits}f}%"
    if abs(p) >= 10:
        return f"{p:.1f}%"
    digits = max(1, 1 - math.floor(math.log10(abs(p)))) if abs(p) < 1 else 2
    return f"{p:.{digits}f}%"


def human_size(n: float | None) -> str:
    if n is None:
        return "–"
    sign = "−" if n < 0 else ""
    n = abs(n)
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{sign}{n / scale:,.{1 if n >= 10 * scale else 2}f} {unit}"
    return f"{sign}{n:,.0f} B"


def _n(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
    return html.escape(str(value))


def _e(value: Any) -> str:
    return html.escape(str(value))


# -- plots -----------------------------------------------------------------------------------------------


def _bytes_tick(v: float) -> str:
    if v < 1:
        return ""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3), ("B", 1)):
        if v >= scale:
            return f"{v / scale:g} {unit}"
    return ""


def _plot_funnel(rows: list[dict[str, Any]]) -> list[str]:
    """Per step: passed on and removed, documents and bytes, on log axes (two charts)."""
    names = [r["name"] for r in rows]
    lost = [r["docs_dropped"] for r in rows]
    gone = [r["bytes_dropped"] if r["bytes_dropped"] is not None else r["bytes_in"] - r["bytes_out"] for r in rows]
    rewritten = [abs(r["bytes_rewritten"] or 0) for r in rows]
    docs = charts.hbars(names, [
        charts.Series("passed on", [r["docs_out"] for r in rows], KEPT),
        charts.Series("dropped", lost, DROPPED, [f"{n:,}" for n in lost], "#7a1f2b")],
        "Documents per step", "documents (log scale)")
    size = charts.hbars(names, [
        charts.Series("passed on", [r["bytes_out"] for r in rows], KEPT),
        charts.Series("dropped with documents", gone, DROPPED, [human_size(n) if n else "" for n in gone], "#7a1f2b"),
        charts.Series("changed by rewriting", rewritten, REWRITTEN, [human_size(n) if n else "" for n in rewritten],
                      "#8a5a00")], "Bytes per step", "bytes of text (log scale)", _bytes_tick)
    return [docs, size]


def _plot_reasons(stats: dict[str, Any], order: list[str]) -> str:
    dropped = stats["dropped"]
    reasons = sorted(dropped, key=lambda r: (-dropped[r], r))
    steps = [_base(s) for s in order if any(r.split(".", 1)[0] == _base(s) for r in reasons)]
    steps += sorted({r.split(".", 1)[0] for r in reasons} - set(steps))
    color = {s: COLORS[i % len(COLORS)] for i, s in enumerate(steps)}
    values = [dropped[r] for r in reasons]
    notes = [f"{n:,}  ({percent(n, stats['docs_in'])} of read)" if n else "0" for n in values]
    bars = charts.Series("", values, KEPT, notes, colors=[color[r.split(".", 1)[0]] for r in reasons])
    return charts.hbars(reasons, [bars], "Drop reasons, colored by step", "documents dropped (log scale)",
                        headroom=40, legend=list(color.items()))


def _plot_lengths(hist: dict[str, Any]) -> str | None:
    before, after = hist.get("before") or [], hist.get("after") or []
    if not any(before):
        return None
    top = max(i for series in (before, after) for i, v in enumerate(series) if v) + 1
    low = min(i for series in (before, after) for i, v in enumerate(series) if v)
    before, after = (list(series[low:top]) + [0] * (top - low - len(series[low:top])) for series in (before, after))
    labels = [f"{2 ** (k - 1):,}" if k else "0" for k in range(low, top)]
    return charts.vbars(labels, [charts.Series("read", before, "#9aa5b1"), charts.Series("kept", after, KEPT)],
                        "Document lengths before and after", "document length in characters (each bin starts at)",
                        "documents (log)")


def _plot_clusters(stage: str, hist: dict[int, int]) -> str:
    sizes = sorted(hist)
    return charts.vbars([f"{s:,}" for s in sizes], [charts.Series("clusters", [hist[s] for s in sizes], COLORS[3],
                                                                   [f"{hist[s]:,}" for s in sizes])],
                        f"{stage}: cluster sizes", "cluster size (documents)", "clusters (log)", width=520,
                        min_slots=8)


def _img(svg: str | None, alt: str) -> str:
    return f'<img src="data:image/svg+xml;base64,{svg}" alt="{_e(alt)}">' if svg else ""


# -- the page ------------------------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[Any]], cls: str = "", left: int = 1) -> str:
    """A table whose first ``left`` columns are text (left-aligned), the rest numbers."""
    def cell(tag: str, i: int, c: Any) -> str:
        return f'<{tag} class="l">{c}</{tag}>' if i < left else f"<{tag}>{c}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _bar(part: float, whole: float, color: str = KEPT) -> str:
    width = 0 if not whole else max(0.0, min(100.0, 100.0 * part / whole))
    return (f'<span class="bar"><span style="width:{width:.2f}%;background:{color}"></span></span>'
            f'<span class="pct">{percent(part, whole)}</span>')


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>{body}</section>'


def render(stats: dict[str, Any], output: Storage | None = None) -> str:
    """The page for these stats; with ``output``, also what the run wrote there (rejects, clusters, job)."""
    found = gather(stats, output)
    rows = funnel(stats)
    parts = [("summary", _summary, (stats,)), ("funnel", _funnel_section, (stats, rows)),
             ("reasons", _reasons_section, (stats, rows, found)), ("samples", _samples_section, (stats, rows, found)),
             ("dedup", _dedup_section, (stats, found)), ("time", _time_section, (stats,)),
             ("lengths", _lengths_section, (stats,)), ("job", _job_section, (stats, found))]
    sections = []
    for anchor, build, args in parts:
        try:
            sections.append(build(*args))
        except Exception as exc:  # a report must never fail the run it reports
            sections.append(_section(anchor, anchor.capitalize(), f'<p class="warn">This part could not be drawn '
                                     f'({_e(type(exc).__name__)}: {_e(exc)}); stats.json holds its numbers.</p>'))
    sections = [s for s in sections if s]
    nav = "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in re.findall(r'<section id="([^"]+)"><h2>([^<]+)</h2>',
                                                                         "".join(sections)))
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in found.notes)
    from llmray import __version__

    when = _e(stats.get("started_at", ""))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>llmray report: {_e(stats.get("job_file") or "run")}</title>
<style>{CSS}</style></head><body><main>
<header><h1>llmray run report</h1>
<p class="sub">Job <code>{_e(stats.get("job_file") or "(from Python)")}</code> · started {when} ·
llmray {_e(__version__)} · fingerprint <code>{_e(stats.get("fingerprint", ""))}</code></p>
<nav>{nav}</nav></header>
{notes}{"".join(sections)}
</main></body></html>"""


def _summary(stats: dict[str, Any]) -> str:
    read, kept = stats["docs_in"], stats["docs_out"]
    dropped = sum(stats["dropped"].values())
    quarantined = stats.get("quarantined", 0)
    ok = stats.get("accounting_ok")
    status = ("reconciles" if ok else "DOES NOT reconcile") if ok is not None else "not checked"
    cards = [
        ("read", f"{read:,}", human_size(stats["bytes_in"])),
        ("kept", f"{kept:,}", f"{percent(kept, read)} · {human_size(stats['bytes_out'])} "
                              f"({percent(stats['bytes_out'], stats['bytes_in'])} of bytes)"),
        ("dropped", f"{dropped:,}",
         f"{percent(dropped, read)} · {human_size(sum(stats.get('dropped_bytes', {}).values()))}"),
        ("quarantined", f"{quarantined:,}", "unreadable records" if quarantined else "none unreadable"),
    ]
    tiles = "".join(f'<div class="card {k}"><div class="k">{k}</div><div class="v">{v}</div>'
                    f'<div class="d">{_e(d)}</div></div>' for k, v, d in cards)
    time = (f"{stats.get('wall_s', 0):.2f} s of pipeline time ({stats.get('throughput_mb_s', 0):.2f} MB/s of input) on "
            f"{stats.get('num_cpus', '?')} CPUs across {stats.get('nodes', '?')} node(s), plus "
            f"{stats.get('startup_s', 0):.2f} s to start Ray")
    extra = ""
    if stats.get("duplicate_ids", {}).get("count"):
        d = stats["duplicate_ids"]
        extra += (f'<p class="warn">{d["count"]:,} documents repeat an id of another (e.g. '
                  f'{", ".join(_e(x) for x in d["examples"][:5])}).</p>')
    if stats.get("skipped_files", {}).get("count"):
        s = stats["skipped_files"]
        extra += f'<p class="note">{s["count"]:,} hidden input file(s) skipped: {_e(", ".join(s["examples"][:5]))}.</p>'
    return _section("summary", "Summary", f"""<div class="cards">{tiles}</div>
<p class="{"ok" if ok else "warn"}">Accounting {status}: {read:,} read = {kept:,} kept + {dropped:,} dropped +
{quarantined:,} quarantined.</p><p>{_e(time)}.</p>{extra}""")


def _funnel_section(stats: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    total_docs, total_bytes = stats["docs_in"], stats["bytes_in"]
    body = []
    for r in rows:
        dropped = r["docs_dropped"]
        drop_cell = (f'<span class="neg">−{dropped:,}</span> '
                     f'<span class="muted">({percent(dropped, r["docs_in"])})</span>'
                     if dropped else '<span class="muted">0</span>')
        if r["quarantined"]:
            drop_cell += f' <span class="muted">incl. {r["quarantined"]:,} quarantined</span>'
        rewritten = r["bytes_rewritten"]
        rew = ('<span class="muted">0</span>' if not rewritten else
               f'<span class="rew">{"−" if rewritten > 0 else "+"}{human_size(abs(rewritten))}</span>')
        bytes_dropped = r["bytes_dropped"]
        bd = ("–" if bytes_dropped is None
              else f'<span class="neg">−{human_size(bytes_dropped)}</span>' if bytes_dropped
              else '<span class="muted">0</span>')
        body.append([f'<b>{_e(r["name"])}</b> <span class="kind">{_e(r["kind"])}</span>',
                     _n(r["docs_in"]), _n(r["docs_out"]), drop_cell, _bar(r["docs_out"], total_docs),
                     human_size(r["bytes_in"]), human_size(r["bytes_out"]), bd, rew, _bar(r["bytes_out"], total_bytes)])
    body.append(['<b>data/</b> <span class="kind">written</span>', "", _n(stats["docs_out"]), "",
                 _bar(stats["docs_out"], total_docs), "", human_size(stats["bytes_out"]), "", "",
                 _bar(stats["bytes_out"], total_bytes)])
    table = _table(["step", "docs in", "docs out", "dropped (of step input)", "documents left of all read",
                    "bytes in", "bytes out", "dropped with documents", "changed by rewriting",
                    "bytes left of all read"], body, "funnel")
    counters = stats.get("counters") or {}
    counted = ""
    if counters:
        counted = "<h3>What the steps counted</h3>" + _table(
            ["step", "counter", "count"],
            [[_e(step), _e(k.replace("_", " ")), _n(v)] for step, values in counters.items()
             for k, v in values.items()], "narrow", left=2)
    return _section("funnel", "Funnel", f"""<p>Each step in the order it ran. <i>Dropped with documents</i> is the
text of documents a step removed; <i>changed by rewriting</i> is text a cleaning step cut out of (or, with +, added to)
documents it kept: no document is lost there.</p>{table}
{"".join(_img(svg, alt) for svg, alt in zip(_plot_funnel(rows), ("documents per step", "bytes per step"),
                                            strict=True))}{counted}""")


def _reasons_section(stats: dict[str, Any], rows: list[dict[str, Any]], found: Evidence) -> str:
    dropped, dropped_bytes = stats["dropped"], stats.get("dropped_bytes", {})
    order = [r["name"] for r in rows]
    parts = []
    if dropped:
        step_of = {r: r.split(".", 1)[0] for r in dropped}
        ranked = _reason_order(stats, order)
        parts.append(_table(["step", "reason", "documents", "of read", "bytes"], [
            [_e(step_of[r]), f'<code>{_e(r)}</code>', _n(dropped[r]), percent(dropped[r], stats["docs_in"]),
             human_size(dropped_bytes.get(r, 0))] for r in ranked], "narrow", left=2))
        parts.append(_img(_plot_reasons(stats, order), "drop reasons"))
    else:
        parts.append("<p>No document was dropped.</p>")
    sources = stats.get("sources") or {}
    if sources:
        parts.append("<h3>Per source</h3>")
        parts.append(_table(["source", "docs in", "docs out", "kept", "dropped or quarantined", "bytes in",
                             "bytes out"], [
            [f"<b>{_e(name)}</b>", _n(s.get("docs_in", 0)), _n(s.get("docs_out", 0)),
             _bar(s.get("docs_out", 0), s.get("docs_in", 0)), _n(s.get("docs_in", 0) - s.get("docs_out", 0)),
             human_size(s.get("bytes_in", 0)), human_size(s.get("bytes_out", 0))]
            for name, s in sorted(sources.items())],
            "narrow"))
        if found.by_source and len(sources) > 1:
            reasons = [r for r in _reason_order(stats, order) if r in counts_for(found.by_source)]
            names = sorted(found.by_source)
            parts.append(_table(["reason", *[_e(n) for n in names]], [
                [f"<code>{_e(r)}</code>", *[_n(found.by_source[n].get(r, 0)) for n in names]] for r in reasons],
                "narrow"))
            note = "" if found.by_source_complete else f" (the first {SCAN_ROWS:,} rejects only)"
            parts.append(f'<p class="muted">Drop reasons per source counted over <code>rejects/</code>{note}.</p>')
        elif dropped and len(sources) > 1 and found.rejects is False:
            parts.append('<p class="muted">Reasons per source need the dropped documents: set '
                         '<code>output.rejects: true</code>.</p>')
    return _section("reasons", "Drop reasons", "".join(parts))


def _reason_order(stats: dict[str, Any], order: list[str]) -> list[str]:
    """Drop reasons in the order of their steps, the most frequent first within a step."""
    dropped = stats["dropped"]

    def key(reason: str) -> tuple[int, int, str]:
        step = reason.split(".", 1)[0]
        at = next((i for i, name in enumerate(order) if _base(name) == step), len(order))
        return at, -dropped[reason], reason

    return sorted(dropped, key=key)


def _docs(n: int) -> str:
    return f"{n:,} document{'' if n == 1 else 's'}"


def _doc(row: dict[str, Any], label: str = "", cls: str = "", reason: str = "") -> str:
    extra = f' · duplicate of <code>{_e(row["duplicate_of"])}</code>' if row.get("duplicate_of") else ""
    if row.get("value") is not None:  # what the rule measured, against its limit
        limit = f' (limit {row["threshold"]:.4g})' if row.get("threshold") is not None else ""
        extra += f' · <span class="measure">measured {row["value"]:.4g}{limit}</span>'
    tag = f'<code class="why">{_e(reason.split(".", 1)[1])}</code> ' if reason else ""
    source = f' · {_e(row["source"])}' if row.get("source") else ""
    text = _e(row["text"]) if row.get("text") else "<i>(empty text)</i>"
    return (f'<div class="{" ".join(["doc", cls]).strip()}" data-id="{_e(row["id"])}" '
            f'data-reason="{_e(row.get("reason") or "")}"><div class="meta">{tag}{label}'
            f'<code class="id">{_e(row["id"])}</code>{source} · {row.get("chars", 0):,} characters{extra}</div>'
            f'<div class="text">{text}</div></div>')


def _samples_section(stats: dict[str, Any], rows: list[dict[str, Any]], found: Evidence) -> str:
    reasons = [r for r in _reason_order(stats, [r["name"] for r in rows]) if stats["dropped"][r]]
    parts = []
    if found.rejects is None:
        return ""  # rendered from the stats alone
    if reasons and not found.rejects:
        parts.append('<p class="warn">This run did not write rejects, so there are no dropped documents to show: '
                     'set <code>output.rejects: true</code> in the job to keep them in <code>rejects/&lt;step&gt;/'
                     '</code> with their reason.</p>')
    elif reasons:
        parts.append(f'<p>Up to {SAMPLES_PER_REASON} documents per reason from <code>rejects/&lt;step&gt;/</code>, '
                     f'text cut at {SAMPLE_CHARS} characters.</p>')
        steps: dict[str, list[str]] = {}
        for reason in reasons:
            steps.setdefault(reason.split(".", 1)[0], []).append(reason)
        for step, of_step in steps.items():
            docs = [(reason, row) for reason in of_step for row in found.samples.get(reason, [])]
            items = "".join(_doc(row, reason=reason if len(of_step) > 1 else "") for reason, row in docs)
            missing = [r for r in of_step if not found.samples.get(r)]
            if missing:
                items += f'<p class="muted">none found in rejects/ for {", ".join(missing)}</p>'
            total = sum(stats["dropped"][r] for r in of_step)
            what = (f'<code>{_e(of_step[0])}</code> <span class="muted">{_docs(total)}</span>' if len(of_step) == 1
                    else f'{_e(step)} <span class="muted">{_docs(total)}, {len(of_step)} reasons</span>')
            parts.append(f'<div class="step" data-step="{_e(step)}"><h3>{what}</h3><div class="docs">{items}</div>'
                         f'</div>')
    if found.quarantine:
        parts.append(f"<h3>Quarantined records <span class=\"muted\">{_docs(stats.get('quarantined', 0))}, "
                     f"first {len(found.quarantine)} shown, from <code>quarantine/</code></span></h3>" + _table(
                         ["file", "line", "error", "raw"],
                         [[_e(q.get("file", "")), _n(q["line"]) if q.get("line") is not None else "",
                           _e(q.get("error", "")), f'<code>{_e(q.get("raw", ""))}</code>'] for q in found.quarantine],
                         "quarantine", left=4))
    return _section("samples", "Dropped documents", "".join(parts)) if parts else ""


METRICS = [("candidate_pairs", "candidate pairs"), ("verified_pairs", "verified pairs"),
           ("docs_in_groups", "documents in groups"), ("groups", "groups"), ("largest_group", "largest group"),
           ("duplicates", "duplicates dropped"), ("components_mode", "components"), ("bands", "bands"),
           ("rows", "rows per band"), ("wall_s", "seconds (decision)")]


def _dedup_section(stats: dict[str, Any], found: Evidence) -> str:
    steps = _dedup_steps(stats)
    if not steps:
        return ""
    details = stats["global_steps"]
    keys = [(k, label) for k, label in METRICS if any(k in details[s] for s in steps)]
    parts = [_table(["", *[f"<b>{_e(s)}</b>" for s in steps]],
                    [[label, *[_n(details[s][k]) if k in details[s] else "–" for s in steps]] for k, label in keys],
                    "narrow")]
    for stage in steps:
        d = details[stage]
        block = [f"<h3>{_e(stage)}</h3>"]
        if not d.get("duplicates"):
            block.append('<p class="muted">No duplicates found.</p>')
        if d.get("examples"):
            block.append("<p>Dropped, for example: " + ", ".join(f"<code>{_e(x)}</code>" for x in d["examples"][:10])
                         + "</p>")
        hist = found.clusters.get(stage.replace("#", "-"))
        if hist:
            block.append(_img(_plot_clusters(stage, hist), f"{stage} cluster sizes"))
            block.append('<p class="clusters">Clusters by size (from <code>clusters/</code>): ' + ", ".join(
                f'<span data-size="{size}" data-clusters="{n}">{size:,} documents: {n:,}</span>'
                for size, n in sorted(hist.items())) + "</p>")
        elif d.get("duplicates"):
            block.append('<p class="muted">No <code>clusters/</code> for this step: '
                         '<code>write_clusters: true</code> writes them, with a cluster-size histogram here.</p>')
        pairs = found.pairs.get(stage, [])
        for kept, removed in pairs:
            other = _e(removed["duplicate_of"])
            left = (_doc(kept, "kept ", "kept") if kept else
                    f'<div class="doc kept" data-id="{other}"><div class="meta">kept <code class="id">{other}</code>'
                    f'</div><p class="muted">not found in the first {DATA_SHARDS} shards of data/ '
                    f'(dropped by a later step?)</p></div>')
            right = _doc({**removed, "duplicate_of": None}, "removed ", "removed")
            block.append(f'<div class="pair" data-step="{_e(stage)}">{left}{right}</div>')
        if d.get("duplicates") and not pairs:
            block.append('<p class="muted">Set <code>output.rejects: true</code> to see a kept document beside one '
                         'it replaced.</p>' if found.rejects is False else "")
        parts.append("".join(block))
    return _section("dedup", "Deduplication", "".join(parts))


def _time_section(stats: dict[str, Any]) -> str:
    stages = stats["stages"]
    total = sum(s.get("wall_s", 0) for s in stages) or 1.0
    global_steps = stats.get("global_steps", {})
    def label(name: str) -> str:
        kind = "runner I/O" if name in INTERNAL else "corpus-wide" if name in global_steps else ""
        return f"<b>{_e(name)}</b>" + (f' <span class="kind">{kind}</span>' if kind else "")

    rows = [[label(s["name"]), f"{s.get('wall_s', 0):,.2f}", _bar(s.get("wall_s", 0), total, "#8d6a9f")]
            for s in stages]
    parts = [f"<p>Task seconds per step, added over all tasks (they run in parallel: the run took "
             f"{stats.get('wall_s', 0):.2f} s of wall time up to this report, plus {stats.get('startup_s', 0):.2f} s "
             f"to start Ray). "
             f"<code>intermediate_io</code> and <code>write</code> are the runner's own reading and writing "
             f"between segments and into <code>data/</code>; a global step's seconds are what it gathers as "
             f"the data passes (hashes, signatures), its decision's wall time and applying it.</p>",
             _table(["stage", "seconds", "share"], rows, "narrow")]
    phases = [(name, d) for name, d in global_steps.items() if isinstance(d, dict) and d.get("seconds")]
    if phases:
        parts.append("<h3>Global steps: each decision's phases, in seconds on the driver</h3>")
        parts.append(_table(["step", "decision", "phases"], [
            [f"<b>{_e(name)}</b>", f"{d.get('wall_s', sum(d['seconds'].values())):,.3f}",
             " · ".join(f"{_e(phase)} {sec:,.3f}" for phase, sec in d["seconds"].items())] for name, d in phases],
            "narrow phases"))
    return _section("time", "Time", "".join(parts))


def _lengths_section(stats: dict[str, Any]) -> str:
    png = _plot_lengths(stats.get("length_histogram") or {})
    return _section("lengths", "Lengths", _img(png, "document lengths")) if png else ""


def _job_section(stats: dict[str, Any], found: Evidence) -> str:
    if found.job is None:
        return _section("job", "Job", '<p class="muted">No <code>job.json</code> in the output.</p>')
    import yaml

    text = yaml.safe_dump(found.job.get("job", found.job), sort_keys=False, width=110)
    source = found.job.get("job_file") or stats.get("job_file")
    return _section("job", "Job", f'<p>The resolved job (every default filled in) from <code>job.json</code>'
                    f'{" of " + "<code>" + _e(source) + "</code>" if source else ""}; credentials are masked.</p>'
                    f'<pre class="job">{_e(text)}</pre>')


CSS = """
:root{--ink:#1f2328;--muted:#656d76;--line:#d8dee4;--soft:#f6f8fa;--kept:#3b6fb6;--drop:#d1495b;--rew:#b07a00}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);
  background:#fff}
main{max-width:1320px;margin:0 auto;padding:24px 32px 64px}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:20px;margin:34px 0 10px;padding-bottom:4px;border-bottom:2px solid var(--line)}
h3{font-size:16px;margin:22px 0 8px}
.sub{color:var(--muted);margin:0 0 10px}
nav{display:flex;flex-wrap:wrap;gap:6px 18px;padding:8px 0;border-bottom:1px solid var(--line)}
nav a{color:var(--kept);text-decoration:none;font-weight:500}
code{font:13px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--soft);padding:1px 4px;
  border-radius:4px}
.cards{display:grid;grid-template-columns:repeat(4,minmax(0,1fr));gap:12px;margin:8px 0 14px}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 14px;border-top:4px solid var(--kept)}
.card.dropped{border-top-color:var(--drop)}.card.quarantined{border-top-color:#8d6a9f}
.card.read{border-top-color:#9aa5b1}
.card .k{color:var(--muted);text-transform:uppercase;font-size:12px;letter-spacing:.04em}
.card .v{font-size:26px;font-weight:600;font-variant-numeric:tabular-nums}.card .d{color:var(--muted);font-size:13px}
table{border-collapse:collapse;margin:8px 0 16px;font-variant-numeric:tabular-nums;font-size:14px}
table.funnel{width:100%}
th{font-weight:600;text-align:right;vertical-align:bottom;padding:5px 8px;border-bottom:2px solid var(--line);
  font-size:13px}
td{padding:4px 8px;border-bottom:1px solid var(--line);text-align:right;vertical-align:middle;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
td.l,th.l{text-align:left}
table.phases td:last-child,table.phases th:last-child{text-align:left}
tbody tr:nth-child(even){background:#fafbfc}
.bar{display:inline-block;width:90px;height:10px;background:#e9edf1;border-radius:2px;vertical-align:middle;
  margin-right:6px;overflow:hidden}
.bar span{display:block;height:100%}
.pct{display:inline-block;min-width:58px;text-align:right}
.kind{display:inline-block;font-size:11px;font-weight:400;color:var(--muted);border:1px solid var(--line);
  border-radius:9px;padding:0 6px;margin-left:4px}
.neg{color:var(--drop)}.rew{color:var(--rew)}.muted{color:var(--muted);font-weight:400}
.ok{color:#1a7f37;font-weight:500}.warn{color:#9a2a2a;font-weight:500}.note{color:#8a5a00}
img{display:block;max-width:100%;height:auto;margin:10px 0}
.step h3{margin:16px 0 6px}
.doc code.why{background:#fbe9eb;color:#8c1d2b}
.docs{display:grid;grid-template-columns:repeat(3,minmax(0,1fr));gap:10px}
.doc{border:1px solid var(--line);border-left:4px solid var(--drop);border-radius:6px;padding:6px 10px;
  background:#fff;min-width:0}
.doc .meta{font-size:12px;color:var(--muted);margin-bottom:3px;overflow-wrap:anywhere}
.doc .text{white-space:pre-wrap;overflow-wrap:anywhere;font-size:13px;max-height:15em;overflow:hidden}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:12px;margin:8px 0}
.doc.kept{border-left-color:var(--kept)}
.pair .doc .text{max-height:18em}
table.quarantine td{text-align:left;white-space:normal;overflow-wrap:anywhere}
pre.job{background:var(--soft);border:1px solid var(--line);border-radius:6px;padding:10px 14px;font-size:12.5px;
  white-space:pre-wrap;overflow-wrap:anywhere;columns:2 520px;column-gap:28px}
@media (max-width:900px){.cards{grid-template-columns:repeat(2,1fr)}.pair,.docs{grid-template-columns:1fr}}
@media print{
  @page{size:A4;margin:12mm}
  body{font-size:10pt}main{max-width:none;padding:0}nav{display:none}
  h2{break-after:avoid;margin-top:18px}h3{break-after:avoid}
  table,img,.doc,.pair,.card{break-inside:avoid}
  table{font-size:8pt}th,td{padding:2px 4px}th{font-size:8pt}
  table.funnel .bar{width:36px}.pct{min-width:0}
  .cards{grid-template-columns:repeat(4,minmax(0,1fr))}.card .v{font-size:18pt}
  .docs,.pair{grid-template-columns:1fr 1fr}.doc .text{max-height:none;font-size:8.5pt}
  *{-webkit-print-color-adjust:exact;print-color-adjust:exact}
  pre.job{columns:2;font-size:7.5pt}
  a{color:inherit;text-decoration:none}
}
"""
