"""WordPiece tokenizers and fixed-length token rows, shared by the data-side steps and training.

Only ``tokenizers`` and numpy: the ``tokenize`` step imports this in every Ray task, so it stays
free of torch and transformers. A saved tokenizer directory (tokenizer.json, tokenizer_config.json,
vocab.txt) loads with ``transformers.AutoTokenizer.from_pretrained``.

Rows are built from one flat array of token ids with numpy (no Python loop per token): either
packed (documents joined by [SEP] and cut every ``seq_len - 2`` tokens, for MLM) or one row per
document (truncated, for classification). Every row is ``[CLS] tokens [SEP] [PAD]...``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from llmray.errors import UserError
from llmray.io.storage import Storage

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIALS = (PAD, UNK, CLS, SEP, MASK)
#: Beside token shards (the tokenize step's output): their description and their tokenizer.
TOKENS_META, TOKENS_TOKENIZER = "_meta.json", "_tokenizer"


@dataclasses.dataclass(frozen=True)
class SpecialIds:
    pad: int
    cls: int
    sep: int
    mask: int


def train_wordpiece(
    texts: Iterable[list[str]],
    out_dir: Path,
    vocab_size: int,
    min_frequency: int = 2,
    lowercase: bool = True,
    max_length: int = 512,
) -> Path:
    """Train a BERT WordPiece vocabulary on batches of texts (streamed) and save it to ``out_dir``."""
    tok = Tokenizer(models.WordPiece(unk_token=UNK))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIALS), show_progress=False
    )
    tok.train_from_iterator(texts, trainer)
    tok.model = models.WordPiece(canonical_vocab(tok.get_vocab()), unk_token=UNK)
    cls, sep = tok.token_to_id(CLS), tok.token_to_id(SEP)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}", pair=f"{CLS} $A {SEP} $B:1 {SEP}:1", special_tokens=[(CLS, cls), (SEP, sep)]
    )
    save(tok, out_dir, lowercase, max_length)
    return out_dir


def canonical_vocab(vocab: dict[str, int]) -> dict[str, int]:
    """The trained vocabulary numbered in sorted order after the special tokens. The trainer lists
    the alphabet in hash order and breaks ties between merges the same way, both of which change
    from process to process: without this, two runs on the same text number tokens differently
    and train different models from one seed. WordPiece matches against the set of tokens, so the
    numbering changes nothing else."""
    rest = sorted(token for token in vocab if token not in SPECIALS)
    return {token: i for i, token in enumerate([*SPECIALS, *rest])}


def save(tok: Tokenizer, out_dir: Path, lowercase: bool, max_length: int) -> None:
    """Write the files transformers expects of a BERT tokenizer (no transformers import needed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"))
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    (out_dir / "vocab.txt").write_text("".join(token + "\n" for token, _ in vocab), encoding="utf-8")
    config = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": lowercase,
        "model_max_length": max_length,
        "unk_token": UNK,
        "sep_token": SEP,
        "pad_token": PAD,
        "cls_token": CLS,
        "mask_token": MASK,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    specials = {k: v for k, v in config.items() if k.endswith("_token")}
    (out_dir / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n")


@functools.lru_cache(maxsize=4)
def load(path: str) -> Tokenizer:
    """A tokenizer directory (tokenizer.json, or a BERT vocab.txt) as a fast tokenizer, once per process.

    Padding and truncation saved in a tokenizer.json (sentence-transformers models save ``Fixed: 128``
    padding and 128-token truncation) are switched off: ``encode`` must give each text's own tokens,
    all of them; rows are cut and padded here (``truncate``, ``pack``), with the attention mask over
    the real tokens only."""
    directory = Path(path)
    if (directory / "tokenizer.json").is_file():
        tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
        tok.no_padding()
        tok.no_truncation()
        return tok
    if (directory / "vocab.txt").is_file():
        from tokenizers.implementations import BertWordPieceTokenizer

        config_file = directory / "tokenizer_config.json"
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        wrapper = BertWordPieceTokenizer(
            str(directory / "vocab.txt"), lowercase=config.get("do_lower_case", True)
        )
        return wrapper._tokenizer
    raise UserError(f"{directory}: not a tokenizer directory (no tokenizer.json or vocab.txt)")


def special_ids(tok: Tokenizer, where: str) -> SpecialIds:
    ids = {name: tok.token_to_id(name) for name in (PAD, CLS, SEP, MASK)}
    missing = [name for name, i in ids.items() if i is None]
    if missing:
        raise UserError(
            f"{where}: the tokenizer has no {', '.join(missing)} token (a BERT vocabulary needs them)"
        )
    return SpecialIds(pad=ids[PAD], cls=ids[CLS], sep=ids[SEP], mask=ids[MASK])


def encode(tok: Tokenizer, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of each text without special tokens: (flat int32 ids, length of each text)."""
    encodings = tok.encode_batch_fast(texts, add_special_tokens=False)
    lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
    if not len(encodings) or not lengths.sum():
        return np.zeros(0, np.int32), lengths
    return np.concatenate([np.asarray(e.ids, dtype=np.int32) for e in encodings]), lengths


def pack(
    flat: np.ndarray, lengths: np.ndarray, seq_len: int, ids: SpecialIds
) -> tuple[np.ndarray, np.ndarray]:
    """Join the texts with [SEP] and cut the stream into rows; only the last row is padded."""
    lengths = lengths[lengths > 0]
    if not len(lengths):
        return _rows(flat, np.zeros(0, np.int64), np.zeros(0, np.int64), seq_len, ids)
    ends = np.cumsum(lengths)[:-1]
    stream = np.insert(flat, ends, ids.sep)
    body = seq_len - 2
    starts = np.arange(0, len(stream), body, dtype=np.int64)
    return _rows(stream, starts, np.minimum(body, len(stream) - starts), seq_len, ids)


def truncate(
    flat: np.ndarray, lengths: np.ndarray, seq_len: int, ids: SpecialIds
) -> tuple[np.ndarray, np.ndarray]:
    """One row per text, cut to ``seq_len - 2`` tokens."""
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return _rows(flat, starts, np.minimum(lengths, seq_len - 2), seq_len, ids)


def _rows(
    stream: np.ndarray, starts: np.ndarray, lengths: np.ndarray, seq_len: int, ids: SpecialIds
) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids int32 [n, seq_len], attention_mask int8 [n, seq_len]) from spans of ``stream``."""
    n = len(starts)
    out = np.full((n, seq_len), ids.pad, dtype=np.int32)
    out[:, 0] = ids.cls
    col = np.arange(seq_len - 2)
    valid = col[None, :] < lengths[:, None]
    out[:, 1:-1][valid] = stream[(starts[:, None] + col[None, :])[valid]]
    out[np.arange(n), lengths + 1] = ids.sep
    mask = (np.arange(seq_len)[None, :] < (lengths + 2)[:, None]).astype(np.int8)
    return out, mask


def local_copy(storage: Storage, rel: str) -> str:
    """A local directory holding the tokenizer stored at ``rel`` (downloaded once per process)."""
    if storage.local:
        return storage.join(rel)
    return _download(storage.join(rel), json.dumps(storage.options, sort_keys=True, default=str))


@functools.lru_cache(maxsize=4)
def _download(url: str, options: str) -> str:
    source = Storage(url, json.loads(options))
    target = Path(tempfile.mkdtemp(prefix="llmray-tokenizer-"))
    for rel in source.find():
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / rel).write_bytes(source.get(rel))
    return str(target)


def upload(directory: str | Path, storage: Storage, rel: str) -> None:
    """Copy a local tokenizer directory to ``rel`` on ``storage``."""
    directory = Path(directory)
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        storage.put(f"{rel}/{path.relative_to(directory).as_posix()}", path.read_bytes())
