"""llmray: clean, deduplicate and tokenize text corpora on Ray, then train BERT models on them."""

__version__ = "0.1.0"
