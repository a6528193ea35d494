"""64-bit hashing primitives shared by the dedup kernels (numba, usable inside compiled loops)."""

from __future__ import annotations

import numpy as np

from llmray.kernels.jit import njit

FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)
#: Odd multiplier (2^64 / golden ratio): a cheap, well-spread step between hashed words.
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xFF51AFD7ED558CCD)
_MIX2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
_S64 = np.uint64(64)


@njit(cache=True, nogil=True)
def fmix64(h):
    """MurmurHash3's finalizer: a bijection of uint64 that spreads every input bit over all outputs."""
    h ^= h >> _S33
    h *= _MIX1
    h ^= h >> _S33
    h *= _MIX2
    h ^= h >> _S33
    return h


@njit(cache=True, nogil=True)
def rotl64(h, r):
    """Rotate left by ``r`` (a uint64 in 1..63)."""
    return (h << r) | (h >> (_S64 - r))
