"""report.html: the run's stats as a page a person can read, with plots embedded as PNG."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from llmray.io.storage import Storage


def _figure_png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def _plots(stats: dict[str, Any]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = []
    stages = [s for s in stats["stages"] if s["name"] not in ("write", "intermediate_io")]
    if stages:
        fig, axes = plt.subplots(1, 2, sharey=True, figsize=(11, 0.45 * len(stages) + 1.6))
        names = [s["name"] for s in stages][::-1]
        for ax, unit, scale in ((axes[0], "docs", 1), (axes[1], "bytes", 1e6)):
            kept = [s[f"{unit}_out"] / scale for s in stages][::-1]
            lost = [(s[f"{unit}_in"] - s[f"{unit}_out"]) / scale for s in stages][::-1]
            ax.barh(names, kept, color="#3b7dd8", label="passed on")
            ax.barh(names, lost, left=kept, color="#e4572e", label="dropped or quarantined")
            ax.set_xlabel("documents" if unit == "docs" else "MB of text")
        axes[0].legend(loc="lower right", fontsize=8)
        fig.suptitle("What each step passed on and removed")
        plots.append(("Per step", _figure_png(fig)))
        plt.close(fig)
    dropped = stats["dropped"]
    if dropped:
        reasons = sorted(dropped, key=dropped.get)
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(reasons) + 1.2))
        ax.barh(reasons, [dropped[r] for r in reasons], color="#e4572e")
        ax.set_xlabel("documents dropped")
        ax.set_title("Drop reasons")
        plots.append(("Drop reasons", _figure_png(fig)))
        plt.close(fig)
    hist = stats["length_histogram"]
    if any(hist["before"]):
        top = max(i for i, v in enumerate(hist["before"]) if v) + 1
        labels = ["0"] + [f"{2 ** (k - 1):,}" for k in range(1, top)]
        fig, ax = plt.subplots(figsize=(10, 3.2))
        xs = range(top)
        ax.bar([x - 0.2 for x in xs], hist["before"][:top], width=0.4, label="read", color="#9aa5b1")
        ax.bar([x + 0.2 for x in xs], hist["after"][:top], width=0.4, label="kept", color="#3b7dd8")
        ax.set_xticks(list(xs), labels, rotation=60, fontsize=7)
        ax.set_xlabel("document length, characters (bins start at)")
        ax.set_ylabel("documents")
        ax.legend()
        ax.set_title("Document lengths before and after")
        plots.append(("Lengths", _figure_png(fig)))
        plt.close(fig)
    return plots


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return html.escape(str(value))


def render(stats: dict[str, Any]) -> str:
    dropped_total = sum(stats["dropped"].values())
    summary = _table(["", "documents", "MB"], [
        ["read", stats["docs_in"], stats["bytes_in"] / 1e6],
        ["kept", stats["docs_out"], stats["bytes_out"] / 1e6],
        ["dropped", dropped_total, sum(stats["dropped_bytes"].values()) / 1e6],
        ["quarantined", stats["quarantined"], ""],
    ])
    stages = _table(["step", "docs in", "docs out", "MB in", "MB out", "task seconds"], [
        [s["name"], s["docs_in"], s["docs_out"], s["bytes_in"] / 1e6, s["bytes_out"] / 1e6, s["wall_s"]]
        for s in stats["stages"]])
    reasons = _table(["reason", "documents", "MB"], [
        [r, n, stats["dropped_bytes"].get(r, 0) / 1e6] for r, n in sorted(stats["dropped"].items(),
                                                                           key=lambda kv: -kv[1])])
    sources = _table(["source", "docs in", "docs out", "MB in", "MB out"], [
        [name, s.get("docs_in", 0), s.get("docs_out", 0), s.get("bytes_in", 0) / 1e6, s.get("bytes_out", 0) / 1e6]
        for name, s in sorted(stats["sources"].items())])
    counters = "".join(f"<li><b>{html.escape(step)}</b>: " + ", ".join(
        f"{html.escape(k)} {v:,}" for k, v in values.items()) + "</li>" for step, values in stats["counters"].items())
    images = "".join(f'<h2>{html.escape(title)}</h2><img src="data:image/png;base64,{png}">'
                     for title, png in _plots(stats))
    status = "reconciles" if stats.get("accounting_ok") else "DOES NOT reconcile"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>llmray run report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:.5em 0 1.5em}}td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:right}}
td:first-child,th:first-child{{text-align:left}}img{{max-width:100%}}.ok{{color:#2a7}}</style></head><body>
<h1>llmray run report</h1>
<p>Job <code>{html.escape(stats["job_file"])}</code>, started {html.escape(stats["started_at"])};
{stats["wall_s"]:.2f} s of pipeline time ({stats["throughput_mb_s"]:.2f} MB/s of input) on {stats["num_cpus"]} CPUs
across {stats["nodes"]} node(s), plus {stats["startup_s"]:.2f} s to start Ray.</p>
<p class="ok">Accounting {status}: {stats["docs_in"]:,} read = {stats["docs_out"]:,} kept + {dropped_total:,} dropped
+ {stats["quarantined"]:,} quarantined.</p>
<h2>Summary</h2>{summary}<h2>Steps</h2>{stages}<h2>Drop reasons</h2>{reasons}<h2>Sources</h2>{sources}
{"<h2>Step counters</h2><ul>" + counters + "</ul>" if counters else ""}
{images}
</body></html>"""


def write_report(stats: dict[str, Any], storage: Storage, name: str = "report.html") -> None:
    storage.put(name, render(stats).encode())
