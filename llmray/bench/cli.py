"""The ``llmray bench`` command line: arguments in, one ``Harness`` run, a summary out."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from llmray.errors import UserError


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _cpu_list(text: str) -> list[int]:
    try:
        cpus = sorted({int(part) for part in _comma_list(text)})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CPU counts like 1,2,4, got {text!r}") from None
    if not cpus or cpus[0] < 1:
        raise argparse.ArgumentTypeError(f"CPU counts must be positive, got {text!r}")
    return cpus


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="benchmark whole jobs, every stage, scaling over cores, dedup accuracy and peers",
        description="Run the shipped jobs (dedup, clean, pipeline) through the runner on each --cpus count, "
                    "with peers on the same file; measure documents/s, MB/s per core and peak memory of every "
                    "stage (one core each), scaling of each stage group, near-duplicate accuracy against "
                    "ground truth, and peer tools on the same data. Writes results.json, PNG plots and "
                    "results.md. Run from a checkout, it also runs each part's own ./benchmarks/bench_*.py.")
    p.add_argument("--quick", action="store_true",
                   help="small corpus (3,000 docs), one repeat, scaling of the last stage group only: a few "
                        "minutes on 2 cores. Default: 20,000 docs (100,000 for the dedup job), 3 repeats")
    p.add_argument("--stages", type=_comma_list, metavar="A,B",
                   help="only these stages, groups (read, normalize, filters, dedup, tokenize, ...) or parts "
                        "(jobs: the shipped jobs; train, extract, ...: ./benchmarks/bench_*.py); default: all")
    p.add_argument("--docs", type=int, metavar="N",
                   help="documents in the generated corpus (or taken from --input)")
    p.add_argument("--repeats", type=int, metavar="N", help="repeats per measurement (median and spread)")
    p.add_argument("--cpus", type=_cpu_list, metavar="1,2,...",
                   help="CPU counts for jobs through the runner; default: 1 and all cores (full: powers of "
                        "two too)")
    p.add_argument("--peers", action="store_true",
                   help="also measure datatrove and rensa where importable (datasketch always runs)")
    p.add_argument("--peers-python", metavar="PYTHON",
                   help="interpreter of a separate environment that has the peers installed")
    p.add_argument("--peer-docs", type=int, metavar="N",
                   help="sample size for slow peers on stages (datatrove); the jobs part gives them the whole file")
    p.add_argument("--input", nargs="+", metavar="PATH",
                   help="benchmark this corpus instead of a generated one (any format llmray reads); the dedup "
                        "job gets letter-permuted copies of it")
    p.add_argument("--truth", metavar="PATH",
                   help="ground truth for --input ({id, cluster} per line); default: truth_X beside corpus_X")
    p.add_argument("--address", help="also run the scaling jobs on this Ray cluster (all of its CPUs)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the corpus generator and of hashing (default 0)")
    p.add_argument("--output", type=Path, metavar="DIR", help="default: benchmarks/results/<timestamp>/ here")
    p.add_argument("--keep-corpus", action="store_true", help="keep the generated corpus under DIR/work/")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from llmray.bench import harness

    for name in ("docs", "repeats", "peer_docs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if args.peers_python and not Path(args.peers_python).is_file():
        raise UserError(f"--peers-python: no such interpreter: {args.peers_python}")
    if args.input:
        for path in args.input:
            if "://" not in path and not Path(path).exists():
                raise UserError(f"input not found: {path}")
    fields = [f.name for f in dataclasses.fields(harness.Settings)]
    options = {name: getattr(args, name) for name in fields if hasattr(args, name)}
    settings = harness.Settings(**{**options, "output": args.output or harness.default_output()})
    results = harness.Harness(settings).run()
    print(harness.summary(results, settings.output))
    return 0
