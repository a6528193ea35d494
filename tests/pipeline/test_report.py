"""report.html of a real run (the shipped corpus through every step of jobs/pipeline.yaml, plus a
small second source with an unreadable line): the funnel's numbers are stats.json's, rewritten bytes
are not called dropped, the samples are real rows of rejects/, the dedup pairs and the cluster
histogram come from rejects/ and clusters/, credentials are masked; and the page renders in a real
headless browser (Debian's chromium) with every section and no broken image, also when printed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from llmray.config import parse_job
from llmray.io.storage import Storage
from llmray.pipeline.report import human_size, percent, render, write_report
from llmray.pipeline.runner import RunOptions, run_job
from tests.helpers import ENGLISH, write_jsonl

ROOT = Path(__file__).resolve().parents[2]
QUIET = RunOptions(progress=False)
SECTIONS = ["summary", "funnel", "reasons", "samples", "dedup", "time", "lengths", "job"]


@pytest.fixture(scope="module")
def run(ray_session, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    write_jsonl(tmp / "web" / "part-0.jsonl", [
        *({"id": f"web-{i}", "text": f"{ENGLISH} Item {i} of the minutes."} for i in range(6)),
        {"id": "web-short", "text": "Too short."},
        '{"id": "web-broken", "text": "cut',
    ])
    steps = yaml.safe_load((ROOT / "jobs" / "pipeline.yaml").read_text())["steps"]
    steps = [{"minhash_dedup": {"write_clusters": True}} if s == "minhash_dedup" else s for s in steps]
    job = {"input": [{"paths": [str(ROOT / "data" / "quickstart" / "*.jsonl.gz")], "source": "sotu"},
                     {"paths": [str(tmp / "web")], "source": "web"}],
           "steps": steps,
           "output": {"path": str(tmp / "out"), "rejects": True, "storage_options": {"secret": "s3cr3t-value"}}}
    stats = run_job(parse_job(job), QUIET)
    out = tmp / "out"
    return out, stats, (out / "report.html").read_text()


class Cells(HTMLParser):
    """The text of each table's cells: tables[class] is a list of tables, each a list of rows."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[list[str]]]] = {}
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        if tag == "table":
            self._table = []
            self.tables.setdefault(attrs.get("class") or "", []).append(self._table)
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self._table[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse(page: str) -> Cells:
    cells = Cells()
    cells.feed(page)
    return cells


def number(text: str) -> int:
    return int(text.replace(",", ""))


def test_the_funnel_is_stats_json_step_by_step(run):
    out, _, page = run
    stats = json.loads((out / "stats.json").read_text())
    rows = parse(page).tables["funnel"][0][1:]
    user = [s for s in stats["stages"] if s["name"] not in ("intermediate_io", "write", "unique_ids")]
    assert [r[0].split()[0] for r in rows] == [s["name"] for s in user] + ["data/"]
    for row, stage in zip(rows, user, strict=False):
        assert (number(row[1]), number(row[2])) == (stage["docs_in"], stage["docs_out"]), row
        dropped = stage["docs_in"] - stage["docs_out"]
        assert row[3].startswith(f"−{dropped:,} (") if dropped else row[3].startswith("0"), row
    assert number(rows[-1][2]) == stats["docs_out"]
    read = rows[0]
    assert stats["quarantined"] == 1 and "incl. 1 quarantined" in read[3]
    share = f"{100 * stats['docs_out'] / stats['docs_in']:.1f}%"
    assert rows[-1][4] == percent(stats["docs_out"], stats["docs_in"]) == share
    cards = re.findall(r'<div class="card (\w+)"><div class="k">\w+</div><div class="v">([\d,]+)</div>', page)
    assert {k: number(v) for k, v in cards} == {"read": stats["docs_in"], "kept": stats["docs_out"],
                                                "dropped": sum(stats["dropped"].values()),
                                                "quarantined": stats["quarantined"]}


def test_rewriting_is_not_called_dropping(run):
    _, stats, page = run
    rows = {r[0].split()[0]: r for r in parse(page).tables["funnel"][0][1:]}
    c4 = next(s for s in stats["stages"] if s["name"] == "c4_lines")
    assert c4["docs_in"] == c4["docs_out"] and c4["bytes_in"] > c4["bytes_out"]
    assert rows["c4_lines"][7] == "0"  # dropped with documents
    assert rows["c4_lines"][8] == "−" + human_size(c4["bytes_in"] - c4["bytes_out"])  # changed by rewriting
    gopher = next(s for s in stats["stages"] if s["name"] == "gopher_quality")
    lost = sum(n for r, n in stats["dropped_bytes"].items() if r.startswith("gopher_quality."))
    assert gopher["bytes_in"] - gopher["bytes_out"] == lost > 0
    assert rows["gopher_quality"][7] == "−" + human_size(lost) and rows["gopher_quality"][8] == "0"
    assert "intermediate_io" not in rows and "write" not in rows  # the runner's own I/O: in the time table only


def test_drop_reasons_per_step_and_per_source(run):
    out, stats, page = run
    tables = parse(page).tables["narrow"]
    reasons = next(t for t in tables if t[0][:3] == ["step", "reason", "documents"])
    assert {r[1]: number(r[2]) for r in reasons[1:]} == stats["dropped"]
    rejects = pq.read_table(out / "rejects", columns=["source", "reason"]).to_pylist()
    cross = next(t for t in tables if t[0][0] == "reason" and t[0][1:] == ["sotu", "web"])
    for row in cross[1:]:
        assert [number(c) for c in row[1:]] == [sum(1 for r in rejects if r["reason"] == row[0] and r["source"] == s)
                                                for s in ("sotu", "web")], row
    web = stats["sources"]["web"]
    assert sum(number(row[2]) for row in cross[1:]) == web["docs_in"] - web["docs_out"] - stats["quarantined"] > 0


def test_samples_are_real_rejects_of_their_reason(run):
    out, stats, page = run
    rejects = {r["id"]: r["reason"] for r in pq.read_table(out / "rejects", columns=["id", "reason"]).to_pylist()}
    samples = re.findall(r'<div class="doc" data-id="([^"]+)" data-reason="([^"]+)">', page)
    shown: dict[str, list[str]] = {}
    for doc_id, reason in samples:
        assert rejects[doc_id] == reason, (doc_id, reason)
        shown.setdefault(reason, []).append(doc_id)
    assert set(shown) == {r for r, n in stats["dropped"].items() if n}
    assert all(1 <= len(ids) <= min(3, stats["dropped"][r]) for r, ids in shown.items()), shown
    assert "web-broken" not in rejects and "web-broken" in page  # the unreadable line, from quarantine/
    # each sample says what its rule measured, against which limit, as rejects/ has it
    measured = {r["id"]: r for r in pq.read_table(out / "rejects", columns=["id", "value", "threshold"]).to_pylist()}
    with_value = 0
    for doc_id, _ in samples:
        meta = re.search(rf'data-id="{re.escape(doc_id)}"[^>]*><div class="meta">(.*?)</div>', page).group(1)
        row = measured[doc_id]
        if row["value"] is None:
            assert "measured" not in meta
            continue
        with_value += 1
        limit = f" (limit {row['threshold']:.4g})" if row["threshold"] is not None else ""
        assert f"measured {row['value']:.4g}{limit}" in meta, meta
    assert with_value > 0


def test_dedup_view_pairs_kept_and_replaced_documents(run):
    out, stats, page = run
    dedup = stats["global_steps"]["minhash_dedup"]
    assert dedup["duplicates"] > 0 and "<b>minhash_dedup</b>" in page
    table = next(t for t in parse(page).tables["narrow"] if t[0][1:3] == ["exact_dedup", "minhash_dedup"])
    assert {r[0]: r[2] for r in table[1:]}["candidate pairs"] == f"{dedup['candidate_pairs']:,}"
    replaced = {r["id"]: r["duplicate_of"] for r in pq.read_table(out / "rejects" / "minhash_dedup").to_pylist()}
    kept = set(pq.read_table(out / "data", columns=["id"]).column("id").to_pylist())
    pairs = re.findall(r'<div class="pair" data-step="minhash_dedup"><div class="doc kept" data-id="([^"]+)".*?'
                       r'<div class="doc removed" data-id="([^"]+)"', page, re.S)
    assert len(pairs) == 2 and all(replaced[removed] == keeper and keeper in kept for keeper, removed in pairs)
    sizes = pq.read_table(out / "clusters", columns=["cluster_id"]).column("cluster_id").value_counts().to_pylist()
    expected: dict[int, int] = {}
    for entry in sizes:
        expected[entry["counts"]] = expected.get(entry["counts"], 0) + 1
    shown = {int(s): int(n) for s, n in re.findall(r'data-size="(\d+)" data-clusters="(\d+)"', page)}
    assert shown == expected and 'alt="minhash_dedup cluster sizes"' in page


def test_time_and_job_sections(run):
    out, stats, page = run
    cells = parse(page)
    times = next(t for t in cells.tables["narrow"] if t[0] == ["stage", "seconds", "share"])
    assert [r[0].split()[0] for r in times[1:]] == [s["name"] for s in stats["stages"]]
    assert any(r[0] == "intermediate_io runner I/O" for r in times[1:])
    phases = cells.tables["narrow phases"][0]
    assert {r[0] for r in phases[1:]} >= {"exact_dedup", "minhash_dedup"}
    assert "verify" in phases[[r[0] for r in phases].index("minhash_dedup")][2]
    assert "s3cr3t-value" not in page and "secret: &#x27;***&#x27;" in page
    assert "c4_lines:" in page and "write_clusters: true" in page  # the resolved job


def test_a_run_without_rejects_says_so(run, tmp_path):
    _, stats, _ = run
    bare = Storage(str(tmp_path))
    bare.put_json("job.json", {"job": {"output": {"rejects": False}}})
    write_report(stats, bare)
    page = (tmp_path / "report.html").read_text()
    assert "This run did not write rejects" in page and 'class="doc"' not in page
    assert "could not" not in page and "This part could not be drawn" not in render(stats)


def test_the_report_renders_in_a_headless_browser(run, tmp_path):
    chromium = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
                    None)
    if chromium is None:
        pytest.skip("no chromium binary (apt-get install -y chromium, or `make browser`)")
    out, _, page = run
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--mute-audio",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,900"]
    dom = subprocess.run([*flags, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=90).stdout
    found = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S).group(1))
    assert found["sections"] == SECTIONS
    assert found["images"] >= 4 and found["broken"] == 0, found  # funnel, reasons, clusters, lengths
    assert found["width"] <= 1400, "the page overflows a 1,400 px window"
    pdf = tmp_path / "report.pdf"
    subprocess.run([*flags, "--no-pdf-header-footer", f"--print-to-pdf={pdf}", (out / "report.html").as_uri()],
                   capture_output=True, timeout=90)
    pages = len(re.findall(rb"/Type\s*/Page(?!s)", pdf.read_bytes()))
    assert pdf.stat().st_size > 50_000 and pages >= 3, pages


PROBE = """<script>window.addEventListener('load', () => {
  const images = [...document.images];
  const p = document.createElement('pre'); p.id = 'probe';
  p.textContent = JSON.stringify({images: images.length,
    broken: images.filter(i => !i.complete || i.naturalWidth === 0).length,
    width: document.documentElement.scrollWidth,
    sections: [...document.querySelectorAll('section')].map(s => s.id)});
  document.body.appendChild(p);
});</script>"""
