"""``llmray train`` and ``llmray predict``: argparse wiring for the CLI (``llmray/cli.py`` calls
``add_parsers``). Heavy imports (torch, Ray) happen inside the handlers, so ``llmray --help`` stays
fast. A train job with ``task: fasttext`` goes to :mod:`llmray.train.fasttext` (no Ray).
"""

from __future__ import annotations

import argparse
import json

from llmray.helpformat import HelpFormatter


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` and ``predict`` subcommands; each sets ``func`` to its handler."""
    p = sub.add_parser(
        "train",
        help="train a BERT model (MLM pretraining or classification fine-tuning) on Ray Train, or a fastText "
        "classifier",
        description="Train the model of a train job file (top-level `train:`) on Ray Train workers fed by "
        "Ray Data. Writes <output>/metrics.jsonl, checkpoints/ and model/ (Hugging Face format). "
        "Without Ray: python -m llmray.train JOB.yaml. With `task: fasttext`, a fastText supervised "
        "classifier is trained in this process (model/model.bin; --data, --eval-data and --output apply).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("job", help="the train job file (YAML)")
    p.add_argument(
        "--data",
        nargs="+",
        metavar="PATH_OR_URL",
        help="training data (parquet dirs, jsonl(.gz) files, globs or a tokens/ dir; local or URLs) "
        "instead of train.data",
    )
    p.add_argument(
        "--eval-data", nargs="+", metavar="PATH_OR_URL", help="held-out data instead of train.eval_data"
    )
    p.add_argument(
        "--output", metavar="DIR_OR_URL", help="output directory or URL (s3://...) instead of train.output"
    )
    p.add_argument(
        "--num-workers", type=int, metavar="N", help="Ray Train workers instead of train.num_workers"
    )
    p.add_argument("--use-gpu", action="store_true", default=None, help="one GPU per worker (bf16 autocast)")
    p.add_argument("--max-steps", type=int, metavar="N", help="optimizer steps instead of train.max_steps")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --output from its last checkpoint (same data order)",
    )
    p.add_argument(
        "--address", help="Ray cluster to join: auto, or HEAD:6379 (default: start Ray here)"
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "predict",
        help="label documents with a fine-tuned classification model",
        description="Write one JSON line per input document ({id, label, score}) using a model directory "
        "written by `llmray train` with task: classification or fasttext (or any Hugging Face "
        "sequence-classification directory, or a fastText .bin). Paths may be URLs (s3://, gs://, ...); "
        "credentials come from the environment.",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "model", metavar="MODEL_DIR", help="a model directory or URL (e.g. runs/finetune/model)"
    )
    p.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="PATH_OR_URL",
        help="documents to label: parquet dirs or jsonl(.gz) files with a text column",
    )
    p.add_argument(
        "--output", required=True, metavar="PATH_OR_URL", help="the JSON lines file (or object) to write"
    )
    p.add_argument("--batch-size", type=int, default=64, help="documents per forward pass")
    p.add_argument("--label-field", default="label",
                   help="where the input has this column, also report accuracy and macro F1 against it")
    p.set_defaults(func=cmd_predict)


def cmd_train(args: argparse.Namespace) -> int:
    if _task_of(args.job) == "fasttext":
        return _train_fasttext(args)
    from llmray.train.config import load_train_job
    from llmray.train.plan import prepare

    spec = load_train_job(
        args.job,
        data=args.data,
        eval_data=args.eval_data,
        output=args.output,
        num_workers=args.num_workers,
        use_gpu=args.use_gpu,
        max_steps=args.max_steps,
    )
    plan = prepare(spec, resume=args.resume)  # every check the user can act on, before Ray starts
    from llmray.train.trainer import fit

    summary = fit(plan, address=args.address)
    print(json.dumps(summary))
    out = plan.output
    print(f"model: {out}/model  metrics: {out}/metrics.jsonl  checkpoints: {out}/checkpoints")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from llmray.train.predict import predict

    summary = predict(args.model, args.input, args.output, batch_size=args.batch_size, label_field=args.label_field)
    print(f"wrote {summary['documents']:,} predictions to {args.output}")
    if "accuracy" in summary:
        print(f"accuracy {summary['accuracy']:.4f}, macro F1 {summary['f1']:.4f} "
              f"on the {summary['labelled']:,} documents with a {args.label_field!r} label")
    return 0


def _task_of(job: str) -> object:
    from llmray.params import read_yaml

    raw = read_yaml(job)
    body = raw.get("train") if isinstance(raw, dict) else None
    return body.get("task") if isinstance(body, dict) else None


def _train_fasttext(args: argparse.Namespace) -> int:
    from llmray.errors import JobError
    from llmray.params import read_yaml
    from llmray.train import fasttext

    for flag, value in (("--num-workers", args.num_workers), ("--use-gpu", args.use_gpu),
                        ("--max-steps", args.max_steps), ("--resume", args.resume or None),
                        ("--address", args.address)):
        if value is not None:
            raise JobError(f"{flag}: not used by task: fasttext (it trains in this process, on its CPUs)")
    try:
        spec = fasttext.parse(read_yaml(args.job), data=args.data, eval_data=args.eval_data, output=args.output)
    except JobError as exc:
        raise JobError(f"{args.job}: {exc}") from None
    fasttext.train(spec)
    print(f"model: {spec.output}/model  metrics: {spec.output}/metrics.jsonl")
    return 0
