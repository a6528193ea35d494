"""WARC, WET and HTML readers: pages become documents with url/date/content type; bad records are
quarantined with a reason, never dropped silently. Every WARC here is written by hand, byte by byte."""

import gzip
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from llmray.config import load_job
from llmray.io.readers import detect
from llmray.io.warc import decode
from llmray.pipeline.runner import RunOptions, run_job
from tests.io.test_readers import read_all

ROOT = Path(__file__).resolve().parents[2]
FIELDS = ["url", "date", "content_type"]
DATE = "2024-05-18T01:58:10Z"
PAGE = "<html><head><title>T</title></head><body><p>{}</p></body></html>"


def record(kind: str, block: bytes, n: int, url: str | None = None,
           content_type: str = "application/http; msgtype=response") -> bytes:
    """One WARC record as a crawler writes it."""
    headers = ["WARC/1.1", f"WARC-Type: {kind}", f"WARC-Record-ID: <{urn(n)}>", f"WARC-Date: {DATE}",
               *([f"WARC-Target-URI: {url}"] if url else []),
               f"Content-Type: {content_type}", f"Content-Length: {len(block)}"]
    return "\r\n".join(headers).encode() + b"\r\n\r\n" + block + b"\r\n\r\n"


def urn(n: int) -> str:
    return f"urn:uuid:00000000-0000-0000-0000-{n:012d}"


def response(n: int, url: str, body: bytes, *headers: str, eol: str = "\r\n") -> bytes:
    http = eol.join(["HTTP/1.1 200 OK", *headers]) + eol + eol
    return record("response", http.encode() + body, n, url)


def html_response(n: int, text: str, charset: str = "utf-8") -> bytes:
    return response(n, f"https://site.example/{n}", PAGE.format(text).encode(charset),
                    f"Content-Type: text/html; charset={charset}")


def warcinfo() -> bytes:
    return record("warcinfo", b"software: test\r\n", 1, content_type="application/warc-fields")


def write(path: Path, *records: bytes) -> Path:
    data = b"".join(records)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def read(path: Path, **options):
    return read_all(path, keep_fields=FIELDS, **options)


@pytest.mark.parametrize("name", ["crawl.warc", "crawl.warc.gz"])
def test_page_records_become_documents_with_url_date_and_content_type(tmp_path, name):
    path = write(tmp_path / name, warcinfo(),
                 record("request", b"GET / HTTP/1.1\r\nHost: site.example\r\n\r\n", 2,
                        "https://site.example/", "application/http; msgtype=request"),
                 html_response(3, "first page"),
                 record("metadata", b"fetchTimeMs: 12\r\n", 4, "https://site.example/",
                        "application/warc-fields"),
                 record("resource", PAGE.format("a resource").encode(), 5, "file:///r.html", "text/html"),
                 record("revisit", b"", 6, "https://site.example/3", "application/http; msgtype=response"))
    docs, quarantined, too_large = read(path)
    assert [(d["id"], d["url"], d["date"], d["content_type"]) for d in docs] == [
        (urn(3), "https://site.example/3", DATE, "text/html"), (urn(5), "file:///r.html", DATE, "text/html")]
    assert "<p>first page</p>" in docs[0]["text"] and not quarantined and not too_large


def test_wet_conversion_records_are_plain_text_documents(tmp_path):
    text = "Escopete\nUn escopete ye un arma de fuego.\n"
    path = write(tmp_path / "crawl.warc.wet.gz", warcinfo(),
                 record("conversion", text.encode(), 2, "https://an.example/Escopete", "text/plain"))
    docs, quarantined, _ = read(path)
    assert [(d["text"], d["content_type"]) for d in docs] == [(text, "text/plain")] and not quarantined


@pytest.mark.parametrize("name, expected", [
    ("x.warc.gz", ("warc", "gzip")), ("CC-MAIN-1.warc.wet.gz", ("warc", "gzip")), ("x.warc", ("warc", None)),
    ("page.html", ("html", None)), ("page.htm.gz", ("html", "gzip"))])
def test_formats_are_told_from_the_name(name, expected):
    assert detect(name, "auto") == expected


