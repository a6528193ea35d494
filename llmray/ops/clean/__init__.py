"""Cleaning steps: each rewrites the text of every document (maps)."""
