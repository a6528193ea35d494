"""llmray.kernels.arrow converts as pyarrow's own conversions do (which import pandas)."""

import numpy as np
import pyarrow as pa
import pytest

from llmray.kernels import arrow


@pytest.mark.parametrize("dtype", ["int8", "int32", "int64", "uint16", "uint64", "float32", "float64", "bool"])
def test_numbers_round_trip_as_pyarrow_converts_them(dtype):
    values = (np.arange(37) % 5 == 1) if dtype == "bool" else (np.arange(37) * 3 - 20).astype(dtype)
    nulls = np.arange(37) % 7 == 3
    assert arrow.from_numpy(values).equals(pa.array(values))
    assert arrow.from_numpy(values, nulls=nulls).equals(pa.array(values, mask=nulls))
    for start, length in ((0, 37), (3, 20), (9, 0), (13, 24)):
        sliced = pa.array(values).slice(start, length)
        np.testing.assert_array_equal(arrow.to_numpy(sliced), values[start:start + length])
        masked = pa.array(values, mask=nulls).slice(start, length)
        fill = 0 if dtype != "bool" else False
        expected = np.where(nulls, fill, values)[start:start + length]
        np.testing.assert_array_equal(arrow.to_numpy(masked, fill=fill), expected)
    chunked = pa.chunked_array([pa.array(values[:10]), pa.array(values[10:])])
    np.testing.assert_array_equal(arrow.to_numpy(chunked), values)
    with pytest.raises(ValueError, match="nulls"):
        arrow.to_numpy(pa.array(values, mask=nulls))


def test_strings_repeats_and_codes():
    words = ["web", "", "ß中文", "web", "🙂"]
    assert arrow.strings(words).equals(pa.array(words, pa.string()))
    assert arrow.strings([]).equals(pa.array([], pa.string()))
    assert arrow.repeat("books", 4).equals(pa.array(["books"] * 4))
    assert arrow.repeat("x", 0).to_pylist() == []
    codes, values = arrow.codes(pa.chunked_array([["b", "a", None], ["b", None]]))
    assert [values[c] for c in codes] == ["b", "a", None, "b", None]
