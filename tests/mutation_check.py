"""Plant known bugs, one at a time, in a copy of the code and check that the tests guarding that code fail.

    python -m tests.mutation_check            # every mutation; writes tests/mutation_results.json
    python -m tests.mutation_check -k keep    # the mutations whose name contains "keep"

Each mutation is one textual edit of one file (the text it replaces must occur exactly once, so a
refactor that moves the code makes the check say so instead of passing quietly) and the tests that
should catch it. The copy is the commit at HEAD in a temporary folder, imported first through
PYTHONPATH, so the checkout itself is never touched. Before any mutation the same tests
run on the unmutated copy and must pass: a mutation counts as caught only if it turns them red.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "tests" / "mutation_results.json"


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS = [
    Mutation("Arrow blocks number derived ids from the wrong line", "llmray/io/readers.py",
             "np.arange(lines.absolute(first), lines.absolute(first) + len(ids))",
             "np.arange(lines.absolute(first) + 1, lines.absolute(first) + 1 + len(ids))",
             ("tests/io/test_readers.py::test_arrow_blocks_read_exactly_what_the_line_by_line_reader_reads",)),
    Mutation("Arrow blocks keep documents whose text is missing", "llmray/io/readers.py",
             "if table.num_rows != len(starts) or texts.null_count or",
             "if table.num_rows != len(starts) or",
             ("tests/io/test_readers.py::test_arrow_blocks_read_exactly_what_the_line_by_line_reader_reads",)),
    Mutation("one-pass exact hashes reuse the tokens of text with CJK", "llmray/kernels/minhash.py",
             "if mode == AUTO and m == 0:", "if mode == AUTO:",
             ("tests/kernels/test_dedup_kernels.py",)),
    Mutation("a bucket's center is its largest signature hash", "llmray/kernels/graph.py",
             "if sig < best_sig[j] or", "if sig > best_sig[j] or",
             ("tests/kernels/test_dedup_kernels.py",)),
    Mutation("accounting blind to lost documents", "llmray/pipeline/stats.py",
             'if counts["docs_in"] != accounted:', 'if counts["docs_in"] < accounted:',
             ("tests/pipeline/test_stats.py",)),
    Mutation("band key depends on the document's position", "llmray/kernels/minhash.py",
             "h = band_seed + np.uint64(b) * GOLDEN", "h = band_seed + np.uint64(b) * GOLDEN + np.uint64(d)",
             ("tests/kernels/test_dedup_kernels.py",)),
    Mutation("band key ignores the band's last row", "llmray/kernels/minhash.py",
             "for r in range(b * rows, (b + 1) * rows):", "for r in range(b * rows, (b + 1) * rows - 1):",
             ("tests/kernels/test_dedup_kernels.py",)),
    Mutation("keep rule keeps the largest id", "llmray/dedup/keep.py",
             '[(ID, "ascending"), (_DOC, "ascending")]', '[(ID, "descending"), (_DOC, "ascending")]',
             ("tests/dedup/test_dedup.py::test_exact_dedup_counts_and_names_the_kept_document",)),
    Mutation("keep max:<column> keeps the smallest value", "llmray/dedup/keep.py",
             '[(_VALUE, "descending")]', '[(_VALUE, "ascending")]',
             ("tests/dedup/test_dedup.py::test_keep_rule_max_column",)),
    Mutation("verify keeps pairs below the threshold", "llmray/dedup/buckets.py",
             '>= shared.options["threshold"]', '>= shared.options["threshold"] - 0.3',
             ("tests/dedup/test_dedup.py::test_pairs_below_the_threshold_stay_apart_though_lsh_pairs_many",)),
    Mutation("a rule's minimum is inclusive", "llmray/ops/filters/_rules.py",
             "Rule(values < limit, values, limit)", "Rule(values <= limit, values, limit)",
             ("tests/ops/test_filters.py",)),
    Mutation("rejects report the wrong limit", "llmray/ops/filters/_rules.py",
             "threshold[here] = rule.limit", "threshold[here] = rule.limit + 1",
             ("tests/ops/test_filters.py",)),
    Mutation("gopher's word minimum is off by ten", "llmray/ops/filters/gopher_quality.py",
             "min_words: int | None = 50", "min_words: int | None = 40",
             ("tests/ops/test_filters.py",)),
    Mutation("every unit shares one commit marker", "llmray/pipeline/segment.py",
             'return f"_progress/s{segment}/{key}.json"', 'return f"_progress/s{segment}/unit.json"',
             ("tests/pipeline/test_run.py::test_jsonl_gz_output_and_resume_skips_finished_chunks",)),
    Mutation("a combined exchange object leaves out the last sender of its group", "llmray/dedup/layout.py",
             "first, last = group * self.combine_group, min(count, (group + 1) * self.combine_group)",
             "first, last = group * self.combine_group, min(count, (group + 1) * self.combine_group - 1)",
             ("tests/dedup/test_dedup.py::test_combined_exchanges_keep_the_same_documents",)),
    Mutation("the second merge level leaves out the last first-level object of its group", "llmray/dedup/layout.py",
             "first, last = group * self.combine_group, min(self.combined[stage], (group + 1) * self.combine_group)",
             "first, last = group * self.combine_group, min(self.combined[stage], "
             "(group + 1) * self.combine_group - 1)",
             ("tests/dedup/test_dedup.py::test_combined_exchanges_keep_the_same_documents",)),
    Mutation("every candidate pair is verified in the group of its larger document", "llmray/dedup/buckets.py",
             "return np.where(flip, smaller, larger), np.where(flip, larger, smaller)", "return larger, smaller",
             ("tests/dedup/test_dedup.py::test_verifying_shares_the_work_between_the_groups",)),
    Mutation("numbers from Arrow ignore a slice's offset", "llmray/kernels/arrow.py",
             "np.frombuffer(array.buffers()[1], dtype, len(array), array.offset * dtype.itemsize)",
             "np.frombuffer(array.buffers()[1], dtype, len(array), 0)",
             ("tests/kernels/test_arrow.py",)),
    Mutation("quarantined records are not counted", "llmray/pipeline/segment.py",
             'counts["quarantined"] += n_read - table.num_rows - len(batch.too_large)',
             'counts["quarantined"] += 0',
             ("tests/pipeline/test_run.py::test_every_kind_of_bad_input_in_one_run",)),
    Mutation("kernels compiled ahead of time stay in use after their sources change", "llmray/kernels/aot.py",
             "digest.update(source.name.encode() + source.read_bytes())", "digest.update(source.name.encode())",
             ("tests/kernels/test_aot.py::test_a_module_for_other_sources_is_ignored",)),
]


def copy_commit(into: Path) -> None:
    """The committed tree at HEAD (work in progress in the checkout stays out of the check)."""
    archive = subprocess.run(["git", "archive", "--format=tar", "HEAD"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)


def run_tests(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[bool, float, str]:
    """(passed, seconds, last lines) of pytest over ``tests`` in the copy."""
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
    start = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                              cwd=copy, env=env, capture_output=True, text=True, timeout=timeout,
                              start_new_session=True)
    except subprocess.TimeoutExpired:
        return False, time.monotonic() - start, "timed out"
    tail = [line for line in done.stdout.splitlines() if line.strip()][-1:]
    return done.returncode == 0, time.monotonic() - start, " ".join(tail)


def anchored(root: Path, mutation: Mutation) -> str:
    """The file's text, once it is known to hold the text to replace exactly once."""
    text = (root / mutation.file).read_text()
    found = text.count(mutation.old)
    if found != 1:
        raise SystemExit(f"{mutation.name}: {mutation.file} holds the text to replace {found} times (expected 1); "
                         "update the mutation to the code as it is now")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-k", default="", help="only mutations whose name contains this text")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per pytest run")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if args.k in m.name]
    results = []
    with tempfile.TemporaryDirectory(prefix="llmray-mutants-") as tmp:
        copy = Path(tmp)
        copy_commit(copy)
        for mutation in chosen:  # a missing anchor fails before anything runs
            anchored(copy, mutation)
        for tests in dict.fromkeys(m.tests for m in chosen):
            passed, seconds, tail = run_tests(copy, tests, args.timeout)
            print(f"baseline {' '.join(tests)}: {'pass' if passed else 'FAIL'} ({seconds:.0f} s) {tail}", flush=True)
            if not passed:
                print("the unmutated code fails these tests: fix that first", file=sys.stderr)
                return 1
        for mutation in chosen:
            original = anchored(copy, mutation)
            (copy / mutation.file).write_text(original.replace(mutation.old, mutation.new))
            try:
                passed, seconds, tail = run_tests(copy, mutation.tests, args.timeout)
            finally:
                (copy / mutation.file).write_text(original)
            caught = not passed
            results.append({"mutation": mutation.name, "file": mutation.file, "tests": list(mutation.tests),
                            "caught": caught, "seconds": round(seconds, 1), "pytest": tail})
            print(f"{'caught' if caught else 'MISSED'}: {mutation.name} ({seconds:.0f} s) {tail}", flush=True)
    if not args.k:
        RESULTS.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "mutations": results}, indent=2) + "\n")
    missed = [r["mutation"] for r in results if not r["caught"]]
    print(f"{len(results) - len(missed)} of {len(results)} planted bugs caught"
          + (f"; missed: {', '.join(missed)}" if missed else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
