"""Where compiled kernels and other derived data (the decoded language model) are kept."""

from __future__ import annotations

import os
from pathlib import Path


def cache_folder() -> Path:
    """numba's cache directory when NUMBA_CACHE_DIR names one, else beside the package's kernels."""
    cache = os.environ.get("NUMBA_CACHE_DIR")
    return Path(cache) if cache else Path(__file__).parent / "__pycache__"
