"""Turning per-row statistics into reason codes: ordered rules, optional thresholds, safe ratios."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llmray.ops.base import KEEP


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den per row; 0/0 is NaN (no threshold rule fires on it) and x/0 is infinite."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(num, dtype=np.float64) / np.asarray(den, dtype=np.float64)


def above(values: np.ndarray, limit: float | None) -> np.ndarray | None:
    """Rows over ``limit``; None (rule off) when there is no limit."""
    return None if limit is None else values > limit


def below(values: np.ndarray, limit: float | None) -> np.ndarray | None:
    """Rows under ``limit``; None (rule off) when there is no limit."""
    return None if limit is None else values < limit


def first_failure(failures: Sequence[np.ndarray | None], rows: int) -> np.ndarray:
    """Reason code per row: the index of the first rule (in order) that failed, or ``KEEP``."""
    codes = np.full(rows, KEEP, dtype=np.int16)
    for code in range(len(failures) - 1, -1, -1):
        failed = failures[code]
        if failed is not None:
            codes[failed] = code
    return codes
