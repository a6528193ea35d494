"""Steps of a job: one small step per concept (``base.py`` has the contract).

    clean/     maps that rewrite text: unicode_normalize, fix_mojibake, clean_whitespace, c4_lines,
               pii_redact, html_to_text, zh_convert
    filters/   per-document decisions: length, language, gopher_quality, gopher_repetition,
               c4_quality, fineweb_quality, url_filter
    dedup.py   exact_dedup, minhash_dedup      ids.py  unique_ids      mix.py  mix
    tokenize.py  train_tokenizer, tokenize
    classify.py  classify (label with a trained BERT or fastText classifier; keep by label/score)
    python.py  python (a function of your own)

Every class here is also a Ray Data batch function (``ds.map_batches(GopherQuality())``). Steps of
your own register with ``@register`` and reach job files through an entry point in the
``llmray.steps`` group or the job's ``plugins:`` list.
"""

from __future__ import annotations

import importlib.metadata

from llmray.errors import UserError
from llmray.ops.base import FilterStep, GlobalStep, MapStep, Step, register, registered
from llmray.ops.classify import Classify
from llmray.ops.clean.c4_lines import C4Lines
from llmray.ops.clean.html import HtmlToText
from llmray.ops.clean.normalize import CleanWhitespace, FixMojibake, UnicodeNormalize
from llmray.ops.clean.pii import PiiRedact
from llmray.ops.clean.zh_convert import ZhConvert
from llmray.ops.dedup import ExactDedup, MinhashDedup
from llmray.ops.filters.c4_quality import C4Quality
from llmray.ops.filters.fineweb_quality import FineWebQuality
from llmray.ops.filters.gopher_quality import GopherQuality
from llmray.ops.filters.gopher_repetition import GopherRepetition
from llmray.ops.filters.language import Language
from llmray.ops.filters.length import Length
from llmray.ops.filters.url import UrlFilter
from llmray.ops.ids import UniqueIds
from llmray.ops.mix import Mix
from llmray.ops.python import PythonStep
from llmray.ops.tokenize import Tokenize, TrainTokenizer

ENTRY_POINTS = "llmray.steps"
_loaded = False


def available() -> dict[str, type[Step]]:
    """Every step a job file may name: the built-ins and those of installed plugins."""
    global _loaded
    if not _loaded:
        _loaded = True
        for entry in importlib.metadata.entry_points(group=ENTRY_POINTS):
            try:
                entry.load()  # a module that registers its steps, or a step class
            except Exception as exc:  # a broken plugin must not break every job
                raise UserError(f"plugin {entry.name} ({entry.value}) cannot be loaded: {exc}") from None
    return registered()


__all__ = [
    "C4Lines", "C4Quality", "Classify", "CleanWhitespace", "ExactDedup", "FilterStep", "FineWebQuality", "FixMojibake",
    "GlobalStep", "GopherQuality", "GopherRepetition", "HtmlToText", "Language", "Length", "MapStep",
    "MinhashDedup", "Mix", "PiiRedact", "PythonStep", "Step", "Tokenize", "TrainTokenizer", "UnicodeNormalize",
    "UniqueIds", "UrlFilter", "ZhConvert", "available", "register",
]
