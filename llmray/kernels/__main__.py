"""``python -m llmray.kernels``: compile every kernel now (``make setup`` runs this at install)."""

from llmray.kernels import compile_all

print(f"llmray kernels compiled in {compile_all(force=True):.1f} s")
