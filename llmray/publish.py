"""``llmray push OUT --repo ORG/NAME``: a run's output folder to the Hugging Face Hub as a dataset.

The folder goes up in one commit through ``huggingface_hub`` with its card (``pipeline/card.py``)
rendered for the repo; ``_progress/`` and ``_work/`` stay behind, storage credentials in
``job.json`` are masked, and files an earlier push left in llmray's folders are deleted, so a
re-run's new shards do not mix with the old ones.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmray.errors import UserError
from llmray.io.storage import Storage
from llmray.pipeline.card import CARD, PRIVATE, render_card
from llmray.pipeline.report import redact

#: Folders a push owns on the Hub: files there that this push does not hold are deleted.
OWNED = ("data/", "rejects/", "quarantine/", "clusters/", "tokens/", "tokenizer/")
REPO = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


def upload_plan(output: Storage) -> list[str]:
    """The files a push uploads as they are (the card and job.json are rendered apart)."""
    return [f for f in output.find() if not f.startswith(PRIVATE) and f not in (CARD, "job.json")
            and not f.endswith(".tmp")]


@contextlib.contextmanager
def _local(output: Storage, files: list[str]) -> Iterator[Path]:
    """A local folder holding ``files``: the output itself, or a temporary copy of a URL's."""
    if output.local:
        yield Path(output.url)
        return
    with tempfile.TemporaryDirectory(prefix="llmray-push-") as tmp:
        for rel in files:
            target = Path(tmp, rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            with output.open_read(rel) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        yield Path(tmp)


def push(out: str, repo: str, private: bool = False, token: str | None = None, endpoint: str | None = None,
         storage_options: dict[str, Any] | None = None) -> str:
    """Upload the output folder ``out`` to the dataset repo ``repo`` in one commit; return its URL."""
    if not REPO.fullmatch(repo):
        raise UserError(f"--repo {repo}: give the dataset's name as ORG/NAME (or USER/NAME)")
    output = Storage(out, storage_options)
    if not output.exists("stats.json"):
        raise UserError(f"{output.url}: no stats.json: not the output of a finished llmray run")
    stats = output.get_json("stats.json")
    if not stats.get("accounting_ok", False):
        raise UserError(f"{output.url}: the run did not finish cleanly (stats.json: accounting_ok is false)")
    try:
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    except ImportError:
        raise UserError("llmray push needs huggingface_hub: pip install huggingface_hub") from None
    files = upload_plan(output)
    card = render_card(stats, output, repo).encode()
    job = json.dumps(redact(output.get_json("job.json")), indent=2).encode() if output.exists("job.json") else None
    api = HfApi(endpoint=endpoint, token=token)
    where = endpoint or os.environ.get("HF_ENDPOINT") or "the Hugging Face Hub"
    try:
        url = api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
        present = api.list_repo_files(repo, repo_type="dataset")
        with _local(output, files) as folder:
            operations: list[Any] = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(folder / rel))
                                     for rel in files]
            operations.append(CommitOperationAdd(path_in_repo=CARD, path_or_fileobj=card))
            if job is not None:
                operations.append(CommitOperationAdd(path_in_repo="job.json", path_or_fileobj=job))
            keep = set(files)
            operations += [CommitOperationDelete(path_in_repo=rel) for rel in present
                           if rel.startswith(OWNED) and rel not in keep]
            api.create_commit(repo, repo_type="dataset", operations=operations,
                              commit_message=f"llmray push: {stats['docs_out']:,} documents "
                                             f"({stats.get('job_file') or 'job'})")
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"cannot push to {repo} on {where}: {_explain(exc)}") from None
    return str(url)


def _explain(exc: BaseException) -> str:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    if status == 401:
        return "not logged in or the token is refused: pass --token, set HF_TOKEN, or run `hf auth login`"
    if status == 403:
        return f"the token may not write to this repo ({text})"
    if "Connect" in type(exc).__name__ or isinstance(exc, (ConnectionError, TimeoutError)):
        return f"nothing answers ({text}): check --endpoint and the network"
    return f"{type(exc).__name__}: {text}"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "push", help="upload a run's output folder to the Hugging Face Hub as a dataset",
        description="Upload OUT (a finished run's output folder or URL) to the dataset repo ORG/NAME in one "
                    "commit: data/, rejects/, quarantine/, clusters/, the report, stats and the dataset card "
                    "(README.md, written for the repo), without _progress/ and _work/. Creates the repo if needed; "
                    "files an earlier push left in those folders are removed.")
    p.add_argument("output", metavar="OUT", help="the run's output folder (or fsspec URL)")
    p.add_argument("--repo", required=True, metavar="ORG/NAME", help="the dataset repository")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--token", help="a Hugging Face token with write access (default: HF_TOKEN or the saved login)")
    p.add_argument("--endpoint", metavar="URL", help="the Hub's address (default: HF_ENDPOINT or huggingface.co)")
    p.add_argument("--dry-run", action="store_true", help="list what would be uploaded and upload nothing")
    p.set_defaults(func=cmd_push)


def cmd_push(args: argparse.Namespace) -> int:
    if args.dry_run:
        output = Storage(args.output)
        if not output.exists("stats.json"):
            raise UserError(f"{output.url}: no stats.json: not the output of a finished llmray run")
        files = [CARD, *(["job.json"] if output.exists("job.json") else []), *upload_plan(output)]
        for rel in files:
            print(rel)
        print(f"{len(files)} files to {args.repo} (nothing uploaded: --dry-run)", file=sys.stderr)
        return 0
    url = push(args.output, args.repo, private=args.private, token=args.token, endpoint=args.endpoint)
    print(f"pushed {args.output} to {url}")
    return 0
