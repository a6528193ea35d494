"""zh_convert: OpenCC's conversions, one call per batch, rows chosen by language, counters."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pytest

from llmray.config import parse_steps
from llmray.errors import JobError, UserError
from llmray.ops.base import registered
from llmray.ops.clean.zh_convert import ZhConvert, convert

pytest.importorskip("opencc")
ROOT = Path(__file__).resolve().parents[2]


def table(texts, languages=None):
    columns = {"id": [f"d{i}" for i in range(len(texts))], "text": texts}
    if languages:
        columns["language"] = languages
    return pa.table(columns)


def test_registered_with_its_parameters():
    assert registered()["zh_convert"] is ZhConvert
    (step,) = parse_steps([{"zh_convert": {"config": "tw2sp"}}])
    assert step.config == "tw2sp"
    with pytest.raises(JobError, match="config: expected one of"):
        parse_steps([{"zh_convert": {"config": "t2x"}}])


def test_traditional_to_simplified_by_phrase():
    step = ZhConvert()
    out = step.map(table(["孟子見梁惠王。頭髮與發展", "English only", "", "軟體和記憶體"]))
    assert out.column("text").to_pylist() == ["孟子见梁惠王。头发与发展", "English only", "", "软体和记忆体"]
    assert step.counters() == {"documents_converted": 2} and step.counters() == {}
    assert ZhConvert(config="tw2sp").map(table(["軟體和記憶體"])).column("text").to_pylist() == ["软件和内存"]
    assert ZhConvert(config="s2t").map(table(["头发与发展"])).column("text").to_pylist() == ["頭髮與發展"]


def test_one_call_per_batch_and_the_separator_inside_a_text():
    with gzip.open(ROOT / "data" / "zh" / "guwenguanzhi.jsonl.gz", "rt", encoding="utf-8") as f:
        docs = [json.loads(line)["text"] for line in f]
    column = pa.array(docs)
    converted, changed = convert(column)
    import opencc

    cc = opencc.OpenCC("t2s.json")
    assert converted.to_pylist() == [cc.convert(d) for d in docs] and changed == len(docs)
    odd = pa.array(["頭髮\x1e發展", "軟體"])
    assert convert(odd)[0].to_pylist() == ["头发\x1e发展", "软体"]
    chunked = pa.chunked_array([pa.array(["頭髮"]), pa.array([None, "發展"])])
    assert convert(chunked)[0].to_pylist() == ["头发", None, "发展"]


def test_only_the_languages_asked_for():
    out = ZhConvert(languages=["zh"]).map(table(["頭髮", "髪の毛と發展"], ["zh", "ja"]))
    assert out.column("text").to_pylist() == ["头发", "髪の毛と發展"]
    with pytest.raises(UserError, match="run the `language` step"):
        ZhConvert(languages=["zh"]).map(table(["頭髮"]))
