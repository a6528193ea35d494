"""Readers: every format, stable ids, and every kind of bad input quarantined with file and line."""

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from llmray.errors import UserError
from llmray.io.readers import plan_chunks, read_chunk
from llmray.io.specs import InputSpec
from llmray.io.storage import Storage
from llmray.io.writers import ShardWriter, read_shard, scratch_writer, shard_schema
from tests.helpers import write_jsonl


def chunks_of(spec, cpus=1):
    return plan_chunks([spec], cpus)[0]


def read_all(path, **options):
    spec = InputSpec(paths=[str(path)], **options)
    docs, quarantined, too_large = [], [], []
    for chunk in chunks_of(spec):
        for batch in read_chunk(chunk, spec):
            docs += batch.table.to_pylist()
            quarantined += batch.quarantined
            too_large += batch.too_large
    return docs, quarantined, too_large


def test_jsonl_ids_from_field_or_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"id": 7, "text": "one"}, {"text": "two"}, "", {"id": "x", "text": "3"}])
    docs, quarantined, _ = read_all(path)
    assert [(d["id"], d["text"]) for d in docs] == [("7", "one"), ("a.jsonl:2", "two"), ("x", "3")]
    assert quarantined == []


@pytest.mark.parametrize("suffix, compress", [
    (".jsonl.gz", gzip.compress), (".jsonl.zst", lambda b: zstandard.ZstdCompressor().compress(b))])
def test_compressed_jsonl(tmp_path, suffix, compress):
    path = tmp_path / f"c{suffix}"
    path.write_bytes(compress(b'{"text": "hello"}\n{"text": "world"}\n'))
    docs, quarantined, _ = read_all(path)
    assert [d["text"] for d in docs] == ["hello", "world"] and not quarantined


def test_parquet_and_text_files(tmp_path):
    pq.write_table(pa.table({"id": [1, None], "text": ["p1", "p2"], "year": [2000, 2001]}), tmp_path / "p.parquet")
    docs, _, _ = read_all(tmp_path / "p.parquet", keep_fields=["year"])
    assert [(d["id"], d["text"], d["year"]) for d in docs] == [("1", "p1", 2000), ("p.parquet:2", "p2", 2001)]
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "doc.txt").write_text("a whole file\nis one document")
    docs, _, _ = read_all(tmp_path / "t")
    assert docs[0]["id"] == "doc.txt" and docs[0]["text"] == "a whole file\nis one document"


def test_large_plain_jsonl_is_split_into_chunks_without_losing_or_repeating_lines(tmp_path):
    records = [{"text": f"document number {i} " + "x" * (i % 50)} for i in range(3000)]
    path = write_jsonl(tmp_path / "big.jsonl", records)
    spec = InputSpec(paths=[str(path)], chunk_mb=0.02)
    chunks = chunks_of(spec)
    assert len(chunks) > 5
    docs = [d for c in chunks for b in read_chunk(c, spec) for d in b.table.to_pylist()]
    assert [d["text"] for d in docs] == [r["text"] for r in records]
    assert [d["id"] for d in docs] == [f"big.jsonl:{i + 1}" for i in range(3000)]


def test_bad_records_are_quarantined_with_file_line_and_error(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [
        {"text": "good"}, '{"text": "broken', {"id": 1}, {"text": 42}, "[1, 2]", {"text": "also good"}])
    with open(path, "ab") as f:
        f.write(b'{"text": "bad \xff\xfe utf8"}\n')
    docs, quarantined, _ = read_all(path)
    assert [d["text"] for d in docs] == ["good", "also good"]
    errors = {q["line"]: q["error"] for q in quarantined}
    assert set(errors) == {2, 3, 4, 5, 7}
    assert "bad.jsonl:2: not valid JSON" in errors[2]
    assert "missing text field 'text'" in errors[3]
    assert "text field 'text' is int, expected a string" in errors[4]
    assert "expected a JSON object, got list" in errors[5]
    assert "UTF-8" in errors[7]
    assert all(q["file"].endswith("bad.jsonl") for q in quarantined)


def test_truncated_gzip_keeps_what_was_readable(tmp_path):
    whole = gzip.compress(b"".join(b'{"text": "line %d"}\n' % i for i in range(5000)))
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])
    docs, quarantined, _ = read_all(path)
    assert 0 < len(docs) < 5000
    assert len(quarantined) == 1
    assert "ends early or is corrupt" in quarantined[0]["error"] and quarantined[0]["line"] == len(docs) + 1


@pytest.mark.parametrize("name, content", [
    ("empty.jsonl", b""), ("empty.jsonl.gz", gzip.compress(b"")), ("empty.txt", b"")])
