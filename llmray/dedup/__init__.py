"""Exact and near-duplicate (MinHash LSH) removal over a whole corpus, scaled out with Ray tasks.

Stages exchange hash partitions of compact numpy rows (or small Arrow tables) through files in the
run's work location and sort inside each partition; no stage holds the corpus in one task.
Documents are numbered by their place in the input (units in order, rows in order), which keeps
most exchanges to integer arrays:

* :mod:`signatures`: MinHash signatures and LSH band keys per unit; band parameters from a threshold.
* :mod:`exact`: 128-bit text hashes -> groups of identical documents.
* :mod:`buckets`: band rows -> candidate edges; optional verification by estimated Jaccard.
* :mod:`components`: connected components of the candidate graph, in one task or distributed.
* :mod:`keep`: one document per group by the keep rule; the rows to drop, sent to their units.
* :mod:`layout`, :mod:`shuffle`: where each stage reads and writes; document numbers <-> units.
* :mod:`workflow`: the stages wired together as task lists.
"""
