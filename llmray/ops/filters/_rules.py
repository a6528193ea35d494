"""Turning per-row statistics into reason codes: ordered rules, optional thresholds, safe ratios.

A threshold rule (``above``, ``below``) keeps what it measured and its limit, so a drop says what
decided it (``value`` and ``threshold`` in rejects/); a plain mask is a rule without a measure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from llmray.ops.base import KEEP, Verdict


class Rule(NamedTuple):
    failed: np.ndarray
    values: np.ndarray
    limit: float


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den per row; 0/0 is NaN (no threshold rule fires on it) and x/0 is infinite."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(num, dtype=np.float64) / np.asarray(den, dtype=np.float64)


def above(values: np.ndarray, limit: float | None) -> Rule | None:
    """Rows over ``limit``; None (rule off) when there is no limit."""
    return None if limit is None else Rule(values > limit, values, limit)


def below(values: np.ndarray, limit: float | None) -> Rule | None:
    """Rows under ``limit``; None (rule off) when there is no limit."""
    return None if limit is None else Rule(values < limit, values, limit)


def first_failure(failures: Sequence[Rule | np.ndarray | None], rows: int) -> np.ndarray:
    """Reason code per row: the index of the first rule (in order) that failed, or ``KEEP``."""
    codes = np.full(rows, KEEP, dtype=np.int16)
    for code in range(len(failures) - 1, -1, -1):
        failed = failures[code]
        if failed is not None:
            codes[failed.failed if isinstance(failed, Rule) else failed] = code
    return codes


def verdict(failures: Sequence[Rule | np.ndarray | None], rows: int) -> Verdict:
    """The first failed rule of each row, with what it measured there and its limit (NaN for a
    kept row or a rule without a measure)."""
    codes = first_failure(failures, rows)
    value, threshold = np.full(rows, np.nan), np.full(rows, np.nan)
    for code, rule in enumerate(failures):
        if isinstance(rule, Rule):
            here = codes == code
            value[here] = np.asarray(rule.values, dtype=np.float64)[here]
            threshold[here] = rule.limit
    return Verdict(codes, value, threshold)
