"""url_filter: blocked domains (and their subdomains), blocked URL words and substrings, one reason each."""

import gzip

import numpy as np
import pyarrow as pa
import pytest

from llmray.config import parse_steps
from llmray.errors import JobError, UserError
from llmray.ops.base import KEEP
from llmray.ops.filters.url import UrlFilter


def reasons(op: UrlFilter, urls: list[str | None]) -> list[str]:
    codes = op.codes(pa.table({"text": ["page"] * len(urls), "url": pa.array(urls, pa.string())}))
    return ["keep" if c == KEEP else op.reasons[c] for c in codes]


def test_each_rule_blocks_what_it_should_and_nothing_else():
    op = UrlFilter(blocklist_domains=["adfarm.example", "*.spam.example"], blocked_words=["casino"],
                   blocked_subwords=["porn"])
    cases = {
        "https://adfarm.example/offers": "blocked_domain",
        "http://www.deals.AdFarm.example:8080/x?y=1": "blocked_domain",
        "https://user:pw@cdn.spam.example./img": "blocked_domain",
        "adfarm.example/no-scheme": "blocked_domain",
        "https://notadfarm.example/": "keep",
        "https://adfarm.example.org/": "keep",
        "https://games.example/casino-bonus": "blocked_word",
        "https://CASINO.example/": "blocked_word",
        "https://games.example/casinos": "keep",
        "https://freeporn.example/": "blocked_subword",
        "https://x.example/p-o-r-n/": "blocked_subword",
        "https://news.example/2024/05/harbour": "keep",
        None: "keep",
        "": "keep",
    }
    assert reasons(op, list(cases)) == list(cases.values())


def test_lists_come_from_files_with_comments_relative_to_where_the_job_is_read(tmp_path, monkeypatch):
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "domains.txt").write_text("# blocked\n\nBad.Example\n  worse.example  \n")
    with gzip.open(tmp_path / "lists" / "words.txt.gz", "wt") as f:
        f.write("# words\nbetting\n")
    monkeypatch.chdir(tmp_path)
    (op,) = parse_steps([{"url_filter": {"blocklist_domains": "lists/domains.txt",
                                         "blocked_words": "lists/words.txt.gz"}}])
    assert op.params()["blocklist_domains"] == "lists/domains.txt"
    monkeypatch.chdir("/")  # workers may run elsewhere
    assert reasons(op, ["http://a.bad.example/", "http://worse.example/", "http://ok.example/betting/tips",
                        "http://ok.example/"]) == ["blocked_domain", "blocked_domain", "blocked_word", "keep"]


def test_missing_urls_pass_by_default_and_can_be_dropped():
    urls = ["https://ok.example/", None, "  "]
    assert reasons(UrlFilter(), urls) == ["keep"] * 3
    assert reasons(UrlFilter(drop_missing=True), urls) == ["keep", "missing_url", "missing_url"]


def test_a_batch_without_the_url_column_says_how_to_get_it():
    with pytest.raises(UserError, match="keep_fields"):
        UrlFilter(blocked_words=["x"]).codes(pa.table({"text": ["t"]}))


def test_counts_per_reason_over_a_multi_chunk_batch_with_a_null_url_column():
    op = UrlFilter(blocklist_domains=["bad.example"], blocked_words=["casino"], drop_missing=True)
    urls = ["http://bad.example/", "http://x.example/casino", "http://x.example/",
            "http://a.bad.example/casino"]  # both rules: the domain is named
    part = pa.table({"text": ["t"] * 4, "url": urls})
    table = pa.concat_tables([part, part])
    kept, dropped, codes = op.split(table)
    names, counts = np.unique(np.array(op.reason_names())[codes], return_counts=True)
    assert dict(zip(names.tolist(), counts.tolist(), strict=True)) == {
        "url_filter.blocked_domain": 4, "url_filter.blocked_word": 2}
    assert kept.num_rows == 2
    no_urls = pa.table({"text": ["t", "t"], "url": pa.nulls(2)})
    assert [op.reason_names()[c] for c in op.split(no_urls)[2]] == ["url_filter.missing_url"] * 2


def test_a_missing_list_file_is_refused_when_the_job_is_read(tmp_path):
    with pytest.raises(JobError, match=r"steps\[0\].url_filter.blocklist_domains: file not found"):
        parse_steps([{"url_filter": {"blocklist_domains": str(tmp_path / "nope.txt")}}])
