"""Quality filters: each decides per document and names the rule that dropped it."""

from llmray.ops.filters import language, url  # noqa: F401
