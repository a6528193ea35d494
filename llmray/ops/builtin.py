"""Every built-in step; importing this module registers them for job files.

Kept apart from ``llmray/ops/__init__.py`` so that importing ``llmray.ops.base`` (as kernels and
dedup stages do) never drags in every op and their dependencies.
"""

from llmray.ops import dedup, filters, html, mix, normalize, pii, python, tokenize  # noqa: F401