def test_charsets_and_http_encodings_are_undone(tmp_path):
    body = PAGE.format("Привет, мир").encode("utf-8")
    pieces = [body[i:i + 20] for i in range(0, len(body), 20)]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    meta_only = b'<html><head><meta charset="windows-1252"></head><body><p>caf\xe9 cr\xe8me</p></body></html>'
    path = write(tmp_path / "enc.warc.gz",
                 html_response(2, "Это страница на русском языке", "windows-1251"),
                 response(3, "https://site.example/3", meta_only, "Content-Type: text/html"),
                 response(4, "https://site.example/4", gzip.compress(body), "Content-Type: text/html",
                          "Content-Encoding: gzip"),
                 response(5, "https://site.example/5", chunked + b"0\r\n\r\n", "Content-Type: text/html",
                          "Transfer-Encoding: chunked"),
                 # ClueWeb09: HTTP lines end in LF, and the body was stored decoded under its gzip header.
                 response(6, "https://site.example/6", body, "Content-Type: text/html; charset=utf-8",
                          "Content-Encoding: gzip", eol="\n"),
                 response(7, "https://site.example/7", body))  # no Content-Type: sniffed
    docs, quarantined, _ = read(path)
    assert not quarantined
    texts = [d["text"] for d in docs]
    assert "Это страница на русском языке" in texts[0] and "café crème" in texts[1]
    assert all("Привет, мир" in t for t in texts[2:]) and len(texts) == 6
    assert {d["content_type"] for d in docs} == {"text/html"}


def test_bad_records_are_quarantined_with_a_reason_and_none_is_lost(tmp_path):
    binary = bytes(range(256)) * 8
    path = write(tmp_path / "bad.warc",
                 warcinfo(),
                 html_response(2, "good one"),
                 response(3, "https://site.example/i.png", b"\x89PNG\r\n\x1a\n" + binary,
                          "Content-Type: image/png"),
                 response(4, "https://site.example/d.pdf", b"%PDF-1.4 ...", "Content-Type: application/pdf"),
                 response(5, "https://site.example/5", binary, "Content-Type: text/html; charset=x-klingon"),
                 # An unknown label on a page that is valid UTF-8 loses nothing.
                 response(6, "https://site.example/6", PAGE.format("ünïcödé").encode(),
                          "Content-Type: text/html; charset=x-klingon"),
                 response(7, "https://site.example/7", b"\x1f\x8b not really gzip" + binary,
                          "Content-Type: text/html", "Content-Encoding: gzip"),
                 record("continuation", b"rest of a segmented record", 8, "https://site.example/big"),
                 html_response(9, "last page, cut short")[:-60])
    docs, quarantined, _ = read(path)
    assert len(docs) == 2 and "good one" in docs[0]["text"] and "ünïcödé" in docs[1]["text"]
    errors = {q["line"]: q["error"] for q in quarantined}
    assert set(errors) == {3, 4, 5, 7, 8, 9} and all(q["rows"] == 1 for q in quarantined)
    assert "not an HTML page (content type image/png)" in errors[3]
    assert "not an HTML page (content type application/pdf)" in errors[4]
    assert "unknown encoding or is not text" in errors[5] and "'x-klingon' is unknown" in errors[5]
    assert "payload cannot be decoded (gzip" in errors[7]
    assert "segmented records" in errors[8]
    assert "record is truncated" in errors[9] and urn(9) in errors[9]


def test_truncated_and_corrupt_files_keep_what_came_before(tmp_path):
    pages = [html_response(n, f"page {n}") for n in range(2, 40)]
    whole = gzip.compress(b"".join(pages))
    cut = tmp_path / "cut.warc.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    docs, quarantined, _ = read(cut)
    assert 0 < len(docs) < 38 and len(quarantined) == 1
    assert "ends early" in quarantined[0]["error"] and quarantined[0]["line"] == len(docs) + 1
    corrupt = write(tmp_path / "corrupt.warc", *pages[:3], b"garbage, not a record\r\n\r\n", *pages[3:])
    docs, quarantined, _ = read(corrupt)
    assert len(docs) == 3 and "corrupt after record 3" in quarantined[0]["error"]
    assert "the rest of it is lost" in quarantined[0]["error"]
    header_cut = write(tmp_path / "header-cut.warc", *pages[:2], pages[2][:100])
    docs, quarantined, _ = read(header_cut)
    assert len(docs) == 2 and quarantined[0]["line"] == 3
    assert "header is incomplete" in quarantined[0]["error"]


@pytest.mark.parametrize("content, error", [
    (b"", "empty file"), (b"just some text, not a WARC file\n", "not WARC")])
def test_empty_and_foreign_files_are_quarantined(tmp_path, content, error):
    docs, quarantined, _ = read(write(tmp_path / "x.warc", content))
    assert docs == [] and len(quarantined) == 1 and error in quarantined[0]["error"]


def test_file_without_page_records_leaves_a_note_that_counts_no_document(tmp_path):
    path = write(tmp_path / "meta.warc", warcinfo(),
                 record("metadata", b'{"Envelope": {}}', 2, "https://site.example/", "application/json"))
    docs, quarantined, _ = read(path)
    assert docs == [] and [q["rows"] for q in quarantined] == [0]
    assert "no page records" in quarantined[0]["error"]


