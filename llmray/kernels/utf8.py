"""UTF-8 decoding shared by the compiled kernels (one definition of how bytes become code points)."""

from __future__ import annotations

import numpy as np

from llmray.kernels.jit import njit

__all__ = ["decode_char"]


@njit(cache=True, nogil=True, inline="always")
def decode_char(data, i, end):
    """(code point, byte length) at ``data[i]``; malformed bytes decode as U+FFFD, one byte each."""
    b = np.int64(data[i])
    if b < 0x80:
        return b, 1
    if b >= 0xF0:
        n = 4
        cp = b & 0x07
    elif b >= 0xE0:
        n = 3
        cp = b & 0x0F
    elif b >= 0xC0:
        n = 2
        cp = b & 0x1F
    else:
        return 0xFFFD, 1
    if i + n > end:
        return 0xFFFD, 1
    for k in range(1, n):
        cp = (cp << 6) | (np.int64(data[i + k]) & 0x3F)
    return cp, n
