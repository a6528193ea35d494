"""The exchange objects: a merge level over every part or over a range of parts reads back as the
senders' own objects would, on local disk and in the S3 test server."""

import numpy as np
import pyarrow as pa
import pytest

from llmray.io import exchange
from llmray.io.storage import Storage


@pytest.mark.parametrize("where", ["local", "bucket"])
def test_combined_objects_read_back_as_their_senders(tmp_path, s3, where):
    storage = Storage(str(tmp_path)) if where == "local" else Storage(f"s3://{s3.bucket()}/work", s3.options)
    rng = np.random.default_rng(0)
    senders = [[rng.integers(0, 1 << 40, (int(rng.integers(0, 5)), 3), dtype=np.uint64) for _ in range(6)]
               for _ in range(3)]
    for k, parts in enumerate(senders):
        exchange.write_parts(storage, f"raw/{k:05d}", parts)
    rels = [f"raw/{k:05d}" for k in range(3)]
    exchange.combine(storage, rels, "raw+/whole")
    exchange.combine(storage, rels, "raw+/range", lo=2, hi=5)
    for p in range(6):
        expected = np.concatenate([parts[p] for parts in senders])
        assert np.array_equal(exchange.gather(storage, rels, p, shape=(3,)), expected)
        assert np.array_equal(exchange.gather(storage, ["raw+/whole"], p, shape=(3,)), expected)
    assert np.array_equal(exchange.gather(storage, ["raw+/range"], 0, 3, shape=(3,)),
                          np.concatenate([parts[p] for p in range(2, 5) for parts in senders]))
    # the global document numbers a sidecar's first level writes
    exchange.combine(storage, rels, "raw+/shifted", lambda k, rows: rows + np.uint64(k), lo=1, hi=2)
    shifted = exchange.gather(storage, ["raw+/shifted"], 0, shape=(3,))
    assert np.array_equal(shifted, np.concatenate([parts[1] + np.uint64(k) for k, parts in enumerate(senders)]))

    tables = [[pa.table({"id": [f"{k}-{p}"] * p}) for p in range(4)] for k in range(2)]
    for k, parts in enumerate(tables):
        exchange.write_parts(storage, f"arrow/{k:05d}", parts)
    exchange.combine(storage, ["arrow/00000", "arrow/00001"], "arrow+/range", lo=1, hi=4)
    got = exchange.gather_tables(storage, ["arrow+/range"], 1, 3)
    assert got.column("id").to_pylist() == ["0-2"] * 2 + ["1-2"] * 2 + ["0-3"] * 3 + ["1-3"] * 3
    with pytest.raises(ValueError, match="different shapes"):
        exchange.combine(storage, ["raw/00000", "arrow/00000"], "bad")