def test_oversized_record_is_dropped_without_being_read(tmp_path):
    big = response(3, "https://site.example/b", b"<p>%s</p>" % (b"a" * (2 << 20)), "Content-Type: text/html")
    path = write(tmp_path / "big.warc.gz", html_response(2, "small"), big, html_response(4, "after"))
    docs, _, too_large = read(path, max_doc_mb=1)
    assert len(docs) == 2 and too_large == [(urn(3), (2 << 20) + 7)]


def test_html_files_are_one_document_each_decoded_by_their_meta_charset(tmp_path):
    (tmp_path / "pages").mkdir()
    (tmp_path / "pages" / "a.html").write_bytes(
        b'<html><head><meta charset="windows-1252"></head><body><p>na\xefve caf\xe9</p></body></html>')
    (tmp_path / "pages" / "b.htm.gz").write_bytes(gzip.compress(PAGE.format("zipped").encode()))
    (tmp_path / "pages" / "c.html").write_bytes(b"")
    (tmp_path / "pages" / "d.html").write_bytes(bytes(range(256)) * 4)
    docs, quarantined, _ = read(tmp_path / "pages")
    assert [(d["id"], d["content_type"], d["url"]) for d in docs] == [
        ("a.html", "text/html", None), ("b.htm.gz", "text/html", None)]
    assert "naïve café" in docs[0]["text"] and "zipped" in docs[1]["text"]
    assert ["empty file" in quarantined[0]["error"], "not text" in quarantined[1]["error"]] == [True, True]


def test_decode_prefers_a_codec_that_fits_and_tolerates_a_stray_byte():
    assert decode("crème brûlée".encode("cp1252"), "utf-8") == ("crème brûlée", "cp1252")
    text, codec = decode(("long enough text " * 20).encode() + b"\xff" + "ünï".encode(), "utf-8")
    assert codec == "utf-8" and text.endswith("\ufffdünï")
    assert decode(bytes(range(256)) * 4, None)[0] is None


def test_example_crawl_job_runs_end_to_end(ray_session, tmp_path, monkeypatch):
    """Each page of the sample was written to exercise one rule (data/crawl/README.md): every page
    must meet the fate it was written for, and for that reason."""
    monkeypatch.chdir(ROOT)
    spec = load_job(ROOT / "jobs" / "crawl.yaml")
    spec.output.path = str(tmp_path / "out")
    stats = run_job(spec, RunOptions(progress=False))
    rejects = pq.read_table(tmp_path / "out" / "rejects", columns=["url", "reason"]).to_pylist()
    assert {r["url"]: r["reason"] for r in rejects} == {
        "https://www.casino-bonus.example/welcome": "url_filter.blocked_word",  # "casino" in the URL
        "https://deals.adfarm.example/offers/today": "url_filter.blocked_domain",  # listed domain
        "https://portal.riverside.example/login": "html_to_text.no_content",  # a menu and a form only
        "https://journal.example.fr/jardin-partage": "language.other_language",  # French
    }
    quarantined = [json.loads(line) for f in (tmp_path / "out" / "quarantine").glob("*.jsonl")
                   for line in f.read_text().splitlines()]
    assert [q["error"] for q in quarantined] == [  # the image, with its file and record number
        f"{ROOT / 'data' / 'crawl' / 'sample.warc.gz'}:20: urn:uuid:00000000-0000-0000-0000-000000000014 "
        "(https://news.riverside.example/images/garden.png): "
        "not an HTML page (content type image/png); skipped"]
    data = pq.read_table(tmp_path / "out" / "data")
    assert set(FIELDS) <= set(data.column_names)
    assert sorted(data.column("url").to_pylist()) == [  # the five articles, the two odd encodings too
        "https://birds.example.net/field-notes/spring-migration",
        "https://blog.tinkerbench.example/bicycle-chain-maintenance",
        "https://kitchen.example.org/recipes/sourdough-starter",  # windows-1252
        "https://library.townhall.example/news/summer-reading",  # gzip, chunked
        "https://news.riverside.example/2024/05/community-garden-opens",
    ]
    assert stats["docs_in"] == len(rejects) + data.num_rows + stats["quarantined"] and stats["accounting_ok"]
    texts = " ".join(data.column("text").to_pylist())
    assert "café au lait" in texts and "Registration opens" in texts  # the cp1252 and gzip pages decoded
    assert "cookies" not in texts and "All rights reserved" not in texts  # boilerplate extracted away
