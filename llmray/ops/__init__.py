"""All built-in steps; importing this package registers them for job files."""

from llmray.ops import filters, html, mix, normalize, pii, python  # noqa: F401