def test_empty_file_is_quarantined(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    docs, quarantined, _ = read_all(tmp_path / name)
    assert docs == [] and len(quarantined) == 1 and "empty file" in quarantined[0]["error"]


def test_invalid_utf8_text_file_and_bad_parquet(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"fine line\nbroken \xc3\x28 here")
    _, quarantined, _ = read_all(tmp_path / "bad.txt")
    assert "invalid UTF-8" in quarantined[0]["error"] and quarantined[0]["line"] == 2
    pq.write_table(pa.table({"body": ["x", "y"]}), tmp_path / "nocol.parquet")
    _, quarantined, _ = read_all(tmp_path / "nocol.parquet")
    assert quarantined[0]["rows"] == 2 and "no column 'text'" in quarantined[0]["error"]
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    _, quarantined, _ = read_all(tmp_path / "junk.parquet")
    assert "not a readable parquet file" in quarantined[0]["error"]


def test_oversized_document_is_dropped_without_reading_it_whole(tmp_path):
    path = tmp_path / "huge.jsonl"
    with open(path, "w") as f:
        f.write('{"text": "small"}\n')
        f.write('{"id": "big-one", "text": "' + "a" * (3 << 20) + '"}\n')
        f.write('{"text": "after"}\n')
    docs, quarantined, too_large = read_all(path, max_doc_mb=1)
    assert [d["text"] for d in docs] == ["small", "after"]
    assert too_large == [("big-one", (3 << 20) + 30)]


def test_missing_and_unknown_inputs_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="input not found"):
        chunks_of(InputSpec(paths=[str(tmp_path / "missing")]))
    (tmp_path / "x.bin").write_bytes(b"?")
    with pytest.raises(UserError, match="cannot tell the format"):
        chunks_of(InputSpec(paths=[str(tmp_path / "x.bin")]))


def test_parquet_null_and_oversized_texts(tmp_path):
    pq.write_table(pa.table({"text": [None, "ok", "x" * 3000, "fine"], "n": [1, 2, 3, 4]}), tmp_path / "m.parquet")
    docs, quarantined, too_large = read_all(tmp_path / "m.parquet", max_doc_mb=0.001, keep_fields=["n", "absent"])
    assert [(d["id"], d["text"], d["n"], d["absent"]) for d in docs] == [
        ("m.parquet:2", "ok", 2, None), ("m.parquet:4", "fine", 4, None)]
    assert [q["line"] for q in quarantined] == [1] and "is null" in quarantined[0]["error"]
    assert too_large == [("m.parquet:3", 3000)]


def test_shards_keep_nested_columns_and_skip_text_statistics(tmp_path):
    table = pa.table({"text": ["a b", "c d"], "meta": [{"x": 1, "tags": ["u"]}, {"x": 2, "tags": []}],
                      "scores": pa.array([[("q", 0.5)], []], pa.map_(pa.string(), pa.float64()))})
    writer = ShardWriter(Storage(str(tmp_path)), "chunk")
    writer.write(table)
    (shard,) = writer.close()
    path = tmp_path / shard["path"]
    assert shard["rows"] == 2 and pq.read_table(path).equals(table)
    group = pq.ParquetFile(path).metadata.row_group(0)
    stats = {group.column(i).path_in_schema: group.column(i).is_stats_set for i in range(group.num_columns)}
    assert stats == {"text": False, "meta.x": True, "meta.tags.list.element": True,
                     "scores.key_value.key": True, "scores.key_value.value": True}


@pytest.mark.parametrize("where", ["local", "bucket"])
def test_scratch_shards_come_back_as_written(tmp_path, s3, where):
    """Intermediate data: Arrow IPC, mapped where local, zstd-compressed in a bucket; a later batch
    of another schema is cast to the first's, and a reader may take some columns, in small batches."""
    storage = Storage(str(tmp_path)) if where == "local" else Storage(f"s3://{s3.bucket()}/work", s3.options)
    texts = [f"{word} " * 2000 for word in ("one", "two", "three", "four")]
    first = pa.table({"id": ["a", "b", "c"], "text": texts[:3], "n": pa.array([1, 2, 3], pa.int64())})
    later = pa.table({"id": ["d"], "text": texts[3:], "n": pa.array([4], pa.int32())})
    writer = scratch_writer(storage, "s0/unit")
    writer.write(first)
    writer.write(later)
    (shard,) = writer.close()
    assert shard == {"path": "s0/unit-0000.arrow", "rows": 4}
    assert shard_schema(storage, shard["path"]) == first.schema
    compressed = len(storage.get(shard["path"])) < sum(map(len, texts)) / 10
    assert compressed == (where == "bucket")
    back = list(read_shard(storage, shard["path"], columns=["text", "n"], batch_rows=2))
    assert [t.num_rows for t in back] == [2, 1, 1]
    assert pa.concat_tables(back).to_pydict() == {"text": texts, "n": [1, 2, 3, 4]}


