"""numpy <-> Arrow without pyarrow's pandas shim.

``pa.array`` of a list or an ndarray and ``Array.to_numpy`` first ask whether the value is a pandas
object, which imports pandas: a quarter of a second in every worker process of every run, for
values that never are. The data path converts through buffers instead; any other code may use
pyarrow's conversions as usual.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

_TYPES = {np.dtype(t): pa.from_numpy_dtype(np.dtype(t)) for t in
          ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64")}


def from_numpy(values: np.ndarray, nulls: np.ndarray | None = None) -> pa.Array:
    """A 1-d numeric or boolean ndarray as an Arrow array (numbers shared, not copied), null where
    ``nulls`` is true."""
    values = np.ascontiguousarray(values)
    validity = None
    if nulls is not None and nulls.any():
        validity = pa.py_buffer(np.packbits(~nulls, bitorder="little"))
    if values.dtype == np.bool_:
        data = pa.py_buffer(np.packbits(values, bitorder="little"))
        return pa.Array.from_buffers(pa.bool_(), len(values), [validity, data])
    return pa.Array.from_buffers(_TYPES[values.dtype], len(values), [validity, pa.py_buffer(values)])


def to_numpy(array: pa.Array | pa.ChunkedArray, fill: float | bool | None = None) -> np.ndarray:
    """A numeric or boolean Arrow array as an ndarray (a view where Arrow allows), with ``fill``
    where it is null (an array with nulls and no ``fill`` is an error; ``fill`` is cast to the
    array's type, so give one it holds)."""
    if isinstance(array, pa.ChunkedArray):
        return to_numpy(array.chunk(0) if array.num_chunks == 1 else array.combine_chunks(), fill)
    boolean = pa.types.is_boolean(array.type)
    if not (boolean or pa.types.is_integer(array.type) or pa.types.is_floating(array.type)):
        raise TypeError(f"{array.type} is not a numeric or boolean array")
    dtype = np.dtype(bool) if boolean else np.dtype(array.type.to_pandas_dtype())
    if len(array) == 0:
        return np.zeros(0, dtype)
    if boolean:
        values = _bits(array.buffers()[1], array.offset, len(array))
    else:
        values = np.frombuffer(array.buffers()[1], dtype, len(array), array.offset * dtype.itemsize)
    if not array.null_count:
        return values
    if fill is None:
        raise ValueError(f"{array.type} array with {array.null_count} nulls and no fill value")
    return np.where(_bits(array.buffers()[0], array.offset, len(array)), values, fill)


def _bits(buffer: pa.Buffer, offset: int, count: int) -> np.ndarray:
    bits = np.frombuffer(buffer, np.uint8)
    return np.unpackbits(bits, bitorder="little", count=offset + count)[offset:].astype(bool)


def strings(values: Sequence[str]) -> pa.Array:
    """Python strings as an Arrow string array (no nulls)."""
    encoded = [v.encode("utf-8") for v in values]
    return _string_array(np.fromiter(map(len, encoded), np.int64, len(encoded)), b"".join(encoded))


def repeat(value: str, count: int) -> pa.Array:
    """``count`` copies of one string, as a string array."""
    data = value.encode("utf-8")
    return _string_array(np.full(count, len(data), np.int64), data * count)


def _string_array(lengths: np.ndarray, data: bytes) -> pa.Array:
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] >= 2**31:  # one type for every batch: callers build batches far below this
        raise ValueError(f"{offsets[-1]} bytes of text in one string array (at most 2 GiB)")
    return pa.Array.from_buffers(pa.string(), len(lengths), [None, pa.py_buffer(offsets.astype(np.int32)),
                                                             pa.py_buffer(data)])


def codes(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, list]:
    """(a code per row, the distinct values the codes index): grouping by a column without Arrow's
    group_by, whose engine (Acero) imports pandas too. A null is a value of its own."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    encoded = column.dictionary_encode(null_encoding="encode")
    return to_numpy(encoded.indices).astype(np.int64), encoded.dictionary.to_pylist()
