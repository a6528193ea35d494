"""Compiled kernels: pure functions over Arrow buffers and numpy arrays (no Ray, no ops), one module per
topic, e.g. :mod:`llmray.kernels.text` (word, line, paragraph and n-gram statistics) and
:mod:`llmray.kernels.c4` (C4's line rules)."""