def test_one_large_file_is_cut_so_every_cpu_has_work_and_small_files_are_grouped(tmp_path):
    records = [{"id": f"d{i}", "text": "word " * 200} for i in range(6000)]  # about 6 MB
    path = write_jsonl(tmp_path / "one.jsonl", records)
    chunks = chunks_of(InputSpec(paths=[str(path)]), cpus=2)
    assert len(chunks) == 6  # 1 MB pieces: the smallest unit worth a task, 4 per CPU wanted
    assert all(len(c.pieces) == 1 and c.pieces[0].end - c.pieces[0].start < (1 << 20) + 1 for c in chunks)
    small = tmp_path / "many"
    for k in range(40):
        write_jsonl(small / f"f{k:02d}.jsonl", [{"text": "tiny"}])
    grouped = chunks_of(InputSpec(paths=[str(small)]), cpus=2)
    assert len(grouped) == 1 and len(grouped[0].pieces) == 40
    docs = [d for c in grouped for b in read_chunk(c, InputSpec(paths=[str(small)])) for d in b.table.to_pylist()]
    assert [d["id"] for d in docs] == [f"f{k:02d}.jsonl:1" for k in range(40)]


def test_parquet_is_cut_by_row_groups(tmp_path):
    texts = [f"row {i} " + "y" * 500 for i in range(4000)]
    pq.write_table(pa.table({"text": texts}), tmp_path / "big.parquet", row_group_size=500,
                   compression="none")
    spec = InputSpec(paths=[str(tmp_path / "big.parquet")], chunk_mb=0.5)
    chunks = chunks_of(spec, cpus=2)
    assert len(chunks) > 2 and all(c.pieces[0].end is not None for c in chunks)
    docs = [d for c in chunks for b in read_chunk(c, spec) for d in b.table.to_pylist()]
    assert [d["text"] for d in docs] == texts
    assert [d["id"] for d in docs] == [f"big.parquet:{i + 1}" for i in range(4000)]


def test_a_byte_order_mark_is_not_part_of_the_first_record(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": "a", "text": "first"}\n{"id": "b", "text": "second"}\n')
    docs, quarantined, _ = read_all(path)
    assert [d["id"] for d in docs] == ["a", "b"] and not quarantined


def test_quarantine_line_numbers_count_from_the_start_of_the_file_in_every_piece(tmp_path):
    lines = [{"text": f"line {i} " + "z" * 40} for i in range(2000)]
    path = write_jsonl(tmp_path / "cut.jsonl", lines)
    raw = path.read_bytes().split(b"\n")
    raw[1500] = b'{"text": broken'
    path.write_bytes(b"\n".join(raw))
    spec = InputSpec(paths=[str(path)], chunk_mb=0.01)
    chunks = chunks_of(spec)
    assert len(chunks) > 3
    quarantined = [q for c in chunks for b in read_chunk(c, spec) for q in b.quarantined]
    assert [q["line"] for q in quarantined] == [1501]


def test_a_corrupt_parquet_row_group_loses_only_its_own_rows(tmp_path):
    texts = [f"document {i} " + "text " * 50 for i in range(300)]
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": [f"d{i}" for i in range(300)], "text": texts}), path, row_group_size=100,
                   compression="none")
    meta = pq.ParquetFile(path).metadata
    column = meta.row_group(1).column(1)
    data = bytearray(path.read_bytes())
    at = column.data_page_offset + 40
    data[at:at + 400] = b"\xff" * 400  # garble the middle group's text page
    path.write_bytes(bytes(data))
    docs, quarantined, _ = read_all(path)
    assert [d["id"] for d in docs] == [f"d{i}" for i in range(100)] + [f"d{i}" for i in range(200, 300)]
    assert len(quarantined) == 1 and quarantined[0]["rows"] == 100 and "row group 1" in quarantined[0]["error"]
    assert len(docs) + sum(q["rows"] for q in quarantined) == 300


