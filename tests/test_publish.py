"""The output folder as a Hugging Face dataset, ``llmray push`` and the model card.

* The dataset card's ``configs`` point at folders that exist, and ``datasets.load_dataset(OUT)``
  reads the kept documents alone as ``train`` (rejects, quarantine and clusters are configs of
  their own), for parquet and jsonl.gz outputs.
* ``llmray push`` against a stand-in for the Hub on 127.0.0.1 (``FakeHub`` below: the endpoints
  ``huggingface_hub`` calls for create_repo, list_repo_files and create_commit over LFS; Xet is
  turned off, its chunk store being a protocol of its own): the repo receives exactly the output's
  files less ``_progress/`` and ``_work/``, byte for byte, with credentials masked in job.json; a
  second push replaces the first one's shards; a refused token is one line.
* ``model/README.md`` of a real (tiny) training run on an llmray output.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import json
import random
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from llmray import __version__
from llmray.config import parse_job
from llmray.errors import UserError
from llmray.io.storage import Storage
from llmray.pipeline.card import dataset_configs, write_dataset_card
from llmray.pipeline.runner import RunOptions, run_job
from llmray.publish import add_parser
from tests.helpers import write_jsonl

QUIET = RunOptions(progress=False)
WORDS = ("river stone market winter garden letter music harbor engine forest valley bridge lantern "
         "meadow village candle orchard silver thunder window journey castle anchor pepper").split()


def corpus(folder: Path, seed: int) -> Path:
    """Distinct documents, exact copies, near copies (one word added), short ones, a broken line."""
    rng = random.Random(seed)
    docs = [" ".join(rng.choice(WORDS) for _ in range(80)) + "." for _ in range(24)]
    records = [{"id": f"d{i:02d}", "text": t} for i, t in enumerate(docs)]
    records += [{"id": f"e{i}", "text": docs[i]} for i in range(3)]
    records += [{"id": f"n{i}", "text": docs[10 + i] + " again"} for i in range(3)]
    records += [{"id": f"s{i}", "text": "too short"} for i in range(2)]
    write_jsonl(folder / "part-0.jsonl", records[:16])
    write_jsonl(folder / "part-1.jsonl", [*records[16:], '{"id": "broken", "text": "cut'])
    return folder


def run(folder: Path, out: Path, **output: Any) -> dict:
    job = {"input": {"paths": [str(folder)], "source": "web"},
           "steps": ["clean_whitespace", {"length": {"min_words": 5}}, "exact_dedup",
                     {"minhash_dedup": {"write_clusters": True}}],
           "output": {"path": str(out), "rejects": True, **output}}
    return run_job(parse_job(job), QUIET)


@pytest.fixture(scope="module")
def outputs(ray_session, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("publish")
    source = corpus(tmp / "in", seed=1)
    first = run(source, tmp / "a", storage_options={"token": "hf_do_not_leak"})
    second = run(source, tmp / "b", format="jsonl.gz")
    for out, stats in ((tmp / "a", first), (tmp / "b", second)):
        write_dataset_card(stats, Storage(str(out)))  # what the runner calls after the report
    return {"a": (tmp / "a", first), "b": (tmp / "b", second)}


def front_matter(card: str) -> dict:
    match = re.match(r"---\n(.*?)\n---\n", card, re.S)
    assert match, card[:200]
    return yaml.safe_load(match.group(1))


def test_the_card_declares_a_config_per_folder(outputs):
    out, stats = outputs["a"]
    card = (out / "README.md").read_text()
    configs = {c["config_name"]: c for c in front_matter(card)["configs"]}
    assert set(configs) == {"default", "rejects_length", "rejects_exact_dedup", "rejects_minhash_dedup",
                            "clusters_minhash_dedup"}
    assert configs["default"]["default"] is True
    assert configs["default"]["data_files"] == [{"split": "train", "path": "data/*.parquet"}]
    for name, config in configs.items():
        (files,) = config["data_files"]
        assert sorted(out.glob(files["path"])), f"{name}: {files['path']} matches nothing"
        assert files["path"].endswith(".parquet"), "one builder reads every config: one format"
    assert sorted(p.name for p in (out / "rejects").iterdir()) == sorted(
        n[len("rejects_"):] for n in configs if n.startswith("rejects_"))
    assert "| `quarantine/*.jsonl` | json |" in card and sorted(out.glob("quarantine/*.jsonl"))
    assert f"**{stats['docs_out']:,} kept**" in card and f"{stats['docs_in']:,} documents read" in card
    for reason, n in stats["dropped"].items():
        assert n == 0 or f"| `{reason}` | {n:,} |" in card
    assert f"llmray {__version__}" in card and "`minhash_dedup` (keep=" in card
    assert "hf_do_not_leak" not in card
    other = outputs["b"][0]
    b = front_matter((other / "README.md").read_text())["configs"]
    assert b == [{"config_name": "default", "default": True,
                  "data_files": [{"split": "train", "path": "data/*.jsonl.gz"}]},
                 {"config_name": "quarantine", "data_files": [{"split": "train", "path": "quarantine/*.jsonl"}]}]
    assert sorted(other.glob("data/*.jsonl.gz")) and "| `rejects/minhash_dedup/*.parquet` | parquet |" in (
        other / "README.md").read_text()
    assert dataset_configs(Storage(str(out))) == front_matter(card)["configs"]


def test_load_dataset_reads_the_kept_documents_alone(outputs, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets", reason="the datasets library is not installed")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    datasets.disable_progress_bars()

    def load(*args: str, **kwargs: Any) -> Any:
        return datasets.load_dataset(*args, cache_dir=str(tmp_path / "cache"), **kwargs)

    for key in ("a", "b"):
        out, stats = outputs[key]
        kept = load(str(out))
        assert list(kept) == ["train"] and kept["train"].num_rows == stats["docs_out"]
        ids = set(kept["train"]["id"])
        assert ids == {r["id"] for r in _rows(out / "data")}
        if key == "a":
            rejected = load(str(out), "rejects_minhash_dedup", split="train")
            quarantine = load("json", data_files=str(out / "quarantine" / "*.jsonl"), split="train")
        else:
            rejected = load("parquet", data_files=str(out / "rejects" / "minhash_dedup" / "*.parquet"), split="train")
            quarantine = load(str(out), "quarantine", split="train")
        assert set(rejected["reason"]) == {"minhash_dedup.duplicate"} and not ids & set(rejected["id"])
        assert set(rejected["duplicate_of"]) <= ids and rejected.num_rows == stats["dropped"]["minhash_dedup.duplicate"]
        assert quarantine.num_rows == stats["quarantined"] == 1 and "error" in quarantine.column_names


def _rows(folder: Path) -> list[dict]:
    import gzip

    rows = []
    for path in sorted(folder.iterdir()):
        if path.suffix == ".parquet":
            rows += pq.read_table(path).to_pylist()
        else:
            rows += [json.loads(line) for line in gzip.open(path, "rt")]
    return rows


@pytest.fixture
def hub(monkeypatch):
    from huggingface_hub import constants

    hub = FakeHub()
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)  # nothing may reach the real Hub
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_PROGRESS_BARS", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # llmray.train.model turns it on for models
    monkeypatch.delenv("HF_TOKEN", raising=False)
    yield hub
    hub.close()


def push(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["push", *map(str, argv)])
    return args.func(args)


def local_files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # huggingface_hub's own LFS upload call
def test_push_uploads_the_output_as_a_dataset(outputs, hub, capsys):
    out, stats = outputs["a"]
    assert push(out, "--repo", "org/corpus", "--private", "--token", hub.token, "--endpoint", hub.url) == 0
    assert "org/corpus" in capsys.readouterr().out
    repo = hub.repos["org/corpus"]
    assert repo.private and len(repo.commits) == 1
    here = {k: v for k, v in local_files(out).items() if not k.startswith(("_progress/", "_work/"))}
    assert set(repo.files) == set(here) and any(k.startswith("_progress/") for k in local_files(out))
    for name in set(here) - {"README.md", "job.json"}:
        assert repo.files[name] == here[name], name
    assert any(name.endswith(".parquet") and hashlib.sha256(blob).hexdigest() in hub.blobs
               for name, blob in repo.files.items())  # the shards went through LFS
    job = json.loads(repo.files["job.json"])
    assert job["job"]["output"]["storage_options"] == {"token": "***"}
    assert b"hf_do_not_leak" not in b"".join(repo.files.values()) and b"hf_do_not_leak" in here["job.json"]
    card = repo.files["README.md"].decode()
    assert 'load_dataset("org/corpus", split="train")' in card
    assert hub.validated and front_matter(card)["configs"] == hub.validated[-1]["configs"]
    # a second run's output replaces the first one's shards instead of mixing with them
    other, _ = outputs["b"]
    assert push(other, "--repo", "org/corpus", "--token", hub.token, "--endpoint", hub.url) == 0
    theirs = {k for k in local_files(other) if not k.startswith("_progress/")}
    assert set(repo.files) == theirs and not any(k.endswith(".parquet") and k.startswith("data/") for k in theirs)
    assert len(repo.commits) == 2


def test_push_refuses_in_one_line(outputs, hub, tmp_path):
    out, _ = outputs["a"]
    with pytest.raises(UserError, match="token is refused"):
        push(out, "--repo", "org/corpus", "--token", "wrong", "--endpoint", hub.url)
    with pytest.raises(UserError, match="ORG/NAME"):
        push(out, "--repo", "corpus", "--endpoint", hub.url)
    with pytest.raises(UserError, match="no stats.json"):
        push(tmp_path, "--repo", "org/corpus", "--endpoint", hub.url)
    assert hub.repos == {}


def test_push_dry_run_lists_the_files(outputs, capsys):
    out, _ = outputs["a"]
    assert push(out, "--repo", "org/corpus", "--dry-run") == 0
    listed = capsys.readouterr().out.split()
    assert listed[:2] == ["README.md", "job.json"] and not any(f.startswith("_progress/") for f in listed)
    assert set(listed) == {k for k in local_files(out) if not k.startswith("_progress/")}


def test_the_exported_model_has_a_card(outputs, tmp_path):
    import torch

    from llmray.train.config import parse_train
    from llmray.train.local import run_local
    from llmray.train.plan import prepare

    data, stats = outputs["a"]
    spec = parse_train({"train": {
        "task": "mlm", "data": str(data / "data"), "output": str(tmp_path / "run"), "eval_fraction": 0.25,
        "model": {"config": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                             "intermediate_size": 64, "max_position_embeddings": 64}},
        "tokenizer": {"vocab_size": 200, "min_frequency": 1}, "seq_len": 32, "batch_size": 4, "max_steps": 3,
        "optimizer": {"lr": 0.002}}})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_local(prepare(spec), device="cpu")
    finally:
        torch.set_num_threads(threads)
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    evaluation = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
                  if "eval_loss" in line][-1]
    assert card.startswith("---\nlibrary_name: transformers\npipeline_tag: fill-mask\n")
    assert f"`{data / 'data'}`: the output of an llmray run" in card
    assert f"{stats['docs_out']:,} of {stats['docs_in']:,} documents kept" in card
    assert f"| eval_loss | {evaluation['eval_loss']:.4g} |" in card
    assert f"| perplexity | {evaluation['perplexity']:.4g} |" in card and f"at step {evaluation['step']}" in card
    assert "| optimizer steps | 3 of 3 planned |" in card and "= 4 per step |" in card
    assert "| sequence length | 32 tokens |" in card and "lr 0.002" in card and f"| llmray | {__version__} |" in card
    assert "masked-language-model pretraining" in card


# -- a stand-in for the Hub --------------------------------------------------------------------------------

BINARY = (".parquet", ".gz", ".png", ".zst")


@dataclasses.dataclass
class Repo:
    private: bool
    files: dict[str, bytes] = dataclasses.field(default_factory=dict)
    commits: list[str] = dataclasses.field(default_factory=list)


class FakeHub:
    """The Hub's endpoints that ``create_repo``, ``list_repo_files`` and ``create_commit`` call:

    * ``POST /api/repos/create``                            the repo (409 when it exists, as the Hub does)
    * ``POST /api/validate-yaml``                           the card's front matter (configs well formed)
    * ``GET  /api/datasets/{repo}/tree/{rev}``              the files committed so far
    * ``POST /api/datasets/{repo}/preupload/{rev}``         upload mode per file: lfs for binary files
    * ``POST /datasets/{repo}.git/info/lfs/objects/batch``  LFS batch: where to PUT each blob
    * ``PUT  /lfs/{oid}``                                   a blob; its sha256 is checked against the oid
    * ``POST /api/datasets/{repo}/commit/{rev}``            NDJSON commit: regular files inline, LFS by oid
    """

    def __init__(self, token: str = "hf_test_token"):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.blobs: dict[str, bytes] = {}
        self.calls: list[tuple[str, str]] = []
        self.validated: list[dict[str, Any]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, code: int, payload: Any = None) -> None:
            data = json.dumps(payload).encode() if payload is not None else b""
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {hub.token}":
                return True
            self._send(401, {"error": "Invalid credentials in Authorization header"})
            return False

        def do_GET(self) -> None:  # noqa: N802
            hub.calls.append(("GET", self.path))
            match = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/tree/[^/?]+(/[^?]*)?(\?.*)?", self.path)
            if match and self._authorized():
                repo = hub.repos.get(match.group(1))
                if repo is None:
                    return self._send(404, {"error": "Repository not found"})
                self._send(200, [{"type": "file", "path": p, "size": len(b),
                                  "oid": hashlib.sha1(b).hexdigest()} for p, b in sorted(repo.files.items())])
            elif not match:
                self._send(404, {"error": f"not in the stand-in: GET {self.path}"})

        def do_PUT(self) -> None:  # noqa: N802
            hub.calls.append(("PUT", self.path))
            body = self._body()
            match = re.fullmatch(r"/lfs/([0-9a-f]{64})", self.path)
            if not match:
                return self._send(404, {"error": f"not in the stand-in: PUT {self.path}"})
            if hashlib.sha256(body).hexdigest() != match.group(1):
                return self._send(400, {"error": "sha256 mismatch"})
            hub.blobs[match.group(1)] = body
            self._send(200, {})

        def do_POST(self) -> None:  # noqa: N802
            hub.calls.append(("POST", self.path))
            body = self._body()
            if not self._authorized():
                return
            if self.path == "/api/validate-yaml":
                return self._validate(json.loads(body))
            if self.path == "/api/repos/create":
                spec = json.loads(body)
                name = f"{spec.get('organization') or 'user'}/{spec['name']}"
                if spec.get("type") != "dataset":
                    return self._send(400, {"error": "only datasets here"})
                if name in hub.repos:
                    return self._send(409, {"error": "You already created this dataset repo",
                                            "url": f"{hub.url}/datasets/{name}"})
                hub.repos[name] = Repo(private=spec.get("visibility") == "private" or bool(spec.get("private")))
                return self._send(200, {"url": f"{hub.url}/datasets/{name}", "name": name})
            match = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/(preupload|commit)/([^/?]+)(\?.*)?", self.path)
            if match:
                repo = hub.repos.get(match.group(1))
                if repo is None:
                    return self._send(404, {"error": "Repository not found"})
                if match.group(2) == "preupload":
                    files = json.loads(body)["files"]
                    return self._send(200, {"files": [
                        {"path": f["path"], "uploadMode": "lfs" if f["path"].endswith(BINARY) else "regular",
                         "shouldIgnore": False} for f in files]})
                return self._commit(match.group(1), repo, body)
            match = re.fullmatch(r"/datasets/([^/]+/[^/]+)\.git/info/lfs/objects/batch", self.path)
            if match:
                objects = json.loads(body)["objects"]
                return self._send(200, {"transfer": "basic", "objects": [
                    {"oid": o["oid"], "size": o["size"],
                     "actions": {"upload": {"href": f"{hub.url}/lfs/{o['oid']}"}}}
                    if o["oid"] not in hub.blobs else {"oid": o["oid"], "size": o["size"]} for o in objects]})
            self._send(404, {"error": f"not in the stand-in: POST {self.path}"})

        def _validate(self, request: dict[str, Any]) -> None:
            """The card's metadata: YAML front matter whose configs name a config and its data files."""
            import yaml

            match = re.match(r"---\n(.*?)\n---\n", request.get("content", ""), re.S)
            errors = []
            try:
                meta = yaml.safe_load(match.group(1)) if match else {}
            except yaml.YAMLError as exc:
                meta, errors = {}, [f"invalid YAML: {exc}"]
            for config in (meta or {}).get("configs", []):
                if not isinstance(config.get("config_name"), str):
                    errors.append("configs: config_name must be a string")
                for files in config.get("data_files", []):
                    if not {"split", "path"} <= set(files):
                        errors.append(f"configs.{config.get('config_name')}: data_files need split and path")
            hub.validated.append(meta or {})
            if errors:
                return self._send(400, {"errors": [{"message": e} for e in errors]})
            self._send(200, {"warnings": []})

        def _commit(self, name: str, repo: Repo, body: bytes) -> None:
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            changes: dict[str, bytes | None] = {}
            for line in lines:
                key, value = line["key"], line["value"]
                if key == "file":
                    changes[value["path"]] = base64.b64decode(value["content"])
                elif key == "lfsFile":
                    blob = hub.blobs.get(value["oid"])
                    if blob is None or len(blob) != value["size"]:
                        return self._send(422, {"error": f"LFS object {value['oid']} was never uploaded"})
                    changes[value["path"]] = blob
                elif key in ("deletedFile", "deletedFolder"):
                    changes[value["path"]] = None
                elif key != "header":
                    return self._send(400, {"error": f"unknown commit entry {key}"})
            for path, content in changes.items():
                if content is None:
                    repo.files.pop(path, None)
                else:
                    repo.files[path] = content
            oid = hashlib.sha1(body).hexdigest()
            repo.commits.append(oid)
            self._send(200, {"commitUrl": f"{hub.url}/datasets/{name}/commit/{oid}", "commitOid": oid,
                             "pullRequestUrl": None})

    return Handler
