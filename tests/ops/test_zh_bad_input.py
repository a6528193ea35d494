"""Bad Chinese input through the readers and the steps: handled, or quarantined with a reason;
never a crash, never a silent drop."""

from __future__ import annotations

import json

import pyarrow as pa

from llmray.config import parse_steps
from llmray.ops.base import FilterStep
from tests.io.test_readers import read_all

ZH = "中文测试，这是一段简体中文。"


def write(path, lines: list[bytes]):
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_legacy_encodings_and_surrogates_are_quarantined_with_a_reason(tmp_path):
    path = write(tmp_path / "bad.jsonl", [
        b'{"id": "gb18030", "text": "' + ZH.encode("gb18030") + b'"}',
        b'{"id": "big5", "text": "' + "中文測試，這是繁體中文。".encode("big5") + b'"}',
        b'{"id": "lone", "text": "lone \\ud800 surrogate"}',
        b'{"id": "raw", "text": "raw \xed\xa0\x80 bytes"}',
        b'{"id": "pair", "text": "pair \\ud83d\\ude00 ok"}',
        json.dumps({"id": "ok", "text": ZH}, ensure_ascii=False).encode(),
    ])
    docs, quarantined, _ = read_all(path)
    assert [d["id"] for d in docs] == ["pair", "ok"] and docs[0]["text"] == "pair \U0001f600 ok"
    assert [q["line"] for q in quarantined] == [1, 2, 3, 4]
    assert all("not valid JSON" in q["error"] and q["file"].endswith("bad.jsonl") for q in quarantined)
    assert "UTF-8" in quarantined[0]["error"] and "surrogate" in quarantined[2]["error"]


def test_gb18030_text_file_is_quarantined(tmp_path):
    (tmp_path / "gbk.txt").write_bytes(ZH.encode("gb18030"))
    docs, quarantined, _ = read_all(tmp_path / "gbk.txt")
    assert docs == [] and "invalid UTF-8" in quarantined[0]["error"]


def test_spaces_and_mixed_scripts_go_through_the_chinese_job_steps():
    texts = ["全角\u3000空格\u200b零宽\u200d字符\ufeff和\u00a0不换行。" * 20,
             ("Python 是一种编程语言。日本語のテキスト。한국어 텍스트. ภาษาไทย Русский текст. " * 10),
             "\u3000\u3000\u200b", "🙂" * 50, "\U00020000\U0002a6d6" * 30 + "。"]
    table = pa.table({"id": [f"d{i}" for i in range(len(texts))], "text": texts})
    steps = parse_steps(["unicode_normalize", "fix_mojibake", "clean_whitespace", "length",
                         {"language": {"languages": ["zh"], "min_score": 0.0}},
                         {"gopher_repetition": {"languages": ["zh"]}}, {"gopher_quality": {"languages": ["zh"]}},
                         {"fineweb_quality": {"languages": ["zh"]}}, "pii_redact"])
    seen = 0
    for step in steps:
        step.setup()
        if isinstance(step, FilterStep):
            kept, dropped, codes = step.split(table)
            seen += dropped.num_rows  # every drop has a reason code
            assert len(codes) == dropped.num_rows
            table = kept
        else:
            table = step.map_rows(table)[0]
        if step.name == "clean_whitespace":
            assert "\u3000" not in table.column("text")[0].as_py() and "\u200b" not in table.column("text")[0].as_py()
    assert seen + table.num_rows == len(texts)