def test_a_truncated_zstd_file_keeps_what_came_before_the_cut_and_says_so(tmp_path):
    lines = b"".join(b'{"text": "line %d of a longer file"}\n' % i for i in range(20000))
    frames = b"".join(zstandard.ZstdCompressor().compress(lines[k:k + 100_000]) for k in range(0, len(lines), 100_000))
    path = tmp_path / "cut.jsonl.zst"
    path.write_bytes(frames[: len(frames) * 2 // 3])
    docs, quarantined, _ = read_all(path)
    assert 0 < len(docs) < 20000
    assert [d["text"] for d in docs] == [f"line {i} of a longer file" for i in range(len(docs))]
    assert len(quarantined) == 1 and "truncated" in quarantined[0]["error"]
    whole = tmp_path / "whole.jsonl.zst"
    whole.write_bytes(frames)
    docs, quarantined, _ = read_all(whole)
    assert len(docs) == 20000 and not quarantined


def test_ids_are_strings_or_integers_and_others_are_quarantined(tmp_path):
    path = write_jsonl(tmp_path / "ids.jsonl", [{"id": "1", "text": "a"}, {"id": 1, "text": "b"},
                                                {"id": True, "text": "c"}, {"id": 2.5, "text": "d"},
                                                {"id": ["x"], "text": "e"}, {"text": "f"}])
    docs, quarantined, _ = read_all(path)
    assert [(d["id"], d["text"]) for d in docs] == [("1", "a"), ("1", "b"), ("ids.jsonl:6", "f")]
    assert sorted(q["line"] for q in quarantined) == [3, 4, 5]
    assert all("ids must be strings or integers" in q["error"] for q in quarantined)


def test_names_are_taken_literally_and_links_are_followed_or_listed(tmp_path):
    folder = tmp_path / "in"
    write_jsonl(folder / "a::b.jsonl", [{"text": "colons are part of the name"}])
    write_jsonl(tmp_path / "elsewhere" / "real.jsonl", [{"text": "through a link to a file"}])
    (folder / "file-link.jsonl").symlink_to(tmp_path / "elsewhere" / "real.jsonl")
    (folder / "folder-link").symlink_to(tmp_path / "elsewhere")
    (folder / "loop").symlink_to(folder / "loop")
    (folder / ".hidden.jsonl").write_text('{"text": "hidden"}\n')
    chunks, skipped = plan_chunks([InputSpec(paths=[str(folder)])], 1)
    names = sorted(p.name for c in chunks for p in c.pieces)
    assert names == ["a::b.jsonl", "file-link.jsonl"]
    assert sorted(s.rsplit(" (", 1)[1] for s in skipped) == ["hidden)", "link that loops)", "link to a folder)"]
    docs, _, _ = read_all(folder / "a::b.jsonl")
    assert docs[0]["text"] == "colons are part of the name"


@pytest.mark.parametrize("block", [256, 4096, 65536])
@pytest.mark.parametrize("compressed", [False, True])
def test_arrow_blocks_read_exactly_what_the_line_by_line_reader_reads(tmp_path, monkeypatch, block, compressed):
    """The fast path (a block of lines per Arrow call) against the per-line reader, which
    ``keep_fields`` forces: same documents, ids, quarantine records and too-large drops, whatever
    the block size, the pieces a file is cut into and the mix of good and bad lines."""
    import random

    from llmray.io import readers

    def line(record):
        return json.dumps(record, ensure_ascii=False).encode()

    rng = random.Random(7)
    lines = [line({"id": "first", "text": "after the byte-order mark"})]
    bad = [b"", b"   ", b'{"text": 5}', b'{"id": true, "text": "t"}', b"[1]", b'{"text": "cut',
           b'{"id": "d", "text": "a", "text": "b"}', b'{"text": "' + b"x" * 3000 + b'"}', b'{"text": "crlf"}\r',
           b'{"id": 1.5, "text": "f"}', b'{"id": "n", "text": null}']
    for run in range(12):  # runs of lines alike (string, integer or no ids), bad lines in some runs
        kind = run // 3 % 3
        for i in range(run * 300, run * 300 + 300):
            text = "word " * rng.randint(0, 60) + "中文" * rng.randint(0, 3)
            record = {"id": f"s{i}", "text": text} if kind == 0 else {"id": i, "text": text, "meta": {"k": [1]}} \
                if kind == 1 else {"text": text}
            lines.append(rng.choice(bad) if run % 4 == 3 and rng.random() < 0.05 else line(record))
        if run in (1, 7):  # a block whose only fault is a record without text (string ids / no ids)
            lines.append(line({"id": "no-text", "text": None}) if run == 1 else line({"meta": 1}))
    data = b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n"
    path = tmp_path / ("mixed.jsonl.gz" if compressed else "mixed.jsonl")
    path.write_bytes(gzip.compress(data) if compressed else data)
    monkeypatch.setattr(readers, "JSONL_BLOCK", block)
    arrow_block, taken = readers._arrow_block, []
    monkeypatch.setattr(readers, "_arrow_block", lambda *a: taken.append(arrow_block(*a)) or taken[-1])

    def read(**options):
        docs, quarantined, too_large = read_all(path, chunk_mb=0.02, max_doc_mb=0.002, **options)
        return [(d["id"], d["text"]) for d in docs], quarantined, too_large

    fast, slow = read(), read(keep_fields=["absent"])
    assert fast == slow
    assert sum(t is not None for t in taken) >= 2  # Arrow took blocks, and the per-line reader the rest
    assert len(fast[0]) > 3000 and fast[1] and fast[2]
    assert fast[0][0][0] == "first"
