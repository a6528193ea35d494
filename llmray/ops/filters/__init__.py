"""Quality filters: each decides per document and names the rule that dropped it."""
