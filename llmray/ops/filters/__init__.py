"""Quality filters: each decides per document and names the rule that dropped it."""

from llmray.ops.filters import (  # noqa: F401
    c4_lines,
    c4_quality,
    fineweb_quality,
    gopher_quality,
    gopher_repetition,
    language,
    length,
    url,
)
