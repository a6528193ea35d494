"""``llmray bench``: whole jobs, every stage, scaling over cores, dedup accuracy and peers, measured.

Part of the installed package, so a wheel benchmarks itself: the corpus generator's text and the
shipped job files it runs come with it (``data/``). ``benchmarks/`` in the repository holds only
the parts' own scripts (they read the research data in ``../shared``) and the results.

The modules that peers import from another interpreter (``peers``, ``accuracy``, ``measure``) use
the standard library only, and so does this one.
"""

from llmray.bench.cli import add_parser

__all__ = ["add_parser"]
