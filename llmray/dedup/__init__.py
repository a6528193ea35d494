"""Exact and near-duplicate (MinHash LSH) removal over a whole corpus, scaled out with Ray tasks.

Stages exchange coarse hash partitions of compact numpy rows through the object store and sort
inside each partition; no stage holds the corpus in one task. Documents are numbered by their place
in the input (files in path order, rows in order), which keeps every exchange to integer arrays:

* :mod:`units`: the input cut into row-group ranges of bounded size (one task each).
* :mod:`signatures`: MinHash signatures and LSH band keys per unit; band parameters from a threshold.
* :mod:`buckets`: band rows -> candidate edges; optional verification by estimated Jaccard.
* :mod:`exact`: 128-bit text hashes -> groups of identical documents.
* :mod:`components`: connected components of the candidate graph, in one task or distributed.
* :mod:`keep`: one document per group by the keep rule; kept and dropped rows written per unit.
* :mod:`workflow`: the stages wired together on Ray.
"""
