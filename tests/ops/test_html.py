"""html_to_text: main text kept, boilerplate gone, pages without text dropped with a reason, other rows
untouched. Every page here is written for the tests."""

import pyarrow as pa
import pytest

from llmray.config import parse_steps
from llmray.errors import JobError
from llmray.ops.clean.html import HtmlToText
from tests.helpers import split_map

ARTICLE = [
    "The harbour authority finished rebuilding the old stone pier this spring, two years after a winter "
    "storm tore away most of its outer wall and left the fishing boats without shelter.",
    "Engineers reused the original granite blocks wherever they could and filled the gaps with stone from "
    "a quarry on the same coast, so that the new wall matches the colour of the old one.",
    "Fishermen say the harbour is calmer now than it has been for decades, and the ferry to the islands "
    "will use the pier again from the first week of June.",
]
TABLE_ROW = "Opening hours of the harbour office Monday to Friday"


def page(paragraphs: list[str], table: bool = False) -> str:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    if table:
        body += f"<table><tr><td>{TABLE_ROW}</td><td>from nine to five in the afternoon</td></tr></table>"
    article = f"<main><article><h1>The pier is rebuilt</h1>{body}</article></main>" if paragraphs else ""
    return ("<!DOCTYPE html><html><head><title>Pier</title></head><body>"
            "<nav><a href='/'>Home</a> | <a href='/news'>News</a> | <a href='/login'>Log in</a></nav>"
            "<div class='cookies'>This site uses cookies to remember your settings. <button>OK</button></div>"
            f"{article}<footer>Copyright 2024 Harbour News. All rights reserved. "
            "<a href='/privacy'>Privacy</a></footer></body></html>")


def batch(texts: list[str], content_types: list[str | None] | None = None) -> pa.Table:
    columns = {"id": [f"d{i}" for i in range(len(texts))], "text": texts}
    if content_types is not None:
        columns["content_type"] = content_types
    return pa.table(columns)


@pytest.mark.parametrize("params, boilerplate", [
    ({"extractor": "trafilatura", "favor_precision": True}, ["Log in", "cookies", "All rights reserved"]),
    ({"extractor": "trafilatura"}, ["Log in", "cookies", "All rights reserved"]),
    ({"extractor": "resiliparse"}, ["Log in", "All rights reserved"])])  # less precise: keeps the cookie note
def test_main_text_is_kept_and_boilerplate_removed(params, boilerplate):
    kept, dropped, _ = split_map(HtmlToText(**params), batch([page(ARTICLE)]))
    text = kept.column("text")[0].as_py()
    assert dropped.num_rows == 0 and all(p in text for p in ARTICLE)
    assert not [b for b in boilerplate if b in text]


def test_pages_without_main_text_are_dropped_with_a_reason_and_keep_their_html():
    op = HtmlToText(favor_precision=True)  # by default trafilatura falls back to the menu's text
    empty = page([])
    kept, dropped, codes = split_map(op, batch([page(ARTICLE), empty, "<html></html>"]))
    assert kept.column("id").to_pylist() == ["d0"] and dropped.column("id").to_pylist() == ["d1", "d2"]
    assert [op.reason_names()[c] for c in codes] == ["html_to_text.no_content"] * 2
    assert dropped.column("text").to_pylist() == [empty, "<html></html>"]
    assert op.map_rows(batch([empty]))[1].tolist() == [0]


def test_an_extractor_failure_drops_that_page_only():
    op = HtmlToText()
    op.setup()
    real = op._extract

    def flaky(html: str) -> str | None:
        if "boom" in html:
            raise ValueError("parser gave up")
        return real(html)

    op._extract = flaky
    kept, dropped, codes = split_map(op, batch([page(["boom"]), page(ARTICLE)]))
    assert kept.column("id").to_pylist() == ["d1"] and [op.reason_names()[c] for c in codes] == [
        "html_to_text.extract_error"]


def test_rows_that_are_not_html_pass_through_untouched():
    plain = "Plain text from a WET file.\n<3 starts with a bracket but is not a tag."
    op = HtmlToText()
    rows = batch([plain, page(ARTICLE), "<3 love it"], ["text/plain", "text/html", None])
    kept, dropped, _ = split_map(op, rows)
    texts = kept.column("text").to_pylist()
    assert dropped.num_rows == 0 and texts[0] == plain and texts[2] == "<3 love it" and ARTICLE[0] in texts[1]
    # Without a content type column, the opening tag decides.
    kept, _, _ = split_map(op, batch([plain, page(ARTICLE)]))
    assert kept.column("text")[0].as_py() == plain and ARTICLE[0] in kept.column("text")[1].as_py()


def test_tables_are_kept_unless_excluded():
    html = page(ARTICLE, table=True)
    with_tables = split_map(HtmlToText(), batch([html]))[0].column("text")[0].as_py()
    without = split_map(HtmlToText(include_tables=False), batch([html]))[0].column("text")[0].as_py()
    assert TABLE_ROW in with_tables and TABLE_ROW not in without and ARTICLE[0] in without


@pytest.mark.parametrize("params, error", [
    ({"extractor": "resiliparse", "favor_precision": True}, "trafilatura options"),
    ({"favor_precision": True, "favor_recall": True}, "exclude each other"),
    ({"extractor": "readability"}, "expected one of 'trafilatura', 'resiliparse'")])
def test_parameters_are_checked_when_the_job_is_read(params, error):
    with pytest.raises(JobError, match=error):
        parse_steps([{"html_to_text": params}])
