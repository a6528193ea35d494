"""PNG plots of a results dict: throughput and memory per stage, scaling, peers, dedup accuracy.

Bars are medians; error bars span min..max of the repeats. A plot with nothing to show is not
written (its name is then missing from ``results["files"]["plots"]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen first)


def _bar_err(stat: dict[str, Any]) -> tuple[float, list[float]]:
    median = stat["median"] or 0.0
    return median, [median - (stat["min"] or median), (stat["max"] or median) - median]


def _log_axis(ax: Any, which: str) -> None:
    """A log scale on ``which`` ("x" or "y") labelled with plain numbers, without crowded minor labels."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(NullFormatter())


def _title(results: dict[str, Any]) -> str:
    m = results["machine"]
    return f"{m['cpu_model']}, {m['cores_logical']} cores; {results['mode']} mode"


def throughput(results: dict[str, Any], path: Path) -> bool:
    ok = [s for s in results["stages"] if s.get("status") == "ok"]
    if not ok:
        return False
    names = [s["name"] for s in ok]
    corpora = list(results["corpora"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 0.45 * len(names) + 2), sharey=True)
    height = 0.8 / len(corpora)
    for k, corpus in enumerate(corpora):
        ys = [i + k * height for i in range(len(names))]
        stats = [_bar_err(s["corpora"][corpus]["mb_per_s_per_core"]) for s in ok]
        left.barh(ys, [v for v, _ in stats], height, xerr=list(zip(*[e for _, e in stats], strict=True)),
                  label=corpus, capsize=2)
        right.barh(ys, [s["corpora"][corpus]["peak_rss_mb"] for s in ok], height, label=corpus)
        right.plot([s["corpora"][corpus]["baseline_rss_mb"] for s in ok], ys, "k|", markersize=10)
    left.set_yticks([i + 0.4 - height / 2 for i in range(len(names))], names)
    left.invert_yaxis()
    _log_axis(left, "x")
    left.set_xlabel("MB/s per core (log)")
    right.set_xlabel("peak RSS of the process, MB (|: before the stage, corpus loaded)")
    left.legend()
    fig.suptitle(f"Throughput and memory per stage, one core\n{_title(results)}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def scaling(results: dict[str, Any], path: Path) -> bool:
    def local(job: dict[str, Any]) -> list[dict[str, Any]]:
        return sorted((p for p in job["points"] if not p["cluster"]), key=lambda p: p["cpus"])

    jobs = [(job["file"], local(job)) for job in results["jobs"]["jobs"]]
    jobs += [(f"{job['name']} (part of a job)", local(job)) for job in results["scaling"]["jobs"]]
    jobs = [(label, points) for label, points in jobs if points]
    if not jobs:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for label, points in jobs:
        cpus = [p["cpus"] for p in points]
        values = [_bar_err(p["mb_per_s"]) for p in points]
        errors = list(zip(*[e for _, e in values], strict=True))
        line = left.errorbar(cpus, [v for v, _ in values], yerr=errors, marker="o", capsize=3, label=label)
        base = points[0]
        left.plot(cpus, [base["mb_per_s"]["median"] / base["cpus"] * c for c in cpus], ls=":",
                  color=line[0].get_color())
        right.plot(cpus, [p.get("efficiency") for p in points], marker="o", label=label)
    left.set_xlabel("CPUs")
    left.set_ylabel("MB/s (dotted: linear from the smallest run)")
    right.set_xlabel("CPUs")
    right.set_ylabel("scaling efficiency")
    right.set_ylim(0, 1.2)
    right.axhline(1.0, color="grey", lw=0.5)
    left.legend()
    fig.suptitle(f"Scaling through the runner (Ray)\n{_title(results)}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def peers(results: dict[str, Any], path: Path) -> bool:
    rows = results["ratios"]
    if not rows:
        return False
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        mine = [r for r in rows if r["task"] == task]
        labels = [f"llmray\n{mine[0]['llmray_stage']}",
                  *(f"{r['peer']}\n({r['peer_docs']:,} docs)" for r in mine)]
        values = [mine[0]["llmray"]] + [r["peer_value"] for r in mine]
        bars = ax.bar(range(len(values)), values, color=["C0"] + ["C1"] * len(mine))
        for bar, r in zip(bars[1:], mine, strict=True):
            note = f"{r['ratio']}x" + (f"\nF1 {r['removal_f1']['peer']}" if "removal_f1" in r else "")
            ax.annotate(note, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                        fontsize=8)
        if "removal_f1" in mine[0]:
            ax.annotate(f"F1 {mine[0]['removal_f1']['llmray']}", (0, values[0]), ha="center", va="bottom",
                        fontsize=8)
        ax.set_xticks(range(len(values)), labels, fontsize=8)
        _log_axis(ax, "y")
        ax.set_title(task)
        ax.set_ylabel("MB/s per core (log); label: llmray / peer")
    fig.suptitle(f"llmray and peers, same corpus, one core each\n{_title(results)}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def accuracy(results: dict[str, Any], path: Path) -> bool:
    rows = results["accuracy"]
    if not rows:
        return False
    metrics = ("precision", "recall", "f1")
    fig, ax = plt.subplots(figsize=(1.6 * len(rows) + 3, 4))
    width = 0.8 / len(metrics)
    for k, metric in enumerate(metrics):
        stats = [_bar_err(r["removal"][metric]) for r in rows]
        ax.bar([i + k * width for i in range(len(rows))], [v for v, _ in stats], width,
               yerr=list(zip(*[e for _, e in stats], strict=True)), capsize=2, label=metric)
    ax.set_xticks([i + width for i in range(len(rows))], [f"{r['tool']}\n{r['what']}\n{r['docs']:,} docs"
                                                          for r in rows], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("removal precision / recall / F1")
    ax.legend(loc="lower right")
    fig.suptitle(f"Near-duplicate removal against ground truth\n{_title(results)}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


PLOTS = {"throughput.png": throughput, "scaling.png": scaling, "peers.png": peers,
         "dedup_accuracy.png": accuracy}


def write_all(results: dict[str, Any], out: Path) -> list[str]:
    return [name for name, plot in PLOTS.items() if plot(results, out / name)]
