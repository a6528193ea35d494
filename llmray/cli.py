"""The `llmray` command: one entry point, a subcommand per verb.

Problems the user can fix (a job file, a path, an address) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import textwrap

from llmray.errors import UserError
from llmray.helpformat import HelpFormatter
from llmray.pipeline.engine import TaskFailed

EXIT_USAGE = 2


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="run a job file: read, clean, filter, deduplicate, write",
        description="Run a job file. With no --address, Ray starts embedded on this machine's cores; "
                    "with one, the driver joins that cluster. Rerunning with the same --output resumes "
                    "an interrupted run.",
        formatter_class=HelpFormatter)
    p.add_argument("job", help="the job file (YAML)")
    p.add_argument("--input", nargs="+", metavar="PATH_OR_URL",
                   help="read these paths, directories, globs or fsspec URLs instead of the job's input")
    p.add_argument("--output", metavar="DIR", help="write here instead of the job's output.path")
    p.add_argument("--address", help="Ray cluster to join: auto, or HEAD:6379 (default: start Ray here)")
    p.add_argument("--num-cpus", type=int, help="CPUs for the embedded Ray (default: all cores)")
    p.add_argument("--work-dir", metavar="DIR_OR_URL",
                   help="intermediate data between steps (default: OUTPUT/_work); any fsspec URL")
    p.add_argument("--overwrite", action="store_true",
                   help="replace what an earlier llmray run wrote in --output instead of resuming it")
    p.add_argument("--max-retries", type=int, default=3, metavar="N",
                   help="tries after a worker dies on a unit; a batch that kills it twice is quarantined")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--verbose", action="store_true",
                   help="show Ray's own messages and worker output too (otherwise they stay in Ray's log files)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the resolved job, its units, segments and outputs, and run nothing")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from llmray.config import load_job
    from llmray.pipeline.runner import RunOptions, describe, inputs_from_paths, run_job

    spec = load_job(args.job)
    if args.input:
        spec.inputs = inputs_from_paths(args.input, spec)
    if args.output is not None:
        spec.output = dataclasses.replace(spec.output, path=args.output)
    if args.work_dir:
        spec.output = dataclasses.replace(spec.output, work_dir=args.work_dir)
    if args.max_retries < 0:
        raise UserError("--max-retries must be 0 or more")
    if args.dry_run:
        print(describe(spec, args.num_cpus or os.cpu_count() or 1))
        return 0
    stats = run_job(spec, RunOptions(address=args.address, num_cpus=args.num_cpus, overwrite=args.overwrite,
                                     progress=not args.quiet, max_retries=args.max_retries, verbose=args.verbose))
    if stats.get("already_complete"):
        print(f"already complete: {stats['docs_out']:,} documents kept in {spec.output.path}/data/ "
              f"(--overwrite runs it again)")
        return 0
    print(summary(stats, spec.output.path))
    return 0


def summary(stats: dict, out: str) -> str:
    lines = [
        f"read {stats['docs_in']:,} documents ({stats['bytes_in'] / 1e6:,.1f} MB) in {stats['wall_s']:.1f} s "
        f"({stats['throughput_mb_s']:.1f} MB/s; Ray start-up {stats['startup_s']:.1f} s apart)",
        f"kept {stats['docs_out']:,} ({stats['bytes_out'] / 1e6:,.1f} MB)",
    ]
    for reason, n in sorted(stats["dropped"].items(), key=lambda kv: -kv[1]):
        lines.append(f"  dropped {n:>9,}  {reason}")
    if stats["quarantined"]:
        lines.append(f"quarantined {stats['quarantined']:,} unreadable records: see {out}/quarantine/")
    lines.append(f"output: {out}/data/  stats: {out}/stats.json  report: {out}/report.html")
    return "\n".join(lines)


def _add_ops(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ops", help="list the steps a job file can use, with their parameters",
                       description="List every step with its parameters and defaults.")
    p.add_argument("name", nargs="?", help="show only this step")
    p.set_defaults(func=cmd_ops)


def cmd_ops(args: argparse.Namespace) -> int:
    from llmray import ops as steps
    from llmray.ops.base import kind_of
    from llmray.params import fields, unknown

    ops = steps.available()
    if args.name and args.name not in ops:
        raise UserError(f"{args.name}: {unknown(args.name, ops, 'step')}")
    for name in [args.name] if args.name else sorted(ops):
        cls = ops[name]
        kind = "map or filter" if cls is steps.PythonStep else kind_of(cls)
        print(f"{name}  [{kind}]  {cls.summary}")
        for field in fields(cls).values():
            default = field.default if field.default is not dataclasses.MISSING else (
                field.default_factory() if field.default_factory is not dataclasses.MISSING else "required")
            print(f"    {field.name}: {json.dumps(default, default=str)}")
        if getattr(cls, "reasons", ()):
            print("    drop reasons: " + ", ".join(f"{name}.{r}" for r in cls.reasons))
        if args.name and cls.__doc__:
            print(textwrap.indent(textwrap.dedent(cls.__doc__).strip(), "    "))
    return 0


def _add_schema(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schema", help="print the JSON Schema of job files (for editors)",
                       description="Print the JSON Schema of data job files, or of train job files with "
                                   "--train; point your editor's YAML support at it.")
    p.add_argument("--train", action="store_true", help="the schema of train job files")
    p.set_defaults(func=cmd_schema)


def cmd_schema(args: argparse.Namespace) -> int:
    if args.train:
        from llmray.train.config import json_schema
    else:
        from llmray.config import json_schema
    print(json.dumps(json_schema(), indent=1, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmray",
        description="Clean, filter, deduplicate and tokenize text corpora on Ray; train BERT models on them.",
        epilog="Start with: llmray run jobs/quickstart.yaml   (see README.md)")
    from llmray import __version__

    parser.add_argument("--version", action="version", version=f"llmray {__version__}")
    parser.add_argument("--log-level", default=os.environ.get("LLMRAY_LOG_LEVEL", "WARNING"),
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper,
                        help="how much llmray logs (also LLMRAY_LOG_LEVEL); default WARNING")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_run(sub)
    _add_ops(sub)
    _add_schema(sub)
    from llmray import bench, jobs, publish
    from llmray.serve import commands as serve_commands
    from llmray.train import commands as train_commands

    jobs.add_parsers(sub)
    train_commands.add_parsers(sub)
    serve_commands.add_parser(sub)
    bench.add_parser(sub)
    publish.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("llmray").setLevel(args.log_level)
    try:
        return args.func(args)
    except UserError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"llmray: error: {line}", file=sys.stderr)
        return EXIT_USAGE
    except TaskFailed as exc:  # the traceback is in Ray's logs; the user needs the one line
        print(f"llmray: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("llmray: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

